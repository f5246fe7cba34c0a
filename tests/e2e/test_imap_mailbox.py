"""IMAP mailbox commands with real clients: LIST/LSUB (special-use, CHILDREN, LIST-EXTENDED, LIST-STATUS),
CREATE/DELETE/RENAME, SUBSCRIBE, STATUS, SELECT/EXAMINE/CLOSE/UNSELECT."""

from __future__ import annotations

from collections.abc import Iterator

import imapclient
import pytest

from relentad.store import db
from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, BOB, Raw, client, imap_daemon, message


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-mailbox"), dns_server.nameserver)
    yield daemon
    daemon.stop()


def test_default_mailboxes_with_special_use(relentad: Daemon) -> None:
    with imapclient.IMAPClient(relentad.host, port=relentad.imap_port, ssl=False) as conn:
        conn.login(BOB, PASSWORD)
        folders = {name: flags for flags, _, name in conn.list_folders()}
        assert set(folders) == {"INBOX", "Sent", "Drafts", "Junk", "Trash", "Archive"}
        assert b"\\Sent" in folders["Sent"] and b"\\Junk" in folders["Junk"] and b"\\Trash" in folders["Trash"]
        assert b"\\HasNoChildren" in folders["INBOX"]
        assert conn.find_special_folder(imapclient.imapclient.SENT) == "Sent"
        assert conn.find_special_folder(imapclient.imapclient.DRAFTS) == "Drafts"


def test_list_patterns_and_extended(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login(BOB)
    assert raw.command("a", 'LIST "" ""')[0] == b'* LIST (\\Noselect) "/" ""\r\n'
    assert raw.command("b", 'CREATE "Work/Clients/ACME"')[-1].startswith(b"b OK")
    top = raw.command("c", 'LIST "" %')
    assert b'* LIST (\\HasChildren) "/" Work\r\n' in top and not any(b"ACME" in line for line in top)
    deep = raw.command("d", 'LIST "Work/" *')
    assert deep[:-1] == [
        b'* LIST (\\HasChildren) "/" Work/Clients\r\n',
        b'* LIST (\\HasNoChildren) "/" Work/Clients/ACME\r\n',
    ]
    assert raw.command("e", 'LIST "" inbox')[0] == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    special = raw.command("f", 'LIST (SPECIAL-USE) "" *')
    assert len(special) == 6 and all(b"\\HasNoChildren \\" in line for line in special[:-1])
    status = raw.command("g", 'LIST "" INBOX RETURN (STATUS (MESSAGES UIDNEXT))')
    assert status[0].startswith(b"* LIST") and status[1].startswith(b"* STATUS INBOX (MESSAGES 0 UIDNEXT 1)")
    assert raw.command("h", 'UNSUBSCRIBE "Work/Clients"')[-1].startswith(b"h OK")
    subscribed = raw.command("i", 'LSUB "" Work/*')
    assert subscribed[:-1] == [b'* LSUB () "/" Work/Clients/ACME\r\n']
    listed = raw.command("j", 'LIST (SUBSCRIBED) "" "Work/*"')
    assert listed[0].startswith(b"* LIST (\\HasNoChildren \\Subscribed)")


def test_create_delete_rename(relentad: Daemon) -> None:
    conn = client(relentad, "carol@example.test")
    assert conn.create("Projects/2026")[0] == "OK"
    with_error = conn.create("Projects")
    assert with_error[0] == "NO" and b"ALREADYEXISTS" in with_error[1][0]
    assert conn.create("Bad//Name")[0] == "NO"
    assert conn.rename("Projects", "Done")[0] == "OK"
    names = [line.decode().rsplit(" ", 1)[-1] for line in conn.list()[1]]
    assert "Done" in names and "Done/2026" in names and "Projects" not in names
    assert conn.delete("Done")[0] == "OK"  # has a child: stays as \Noselect
    listed = conn.list('""', "Done")[1]
    assert b"\\Noselect" in listed[0]
    assert conn.select("Done")[0] == "NO"
    assert conn.delete("Done/2026")[0] == "OK"
    assert conn.delete("Done")[0] == "OK"
    assert conn.list('""', "Done*")[1] == [None]
    assert conn.delete("INBOX")[0] == "NO"
    assert conn.delete("Nope")[0] == "NO"
    assert conn.create("Uni&AOk-")[0] == "OK"  # modified UTF-7: "Unié"
    rows = relentad.query("SELECT name FROM mailboxes WHERE name LIKE 'Uni%'")
    assert [r["name"] for r in rows] == ["Unié"]
    conn.logout()


def test_create_special_use_and_uidvalidity_changes_when_recreated(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login("carol@example.test")
    assert raw.command("a", "CREATE Important (USE (\\Flagged))")[-1].startswith(b"a OK")
    assert b"\\Flagged" in raw.command("b", 'LIST "" Important')[0]
    first = raw.command("c", "STATUS Important (UIDVALIDITY)")[0]
    raw.command("d", "DELETE Important")
    raw.command("e", "CREATE Important")
    second = raw.command("f", "STATUS Important (UIDVALIDITY)")[0]
    assert first != second
    refused = raw.command("g", "CREATE Mine (USE (\\Bogus))")[-1]
    assert refused.startswith(b"g NO [USEATTR]"), refused  # valid syntax, an unknown use: NO, not BAD (RFC 6154)
    assert b"Mine" not in b"".join(raw.command("h", 'LIST "" Mine'))


def test_rename_inbox_moves_its_messages(relentad: Daemon) -> None:
    conn = client(relentad, "carol@example.test")
    conn.append("INBOX", None, None, message("one"))
    conn.append("INBOX", None, None, message("two"))
    assert conn.rename("INBOX", '"Old Inbox"')[0] == "OK"
    assert conn.select("INBOX")[1] == [b"0"]
    assert conn.select('"Old Inbox"')[1] == [b"2"]
    conn.logout()


def test_status_and_select_examine(relentad: Daemon) -> None:
    conn = client(relentad)
    conn.append("INBOX", "(\\Seen)", None, message("seen"))
    conn.append("INBOX", None, None, message("unseen"))
    status = conn.status("INBOX", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY SIZE HIGHESTMODSEQ DELETED RECENT)")[1][0]
    assert b"MESSAGES 2" in status and b"UNSEEN 1" in status and b"UIDNEXT 3" in status and b"DELETED 0" in status
    raw = Raw(relentad)
    raw.login()
    reply = raw.command("a", "EXAMINE INBOX")
    text = b"".join(reply)
    assert b"* 2 EXISTS" in text and b"[PERMANENTFLAGS ()]" in text and b"[UNSEEN 2]" in text
    assert reply[-1].startswith(b"a OK [READ-ONLY]")
    assert raw.command("b", "STORE 1 +FLAGS (\\Flagged)")[-1].startswith(b"b NO")
    reply = raw.command("c", "SELECT INBOX")
    assert b"[CLOSED]" in reply[0] and reply[-1].startswith(b"c OK [READ-WRITE]")
    assert b"\\*" in b"".join(reply)
    assert raw.command("d", "STORE 2 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"d OK")
    assert raw.command("e", "UNSELECT")[-1].startswith(b"e OK")
    assert raw.command("f", "FETCH 1 FLAGS")[-1].startswith(b"f BAD")
    raw.command("g", "SELECT INBOX")
    assert raw.command("h", "CLOSE")[-1].startswith(b"h OK")
    assert conn.status("INBOX", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 1)")
    conn.logout()


def test_quota_reports_usage(relentad: Daemon) -> None:
    conn_db = db.connect(relentad.db_path)
    with db.transaction(conn_db):
        conn_db.execute("UPDATE accounts SET quota_bytes = 1024000 WHERE email = ?", (BOB,))
    conn_db.close()
    conn = client(relentad, BOB)
    conn.append("INBOX", None, None, message("sized", body="x" * 3000))
    typ, data = conn.getquotaroot("INBOX")
    assert typ == "OK"
    assert data == [[b'INBOX ""'], [b'"" (STORAGE 4 1000)']]
    conn.logout()
    raw = Raw(relentad)
    raw.login(ALICE)
    reply = raw.command("a", "GETQUOTAROOT INBOX")
    assert reply[0].startswith(b"* QUOTAROOT INBOX")
    assert raw.command("b", 'SETQUOTA "" (STORAGE 10)')[-1].startswith(b"b NO [NOPERM]")


def test_mailbox_deleted_under_a_selecting_session(relentad: Daemon) -> None:
    other = client(relentad, "carol@example.test")
    other.create("Tmp")
    other.append("Tmp", None, None, message("doomed"))
    raw = Raw(relentad)
    raw.login("carol@example.test")
    assert b"* 1 EXISTS" in b"".join(raw.command("a", "SELECT Tmp"))
    assert other.delete("Tmp")[0] == "OK"
    assert b"* 1 EXPUNGE\r\n" in raw.command("b", "NOOP")
    assert raw.command("c", "FETCH 1 FLAGS")[-1].startswith(b"c BAD")
    other.logout()


def test_subscriptions_outlive_their_mailboxes_and_lsub_percent_stops_at_a_noselect_level(relentad: Daemon) -> None:
    """RFC 3501 §6.3.6: DELETE must not remove the name from the subscription list; RFC 5258 §3.1: LIST (SUBSCRIBED)
    shows it as \\NonExistent; RFC 3501 §6.3.9: LSUB "%" returns the level above a subscribed mailbox with
    \\Noselect. The subscription used to live on the mailbox row and went with it."""
    raw = Raw(relentad)
    raw.login("alice@example.test")
    raw.command("a", "CREATE Proj")
    assert raw.command("b", "DELETE Proj")[-1].startswith(b"b OK")
    assert raw.command("c", 'LSUB "" Proj')[:-1] == [b'* LSUB (\\Noselect) "/" Proj\r\n']
    assert raw.command("d", 'LIST (SUBSCRIBED) "" Proj')[:-1] == [b'* LIST (\\NonExistent \\Subscribed) "/" Proj\r\n']
    assert raw.command("e", 'LIST "" Proj')[:-1] == []
    assert raw.command("f", "UNSUBSCRIBE Proj")[-1].startswith(b"f OK")
    assert raw.command("g", 'LSUB "" Proj')[:-1] == []
    assert raw.command("h", "UNSUBSCRIBE Proj")[-1].startswith(b"h NO")
    assert raw.command("i", "SUBSCRIBE Later")[-1].startswith(b"i OK")  # before it exists, as clients may
    raw.command("j", "CREATE Later")
    assert raw.command("k", 'LIST (SUBSCRIBED) "" Later')[0] == b'* LIST (\\HasNoChildren \\Subscribed) "/" Later\r\n'
    raw.command("l", "RENAME Later Sooner")
    assert raw.command("m", 'LSUB "" Sooner')[:-1] == [b'* LSUB () "/" Sooner\r\n']
    raw.command("n", 'CREATE "Lists/a/b"')
    raw.command("o", "UNSUBSCRIBE Lists")
    raw.command("p", 'UNSUBSCRIBE "Lists/a"')
    assert b'* LSUB (\\Noselect) "/" Lists\r\n' in raw.command("q", 'LSUB "" %')
    assert raw.command("r", 'LSUB "" Lists/%')[:-1] == [b'* LSUB (\\Noselect) "/" Lists/a\r\n']
    assert raw.command("s", 'LSUB "" Lists*')[:-1] == [b'* LSUB () "/" Lists/a/b\r\n']
    raw.command("t", 'SUBSCRIBE "Gone/deep"')  # no mailbox at either level
    assert b'* LSUB (\\Noselect) "/" Gone\r\n' in raw.command("u", 'LSUB "" %')


def test_list_recursivematch_childinfo(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login(BOB)
    raw.command("a", 'CREATE "Clients/Big"')
    raw.command("b", 'UNSUBSCRIBE "Clients"')
    reply = raw.command("c", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "Clients*"')
    assert reply[0] == b'* LIST (\\HasChildren) "/" Clients (CHILDINFO (SUBSCRIBED))\r\n'
    assert reply[1] == b'* LIST (\\HasNoChildren \\Subscribed) "/" Clients/Big\r\n'
