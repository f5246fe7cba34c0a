"""The delivery pipeline in-process (no SMTP): what it guarantees when a step fails."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from relentad import config as config_mod
from relentad import message, pipeline
from relentad.crm import rules as crm_rules
from relentad.crm import sorter
from relentad.events import Bus
from relentad.pipeline import Delivery, Pipeline, Placement
from relentad.store import accounts, db
from relentad.store.db import Store
from relentad.trace import Source
from tests.support.store import database_with

RAW = (
    b"From: Bob <bob@acme.example>\r\nTo: alice@example.test\r\nSubject: hello\r\n"
    b"Message-ID: <m1@acme.example>\r\n\r\nHello Alice.\r\n"
)


async def deliver(path: Path, *, check_quota: bool = False) -> None:
    config = config_mod.from_dict(
        {"server": {"hostname": "mx.example.test"}, "spam": {"enabled": False}, "mailauth": {"verify": False}}
    )
    store = Store(path)
    store.start(asyncio.get_running_loop())
    try:
        account_id = store.read(lambda conn: accounts.get_account(conn, "alice@example.test").id)
        placements = [Placement(account_id, "alice@example.test")]
        delivery = Delivery(RAW, "bob@acme.example", placements, Source("192.0.2.1", "h", "ESMTP"), "T1")
        delivery.check_quota, delivery.refuse_when_full = check_quota, False
        await Pipeline(store, Bus(), config).deliver(delivery)
    finally:
        store.close()


def test_a_failing_crm_filing_stores_the_message_unfiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CRM never loses mail: its writes roll back with the delivery's savepoint and the message is stored
    again without them (nothing half-filed: no thread, contact or link rows)."""
    conn = database_with(tmp_path / "r.db", "alice@example.test")

    real = sorter.threads.assign

    def assign_then_fail(*args: Any, **kwargs: Any) -> int:
        real(*args, **kwargs)  # a thread row is written, then the filing fails
        raise RuntimeError("disk says no")

    monkeypatch.setattr(sorter.threads, "assign", assign_then_fail)
    asyncio.run(deliver(tmp_path / "r.db"))
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    assert conn.execute("SELECT refs FROM blobs").fetchone()[0] == 1
    for table in ("crm_messages", "crm_threads", "crm_thread_ids", "crm_contacts", "crm_message_contacts"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table


def test_filing_makes_the_company_with_the_first_contact(tmp_path: Path) -> None:
    """A new sender of a new company: contact, company, address, thread and both links, in one delivery."""
    conn = database_with(tmp_path / "r.db", "alice@example.test")
    asyncio.run(deliver(tmp_path / "r.db"))
    row = conn.execute(
        """SELECT c.name, p.domain, p.name FROM crm_contacts c JOIN crm_companies p ON p.id = c.company_id
           JOIN crm_addresses a ON a.contact_id = c.id WHERE a.address = 'bob@acme.example'"""
    ).fetchone()
    assert tuple(row) == ("Bob", "acme.example", "Acme")
    assert conn.execute("SELECT count(*) FROM crm_thread_contacts").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM crm_message_contacts").fetchone()[0] == 1


VACATION = 'require "vacation";\nvacation "Away.";'


def _with_vacation(tmp_path: Path, quota_bytes: int = 0) -> Any:
    conn = database_with(tmp_path / "r.db", "alice@example.test", quota_bytes=quota_bytes)
    with db.transaction(conn):
        crm_rules.add(conn, accounts.get_account(conn, "alice@example.test").id, "away", VACATION)
    return conn


def test_a_vacation_reply_is_queued_with_the_message_and_its_failure_costs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = _with_vacation(tmp_path)
    asyncio.run(deliver(tmp_path / "r.db"))
    [(mail_from, data)] = conn.execute("SELECT mail_from, data FROM queue_messages").fetchall()
    assert mail_from == "" and b"Subject: Auto: hello\r\n" in data and b"In-Reply-To: <m1@acme.example>" in data
    assert [r[0] for r in conn.execute("SELECT sender FROM sieve_vacation")] == ["bob@acme.example"]

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("disk says no")

    conn.execute("DELETE FROM sieve_vacation")
    monkeypatch.setattr(pipeline.vacation, "claim", broken)
    asyncio.run(deliver(tmp_path / "r.db"))
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 2, "the message is stored all the same"
    assert conn.execute("SELECT count(*) FROM queue_messages").fetchone()[0] == 1, "no second reply"


def test_no_vacation_reply_for_a_copy_that_was_not_stored(tmp_path: Path) -> None:
    conn = _with_vacation(tmp_path, quota_bytes=10)
    asyncio.run(deliver(tmp_path / "r.db", check_quota=True))
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM queue_messages").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM sieve_vacation").fetchone()[0] == 0


def test_an_accounts_addresses_share_one_rule_work_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rules run while the sender waits: one account's rules get one work limit per message, not one per address
    (a hundred RCPTs to one user's addresses would otherwise multiply it a hundredfold)."""
    conn = database_with(tmp_path / "r.db", "alice@example.test")
    account_id = accounts.get_account(conn, "alice@example.test").id
    crm_rules.add(conn, account_id, "r", 'require "imap4flags"; addflag "$A";')
    conn.commit()
    budgets: list[object] = []
    real = crm_rules.evaluate

    def evaluate(scripts: Any, view: Any, budget: Any = None, include: Any = None) -> crm_rules.Outcome:
        budgets.append(budget)
        return real(scripts, view, budget, include)

    monkeypatch.setattr(crm_rules, "evaluate", evaluate)
    placements = [Placement(account_id, "alice@example.test"), Placement(account_id, "alice+x@example.test")]
    delivery = Delivery(RAW, "bob@acme.example", placements, Source("192.0.2.1", "h", "ESMTP"), "T1")
    sorter.Sorter().plan(conn, delivery, message.parse(RAW))
    assert len(budgets) == 2 and budgets[0] is not None and budgets[0] is budgets[1]


def test_a_rules_folder_past_the_mailbox_limit_goes_to_inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule naming folders from the sender's text (``fileinto "Lists/${1}"``) made one mailbox per message, with
    no end; past the limit the message goes to INBOX (a missing parent level is not made either), never lost."""
    conn = database_with(tmp_path / "r.db", "alice@example.test")
    account_id = accounts.get_account(conn, "alice@example.test").id
    held = conn.execute("SELECT count(*) FROM mailboxes WHERE account_id = ?", (account_id,)).fetchone()[0]
    monkeypatch.setattr(pipeline.mailboxes, "MAX_PER_ACCOUNT", held + 1)  # room for one level, not two
    crm_rules.add(conn, account_id, "r", 'require "fileinto"; fileinto "Lists/hello";')
    conn.commit()
    asyncio.run(deliver(tmp_path / "r.db"))
    rows = conn.execute(
        "SELECT b.name FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.account_id = ?", (account_id,)
    ).fetchall()
    assert [tuple(row) for row in rows] == [("INBOX",)]
    assert conn.execute("SELECT count(*) FROM mailboxes WHERE account_id = ?", (account_id,)).fetchone()[0] == held
