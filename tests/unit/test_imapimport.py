"""Import over IMAP, the pure parts: the source URL, where each of the old server's folders goes (Gmail's,
Courier's, Outlook's and another relentad's layouts), and the date order that keeps each folder's UIDs a prefix."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relentad.accountpage import importpage
from relentad.config import Config
from relentad.errors import InvalidInput
from relentad.lifecycle import imapimport, imapsource, importjobs
from relentad.lifecycle.imapimport import Plan, plan_folders
from relentad.lifecycle.imapsource import RemoteFolder, SourceError, Summary, parse_url
from relentad.store import db
from tests.support.store import database_with

OWN = {"\\sent": "Sent", "\\drafts": "Drafts", "\\junk": "Junk", "\\trash": "Trash", "\\archive": "Archive"}


def folder(name: str, *attributes: str, delimiter: str = "/", prefix: str = "") -> RemoteFolder:
    inside = name[len(prefix) :] if prefix and name.startswith(prefix) else name
    return RemoteFolder(name, tuple(inside.split(delimiter)), frozenset(a.lower() for a in attributes), delimiter)


def targets(plans: list[Plan]) -> dict[str, str | None]:
    return {p.remote.name: p.target for p in plans}


def test_source_urls() -> None:
    url = parse_url("imaps://old@example.org@imap.example.org")
    assert (url.implicit_tls, url.login, url.host, url.port) == (True, "old@example.org", "imap.example.org", 993)
    assert url.key == "old@example.org@imap.example.org"
    url = parse_url("IMAP://j%2Edoe@[::1]:1143")
    assert (url.implicit_tls, url.login, url.host, url.port) == (False, "j.doe", "::1", 1143)
    assert str(url) == "imap://j.doe@[::1]:1143"
    assert parse_url("imap://a@Host.Example").key == parse_url("imaps://a@host.example:993").key  # same mailbox
    for bad in ("imaps://host", "imaps://u:secret@host", "imaps://u@host/INBOX", "pop3://u@host", "imaps://u@h:99999"):
        with pytest.raises(InvalidInput):
            parse_url(bad)
    with pytest.raises(InvalidInput) as refused:
        parse_url("imaps://u:s3cret@host")
    assert "s3cret" not in str(refused.value)


def test_flags_are_kept_as_they_can_be_served_again() -> None:
    given = [b"\\SEEN", "\\flagged", b"\\Recent", b"\\NonJunk", b"$Label1", "Junk", b"bad]word", b"a(b"]
    assert imapsource.clean_flags(given) == ("\\Seen", "\\Flagged", "$Label1", "Junk")


def test_gmail_layout() -> None:
    remote = [
        folder("INBOX"),
        folder("[Gmail]", "\\Noselect", "\\HasChildren"),
        folder("[Gmail]/All Mail", "\\All"),
        folder("[Gmail]/Drafts", "\\Drafts"),
        folder("[Gmail]/Important", "\\Important"),
        folder("[Gmail]/Sent Mail", "\\Sent"),
        folder("[Gmail]/Spam", "\\Junk"),
        folder("[Gmail]/Starred", "\\Flagged"),
        folder("[Gmail]/Trash", "\\Trash"),
        folder("Customers/ACME"),
    ]
    plans = plan_folders(remote, OWN, ())
    assert targets(plans) == {
        "INBOX": "INBOX",
        "[Gmail]/All Mail": None,
        "[Gmail]/Drafts": "Drafts",
        "[Gmail]/Important": None,
        "[Gmail]/Sent Mail": "Sent",
        "[Gmail]/Spam": "Junk",
        "[Gmail]/Starred": None,
        "[Gmail]/Trash": "Trash",
        "Customers/ACME": "Customers/ACME",
    }
    assert "every message" in next(p.skipped for p in plans if p.remote.name == "[Gmail]/All Mail")


def test_names_give_roles_only_where_no_attribute_does() -> None:
    courier = [
        folder("INBOX", delimiter="."),
        folder("INBOX.Sent Items", delimiter=".", prefix="INBOX."),
        folder("INBOX.Deleted Items", delimiter=".", prefix="INBOX."),
        folder("INBOX.Junk E-mail", delimiter=".", prefix="INBOX."),
        folder("INBOX.Projects.Sent", delimiter=".", prefix="INBOX."),  # a user's own folder that happens to be "Sent"
    ]
    assert targets(plan_folders(courier, OWN, ())) == {
        "INBOX": "INBOX",
        "INBOX.Sent Items": "Sent",
        "INBOX.Deleted Items": "Trash",
        "INBOX.Junk E-mail": "Junk",
        "INBOX.Projects.Sent": "Projects/Sent",
    }
    marked = [folder("INBOX"), folder("Sent", "\\Sent"), folder("Sent Messages")]  # the server says which one is Sent
    assert targets(plan_folders(marked, OWN, ())) == {
        "INBOX": "INBOX",
        "Sent": "Sent",
        "Sent Messages": "Sent Messages",
    }
    flat = [folder("INBOX/Sent"), folder("Trash")]  # no prefix, Sent under INBOX (Courier without NAMESPACE)
    assert targets(plan_folders(flat, OWN, ())) == {"INBOX/Sent": "Sent", "Trash": "Trash"}


def test_exclusions_views_and_refusals() -> None:
    remote = [folder("INBOX"), folder("Old"), folder("Old/2019"), folder("Contacts"), folder("Contacts/Dana")]
    plans = plan_folders(remote, OWN, ["Old"], views=imapimport.RELENTAD_VIEWS)
    assert targets(plans) == {"INBOX": "INBOX", "Old": None, "Old/2019": None, "Contacts": None, "Contacts/Dana": None}
    assert targets(plan_folders(remote, OWN, ["Old/"]))["Contacts/Dana"] == "Contacts/Dana"  # not a relentad: real
    dotted = [folder("INBOX.Old.2019", delimiter=".", prefix="INBOX.")]
    assert targets(plan_folders(dotted, OWN, ["INBOX.Old"])) == {"INBOX.Old.2019": None}
    with pytest.raises(InvalidInput, match="--exclude"):
        plan_folders([folder("Shared/bob@example.test/INBOX")], OWN, ())
    with pytest.raises(InvalidInput, match="--exclude"):
        plan_folders([folder("a.b..c", delimiter=".")], OWN, ())  # an empty level
    assert targets(plan_folders([folder("a.b..c", delimiter=".")], OWN, ["a.b"])) == {"a.b..c": None}


@given(st.lists(st.lists(st.integers(0, 50), max_size=8), min_size=1, max_size=4))
def test_date_order_keeps_each_folders_uid_order(dates: list[list[int]]) -> None:
    """Whatever the dates, each folder's messages come in UID order, so the copied ones are always a prefix and
    "the highest UID copied" is an exact mark."""
    plans = [
        Plan(folder(f"f{n}"), f"f{n}", pending=[Summary(uid + 1, (), float(d), 0, 1) for uid, d in enumerate(ds)])
        for n, ds in enumerate(dates)
    ]
    seen: dict[str, list[int]] = {}
    for plan, summary in imapimport._date_ordered(plans):
        seen.setdefault(plan.remote.name, []).append(summary.uid)
    for plan in plans:
        assert seen.get(plan.remote.name, []) == [s.uid for s in plan.pending]


# -- the account page's jobs -------------------------------------------------------------------------------------


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = database_with(tmp_path / "j.db", "alice@example.test")
    yield connection
    connection.close()


def test_a_job_per_account_and_its_end_never_marks_the_next(conn: sqlite3.Connection) -> None:
    first = importjobs.enqueue(conn, 1, "imaps://a@old.example:993")
    importjobs.report(conn, 1, state="running", total=10)
    importjobs.report(conn, 1, done=4, imported=3, already=1)
    importjobs.report(conn, 1, state="done")
    job = importjobs.get(conn, 1)
    assert job is not None and (job.state, job.total, job.done, job.imported, job.already) == ("done", 10, 4, 3, 1)
    assert job.finished is not None and not job.active
    time.sleep(0.01)
    importjobs.enqueue(conn, 1, "imaps://a@old.example:993")  # the next one starts from zero
    assert importjobs.fail_unfinished(conn, "late news of the first", (1, first)) == 0  # the first's end
    job = importjobs.get(conn, 1)
    assert job is not None and (job.state, job.done, job.error, job.finished) == ("queued", 0, "", None)
    assert importjobs.fail_unfinished(conn, importjobs.INTERRUPTED) == 1  # a restart fails what was under way
    with pytest.raises(ValueError, match="unknown"):
        importjobs.report(conn, 1, password="x")
    [(email, listed)] = importjobs.listed(conn)
    assert email == "alice@example.test" and listed.state == "failed" and listed.error == importjobs.INTERRUPTED


def test_what_the_page_takes(conn: sqlite3.Connection) -> None:
    assert importjobs.url_of("IMAP.Example.COM.", "993", "tls", "bob@old.example") == (
        "imaps://bob@old.example@imap.example.com:993"
    )
    assert importjobs.url_of("2001:db8::1", "143", "starttls", "a/b c") == "imap://a%2Fb%20c@[2001:db8::1]:143"
    assert importjobs.url_of("imap.Bücher.example", "993", "tls", "x") == "imaps://x@imap.xn--bcher-kva.example:993"
    for host, port, security, login in (
        ("imap example.com", "993", "tls", "x"),
        ("-bad.example", "993", "tls", "x"),
        ("imap.example.com/x", "993", "tls", "x"),
        ("imap.example.com", "99999", "tls", "x"),
        ("imap.example.com", "x", "tls", "x"),
        ("imap.example.com", "993", "plain", "x"),
        ("imap.example.com", "993", "tls", " "),
        ("imap.example.com", "993", "tls", "a\nb"),
    ):
        with pytest.raises(InvalidInput):
            importjobs.url_of(host, port, security, login)


def test_the_page_says_how_the_last_import_went() -> None:
    base = importjobs.Job(1, "imaps://a@old.example:993", "queued", 0, 0, 0, 0, "", 1_800_000_000.0, None)
    assert "waits for another import" in importpage.status(base)
    assert "reading its folders" in importpage.status(dataclasses.replace(base, state="running"))
    running = dataclasses.replace(base, state="running", total=10, done=4, imported=3, already=1)
    assert "4 of 10 message(s) done: 3 copied, 1 already here" in importpage.status(running)
    failed = dataclasses.replace(running, state="failed", error="<b>refused</b>", finished=1_800_000_060.0)
    shown = importpage.status(failed)
    assert "&lt;b&gt;refused&lt;/b&gt;" in shown and "goes on from there" in shown
    assert 'action="/account/import"' not in importpage.form("t", running, importpage.Typed())
    assert 'action="/account/import"' in importpage.form("t", failed, importpage.Typed(host='"><x'))
    assert "&quot;&gt;&lt;x" in importpage.form("t", None, importpage.Typed(host='"><x'))


def test_only_public_addresses_pass_the_pages_check() -> None:
    for host in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "169.254.1.1", "fe80::1", "0.0.0.0"):
        with pytest.raises(SourceError, match="not an address on the internet"):
            imapsource.check_public(host, 993)
    imapsource.check_public("192.0.43.10", 993)  # an IP literal: no lookup


async def test_a_job_whose_process_cannot_start_is_failed_not_left_waiting(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    store = db.Store(tmp_path / "j.db")

    async def write(job: Any) -> Any:  # the store's writes, on the test's connection
        with db.transaction(conn):
            return job(conn)

    store.write = write  # type: ignore[method-assign]
    runner = importjobs.Runner(store, Config)
    runner.command = lambda request: [str(tmp_path / "no-such-python")]  # type: ignore[method-assign]
    try:
        await runner.submit(1, "alice@example.test", "imaps://a@old.example:993", "secret")
        await asyncio.gather(*runner.tasks)
    finally:
        store.close()
    job = importjobs.get(conn, 1)
    assert job is not None and job.state == "failed" and "could not start" in job.error, job
    assert 1 not in runner.busy and runner.shown(job) == job
