"""OBJECTID (RFC 8474) and PREVIEW (RFC 8970) against the real daemon: MAILBOXID in SELECT, STATUS and CREATE and
across sessions and RENAME; EMAILID kept by COPY and MOVE; THREADID shared by a reply and its parent delivered
over SMTP; SEARCH EMAILID/THREADID; previews of plain, HTML-only and base64 mail, in a CRM view too."""

from __future__ import annotations

import base64
import hashlib
import re
import smtplib
from collections.abc import Iterator

import imapclient
import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, BOB, Raw, imap_daemon

OBJECTID = re.compile(rb"[A-Za-z0-9_-]{1,255}")
HTML = (
    "<html><head><style>p { color: red }</style></head><body><p>Dear <b>Ali</b>ce,</p>\r\n"
    "<p>the&nbsp;invoice&nbsp;is   attached.</p><script>alert(1)</script></body></html>\r\n"
)


def mail(subject: str, msgid: str, body: str = "Hello there.\r\n", *extra: str) -> bytes:
    headers = ["From: Juergen <juergen@acme.example>", f"To: {ALICE}", f"Subject: {subject}", f"Message-ID: <{msgid}>"]
    return ("\r\n".join([*headers, *extra]) + "\r\n\r\n" + body).encode()


def receive(daemon: Daemon, raw: bytes, rcpt: str = ALICE) -> None:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=15) as smtp:
        assert smtp.sendmail("juergen@acme.example", [rcpt], raw) == {}


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-objectid"), dns_server.nameserver)
    receive(daemon, mail("Offer", "root@acme.example", "Our offer:\r\n\r\n  a   b\tc\r\n"))
    receive(daemon, mail("Re: Offer", "reply@acme.example", "Thanks!\r\n", "In-Reply-To: <root@acme.example>"))
    receive(daemon, mail("Other", "other@acme.example", HTML, "MIME-Version: 1.0", "Content-Type: text/html"))
    encoded = base64.encodebytes("Grüße aus Köln, überall.\r\n".encode()).decode().replace("\n", "\r\n")
    receive(
        daemon,
        mail(
            "Encoded",
            "b64@acme.example",
            encoded,
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64",
        ),
    )
    yield daemon
    daemon.stop()


def connect(daemon: Daemon, user: str = ALICE) -> imapclient.IMAPClient:
    conn = imapclient.IMAPClient(daemon.host, port=daemon.imap_port, ssl=False, timeout=15)
    conn.login(user, PASSWORD)
    return conn


def mailbox_id(raw: Raw, tag: str, command: str) -> bytes:
    reply = b"".join(raw.command(tag, command))
    match = re.search(rb"\[MAILBOXID \(([^)]*)\)\]|MAILBOXID \(([^)]*)\)", reply)
    assert match, reply
    return match[1] or match[2]


def test_capabilities_and_mailboxid(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    caps = b"".join(raw.command("c", "CAPABILITY"))
    assert all(name in caps for name in (b" OBJECTID", b" PREVIEW", b" REPLACE"))
    created = mailbox_id(raw, "a", "CREATE Projects")
    assert OBJECTID.fullmatch(created)
    assert mailbox_id(raw, "b", "SELECT Projects") == created
    assert mailbox_id(raw, "s", "STATUS Projects (MESSAGES MAILBOXID)") == created
    inbox = mailbox_id(raw, "i", "EXAMINE INBOX")
    assert inbox != created
    assert raw.command("r", "RENAME Projects Work/Projects")[-1].startswith(b"r OK")
    raw.close()
    again = Raw(relentad)  # another session: the same ids, the renamed mailbox's kept (RFC 8474 §4.1)
    again.login()
    assert mailbox_id(again, "s", "STATUS Work/Projects (MAILBOXID)") == created
    assert mailbox_id(again, "i", "SELECT INBOX") == inbox
    assert again.command("d", "DELETE Work/Projects")[-1].startswith(b"d OK")
    assert mailbox_id(again, "c", "CREATE Work/Projects") != created, "a mailbox created anew gets a new id"
    reply = again.command("x", "STATUS INBOX (MAILBOXID")
    assert reply[-1].startswith(b"x BAD")
    again.close()


def test_emailid_survives_copy_and_move_and_threadid_links_a_reply(relentad: Daemon) -> None:
    with connect(relentad) as conn:
        conn.select_folder("INBOX")
        data = conn.fetch(conn.search(), ["UID", "EMAILID", "THREADID"])
        by_seq = {seq: (item[b"EMAILID"][0], item[b"THREADID"]) for seq, item in data.items()}
        emails = [email for email, _ in by_seq.values()]
        assert len(set(emails)) == 4 and all(OBJECTID.fullmatch(e) for e in emails)
        (root_email, root_thread), (reply_email, reply_thread) = by_seq[1], by_seq[2]
        assert root_thread == reply_thread and root_thread is not None, "a reply shares its parent's THREADID"
        assert by_seq[3][1] != root_thread
        conn.create_folder("Kept")
        conn.copy([1], "Kept")
        conn.move([2], "Kept")
        conn.select_folder("Kept")
        kept = conn.fetch(conn.search(), ["EMAILID", "THREADID"])
        assert [(item[b"EMAILID"][0], item[b"THREADID"]) for item in kept.values()] == [
            (root_email, root_thread),
            (reply_email, reply_thread),
        ]
        thread = root_thread[0].decode()
        assert conn.search(["THREADID", thread]) == [1, 2]
        assert conn.search(["EMAILID", reply_email.decode()]) == [2]
        conn.select_folder("INBOX")
        assert conn.search(["EMAILID", root_email.decode()]) == [1]
        assert conn.search(["EMAILID", reply_email.decode()]) == [], "MOVE took it away"
        assert conn.search(["THREADID", thread]) == [1]
        assert conn.search(["EMAILID", "M" + "f" * 24]) == []
        assert conn.search(["NOT", "EMAILID", "nonsense_id"]) == [1, 3, 4]  # UIDs
        appended = b"From: a@b.example\r\nSubject: draft\r\n\r\nDraft.\r\n"
        conn.append("Drafts", appended)
        conn.append("Drafts", appended)
        conn.select_folder("Drafts")
        drafts = conn.fetch(conn.search(), ["EMAILID", "THREADID"])
        ids = {item[b"EMAILID"][0] for item in drafts.values()}
        assert len(ids) == 1, "the same content APPENDed twice is one stored blob, one EMAILID"
        assert all(item[b"THREADID"] is None for item in drafts.values()), "the CRM never filed a draft: NIL"
        assert conn.search(["EMAILID", ids.pop().decode()]) == [1, 2]
    with connect(relentad, BOB) as conn:  # another account never finds alice's messages by id
        conn.select_folder("INBOX")
        assert conn.search(["EMAILID", root_email.decode()]) == []


def test_emailid_and_threadid_raw_syntax(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("s", "EXAMINE INBOX")
    reply = raw.command("f", "FETCH 1 (EMAILID THREADID)")
    assert re.fullmatch(rb"\* 1 FETCH \(EMAILID \([A-Za-z0-9_-]+\) THREADID \([A-Za-z0-9_-]+\)\)\r\n", reply[0])
    assert raw.command("b", "SEARCH EMAILID")[-1].startswith(b"b BAD")
    assert raw.command("c", "SEARCH EMAILID (x)")[-1].startswith(b"c BAD")
    assert raw.command("d", "SEARCH THREADID " + "a" * 256)[-1].startswith(b"d BAD")
    raw.close()


def test_preview_of_plain_html_and_base64(relentad: Daemon) -> None:
    raw = Raw(relentad)
    raw.login()
    raw.command("s", "EXAMINE INBOX")
    html, encoded = (
        raw.command(t, f"SEARCH SUBJECT {s}")[0].split()[-1].decode() for t, s in (("h", "Other"), ("b", "Encoded"))
    )
    reply = raw.command("f", "FETCH 1:* (PREVIEW)")
    previews = {m[1] for line in reply if (m := re.match(rb"\* \d+ FETCH \(PREVIEW (.*)\)\r\n", line))}
    assert b'"Our offer: a b c"' in previews, "whitespace collapsed"
    assert b'"Dear Alice, the invoice is attached."' in previews, "HTML stripped, phrasing tags and entities"
    literal = raw.command("g", f"FETCH {encoded} PREVIEW")
    assert literal[0].endswith(b"{%d}\r\n" % len("Grüße aus Köln, überall.".encode())), "UTF-8: a literal"
    assert literal[1] == "Grüße aus Köln, überall.)\r\n".encode()
    lazy = raw.command("l", f"FETCH {html} (UID PREVIEW (LAZY) FLAGS)")
    assert b'PREVIEW "Dear Alice, the invoice is attached." FLAGS' in lazy[0]
    assert raw.command("e", "ENABLE UTF8=ACCEPT")[-1].startswith(b"e OK")
    quoted = raw.command("g", f"FETCH {encoded} PREVIEW")
    assert quoted[0] == f'* {encoded} FETCH (PREVIEW "Grüße aus Köln, überall.")\r\n'.encode()
    assert raw.command("x", "FETCH 1 PREVIEW (FOO)")[-1].startswith(b"x BAD")
    raw.close()


def test_preview_limits_and_empty(relentad: Daemon) -> None:
    long_body = ("word " * 200 + "\r\n") * 3
    attachment = "--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n"
    with connect(relentad, BOB) as conn:
        conn.append("INBOX", mail("Long", "long@x.example", long_body))
        conn.append(
            "INBOX",
            mail(
                "Image", "img@x.example", attachment, "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"'
            ),
        )
        conn.select_folder("INBOX", readonly=True)
        data = conn.fetch(conn.search(), ["PREVIEW"])
    long_preview, empty = data[1][b"PREVIEW"], data[2][b"PREVIEW"]
    assert len(long_preview) == 256 and long_preview.startswith(b"word word")
    assert empty == b"", "no text to show: the empty preview (RFC 8970 §3.1)"


def test_objectids_and_preview_in_a_crm_view(relentad: Daemon) -> None:
    relentad.cli("contacts", "tag", ALICE, "juergen@acme.example", "customer")
    raw = Raw(relentad)
    raw.login()
    folder = next(
        m[1].decode()
        for line in raw.command("l", 'LIST "" "Contacts/*"')
        if (m := re.search(rb'"/" "?([^"\r]+)', line))
    )
    view_id = mailbox_id(raw, "s", f'EXAMINE "{folder}"')
    assert view_id.startswith(b"V")
    assert mailbox_id(raw, "t", f'STATUS "{folder}" (MAILBOXID)') == view_id
    reply = raw.command("f", "FETCH 1:* (EMAILID THREADID PREVIEW)")
    assert reply[-1].startswith(b"f OK") and b'PREVIEW "Our offer: a b c"' in b"".join(reply)
    email = re.search(rb"EMAILID \(([^)]+)\)", b"".join(reply))
    assert email is not None
    found = raw.command("e", b"SEARCH EMAILID " + email[1])
    assert found[0].startswith(b"* SEARCH ") and len(found[0].split()) == 3
    raw.close()


def test_renaming_inbox_leaves_inbox_its_id(relentad: Daemon) -> None:
    """RFC 8474 §4.1: INBOX keeps its MAILBOXID; the mailbox its messages move to is a new one."""
    raw = Raw(relentad)
    raw.login("carol@example.test")
    inbox = mailbox_id(raw, "s", "STATUS INBOX (MAILBOXID)")
    assert raw.command("r", "RENAME INBOX Old")[-1].startswith(b"r OK")
    assert mailbox_id(raw, "t", "STATUS INBOX (MAILBOXID)") == inbox
    assert mailbox_id(raw, "u", "STATUS Old (MAILBOXID)") not in (inbox, b"")
    raw.close()


def test_an_emailid_does_not_tell_what_other_accounts_hold(relentad: Daemon) -> None:
    """The store keeps one copy of equal octets for all accounts. An EMAILID made of that copy's row id told alice,
    APPENDing guesses of a message bob received, which guess was right (an old id, not the next one); one made of
    the content's hash is the same whoever holds it."""
    secret = b"From: bank@acme.example\r\nTo: bob@example.test\r\nSubject: Code\r\n\r\nYour code: 4711\r\n"
    receive(relentad, secret, BOB)
    guesses = [secret.replace(b"4711", code) for code in (b"4710", b"4711", b"4712")]
    with connect(relentad) as conn:
        conn.create_folder("Guesses")
        for guess in guesses:
            conn.append("Guesses", guess)
        conn.select_folder("Guesses", readonly=True)
        found = [item[b"EMAILID"][0].decode() for item in conn.fetch(conn.search(), ["EMAILID"]).values()]
        assert found == ["M" + hashlib.sha256(guess).digest()[:12].hex() for guess in guesses]
        assert conn.search(["EMAILID", found[1]]) == [2]
