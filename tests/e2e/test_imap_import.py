"""Import from another server over IMAP (``relentad import EMAIL imap[s]://LOGIN@HOST``): a real Dovecot on
loopback is the old provider (``INBOX.`` namespace, ``.`` delimiter, special-use Sent and Junk), relentad's own
IMAP listener another. Folders, flags, internal dates and bytes come over; special folders land in the account's
own; the old server is left as it was; a second run copies only what is new; a quota stop resumes; bad passwords,
untrusted certificates and unreachable hosts are one-line errors."""

from __future__ import annotations

import http.server
import imaplib
import json
import re
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad.imap import mutf7
from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_account_page import Browser, post
from tests.e2e.test_quota import cli
from tests.e2e.test_transfer import all_messages, contact
from tests.e2e.test_web import web_daemon
from tests.support.daemon import PASSWORD as DAEMON_PASSWORD
from tests.support.daemon import Daemon, free_port, wait_for
from tests.support.dovecot import LOGIN, PASSWORD, Dovecot, run_dovecot
from tests.support.imap import client, message

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
DATE = '"14-Nov-2023 17:13:20 -0500"'


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    yield from run_dovecot()


@pytest.fixture
def old(dovecot: Dovecot) -> Iterator[imaplib.IMAP4]:
    """The old mailbox, emptied for each test: INBOX and Sent, Junk and any folders the test creates."""
    client = dovecot.client()
    _, listed = client.list()
    names = [re.sub(rb'^\(.*?\) "." ', b"", line).decode().strip('"') for line in listed if isinstance(line, bytes)]
    for name in sorted(names, key=len, reverse=True):
        if name in ("INBOX", "INBOX.Sent", "INBOX.Junk"):
            _, count = client.select(name)
            if int(count[0] or 0):
                client.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                client.expunge()
            client.close()
        else:
            client.delete(f'"{name}"')
    yield client
    client.logout()


def run_import(daemon: Daemon, dovecot: Dovecot, email: str, *extra: str, check: bool = True) -> str:
    result = daemon.cli(
        "import", email, dovecot.url(), "--cafile", str(dovecot.ca), "--password-stdin", *extra,
        input=PASSWORD + "\n", check=False,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
        return result.stdout
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def fill(old: imaplib.IMAP4) -> dict[str, bytes]:
    mail = {
        "seen": message("seen", sender="Dana <dana@customer.example>"),
        "labelled": message("labelled", sender="Erik <erik@customer.example>"),
        "sent": message("our offer", sender="Bob <bob@example.test>").replace(
            b"To: Alice <alice@example.test>", b"To: Frank <frank@prospect.example>"
        ),
        "junk": message("cheap pills", sender="spam@spammer.example"),
        "cafe": message("café order", sender="Dana <dana@customer.example>"),
        "deep": message("deep", sender="Dana <dana@customer.example>"),
        "deleted": message("thrown away", sender="Dana <dana@customer.example>"),
    }
    old.append("INBOX", r"(\Seen)", DATE, mail["seen"])
    old.append("INBOX", "($Label1 $Forwarded)", None, mail["labelled"])
    old.append("INBOX.Sent", r"(\Seen \Answered)", None, mail["sent"])
    old.append("INBOX.Junk", "()", None, mail["junk"])
    cafe = "INBOX." + mutf7.encode("Café")
    old.create(cafe)
    old.create(cafe + ".2026")
    old.append(cafe, r"(\Flagged)", None, mail["cafe"])
    old.append(cafe + ".2026", "()", None, mail["deep"])
    old.create("INBOX.Empty")  # an empty folder comes over too
    old.create('"INBOX.Deleted Items"')  # no special-use attribute: its name makes it the Trash
    old.append('"INBOX.Deleted Items"', r"(\Seen)", None, mail["deleted"])
    return mail


def test_import_from_dovecot_keeps_folders_flags_dates_and_leaves_the_old_server_as_it_was(
    make_daemon: MakeDaemon, dovecot: Dovecot, old: imaplib.IMAP4
) -> None:
    daemon = provision(make_daemon()).start()
    mail = fill(old)
    out = run_import(daemon, dovecot, BOB)
    assert f"imported 7 message(s) into {BOB} from imap://old@example.org@127.0.0.1:{dovecot.port}" in out, out
    got = all_messages(daemon, BOB)
    flags = {name: [(raw, bits, kw) for raw, bits, kw in copies] for name, copies in got.items()}
    assert flags["INBOX"] == [(mail["seen"], 1, ""), (mail["labelled"], 0, "$Label1 $Forwarded")]
    assert flags["Sent"] == [(mail["sent"], 3, "")]  # \Seen \Answered
    assert flags["Junk"] == [(mail["junk"], 0, "")]
    assert flags["Café"] == [(mail["cafe"], 4, "")]  # \Flagged
    assert flags["Café/2026"] == [(mail["deep"], 0, "")]
    assert flags["Trash"] == [(mail["deleted"], 1, "")]
    assert "Deleted Items" not in got and "INBOX/Sent" not in got
    folders = daemon.query(
        "SELECT x.name FROM mailboxes x JOIN accounts a ON a.id = x.account_id WHERE a.email = ?", BOB
    )
    assert "Empty" in {r["name"] for r in folders}
    dated = daemon.query(
        "SELECT m.internaldate, m.zone FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE b.data = ?",
        mail["seen"],
    )
    assert [r["internaldate"] for r in dated] == [1_700_000_000]  # Dovecot gives it back in its own zone
    # the CRM filed it: the Sent mail's recipient is a confirmed contact, the received mail's senders contacts
    frank = contact(daemon, BOB, "frank@prospect.example")
    assert (frank["count_out"], frank["confirmed"]) == (1, True)
    assert contact(daemon, BOB, "dana@customer.example")["count_in"] >= 2
    # read-only on the old server: the unseen message is still unseen, nothing was expunged
    old.select("INBOX", readonly=True)
    _, data = old.fetch("1:*", "(FLAGS)")
    assert [b"\\Seen" in line for line in data] == [True, False], data


def test_a_second_run_copies_only_what_is_new(make_daemon: MakeDaemon, dovecot: Dovecot, old: imaplib.IMAP4) -> None:
    daemon = provision(make_daemon()).start()
    fill(old)
    assert "imported 7 message(s)" in run_import(daemon, dovecot, BOB)
    assert "imported 0 message(s)" in run_import(daemon, dovecot, BOB)
    late = message("arrived after the first run", sender="Dana <dana@customer.example>")
    old.append("INBOX", "()", None, late)
    assert "imported 1 message(s)" in run_import(daemon, dovecot, BOB)
    assert [raw for raw, _, _ in all_messages(daemon, BOB)["INBOX"]][-1] == late
    # without the marks (a renumbered folder is the same), the same bytes in the same folder are not stored twice
    with sqlite3.connect(daemon.db_path) as conn:
        conn.execute("DELETE FROM imap_imports")
    out = run_import(daemon, dovecot, BOB)
    assert "imported 0 message(s)" in out and "8 already there" in out, out
    assert sum(len(copies) for copies in all_messages(daemon, BOB).values()) == 8
    old.append("INBOX", "()", None, late)  # the same bytes twice on the old server, in one batch: stored once
    old.append("INBOX", "()", None, late)
    out = run_import(daemon, dovecot, BOB)
    assert "imported 0 message(s)" in out and "2 already there" in out, out


def test_dry_run_and_exclude(make_daemon: MakeDaemon, dovecot: Dovecot, old: imaplib.IMAP4) -> None:
    daemon = provision(make_daemon()).start()
    fill(old)
    out = run_import(daemon, dovecot, BOB, "--dry-run", "--exclude", "INBOX.Café")
    assert "INBOX -> INBOX: 2 new message(s)" in out, out
    assert "INBOX.Sent -> Sent: 1 new message(s)" in out
    assert "INBOX.Deleted Items -> Trash: 1 new message(s)" in out
    assert "INBOX.Café: skipped, excluded" in out and "INBOX.Café.2026: skipped, excluded" in out
    assert "would import 5 message(s)" in out
    assert sum(len(c) for c in all_messages(daemon, BOB).values()) == 0
    out = run_import(daemon, dovecot, BOB, "--exclude", "Café")  # the name as it is here works too
    assert "imported 5 message(s)" in out and "Café" not in all_messages(daemon, BOB)


def test_a_quota_stop_resumes_without_duplicates(make_daemon: MakeDaemon, dovecot: Dovecot, old: imaplib.IMAP4) -> None:
    daemon = provision(make_daemon()).start()
    fill(old)
    cli(daemon, "quota", "set", BOB, "--messages", "3")
    err = run_import(daemon, dovecot, BOB, check=False)
    assert "imported 3 of 7 message(s)" in err, err
    cli(daemon, "quota", "set", BOB, "--messages", "0")
    assert "imported 4 message(s)" in run_import(daemon, dovecot, BOB)
    copies = [raw for folder in all_messages(daemon, BOB).values() for raw, _, _ in folder]
    assert len(copies) == 7 and len(set(copies)) == 7


def test_errors_are_one_line(make_daemon: MakeDaemon, dovecot: Dovecot, old: imaplib.IMAP4, tmp_path: Path) -> None:
    daemon = provision(make_daemon()).start()
    fill(old)
    wrong = daemon.cli(
        "import", BOB, dovecot.url(), "--cafile", str(dovecot.ca), "--password-stdin", input="wrong\n", check=False
    )
    assert wrong.returncode == 1 and "refused the login of old@example.org" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr
    untrusted = daemon.cli("import", BOB, dovecot.url(implicit_tls=True), "--password-stdin", input="x\n", check=False)
    assert untrusted.returncode == 1 and "--cafile" in untrusted.stderr, untrusted.stderr
    closed = daemon.cli(
        "import", BOB, f"imaps://x@127.0.0.1:{free_port('127.0.0.1')}", "--password-stdin", input="x\n", check=False
    )
    assert closed.returncode == 1 and "cannot connect to 127.0.0.1" in closed.stderr, closed.stderr
    for bad in ("imaps://127.0.0.1", "imaps://u:pw@127.0.0.1", "imaps://u@127.0.0.1/INBOX"):
        result = daemon.cli("import", BOB, bad, "--password-stdin", input="x\n", check=False)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    mbox = tmp_path / "one.mbox"
    mbox.write_bytes(b"From x Thu Jan  1 00:00:00 2026\n" + message("m"))
    result = daemon.cli("import", BOB, str(mbox), "--exclude", "Junk", check=False)
    assert result.returncode != 0 and "for an imap:// source" in result.stderr
    assert sum(len(c) for c in all_messages(daemon, BOB).values()) == 0


def test_import_from_relentad_over_imaps(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """Another relentad (here the same daemon's IMAPS listener, Alice's mailbox into Carol's): '/' as the
    delimiter, no namespace prefix, every special-use folder, keywords, a UTF-8 name, the internal date's zone.
    Its CRM views (Contacts/…) and the mailboxes others share with Alice (Shared/…) are not her mail."""
    daemon = provision(make_daemon(imap=True, tls=True, settings={"auth": {"plaintext_loopback": True}})).start()
    alice = client(daemon, ALICE)
    alice.create(mutf7.encode("Kunden/Müller"))
    alice.append(mutf7.encode("Kunden/Müller"), r"(\Seen $Work)", DATE, message("angebot"))
    alice.append("Archive", r"(\Seen)", None, message("old"))
    alice.append("Drafts", r"(\Draft)", None, message("unfinished"))
    alice.logout()
    sent = tmp_path / "export" / "mail" / "Sent.mbox"  # a confirmed contact: Alice's Contacts/Gina view
    sent.parent.mkdir(parents=True)
    offer = message("offer", sender="Alice <alice@example.test>").replace(b"To: Alice <alice", b"To: Gina <gina")
    sent.write_bytes(b"From x Thu Jan  1 00:00:00 2026\n" + offer)
    cli(daemon, "import", ALICE, str(tmp_path / "export"))
    cli(daemon, "share", BOB, "INBOX", "--with", ALICE, "--rights", "lr")
    listed = client(daemon, ALICE).list()[1]
    assert any(b"Contacts/" in line for line in listed) and any(b"Shared/bob" in line for line in listed), listed
    source = [(folder, raw, bits, kw) for folder, rows in all_messages(daemon, ALICE).items()
              for raw, bits, kw in rows]  # fmt: skip
    cert = daemon.root / "data" / "tls" / "cert.pem"
    result = daemon.cli(
        "import", CAROL, f"imaps://alice@example.test@localhost:{daemon.imaps_port}", "--cafile", str(cert),
        "--password-stdin", input=DAEMON_PASSWORD + "\n", check=False,
    )  # fmt: skip
    assert result.returncode == 0 and "imported 4 message(s)" in result.stdout, result.stderr
    copied = [(folder, raw, bits, kw) for folder, rows in all_messages(daemon, CAROL).items()
              for raw, bits, kw in rows]  # fmt: skip
    assert sorted(copied) == sorted(source)
    dates = "SELECT m.internaldate, m.zone FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE b.data = ?"
    assert [tuple(r) for r in daemon.query(dates, message("angebot"))] == [(1_700_000_000, -300)] * 2  # zone kept
    names = {r["name"] for r in daemon.query(
        "SELECT x.name FROM mailboxes x JOIN accounts a ON a.id = x.account_id WHERE a.email = ?", CAROL)}  # fmt: skip
    assert not any(n.startswith(("Contacts", "Shared", "Follow-up")) for n in names), names


# -- the account page ---------------------------------------------------------------------------------------------


def page_browser(make_daemon: MakeDaemon, dovecot: Dovecot, **web: object) -> Browser:
    settings: dict[str, dict[str, object]] = {
        "listen": {"metrics": f"127.0.0.1:{free_port()}"},
        "queue": {"ca_file": str(dovecot.ca)},  # the CA the server trusts for servers it connects to
        "web": web,
    }
    return Browser(web_daemon(make_daemon, settings), 0)


def start_on_page(browser: Browser, dovecot: Dovecot, password: str = PASSWORD) -> tuple[int, dict[str, str]]:
    """Send the form; while the last import's process is still ending (its row already says how it ended), the
    page answers that one is under way: try again, as a user would."""
    found = re.search(r'name="token" value="([^"]+)"', browser.page("/account/import"))
    assert found is not None
    fields = {
        "token": found.group(1),
        "host": "127.0.0.1",
        "security": "starttls",
        "port": str(dovecot.port),
        "login": "old@example.org",
        "password": password,
    }

    def sent() -> tuple[int, dict[str, str]] | None:
        status, headers, body = post(browser, "/account/import", fields)
        return None if status == 400 and b"already under way" in body else (status, headers)

    answer = wait_for("the form taken", sent)
    assert answer is not None
    return answer


def finished_job(daemon: Daemon) -> sqlite3.Row:
    def done() -> sqlite3.Row | None:
        rows = daemon.query("SELECT * FROM imap_import_jobs WHERE state IN ('done', 'failed')")
        return rows[0] if rows else None

    row = wait_for("the import's end", done, timeout=60)
    assert row is not None
    return row


def test_a_user_imports_their_old_mailbox_on_the_account_page(
    make_daemon: MakeDaemon, dovecot: Dovecot, old: imaplib.IMAP4
) -> None:
    browser = page_browser(make_daemon, dovecot, import_private_hosts=True)
    daemon = browser.daemon
    mail = fill(old)
    shown = browser.page("/account/import")
    assert f'name="login" size="40" value="{ALICE}"' in shown and "not stored" in shown
    status, headers = start_on_page(browser, dovecot)
    assert status == 303 and headers["location"] == "/account/import?started"
    job = finished_job(daemon)
    assert (job["state"], job["total"], job["done"], job["imported"], job["error"]) == ("done", 7, 7, 7, ""), dict(job)
    assert job["source"] == f"imap://old@example.org@127.0.0.1:{dovecot.port}"
    assert sorted(raw for folder in all_messages(daemon, ALICE).values() for raw, _, _ in folder) == sorted(
        mail.values()
    )
    shown = browser.page("/account/import")
    assert "finished at" in shown and "7 of 7 message(s) done: 7 copied" in shown, shown
    # no password anywhere: not in the job's row, not in the log
    assert PASSWORD not in json.dumps(dict(job)) and PASSWORD not in daemon.log_path.read_text()
    # again: nothing new; a wrong password: the page says why
    assert start_on_page(browser, dovecot)[0] == 303
    assert finished_job(daemon)["imported"] == 0
    assert start_on_page(browser, dovecot, password="wrong")[0] == 303
    job = finished_job(daemon)
    assert job["state"] == "failed" and "refused the login of old@example.org" in job["error"], dict(job)
    shown = browser.page("/account/import")
    assert "stopped at" in shown and "refused the login" in shown and 'action="/account/import"' in shown


def test_the_page_refuses_private_hosts_bad_fields_and_a_second_import(
    make_daemon: MakeDaemon, dovecot: Dovecot, old: imaplib.IMAP4
) -> None:
    browser = page_browser(make_daemon, dovecot)  # import_private_hosts off, as by default
    daemon = browser.daemon
    fill(old)
    assert start_on_page(browser, dovecot)[0] == 303
    job = finished_job(daemon)
    assert job["state"] == "failed" and "not an address on the internet" in job["error"], dict(job)
    assert all_messages(daemon, ALICE).get("INBOX", []) == []
    token = re.search(r'name="token" value="([^"]+)"', browser.page("/account/import"))
    assert token is not None
    good = {"token": token.group(1), "host": "imap.example.org", "security": "tls", "port": "993", "login": "x"}
    for bad, says in (
        ({"host": "imap example.org"}, b"not a host name"),
        ({"port": "0"}, b"port is a number"),
        ({"security": "none"}, b"TLS or STARTTLS"),
        ({"login": ""}, b"user name"),
        ({}, b"password of the old mailbox"),  # no password field
    ):
        status, _, body = post(browser, "/account/import", {**good, **bad})
        assert status == 400 and says in body, (bad, body)
    assert daemon.query("SELECT state FROM imap_import_jobs")[0]["state"] == "failed"  # nothing new started
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (the kernel does) and never says a word
        with sqlite3.connect(daemon.db_path) as conn:
            conn.execute("UPDATE imap_import_jobs SET state = 'done'")
        daemon.stop()
        daemon.write_config(web={"import_private_hosts": True}, queue={"ca_file": str(dovecot.ca)})
        daemon.start()
        token = re.search(r'name="token" value="([^"]+)"', browser.page("/account/import"))
        assert token is not None
        waiting = {**good, "token": token.group(1), "host": "127.0.0.1", "port": str(silent.getsockname()[1])}
        assert post(browser, "/account/import", {**waiting, "password": "x"})[0] == 303
        wait_for("under way", lambda: daemon.query("SELECT 1 FROM imap_import_jobs WHERE state = 'running'"))
        status, headers, body = browser.request("GET", "/account/import")
        assert status == 200 and headers.get("refresh") == "5" and b"Importing from" in body
        assert b'action="/account/import"' not in body  # no form while one is under way
        status, _, body = post(browser, "/account/import", {**waiting, "password": "x"})
        assert status == 400 and b"already under way" in body
        daemon.stop()  # the import is cut off; the page says so, and the next one may start
        daemon.start()
        shown = browser.page("/account/import")
        assert "stopped at" in shown and "interrupted when the mail server stopped" in shown, shown
        assert 'action="/account/import"' in shown
        listed = daemon.cli("imports").stdout  # the admin's view: the start marked it
        assert f"{ALICE}  failed  imaps://x@127.0.0.1:" in listed and "interrupted when the mail server" in listed
        [row] = json.loads(daemon.cli("imports", "--json").stdout)
        assert (row["email"], row["state"], row["total"]) == (ALICE, "failed", 0)


def test_the_admin_can_turn_the_page_off(make_daemon: MakeDaemon, dovecot: Dovecot) -> None:
    browser = page_browser(make_daemon, dovecot, user_import=False)
    assert "turned off by the administrator" in browser.page("/account/import")
    status, _, body = post(browser, "/account/import", {"token": "x", "host": "h", "port": "993"})
    assert status == 403 and b"turned off" in body


# -- OAuth 2.0 (XOAUTH2) -------------------------------------------------------------------------------------------


class TokenInfo(http.server.BaseHTTPRequestHandler):
    """The identity provider's token-info endpoint Dovecot asks (as it asks Google's or Microsoft's): one token
    is old@example.org's, any other is refused."""

    def do_GET(self) -> None:
        good = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        body = json.dumps({"email": LOGIN, "active": True} if good else {"error": "invalid_token"}).encode()
        self.send_response(200 if good else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


TOKEN = "ya29.a0-a-test-access-token"


@pytest.fixture(scope="module")
def oauth_dovecot() -> Iterator[Dovecot]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenInfo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield from run_dovecot(f"http://127.0.0.1:{server.server_address[1]}/tokeninfo?access_token=")
    finally:
        server.shutdown()


def test_an_access_token_instead_of_a_password(
    make_daemon: MakeDaemon, oauth_dovecot: Dovecot, dovecot: Dovecot
) -> None:
    """``--xoauth2``: for providers that take no passwords over IMAP (Microsoft 365), an OAuth 2.0 access token."""
    daemon = provision(make_daemon()).start()
    old = oauth_dovecot.client()
    old.append("INBOX", r"(\Seen)", None, message("from the provider"))
    old.logout()

    def run(server: Dovecot, token: str) -> subprocess.CompletedProcess[str]:
        return daemon.cli(
            "import", BOB, server.url(), "--cafile", str(server.ca), "--password-stdin", "--xoauth2",
            input=token + "\n", check=False,
        )  # fmt: skip

    done = run(oauth_dovecot, TOKEN)
    assert done.returncode == 0 and "imported 1 message(s)" in done.stdout, done.stderr
    assert [raw for raw, _, _ in all_messages(daemon, BOB)["INBOX"]] == [message("from the provider")]
    refused = run(oauth_dovecot, "an-expired-token")
    assert refused.returncode == 1 and "refused the login of old@example.org" in refused.stderr, refused.stderr
    no_oauth = run(dovecot, TOKEN)  # a server that takes passwords only
    assert no_oauth.returncode == 1 and "offers neither XOAUTH2 nor OAUTHBEARER" in no_oauth.stderr, no_oauth.stderr
