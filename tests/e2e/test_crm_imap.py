"""The CRM's IMAP virtual folders end to end: ``Contacts/<Name>`` and ``Companies/<Name>`` through imaplib,
imapclient and a raw socket against the real daemon — LIST/LSUB, SELECT [READ-ONLY], FETCH, SEARCH, SORT, THREAD,
STORE landing on the real message, COPY out, refusals, STATUS, modified UTF-7 / UTF8=ACCEPT names and IDLE."""

from __future__ import annotations

import imaplib
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import imapclient
import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, Raw, client, imap_daemon

JUERGEN = "=?utf-8?q?J=C3=BCrgen_Schmidt?= <juergen@acme.example>"
FOLDER = "Contacts/Jürgen Schmidt"
WIRE = "Contacts/J&APw-rgen Schmidt"  # modified UTF-7 (RFC 3501 §5.1.3)


def mail(sender: str, subject: str, msgid: str, cc: str = "") -> bytes:
    headers = [f"From: {sender}", "To: Alice <alice@example.test>", f"Subject: {subject}", f"Message-ID: <{msgid}>"]
    if cc:
        headers.append(f"Cc: {cc}")
    return ("\r\n".join(headers) + "\r\n\r\nHello.\r\n").encode()


def receive(daemon: Daemon, raw: bytes, sender: str) -> None:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=15) as smtp:
        assert smtp.sendmail(sender, [ALICE], raw) == {}


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("crm-imap"), dns_server.nameserver)
    receive(daemon, mail(JUERGEN, "Offer", "m1@acme.example", cc="Petra <petra@acme.example>"), "juergen@acme.example")
    stranger = "Stranger <someone@elsewhere.example>"
    receive(daemon, mail(stranger, "Hi", "s1@elsewhere.example"), "someone@elsewhere.example")
    receive(daemon, mail(JUERGEN, "Invoice 42", "m2@acme.example"), "juergen@acme.example")
    receive(daemon, mail("Petra <petra@acme.example>", "Lunch", "p1@acme.example"), "petra@acme.example")
    daemon.cli("contacts", "tag", ALICE, "juergen@acme.example", "customer")  # confirms him: his folder appears
    yield daemon
    daemon.stop()


def listed(conn: imaplib.IMAP4, command: str = "LIST") -> dict[str, str]:
    typ, data = conn.list() if command == "LIST" else conn.lsub()
    assert typ == "OK"
    out = {}
    for line in data:
        assert isinstance(line, bytes)
        match = re.fullmatch(rb'\((.*?)\) "/" (.*)', line)
        assert match, line
        out[match.group(2).decode().strip('"')] = match.group(1).decode()
    return out


def test_list_shows_confirmed_contacts_and_their_companies(relentad: Daemon) -> None:
    conn = client(relentad)
    boxes = listed(conn)
    assert boxes["Contacts"] == "\\Noselect \\HasChildren"
    assert boxes["Companies"] == "\\Noselect \\HasChildren"
    assert boxes[WIRE] == "\\HasNoChildren \\NoInferiors"
    assert boxes["Companies/Acme"] == "\\HasNoChildren \\NoInferiors"
    # Petra and the stranger never got a reply or a tag: they are not contacts yet, so no folder
    assert [name for name in boxes if name.startswith("Contacts/")] == [WIRE]
    assert WIRE in listed(conn, "LSUB") and "Contacts" in listed(conn, "LSUB")
    assert conn.unsubscribe(f'"{WIRE}"')[0] == "OK"
    assert WIRE not in listed(conn, "LSUB")
    assert conn.subscribe(f'"{WIRE}"')[0] == "OK"
    assert WIRE in listed(conn, "LSUB")
    conn.logout()


def test_utf8_accept_names_and_status(relentad: Daemon) -> None:
    with imapclient.IMAPClient(relentad.host, port=relentad.imap_port, ssl=False, timeout=15) as conn:
        conn.login(ALICE, PASSWORD)
        assert FOLDER in [name for _, _, name in conn.list_folders("Contacts/", "*")]  # decoded from mUTF-7
        status = conn.folder_status(FOLDER, ["MESSAGES", "UNSEEN", "UIDNEXT", "UIDVALIDITY"])
        assert status[b"MESSAGES"] == 2 and status[b"UNSEEN"] == 2
        assert status[b"UIDNEXT"] > 2 and status[b"UIDVALIDITY"] >= 1
    raw = Raw(relentad)
    raw.login()
    lines = raw.command("l", 'LIST "" "%" RETURN (STATUS (MESSAGES))')
    assert b'* LIST (\\Noselect \\HasChildren) "/" Contacts\r\n' in lines
    lines = raw.command("l", 'LIST "" "Companies/%" RETURN (STATUS (MESSAGES UIDNEXT))')
    assert any(line.startswith(b"* STATUS Companies/Acme (MESSAGES 3 UIDNEXT ") for line in lines), lines
    assert raw.command("e", "ENABLE UTF8=ACCEPT")[-1].startswith(b"e OK")
    lines = raw.command("l", 'LIST "" "Contacts/*"')
    assert '* LIST (\\HasNoChildren \\NoInferiors) "/" "Contacts/Jürgen Schmidt"\r\n'.encode() in lines
    raw.close()


def test_select_is_read_only_and_fetch_search_show_the_contacts_mail(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    lines = raw.command("s", f'SELECT "{WIRE}"')
    assert lines[-1].startswith(b"s OK [READ-ONLY]"), lines
    assert b"* 2 EXISTS\r\n" in lines and b"* OK [NOMODSEQ] a CRM view has no mod-sequences\r\n" in lines
    assert any(line.startswith(b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Seen \\Draft") for line in lines)
    fetched = b"".join(raw.command("f", "FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert b"Subject: Offer" in fetched and b"Subject: Invoice 42" in fetched and b"Lunch" not in fetched
    uids = [int(u) for u in re.findall(rb"UID (\d+)", fetched)]
    assert uids == sorted(uids) and len(uids) == 2
    assert raw.command("x", "UID SEARCH SUBJECT invoice")[0] == b"* SEARCH %d\r\n" % uids[1]
    assert raw.command("y", "SEARCH UNSEEN")[0] == b"* SEARCH 1 2\r\n"
    assert raw.command("m", "FETCH 1 (MODSEQ)")[-1].startswith(b"m BAD")
    raw.close()


def test_sort_and_thread_in_a_view(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("s", f'EXAMINE "{WIRE}"')
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b"".join(raw.command("f", "FETCH 1:* (UID)")))]
    assert raw.command("a", "SORT (SUBJECT) UTF-8 ALL")[0] == b"* SORT 2 1\r\n"  # Invoice 42, Offer
    assert raw.command("b", "UID SORT (REVERSE ARRIVAL) UTF-8 ALL")[0] == b"* SORT %d %d\r\n" % (uids[1], uids[0])
    assert raw.command("c", "SORT (CC) UTF-8 ALL")[0] == b"* SORT 2 1\r\n"  # only Offer has a Cc (petra)
    assert raw.command("d", "UID THREAD REFERENCES UTF-8 ALL")[0] == b"* THREAD (%d)(%d)\r\n" % tuple(uids)
    assert raw.command("e", "THREAD ORDEREDSUBJECT UTF-8 SUBJECT offer")[0] == b"* THREAD (1)\r\n"
    raw.close()


def ok(lines: list[bytes], tag: str) -> list[bytes]:
    assert lines[-1].startswith(f"{tag} OK".encode()), lines
    return lines


def test_flags_stored_in_the_view_land_on_the_real_message(relentad: Daemon) -> None:
    # imaplib and imapclient refuse a SELECT answered [READ-ONLY]; Thunderbird (and this raw client) go on
    raw = Raw(relentad)
    raw.login()
    ok(raw.command("s", f'SELECT "{WIRE}"'), "s")
    stored = ok(raw.command("a", "STORE 2 +FLAGS (\\Flagged $Customer)"), "a")
    [fetched] = [line for line in stored if line.startswith(b"* 2 FETCH (FLAGS (")]  # after FLAGS naming $Customer
    assert b"\\Flagged" in fetched and b"$Customer" in fetched
    inbox = client(relentad)
    inbox.select("INBOX", readonly=True)
    typ, found = inbox.search(None, "FLAGGED")
    assert typ == "OK" and len(found[0].split()) == 1  # type: ignore[union-attr]
    _, header = inbox.fetch(found[0].decode(), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")  # type: ignore[union-attr]
    assert b"Invoice 42" in header[0][1]  # type: ignore[index]
    assert b"NO [CANNOT]" in raw.command("d", "STORE 1 +FLAGS (\\Deleted)")[-1]
    ok(raw.command("r", "STORE 2 -FLAGS.SILENT (\\Flagged $Customer)"), "r")
    assert inbox.search(None, "FLAGGED") == ("OK", [b""])
    inbox.logout()
    ok(raw.command("e", f'EXAMINE "{WIRE}"'), "e")  # EXAMINE: no STORE at all
    assert b"NO [READ-ONLY]" in raw.command("x", "STORE 2 +FLAGS (\\Seen)")[-1]
    raw.close()


def test_copy_out_works_and_changes_into_the_view_are_refused(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    ok(raw.command("s", f'SELECT "{WIRE}"'), "s")
    assert b"[COPYUID " in ok(raw.command("c", "COPY 1 Archive"), "c")[-1]
    assert ok(raw.command("t", "STATUS Archive (MESSAGES)"), "t")[0] == b"* STATUS Archive (MESSAGES 1)\r\n"
    assert b"* 2 EXISTS\r\n" in ok(raw.command("s", f'SELECT "{WIRE}"'), "s")  # in two folders, once in the view
    for command in (
        "MOVE 1 Archive",
        "EXPUNGE",
        "UID EXPUNGE 1:*",
        f'APPEND "{WIRE}" {{5+}}\r\nx: y\r\n',
        'CREATE "Contacts/Someone"',
        f'DELETE "{WIRE}"',
        f'RENAME "{WIRE}" Other',
        'RENAME Archive "Companies/Archive"',
    ):
        assert b"NO [CANNOT]" in raw.command("n", command)[-1], command
    ok(raw.command("i", "SELECT INBOX"), "i")
    assert b"NO [CANNOT]" in raw.command("n", f'COPY 1 "{WIRE}"')[-1]
    ok(raw.command("s", f'SELECT "{WIRE}"'), "s")  # a copy out into Junk is marked as the user's verdict
    ok(raw.command("j", "COPY 1 Junk"), "j")
    ok(raw.command("e", "EXAMINE Junk"), "e")
    assert b"$Junk" in b"".join(ok(raw.command("f", "FETCH 1 (FLAGS)"), "f"))
    raw.close()


def test_imap4rev2_and_qresync_sessions_select_a_view(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    ok(raw.command("e", "ENABLE IMAP4rev2 QRESYNC"), "e")
    lines = ok(raw.command("s", 'SELECT "Contacts/Jürgen Schmidt"'), "s")  # UTF-8 names once rev2 is on
    assert '* LIST (\\NoInferiors) "/" "Contacts/Jürgen Schmidt"\r\n'.encode() in lines
    assert lines[-1].startswith(b"s OK [READ-ONLY]")
    assert ok(raw.command("f", "UID SEARCH ALL"), "f")[0].startswith(b'* ESEARCH (TAG "f") UID ALL ')
    assert b"BAD" in raw.command("c", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)")[-1]
    ok(raw.command("u", "UNSELECT"), "u")
    raw.close()


def test_companies_view_holds_every_contact_of_the_company(relentad: Daemon) -> None:
    conn = client(relentad)
    typ, data = conn.select("Companies/Acme", readonly=True)  # EXAMINE: imaplib accepts [READ-ONLY] then
    assert typ == "OK" and data == [b"3"]  # Jürgen's two and Petra's
    typ, found = conn.search(None, "FROM", "petra")
    assert found == [b"3"]
    conn.logout()


def test_idle_in_a_view_hears_new_mail_of_the_contact(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("s", f'SELECT "{WIRE}"')
    raw.send(b"i IDLE\r\n")
    assert raw.line().startswith(b"+ ")
    receive(relentad, mail("Stranger <someone@elsewhere.example>", "Not his", "s2@elsewhere.example"), "x@y.example")
    receive(relentad, mail(JUERGEN, "Follow-up", "m3@acme.example"), "juergen@acme.example")
    line = raw.line()
    while line.startswith((b"* FLAGS", b"* OK [PERMANENTFLAGS")):
        line = raw.line()
    assert line == b"* 3 EXISTS\r\n"
    raw.send(b"DONE\r\n")
    assert raw.until("i")[-1].startswith(b"i OK")
    assert b"Follow-up" in b"".join(raw.command("f", "FETCH 3 BODY.PEEK[HEADER.FIELDS (SUBJECT)]"))
    raw.close()


def test_folders_off_leaves_the_names_free(tmp_path: Path, dns_server: Dnsmasq) -> None:
    daemon = imap_daemon(tmp_path, dns_server.nameserver, settings={"crm": {"imap_folders": False}})
    try:
        receive(daemon, mail(JUERGEN, "Offer", "m1@acme.example"), "juergen@acme.example")
        daemon.cli("contacts", "tag", ALICE, "juergen@acme.example", "customer")
        conn = client(daemon)
        assert not any(name.startswith(("Contacts", "Companies")) for name in listed(conn))
        assert conn.create("Contacts/Mine")[0] == "OK"  # an ordinary mailbox name again
        assert "Contacts/Mine" in listed(conn)
        conn.logout()
    finally:
        daemon.stop()
