"""Export and import (issue 7): export → import round trip gives byte-identical messages (folders, flags and
mboxrd quoting kept); a Maildir imports with its folders and flags; imported mail is filed in the CRM (received
mail and sent mail, without rules or $Unassigned) through the real CLI while the daemon runs; quota enforced."""

from __future__ import annotations

import csv
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relentad.imap import mutf7
from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_crm import message as crm_message
from tests.e2e.test_quota import cli, send, usage
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
    body = b"Subject: no final newline\r\n\r\nbody"
    imap.append("Projects/2026", "(\\Flagged $Work)", '"14-Nov-2023 17:13:20 -0500"', body)
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
    dated = "SELECT m.internaldate, m.zone FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id WHERE x.name = ?"
    assert [(r["internaldate"], r["zone"]) for r in daemon.query(dated, "Projects/2026")] == [(1_700_000_000, -300)] * 2
    # filed in Carol's CRM: Friend wrote the two received messages; the draft is not filed
    friend = contact(daemon, CAROL, "friend@elsewhere.test")
    assert (friend["count_in"], friend["count_out"], friend["confirmed"]) == (2, 0, False)
    assert sorted(m["subject"] for m in friend["messages"]) == ["plain", "tricky"]
    assert crm_rows(daemon, CAROL) == 3  # plain, tricky, "no final newline" (no From: no contact, still filed)
    again = tmp_path / "carol"
    cli(daemon, "export", CAROL, str(again))
    for mbox in (exported / "mail").glob("*.mbox"):
        if mbox.stat().st_size:
            assert (again / "mail" / mbox.name).read_bytes() == mbox.read_bytes(), mbox.name


def contacts(daemon: Daemon, email: str) -> dict[str, dict[str, Any]]:
    """``relentad contacts list --json`` (the real CLI, in its own process), by address."""
    found = json.loads(daemon.cli("contacts", "list", email, "--json").stdout)
    return {address: c for c in found for address in c["addresses"]}


def contact(daemon: Daemon, email: str, address: str) -> dict[str, Any]:
    """``relentad contacts show --json``: the card with its threads and last messages."""
    card: dict[str, Any] = json.loads(daemon.cli("contacts", "show", email, address, "--json").stdout)
    return card


def crm_rows(daemon: Daemon, email: str) -> int:
    rows = daemon.query(
        "SELECT count(*) AS n FROM crm_messages m JOIN accounts a ON a.id = m.account_id WHERE a.email = ?", email
    )
    return int(rows[0]["n"])


def maildir(root: Path, files: dict[str, bytes], start: float = 1_700_000_000) -> None:
    """A Maildir++ tree: ``files`` maps "<.Folder>/<cur|new>/<name>" to the message; mtimes ascend from ``start``."""
    for folder in {name.split("/")[0] for name in files} | {""}:
        for sub in ("cur", "new", "tmp"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
    for index, (name, raw) in enumerate(files.items()):
        path = root / name.lstrip("/")
        path.write_bytes(raw)
        os.utime(path, (start + index * 3600, start + index * 3600))


def test_import_files_received_and_sent_mail_in_the_crm(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = provision(make_daemon()).start()
    # Bob has a rule that would refile and flag Acme mail: an import keeps the user's folders and flags.
    rule = (
        'require ["fileinto", "imap4flags"];\n'
        'if address :domain :is "from" "acme.example" { addflag "$Customer"; fileinto "Customers"; }\n'
    )
    daemon.cli("rules", "add", BOB, "acme", input=rule)
    offer = crm_message("Jo Customer <jo@acme.example>", "Bob <bob@example.test>", "Offer", "o1@acme.example",
                        extra="Cc: Sam <sam@acme.example>")  # fmt: skip
    answer = crm_message("Bob <bob@example.test>", "Jo <jo@acme.example>", "Re: Offer", "o2@example.test",
                         in_reply_to="o1@acme.example")  # fmt: skip
    followup = crm_message("jo@acme.example", "bob@example.test", "Re: Offer", "o3@acme.example",
                           in_reply_to="o2@example.test")  # fmt: skip
    # sent from an address that is not Bob's (his old provider): the Sent folder still makes it outgoing
    old_sent = crm_message("Bob <bob@oldmail.example>", "Pat <pat@partner.example>", "Lunch", "l1@oldmail.example")
    # in INBOX but from Bob's own address (e.g. a Bcc to himself): outgoing too
    own = crm_message("bob@example.test", "Lee <lee@elsewhere.example>", "Notes", "n1@example.test")
    draft = crm_message("bob@example.test", "Nobody <draft-only@nowhere.example>", "Unsent", "d1@example.test")
    files = {
        "cur/1.a:2,S": offer,
        ".Sent/cur/2.a:2,S": answer,
        ".Projects.Acme/cur/3.a:2,F": followup,
        ".Sent/cur/4.a:2,S": old_sent,
        "new/5.a": own,
        ".Drafts/cur/6.a:2,DS": draft,
    }
    maildir(tmp_path / "Maildir", files)
    assert "imported 6 message(s)" in daemon.cli("import", BOB, str(tmp_path / "Maildir")).stdout

    # exact bytes, folders and flags as in the source: no rule ran, no $Unassigned, no trace header
    got = all_messages(daemon, BOB)
    assert got["INBOX"] == [(offer, 1, ""), (own, 0, "")]
    assert got["Sent"] == [(answer, 1, ""), (old_sent, 1, "")]
    assert got["Projects/Acme"] == [(followup, 4, "")]
    assert got["Drafts"] == [(draft, 17, "")]
    assert "Customers" not in got and not daemon.query("SELECT 1 FROM mailboxes WHERE name = 'Customers'")

    found = contacts(daemon, BOB)
    assert set(found) == {"jo@acme.example", "sam@acme.example", "pat@partner.example", "lee@elsewhere.example"}
    jo = found["jo@acme.example"]
    assert (jo["count_in"], jo["count_out"], jo["confirmed"], jo["company"]) == (2, 1, True, "Acme")
    assert (found["sam@acme.example"]["count_in"], found["sam@acme.example"]["confirmed"]) == (1, False)
    for address in ("pat@partner.example", "lee@elsewhere.example"):  # recipients of sent mail: confirmed
        assert (found[address]["count_out"], found[address]["confirmed"]) == (1, True), address
    # the CRM's times are the internal dates (file mtimes), not the time of the import
    assert jo["first_contact"] == datetime.fromtimestamp(1_700_000_000, UTC).isoformat(timespec="seconds")

    card = contact(daemon, BOB, "jo@acme.example")
    assert [(t["subject"], t["messages"]) for t in card["threads"]] == [("Offer", 3)]
    assert sorted((m["direction"], m["folder"], m["subject"]) for m in card["messages"]) == [
        ("in", "INBOX", "Offer"),
        ("in", "Projects/Acme", "Re: Offer"),
        ("out", "Sent", "Re: Offer"),
    ]
    assert [m["folder"] for m in contact(daemon, BOB, "pat@partner.example")["messages"]] == ["Sent"]
    assert crm_rows(daemon, BOB) == 5  # everything but the draft

    # importing the same mail again stores the copies again but files each message once
    assert "imported 6 message(s)" in daemon.cli("import", BOB, str(tmp_path / "Maildir")).stdout
    assert crm_rows(daemon, BOB) == 5 and contacts(daemon, BOB)["jo@acme.example"]["count_in"] == 2
    usage(daemon, BOB)


def test_import_stops_at_the_quota(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    daemon = provision(make_daemon()).start()
    cli(daemon, "quota", "set", BOB, "--messages", "2")
    files = {f"cur/{n}.a:2,S": crm_message(f"p{n}@people.example", BOB, f"m{n}", f"m{n}@x.example") for n in range(3)}
    maildir(tmp_path / "Maildir", files)
    result = daemon.cli("import", BOB, str(tmp_path / "Maildir"), check=False)
    assert result.returncode != 0 and "imported 2 of 3 message(s)" in result.stderr, result.stderr
    assert [raw for raw, _, _ in all_messages(daemon, BOB)["INBOX"]] == list(files.values())[:2]
    assert set(contacts(daemon, BOB)) == {"p0@people.example", "p1@people.example"}  # nothing of the third
    assert usage(daemon, BOB)["messages"] == 2

    cli(daemon, "quota", "set", BOB, "--messages", "0", "--disk", str(len(files["cur/0.a:2,S"]) - 1))
    result = daemon.cli("import", CAROL, str(tmp_path / "Maildir"), check=False)
    assert "imported 3 message(s)" in result.stdout  # Carol has no limit
    result = daemon.cli("import", BOB, str(tmp_path / "Maildir"), check=False)
    assert result.returncode != 0 and "imported 0 of 3 message(s)" in result.stderr, result.stderr
    assert len(all_messages(daemon, BOB)["INBOX"]) == 2


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


def test_export_keeps_folders_whose_names_differ_only_by_dot_and_slash(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """``a.b`` and ``a/b`` were both written to ``mail/a.b.mbox``: the export lost one folder's mail, silently."""
    daemon = provision(make_daemon(imap=True, settings={"auth": {"plaintext_loopback": True}})).start()
    imap = client(daemon, ALICE)
    for name in ("a.b", "a/b", "Café/Über.2026", "v1.2"):
        assert imap.create(f'"{mutf7.encode(name)}"')[0] == "OK", name
        assert imap.append(f'"{mutf7.encode(name)}"', "(\\Seen)", None, message(f"in {name}"))[0] == "OK", name
    imap.logout()
    before = all_messages(daemon, ALICE)
    assert "exported 4 message(s)" in cli(daemon, "export", ALICE, str(tmp_path / "alice"))
    assert "imported 4 message(s)" in cli(daemon, "import", CAROL, str(tmp_path / "alice"))
    (tmp_path / "alice" / "flags.json").unlink()  # without it, the file names alone say which folder
    assert "imported 4 message(s)" in cli(daemon, "import", BOB, str(tmp_path / "alice"))
    for email in (CAROL, BOB):
        after = all_messages(daemon, email)
        for name in ("a.b", "a/b", "Café/Über.2026", "v1.2"):
            assert [raw for raw, _, _ in after[name]] == [raw for raw, _, _ in before[name]], (email, name)
    files = sorted(p.name for p in (tmp_path / "alice" / "mail").glob("*.mbox") if p.stat().st_size)
    assert files == ["Café.Über%2E2026.mbox", "a%2Eb.mbox", "a.b.mbox", "v1%2E2.mbox"]


def test_export_into_a_used_folder_is_refused(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """A second export into the same folder overwrote what it wrote but left the rest: a folder deleted since
    came back with the next import. Such a folder is refused with one line; an empty one is used."""
    daemon = provision(make_daemon()).start()
    target = tmp_path / "alice"
    target.mkdir()
    assert "exported 0 message(s)" in cli(daemon, "export", ALICE, str(target))
    result = daemon.cli("export", ALICE, str(target), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: {target} is not an empty folder: export into a new or empty one"
    ]


def test_import_of_a_file_that_is_no_mbox_is_refused(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """A single message (``.eml``) or any text file used to end in ``imported 0 message(s)`` and status 0: the
    user believed the mail was in. It is refused with one line saying why; an empty mbox is still 0 messages."""
    daemon = provision(make_daemon()).start()
    (tmp_path / "one.eml").write_bytes(message("a single message"))
    (tmp_path / "export" / "mail").mkdir(parents=True)
    (tmp_path / "export" / "mail" / "INBOX.mbox").write_bytes(b"\r\n" + message("no From line"))
    for path in (tmp_path / "one.eml", tmp_path / "export"):
        result = daemon.cli("import", BOB, str(path), check=False)
        assert result.returncode == 1 and "not an mbox file" in result.stderr, result
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert all_messages(daemon, BOB) == {}
    (tmp_path / "empty.mbox").write_bytes(b"")
    (tmp_path / "late.mbox").write_bytes(b"\n\nFrom someone\nSubject: x\n\nbody\n")
    assert "imported 0 message(s)" in daemon.cli("import", BOB, str(tmp_path / "empty.mbox")).stdout
    assert "imported 1 message(s)" in daemon.cli("import", BOB, str(tmp_path / "late.mbox")).stdout


def test_maildir_folder_names_are_modified_utf7(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """Maildir++ (Dovecot, Courier) writes folder names in modified UTF-7: ``.Caf&AOk-.R&AOk-sum&AOk-`` is
    ``Café/Résumé``. It was imported as the folder ``Caf&AOk-``, shown to IMAP clients as ``Caf&-AOk-``."""
    daemon = provision(make_daemon()).start()
    root = tmp_path / "Maildir"
    for folder in ("", ".Caf&AOk-.R&AOk-sum&AOk-", ".Tom & Jerry", ".&ZeVnLIqe-"):
        for sub in ("cur", "new", "tmp"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
        (root / folder / "cur" / "1700000000.1.host:2,S").write_bytes(message(f"in {folder or 'inbox'}"))
    assert "imported 4 message(s)" in cli(daemon, "import", BOB, str(root))
    assert sorted(all_messages(daemon, BOB)) == ["Café/Résumé", "INBOX", "Tom & Jerry", "日本語"]


def test_export_of_a_terminated_account_gives_the_mail_it_held(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """Before the purge an admin can still export a terminated account's mail: what its mailboxes held when it was
    terminated (now in the retention area), with flags and dates; what the user had expunged stays out. It used to
    export nothing ("exported 0 message(s)")."""
    daemon = provision(make_daemon(imap=True, settings={"auth": {"plaintext_loopback": True}})).start()
    for subject in ("deleted before", "kept"):
        assert send(daemon, BOB, message(subject))[0] == 250
    imap = client(daemon, BOB)
    imap.append("Archive", "(\\Seen)", '"14-Nov-2023 17:13:20 -0500"', message("archived"))
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    imap.logout()
    before = all_messages(daemon, BOB)
    cli(daemon, "user", "terminate", BOB, "--yes")
    out = cli(daemon, "export", BOB, str(tmp_path / "bob"))
    assert "exported 2 message(s) of bob@example.test (terminated: the mail it held then, kept until the purge)" in out
    assert json.loads((tmp_path / "bob" / "flags.json").read_text())["Archive"] == [["\\Seen"]]
    archive = (tmp_path / "bob" / "mail" / "Archive.mbox").read_bytes()
    assert archive.startswith(b"From MAILER-DAEMON Tue Nov 14 17:13:20 2023 -0500\n")
    cli(daemon, "import", CAROL, str(tmp_path / "bob"))
    assert all_messages(daemon, CAROL) == {folder: copies for folder, copies in before.items() if copies}


def test_import_refuses_a_folder_in_the_shared_namespace(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """An export (from here or another server) holding ``Shared/<address>/x`` made an own folder there: IMAP
    resolves that name as another account's shared mailbox, so the imported mail could never be read, nor the
    folder deleted. The import is refused with one line before anything is written."""
    daemon = provision(make_daemon()).start()
    (tmp_path / "export" / "mail").mkdir(parents=True)
    (tmp_path / "export" / "mail" / "INBOX.mbox").write_bytes(b"From x@y Thu Nov 26 00:00:00 2026\r\n" + message("in"))
    shared = tmp_path / "export" / "mail" / f"Shared.{ALICE.replace('.', '%2E')}.Hidden.mbox"
    shared.write_bytes(b"From x@y Thu Nov 26 00:00:00 2026\r\n" + message("hidden"))
    result = daemon.cli("import", BOB, str(tmp_path / "export"), check=False)
    assert result.returncode == 1 and f"folder Shared/{ALICE}/Hidden is in the shared namespace" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert all_messages(daemon, BOB) == {}
