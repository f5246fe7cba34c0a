"""The archive ([retention] archive) end to end: mail from the world and mail a user sends through submission is
archived as the account got or sent it; users delete everything and the purge runs, the archive keeps it; search,
an export an auditor can read (mbox and index) and verify; the purge past archive_days empties it."""

from __future__ import annotations

import csv
import json
import smtplib
import time
from pathlib import Path

from relentad.lifecycle import transfer
from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_submission import NO_DNS, message, submit
from tests.support.imap import client

ALICE, BOB = "alice@example.test", "bob@example.test"


def test_what_users_delete_stays_in_the_archive(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    settings = {**NO_DNS, "retention": {"archive": True}, "auth": {"plaintext_loopback": True}}
    daemon = provision(make_daemon(submission=True, imap=True, settings=settings)).start()
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as mx:
        mx.sendmail(
            "customer@elsewhere.test", [ALICE], b"From: customer@elsewhere.test\r\nSubject: order\r\n\r\nI want 3.\r\n"
        )
    with submit(daemon) as sub:
        sub.sendmail(ALICE, [BOB, "customer@elsewhere.test"], message(to="customer@elsewhere.test", subject="offer"))
    [received] = daemon.messages(ALICE)
    [bobs] = daemon.messages(BOB)
    [sent] = daemon.raw_blobs(ALICE, "Sent")
    for user in (ALICE, BOB):  # the users delete everything, and the retention passes
        imap = client(daemon, user)
        for box in ("INBOX", "Sent"):
            imap.select(box)
            imap.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
            imap.expunge()
        imap.logout()
    later = str(time.time() + 100 * 86_400)
    purged = daemon.cli("purge", "--at", later).stdout
    assert daemon.messages(ALICE) == [] and daemon.query("SELECT count(*) AS n FROM expunged")[0]["n"] == 0

    found = json.loads(daemon.cli("archive", "search", "--json").stdout)
    assert [(e["account"], e["direction"], e["subject"]) for e in found] == [
        (ALICE, "in", "order"), (BOB, "in", "offer"), (ALICE, "out", "offer"),
    ]  # fmt: skip
    assert found[2]["recipients"] == [BOB, "customer@elsewhere.test"] and found[2]["mail_from"] == ALICE
    only = json.loads(daemon.cli("archive", "search", "--account", ALICE, "--subject", "ORD", "--json").stdout)
    assert [e["id"] for e in only] == [found[0]["id"]]
    listed = daemon.cli("archive", "search", "--to", "customer@").stdout
    assert "alice@example.test  out  <alice@example.test> -> bob@example.test,customer@elsewhere.test  offer" in listed

    out = tmp_path / "audit"
    assert "exported 3 archived message(s)" in daemon.cli("archive", "export", str(out)).stdout
    exported = [raw for raw, _, _ in transfer.read_mbox((out / "archive.mbox").read_bytes())]
    assert exported == [received, bobs, sent]  # the bytes as each account got or sent them
    with (out / "index.csv").open(newline="") as index:
        rows = list(csv.DictReader(index))
    assert [r["direction"] for r in rows] == ["in", "in", "out"] and all(len(r["sha256"]) == 64 for r in rows)
    verified = daemon.cli("archive", "verify").stdout
    head = purged.split("archive chain head ")[1].strip()
    assert "archive intact: 3 message(s)" in verified and verified.strip().endswith(f"head {head}")
    used = daemon.cli("archive", "export", str(out), check=False)
    assert used.returncode == 1 and "not empty" in used.stderr

    daemon.cli("purge", "--at", str(time.time() + 3651 * 86_400))  # past archive_days
    assert json.loads(daemon.cli("archive", "search", "--json").stdout) == []
    assert "archive intact: 0 message(s)" in daemon.cli("archive", "verify").stdout
    assert daemon.query("SELECT count(*) AS n FROM blobs")[0]["n"] == 0


def test_off_by_default(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings=NO_DNS)).start()
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as mx:
        mx.sendmail("customer@elsewhere.test", [ALICE], b"Subject: x\r\n\r\nx\r\n")
    assert daemon.query("SELECT count(*) AS n FROM archive")[0]["n"] == 0
