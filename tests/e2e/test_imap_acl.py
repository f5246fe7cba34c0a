"""Shared mailboxes (RFC 4314 ACL, RFC 2342 NAMESPACE) with the real daemon and real clients: what a read-only
grantee may and may not do, a read-write grantee's changes reaching the owner (IDLE included), SMTP delivery
showing up for grantees, ACL commands refused to non-owners, and withdrawn access ending a session at once."""

from __future__ import annotations

import imaplib
import smtplib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import imapclient
import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, BOB, Raw, client, imap_daemon, message

CAROL = "carol@example.test"
SHARED_INBOX = f"Shared/{ALICE}/INBOX"


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-acl"), dns_server.nameserver)
    yield daemon
    daemon.stop()


def ic(daemon: Daemon, user: str) -> imapclient.IMAPClient:
    conn = imapclient.IMAPClient(daemon.host, port=daemon.imap_port, ssl=False, timeout=15)
    conn.login(user, PASSWORD)
    return conn


def refused(conn: imaplib.IMAP4, *args: str) -> bytes:
    typ, data = conn._simple_command(*args)  # type: ignore[attr-defined]
    assert typ == "NO", (args, typ, data)
    return conn.response("NO")[1][0] or b""  # type: ignore[return-value]


def test_read_only_share(relentad: Daemon) -> None:
    owner = client(relentad, ALICE)
    owner.append("INBOX", None, None, message("for the team"))
    owner.create("Secret")
    owner.append("Secret", None, None, message("private"))
    shared = relentad.cli("share", ALICE, "INBOX", "--with", BOB, "--rights", "lr")
    assert shared.stdout.strip() == f"{ALICE} INBOX shared with {BOB}: lr"

    grantee = ic(relentad, BOB)
    assert b"ACL" in grantee.capabilities() and b"RIGHTS=TEXK" in [c.upper() for c in grantee.capabilities()]
    namespace = grantee.namespace()
    assert namespace.personal == (("", "/"),) and namespace.other == (("Shared/", "/"),)
    names = [name for _, _, name in grantee.list_folders()]
    assert SHARED_INBOX in names and "Shared" in names and f"Shared/{ALICE}" in names
    assert not any("Secret" in name for name in names)
    assert grantee.folder_status(SHARED_INBOX, ["MESSAGES"])[b"MESSAGES"] == 1
    grantee.select_folder(SHARED_INBOX, readonly=True)
    fetched = grantee.fetch(grantee.search(), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    assert b"for the team" in next(iter(fetched.values()))[b"BODY[HEADER.FIELDS (SUBJECT)]"]
    assert len(grantee.search(["SUBJECT", "team"])) == 1
    with pytest.raises(imapclient.exceptions.IMAPClientError):
        grantee.append(SHARED_INBOX, message("intruder"))
    with pytest.raises(imapclient.exceptions.IMAPClientError, match=r"NOPERM|needs the right"):
        grantee.getacl(SHARED_INBOX)

    raw = Raw(relentad)
    raw.login(BOB)
    assert raw.command("s", f'SELECT "{SHARED_INBOX}"')[-1].startswith(b"s OK [READ-ONLY]")  # SELECT, not EXAMINE
    assert b"NO [READ-ONLY]" in raw.command("t", "STORE 1 +FLAGS (\\Flagged)")[-1]
    assert b"NO [READ-ONLY]" in raw.command("e", "EXPUNGE")[-1]
    assert b"NO [NOPERM]" in raw.command("a", f'APPEND "{SHARED_INBOX}" {{3+}}\r\nabc')[-1]
    assert raw.command("m", f'MYRIGHTS "{SHARED_INBOX}"')[0] == f"* MYRIGHTS {SHARED_INBOX} lr\r\n".encode()
    for guess in (f"Shared/{ALICE}/Secret", f"Shared/{ALICE}/Sent", f"Shared/{CAROL}/INBOX"):
        for command in (f'SELECT "{guess}"', f'STATUS "{guess}" (MESSAGES)', f'EXAMINE "{guess}"'):
            assert b"NO [NONEXISTENT]" in raw.command("g", command)[-1], (command, guess)
        assert raw.command("l", f'LIST "" "{guess}"')[:-1] == []
    assert b"NO [NOPERM]" in raw.command("c", f'CREATE "Shared/{ALICE}/Mine"')[-1]
    assert b"NO [NOPERM]" in raw.command("d", f'DELETE "{SHARED_INBOX}"')[-1]
    assert b"NO [NOPERM]" in raw.command("r", f'RENAME "{SHARED_INBOX}" Stolen')[-1]

    with smtplib.SMTP(relentad.host, relentad.smtp_port, timeout=15) as smtp:
        smtp.sendmail("friend@elsewhere.test", [ALICE], message("delivered later"))
    raw.command("s", f'SELECT "{SHARED_INBOX}"')
    found = raw.command("f", 'UID SEARCH SUBJECT "delivered later"')
    assert found[0].startswith(b"* SEARCH ") and found[0].split()[2:], found
    assert raw.command("o", "SORT (SUBJECT) UTF-8 ALL")[0] == b"* SORT 2 1\r\n"  # delivered, for the team
    assert raw.command("h", "THREAD REFERENCES UTF-8 ALL")[0] == b"* THREAD (1)(2)\r\n"
    raw.close()
    grantee.logout()
    owner.logout()
    relentad.cli("unshare", ALICE, "INBOX", "--with", BOB)


def test_read_write_share_and_idle(relentad: Daemon) -> None:
    owner = ic(relentad, ALICE)
    owner.create_folder("Customers")
    owner.append("Customers", message("first customer"))
    owner.append("Customers", message("second customer"))
    owner.setacl("Customers", CAROL, "lrswite")
    acl = owner.getacl("Customers")
    assert (ALICE.encode(), b"lrswipkxtea") in acl and (CAROL.encode(), b"lrswite") in acl
    name = f"Shared/{ALICE}/Customers"

    idler = Raw(relentad)
    idler.login(ALICE)
    idler.command("s", "SELECT Customers")
    idler.send(b"i IDLE\r\n")
    assert idler.line().startswith(b"+ ")

    grantee = ic(relentad, CAROL)
    assert grantee.select_folder(name)[b"READ-WRITE"]
    first, second = grantee.search()
    grantee.add_flags([first], [b"\\Seen", b"$Followup"])
    assert idler.line() == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Followup)\r\n"
    idler.line()  # PERMANENTFLAGS
    line = idler.line()  # the owner's IDLE hears of the grantee's change
    assert line.startswith(b"* 1 FETCH (UID 1 FLAGS (") and b"\\Seen" in line and b"$Followup" in line
    grantee.append(name, message("third customer"))
    assert idler.line() == b"* 3 EXISTS\r\n"
    idler.line()  # RECENT
    grantee.add_flags([second], [b"\\Deleted"])
    line = idler.line()
    assert line.startswith(b"* 2 FETCH (UID 2 FLAGS (") and b"\\Deleted" in line
    grantee.expunge()
    assert idler.line() == b"* 2 EXPUNGE\r\n"
    idler.send(b"DONE\r\n")
    assert idler.line().startswith(b"i OK")

    owner.select_folder("Customers")
    fetched = owner.fetch(owner.search(), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    subjects = [data[b"BODY[HEADER.FIELDS (SUBJECT)]"] for data in fetched.values()]
    assert len(subjects) == 2 and b"third" in b"".join(subjects) and b"second" not in b"".join(subjects)
    # the grantee has no a right: it may not change the ACL, nor see it
    with pytest.raises(imapclient.exceptions.IMAPClientError):
        grantee.setacl(name, BOB, "lr")
    with pytest.raises(imapclient.exceptions.IMAPClientError):
        grantee.getacl(name)
    # a MOVE out needs t and e (held), into the grantee's own INBOX
    grantee.move([first], "INBOX")
    assert len(owner.search()) == 1 and grantee.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 1
    # unknown identifiers and "anyone" are refused
    with pytest.raises(imapclient.exceptions.IMAPClientError, match=r"NONEXISTENT|no such account"):
        owner.setacl("Customers", "nobody@example.test", "lr")
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="not supported"):
        owner.setacl("Customers", "anyone", "lr")
    # the grantee idling in the shared mailbox hears of the owner's changes
    watcher = Raw(relentad)
    watcher.login(CAROL)
    watcher.command("s", f'SELECT "{name}"')
    watcher.send(b"i IDLE\r\n")
    assert watcher.line().startswith(b"+ ")
    owner.append("Customers", message("fourth customer"))
    assert watcher.line() == b"* 2 EXISTS\r\n"
    watcher.send(b"DONE\r\n")
    assert watcher.until("i")[-1].startswith(b"i OK")
    watcher.close()
    grantee.logout()
    owner.logout()
    idler.close()


def test_unshare_ends_a_selected_session(relentad: Daemon) -> None:
    owner = ic(relentad, ALICE)
    owner.create_folder("Projects")
    owner.append("Projects", message("plan"))
    owner.setacl("Projects", BOB, "lrs")
    name = f"Shared/{ALICE}/Projects"
    raw = Raw(relentad)
    raw.login(BOB)
    selected = raw.command("s", f'SELECT "{name}"')
    assert selected[-1].startswith(b"s OK [READ-WRITE]")  # s: it may mark messages read
    assert b"* OK [PERMANENTFLAGS (\\Seen)] flags clients may set\r\n" in selected, selected
    assert b"NO [NOPERM]" in raw.command("t", "STORE 1 +FLAGS (\\Deleted)")[-1]
    assert raw.command("t", "STORE 1 +FLAGS (\\Seen)")[-1].startswith(b"t OK")
    assert relentad.cli("unshare", ALICE, "Projects", "--with", BOB).returncode == 0
    raw.send(b"f FETCH 1 BODY[]\r\n")
    assert raw.line().startswith(b"* BYE")
    assert raw.line() == b""
    assert name not in [n for _, _, n in ic(relentad, BOB).list_folders()]
    # DELETEACL takes it away just the same; the CLI's one-line errors
    owner.setacl("Projects", BOB, "lr")
    assert name in [n for _, _, n in ic(relentad, BOB).list_folders()]
    admin = Raw(relentad)
    admin.login(ALICE)
    assert admin.command("d", f"DELETEACL Projects {BOB}")[-1].startswith(b"d OK")
    assert name not in [n for _, _, n in ic(relentad, BOB).list_folders()]
    failed = relentad.cli("unshare", ALICE, "Projects", "--with", BOB, check=False)
    assert failed.returncode == 1 and failed.stderr.strip() == f"Error: {ALICE} Projects is not shared with {BOB}"
    failed = relentad.cli("share", ALICE, "Nope", "--with", BOB, check=False)
    assert failed.stderr.strip() == "Error: no mailbox Nope"
    failed = relentad.cli("share", ALICE, "INBOX", "--with", BOB, "--rights", "lrz", check=False)
    assert failed.stderr.strip().startswith("Error: unknown right 'z'")
    assert relentad.cli("shares", ALICE, "--json").stdout.count('"with"') >= 1  # Customers, shared with carol
    admin.close()
    owner.logout()


def test_list_extended_subscribe_and_the_owners_quota(relentad: Daemon) -> None:
    owner = ic(relentad, ALICE)
    owner.create_folder("Orders")
    owner.append("Orders", message("order 1"))
    owner.setacl("Orders", BOB, "lri")  # may add, not flag: APPEND's flags are dropped
    name = f"Shared/{ALICE}/Orders"
    raw = Raw(relentad)
    raw.login(BOB)
    assert raw.command("u", f'SUBSCRIBE "{name}"')[-1].startswith(b"u OK")
    lines = raw.command("l", 'LIST (SUBSCRIBED) "" "Shared/*" RETURN (STATUS (MESSAGES UIDNEXT))')
    assert lines[0] == f'* LIST (\\HasNoChildren \\Subscribed) "/" {name}\r\n'.encode(), lines
    assert lines[1] == f"* STATUS {name} (MESSAGES 1 UIDNEXT 2)\r\n".encode(), lines
    levels = raw.command("l", 'LIST "" "Shared/%"')
    assert levels[0] == f'* LIST (\\Noselect \\HasChildren) "/" Shared/{ALICE}\r\n'.encode(), levels
    assert raw.command("q", f'GETQUOTAROOT "{name}"')[0] == f"* QUOTAROOT {name}\r\n".encode()
    appended = raw.command("a", f'APPEND "{name}" (\\Flagged \\Seen) {{3+}}\r\nabc')
    assert appended[-1].startswith(b"a OK [APPENDUID"), appended
    owner.select_folder("Orders", readonly=True)
    newest = max(owner.search())
    assert set(owner.get_flags([newest])[newest]) <= {b"\\Recent"}  # no w, no s: the flags were dropped
    raw.command("p", "APPEND INBOX (\\Flagged \\Seen $Work) {3+}\r\nown")
    raw.command("s", "SELECT INBOX")
    assert raw.command("c", f'COPY * "{name}"')[-1].startswith(b"c OK [COPYUID")
    owner.noop()
    copied = max(owner.search())
    assert set(owner.get_flags([copied])[copied]) <= {b"\\Recent"}  # COPY drops them alike
    # the owner pays for what grantees add: a full owner refuses the APPEND, whatever the grantee's own quota
    relentad.cli("quota", "set", ALICE, "--messages", "1")
    refused = raw.command("b", f'APPEND "{name}" {{3+}}\r\nxyz')
    assert b"NO [OVERQUOTA]" in refused[-1], refused
    relentad.cli("quota", "set", ALICE, "--messages", "0")
    raw.close()
    owner.logout()


def test_a_full_grantee_may_still_append_to_a_shared_mailbox(relentad: Daemon) -> None:
    owner = ic(relentad, ALICE)
    owner.create_folder("Inbound")
    owner.setacl("Inbound", CAROL, "lri")
    relentad.cli("quota", "set", CAROL, "--messages", "1")
    carol = Raw(relentad)
    carol.login(CAROL)
    carol.command("a", "APPEND INBOX {3+}\r\nabc")
    assert b"NO [OVERQUOTA]" in carol.command("b", "APPEND INBOX {3}")[-1]  # refused before the literal
    reply = carol.command("c", f'APPEND "Shared/{ALICE}/Inbound" {{3+}}\r\nabc')
    assert reply[-1].startswith(b"c OK [APPENDUID"), reply  # the owner's quota counts, not carol's
    relentad.cli("quota", "set", CAROL, "--messages", "0")
    carol.close()
    owner.logout()


def test_an_administering_grantee(relentad: Daemon) -> None:
    owner = ic(relentad, ALICE)
    owner.create_folder("Board")
    owner.setacl("Board", BOB, "lra")
    name = f"Shared/{ALICE}/Board"
    raw = Raw(relentad)
    raw.login(BOB)
    assert raw.command("m", "MYRIGHTS INBOX")[0] == b"* MYRIGHTS INBOX lrswipkxtea\r\n"  # its own: every right
    assert raw.command("g", f'GETACL "{name}"')[0] == f"* ACL {name} {ALICE} lrswipkxtea {BOB} lra\r\n".encode()
    assert raw.command("l", f'LISTRIGHTS "{name}" {CAROL}')[0] == (
        f'* LISTRIGHTS {name} {CAROL} "" l r s w i p k x t e a\r\n'.encode()
    )
    assert raw.command("s", f'SETACL "{name}" {CAROL} +lr')[-1].startswith(b"s OK")
    assert (CAROL.encode(), b"lr") in owner.getacl("Board")
    assert b"NO [CANNOT]" in raw.command("o", f'SETACL "{name}" {ALICE} lr')[-1]  # the owner's rights are fixed
    assert raw.command("b", f'SETACL "{name}" {CAROL} lrz')[-1].startswith(b"b BAD")
    assert b"NO [NONEXISTENT]" in raw.command("n", f'SETACL "{name}" nobody@example.test lr')[-1]
    assert b"NO [CANNOT]" in raw.command("a", f'SETACL "{name}" anyone lr')[-1]
    assert raw.command("d", f'SETACL "{name}" {BOB} -a')[-1].startswith(b"d OK")  # gives up its own a right
    assert b"NO [NOPERM]" in raw.command("g", f'GETACL "{name}"')[-1]
    raw.close()
    owner.logout()


def test_a_grant_withdrawn_while_a_write_waits_writes_nothing(relentad: Daemon) -> None:
    """The rights are checked again in the write's own transaction: an unshare that commits after a command's first
    check and before its write (here while the test holds the database's write lock, as the CLI would) stops the
    write, rather than let APPEND, STORE or MOVE change the mailbox after its sharing ended."""
    owner = ic(relentad, ALICE)
    owner.create_folder("Desk")
    owner.append("Desk", message("on the desk"))
    name = f"Shared/{ALICE}/Desk"
    db = sqlite3.connect(relentad.db_path, isolation_level=None, timeout=30)
    box = db.execute(
        "SELECT b.id FROM mailboxes b JOIN accounts a ON a.id = b.account_id WHERE a.email = ? AND b.name = 'Desk'",
        (ALICE,),
    ).fetchone()[0]
    bob = db.execute("SELECT id FROM accounts WHERE email = ?", (BOB,)).fetchone()[0]
    bystander = Raw(relentad)
    bystander.login(CAROL)
    bob_inbox = ic(relentad, BOB).folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"]

    def withdrawn_while_waiting(command: str, *, select: bool) -> bytes:
        owner.setacl("Desk", BOB, "lrswite")
        grantee = Raw(relentad)
        grantee.login(BOB)
        if select:
            assert grantee.command("s", f'SELECT "{name}"')[-1].startswith(b"s OK [READ-WRITE]")
        db.execute("BEGIN IMMEDIATE")  # the daemon's next write waits for this transaction
        db.execute("DELETE FROM imap_acl WHERE mailbox_id = ? AND grantee_id = ?", (box, bob))  # relentad unshare
        grantee.send(f"w {command}\r\n".encode())
        bystander.command("n", "NOOP")  # the daemon has taken the command (and checked the grant, still there)
        db.execute("COMMIT")
        reply = grantee.until("w")[-1]
        grantee.close()
        return reply

    assert b"NO [NOPERM]" in withdrawn_while_waiting(f'APPEND "{name}" {{3+}}\r\nabc', select=False)
    assert b"NO [NOPERM]" in withdrawn_while_waiting("STORE 1 +FLAGS (\\Flagged)", select=True)
    assert b"NO [NOPERM]" in withdrawn_while_waiting("UID MOVE 1 INBOX", select=True)
    owner.select_folder("Desk")
    assert owner.search() == [1] and b"\\Flagged" not in owner.get_flags([1])[1]
    assert ic(relentad, BOB).folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == bob_inbox
    db.close()
    bystander.close()
    owner.logout()


def test_rename_moves_no_child_into_the_shared_namespace(relentad: Daemon) -> None:
    """CREATE refuses names under ``Shared/<address>``; RENAME of a parent must not put a child there either (it
    would show beside, and be hidden behind, the owner's real shared mailbox, and could never be deleted)."""
    raw = Raw(relentad)
    raw.login(BOB)
    assert raw.command("c", f'CREATE "Folder/{ALICE}/INBOX"')[-1].startswith(b"c OK")
    refused = raw.command("r", "RENAME Folder Shared")
    assert b"NO [NOPERM]" in refused[-1] and f"Shared/{ALICE} is in the shared".encode() in refused[-1], refused
    assert raw.command("l", f'LIST "" "Shared/{ALICE}/INBOX"')[:-1] == []  # not shared with bob: nothing
    assert raw.command("m", "RENAME Folder Elsewhere")[-1].startswith(b"m OK")  # not into the namespace: fine
    assert raw.command("d", f'DELETE "Elsewhere/{ALICE}/INBOX"')[-1].startswith(b"d OK")
    raw.close()


def test_a_shared_mailbox_carries_no_special_use(relentad: Daemon) -> None:
    """The owner's Trash, Sent and Drafts are its own: shared, they list without \\Trash & co., so that no grantee's
    client takes them for its own (``Shared/<owner>/Trash`` sorts before ``Trash``) and files its mail there."""
    owner = ic(relentad, ALICE)
    for box in ("Trash", "Sent", "Drafts"):
        owner.setacl(box, CAROL, "lrswite")
    raw = Raw(relentad)
    raw.login(CAROL)
    special = raw.command("s", 'LIST (SPECIAL-USE) "" "*"')
    assert [line for line in special if b"Shared/" in line] == [], special
    listed = raw.command("l", f'LIST "" "Shared/{ALICE}/%" RETURN (SPECIAL-USE)')
    assert f'* LIST (\\HasNoChildren) "/" Shared/{ALICE}/Trash\r\n'.encode() in listed, listed
    assert not any(use in line for line in listed for use in (b"\\Trash", b"\\Sent", b"\\Drafts")), listed
    raw.close()
    admin = Raw(relentad)
    admin.login(ALICE)
    for box in ("Trash", "Sent", "Drafts"):
        assert admin.command("d", f"DELETEACL {box} {CAROL}")[-1].startswith(b"d OK")
    admin.close()
    owner.logout()


def test_a_terminated_owners_shared_mailbox_goes_at_once(tmp_path: Path, dns_server: Dnsmasq) -> None:
    """What others saw of an account goes when it is terminated, not 90 days later at the purge: the grantee's
    LIST no longer has the shared mailbox, and a session that had it selected ends (BYE) at its next command,
    before showing any of it."""
    daemon = imap_daemon(tmp_path, dns_server.nameserver)
    try:
        owner = client(daemon, ALICE)
        owner.append("INBOX", None, None, message("shared then gone"))
        owner.logout()
        daemon.cli("share", ALICE, "INBOX", "--with", BOB, "--rights", "lr")
        watching = Raw(daemon)
        watching.login(BOB)
        assert b"* 1 EXISTS" in b"".join(watching.command("s", f'SELECT "{SHARED_INBOX}"'))
        daemon.cli("user", "terminate", "--yes", ALICE)
        watching.send(b"f FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
        got = []
        while line := watching.line():  # the session ends: its selected mailbox is no longer shared with it
            got.append(line)
        assert got == [b"* BYE access to the selected shared mailbox was withdrawn\r\n"]
        grantee = ic(daemon, BOB)
        assert not any(name.startswith("Shared/") for _, _, name in grantee.list_folders())
        with pytest.raises(imapclient.exceptions.IMAPClientError):
            grantee.select_folder(SHARED_INBOX)
    finally:
        daemon.stop()
