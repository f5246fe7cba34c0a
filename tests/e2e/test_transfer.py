"""Export and import (issue 7): export → import round trip gives byte-identical messages (folders, flags and
mboxrd quoting kept); a Maildir imports with its folders and flags."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_quota import cli, send
from tests.support.daemon import Daemon
from tests.support.imap import client, message

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"


def all_messages(daemon: Daemon, email: str) -> dict[str, list[tuple[bytes, int, str]]]:
    rows = daemon.query(
        """SELECT x.name, m.prefix, b.data, m.flags, m.keywords FROM messages m JOIN blobs b ON b.id = m.blob_id
           JOIN mailboxes x ON x.id = m.mailbox_id JOIN accounts a ON a.id = x.account_id
           WHERE a.email = ? ORDER BY x.name, m.uid""",
        email,
    )
    out: dict[str, list[tuple[bytes, int, str]]] = {}
    for row in rows:
        out.setdefault(row["name"], []).append(
            (bytes(row["prefix"]) + bytes(row["data"]), row["flags"], row["keywords"])
        )
    return out


def test_export_import_round_trip_is_byte_identical(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = provision(make_daemon(imap=True, settings={"auth": {"plaintext_loopback": True}})).start()
    assert send(daemon, ALICE, message("plain"))[0] == 250
    assert send(daemon, ALICE, message("tricky", "From the start\r\n>From quoted\r\n\r\nFrom again\r\n"))[0] == 250
    imap = client(daemon, ALICE)
    imap.create("Projects/2026")
    imap.append("Projects/2026", "(\\Flagged $Work)", None, b"Subject: no final newline\r\n\r\nbody")
    imap.append("Drafts", "(\\Draft)", None, message("draft", "\n\nbare LF lines\n"))
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "(\\Seen \\Answered)")
    imap.logout()
    before = all_messages(daemon, ALICE)

    exported = tmp_path / "alice"
    out = cli(daemon, "export", ALICE, str(exported))
    assert "exported 4 message(s)" in out
    assert (exported / "mail" / "INBOX.mbox").exists() and (exported / "mail" / "Projects.2026.mbox").exists()
    assert (exported / "contacts.vcf").exists()
    with (exported / "activity.csv").open(encoding="utf-8") as f:
        assert next(csv.reader(f))[0] == "kind"

    assert "imported 4 message(s)" in cli(daemon, "import", CAROL, str(exported))
    after = all_messages(daemon, CAROL)
    for folder, copies in before.items():
        assert after[folder] == copies, folder
    again = tmp_path / "carol"
    cli(daemon, "export", CAROL, str(again))
    for mbox in (exported / "mail").glob("*.mbox"):
        if mbox.stat().st_size:
            assert (again / "mail" / mbox.name).read_bytes() == mbox.read_bytes(), mbox.name


def test_maildir_import_keeps_folders_and_flags(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = provision(make_daemon()).start()
    root = tmp_path / "Maildir"
    for folder in ("", ".Lists.Python"):
        for sub in ("cur", "new", "tmp"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
    (root / "cur" / "1700000000.1.host:2,FS").write_bytes(message("seen and flagged"))
    (root / "new" / "1700000001.2.host").write_bytes(message("new one"))
    (root / ".Lists.Python" / "cur" / "1700000002.3.host:2,RS").write_bytes(message("answered"))
    assert "imported 3 message(s)" in cli(daemon, "import", BOB, str(root))
    got = all_messages(daemon, BOB)
    assert [(raw, bits) for raw, bits, _ in got["INBOX"]] == [(message("seen and flagged"), 5), (message("new one"), 0)]
    assert [(raw, bits) for raw, bits, _ in got["Lists/Python"]] == [(message("answered"), 3)]
