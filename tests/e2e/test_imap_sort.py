"""SORT, UID SORT, ESORT, THREAD and UID THREAD (RFC 5256, RFC 5957, RFC 5267) over real sockets: imapclient's
sort() and thread(), raw lines for the exact syntax, and the errors (BAD criteria, NO [BADCHARSET])."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import imapclient
import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import ALICE, Raw, imap_daemon


def mail(headers: dict[str, str], body: str = "Hi.\r\n") -> bytes:
    return ("".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n" + body).encode()


SORTED = [  # (headers, internal date, body size)
    (
        {
            "From": "Aaron <zed@a.test>",
            "To": "bob@b.test",
            "Cc": "Carol <carol@c.test>",
            "Subject": "Re: Beta",
            "Date": "Fri, 03 Jan 2025 10:00:00 +0000",
        },
        "10-Jan-2025 10:00:00 +0000",
        100,
    ),
    (
        {
            "From": "adam@z.test",
            "To": "Yann <alice@x.test>",
            "Subject": "alpha",
            "Date": "Wed, 01 Jan 2025 10:00:00 +0000",
        },
        "11-Jan-2025 10:00:00 +0000",
        3000,
    ),
    (  # no Date: its internal date stands in; "[news] Fwd: gamma", encoded
        {
            "From": "=?utf-8?q?=C3=89mile?= <emile@e.test>",
            "To": "zoe@y.test",
            "Subject": "=?utf-8?q?=5Bnews=5D_Fwd:_gamma?=",
        },
        "02-Jan-2025 12:00:00 +0000",
        1500,
    ),
    (
        {
            "From": "bert@b.test",
            "To": "alice@example.test",
            "Subject": "[list]  BETA\t(fwd)",
            "Date": "Fri, 03 Jan 2025 12:00:00 +0200",
        },
        "09-Jan-2025 10:00:00 +0000",
        10,
    ),
]


def day(n: int) -> str:
    return f"Thu, {n:02d} Jan 2025 10:00:00 +0000"


THREADED = [  # a conversation with a missing parent, In-Reply-To only, subject merges and split threads
    {"Message-ID": "<a@x>", "Subject": "Plans", "Date": day(1)},
    {"Message-ID": "<b@x>", "References": "<a@x>", "Subject": "Re: Plans", "Date": day(2)},
    {"Message-ID": "<c@x>", "References": "<a@x> <missing@x>", "Subject": "Re: Plans", "Date": day(3)},
    {"Message-ID": "<d@x>", "In-Reply-To": "<b@x>", "Subject": "Re: Plans", "Date": day(4)},
    {"Message-ID": "<e@x>", "Subject": "Lunch", "Date": day(5)},
    {"Message-ID": "<f@x>", "Subject": "Re: Lunch", "Date": day(6)},
    {"Message-ID": "<g@x>", "References": "<nowhere@x>", "Subject": "Other", "Date": "Tue, 31 Dec 2024 10:00:00 +0000"},
    {"Message-ID": "<h@x>", "References": "<gone@x>", "Subject": "Split", "Date": day(7)},
    {"Message-ID": "<i@x>", "References": "<gone@x>", "Subject": "Split", "Date": day(8)},
    {"Message-ID": "<j@x>", "Subject": "lunch", "Date": day(9)},
]


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-sort"), dns_server.nameserver)
    conn = imaplib.IMAP4(daemon.host, daemon.imap_port)
    conn.login(ALICE, PASSWORD)
    conn.append("INBOX", "(\\Deleted)", None, mail({"Subject": "gone"}))  # so that UIDs are not sequence numbers
    conn.select("INBOX")
    conn.expunge()
    for headers, internal, size in SORTED:
        conn.append("INBOX", None, f'"{internal}"', mail(headers, "x" * size + "\r\n"))
    conn.create("Threads")
    for headers in THREADED:
        conn.append("Threads", None, None, mail({"From": "p@x.test", **headers}))
    conn.logout()
    yield daemon
    daemon.stop()


@pytest.fixture
def raw(relentad: Daemon) -> Iterator[Raw]:
    client = Raw(relentad)
    client.login()
    client.command("s", "SELECT INBOX")
    yield client
    client.close()


def sort(raw: Raw, command: str) -> list[int]:
    reply = raw.command("q", command)
    assert reply[-1].startswith(b"q OK"), reply
    line = next(line for line in reply if line.startswith(b"* SORT"))
    assert line.endswith(b"\r\n") and b"  " not in line
    return [int(n) for n in line.split()[2:]]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("SUBJECT", [2, 1, 4, 3]),  # alpha, beta (Re:), beta ([list] ... (fwd)), gamma ([news] Fwd:)
        ("REVERSE SUBJECT", [3, 1, 4, 2]),  # ties stay in sequence order
        ("DATE", [2, 3, 1, 4]),  # 3 has no Date: its internal date; 4's 12:00 +0200 is 1's 10:00 UTC
        ("REVERSE DATE", [1, 4, 3, 2]),
        ("ARRIVAL", [3, 4, 1, 2]),
        ("FROM", [2, 4, 3, 1]),  # adam, bert, emile, zed (the mailbox, not the name)
        ("DISPLAYFROM", [1, 2, 4, 3]),  # Aaron, adam@z.test, bert@b.test, Émile
        ("TO", [2, 4, 1, 3]),  # alice, alice, bob, zoe
        ("DISPLAYTO", [4, 1, 2, 3]),  # alice@example.test, bob@b.test, Yann, zoe@y.test
        ("CC", [2, 3, 4, 1]),  # no Cc sorts as the empty string
        ("SIZE", [4, 1, 3, 2]),
        ("SUBJECT SIZE", [2, 4, 1, 3]),
        ("SUBJECT REVERSE SIZE", [2, 1, 4, 3]),
        ("REVERSE SUBJECT REVERSE ARRIVAL", [3, 1, 4, 2]),
    ],
)
def test_sort_orders(raw: Raw, criteria: str, expected: list[int]) -> None:
    assert sort(raw, f"SORT ({criteria}) UTF-8 ALL") == expected


def test_uid_sort_search_keys_and_esort(raw: Raw) -> None:
    assert sort(raw, "UID SORT (SUBJECT) UTF-8 ALL") == [3, 2, 5, 4]  # UID = sequence number + 1
    assert sort(raw, "SORT (REVERSE SIZE) us-ascii SMALLER 1000") == [1, 4]
    assert sort(raw, 'SORT (DATE) "UTF-8" OR FROM bert SUBJECT gamma') == [3, 4]
    assert sort(raw, "SORT (DATE) UTF-8 SUBJECT nothing-like-this") == []
    reply = raw.command("e", "SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL")
    assert reply[0] == b'* ESEARCH (TAG "e") MIN 2 MAX 3 COUNT 4 ALL 2,1,4,3\r\n', reply
    reply = raw.command("f", "UID SORT RETURN (ALL) (REVERSE ARRIVAL) UTF-8 ALL")
    assert reply[0] == b'* ESEARCH (TAG "f") UID ALL 3,2,5,4\r\n', reply
    assert raw.command("g", "SORT RETURN (SAVE) (REVERSE SIZE) UTF-8 LARGER 1000")[0].startswith(b"g OK")
    fetched = b"".join(raw.command("h", "FETCH $ (UID)"))
    assert b"* 2 FETCH (UID 3)" in fetched and b"* 3 FETCH (UID 4)" in fetched and b"* 1 FETCH" not in fetched
    assert sort(raw, "SORT (REVERSE SUBJECT) UTF-8 $") == [3, 2]  # RFC 5182: `$` in SORT's search keys
    assert raw.command("i", "SORT RETURN (SAVE) (NOPE) UTF-8 ALL")[-1].startswith(b"i BAD")
    assert raw.command("j", "FETCH $ (UID)") == [b"j OK FETCH completed\r\n"]  # a failed SAVE empties `$`


def test_modseq_in_sort_replies(raw: Raw) -> None:
    highest = int(raw.command("h", "STATUS INBOX (HIGHESTMODSEQ)")[0].split()[-1].strip(b")"))
    assert raw.command("a", "SORT (SUBJECT) UTF-8 MODSEQ 1")[0] == b"* SORT 2 1 4 3 (MODSEQ %d)\r\n" % highest
    reply = raw.command("b", "UID SORT RETURN (COUNT) (SUBJECT) UTF-8 MODSEQ 1")[0]
    assert reply == b'* ESEARCH (TAG "b") UID COUNT 4 MODSEQ %d\r\n' % highest
    assert raw.command("c", f"SORT (SUBJECT) UTF-8 MODSEQ {highest + 1}")[0] == b"* SORT\r\n"


@pytest.mark.parametrize(
    ("command", "status"),
    [
        ("SORT (FOO) UTF-8 ALL", b"BAD"),
        ("SORT () UTF-8 ALL", b"BAD"),
        ("SORT SUBJECT UTF-8 ALL", b"BAD"),
        ("SORT (REVERSE) UTF-8 ALL", b"BAD"),
        ("SORT (SUBJECT) UTF-8", b"BAD"),
        ("SORT (SUBJECT) ALL", b"BAD"),  # the charset is not optional in SORT
        ("SORT (SUBJECT) UTF-8 BOGUS", b"BAD"),
        ("SORT (SUBJECT) KOI9 ALL", b"NO [BADCHARSET (UTF-8 US-ASCII)]"),
        ("UID THREAD REFERENCES X-UNKNOWN ALL", b"NO [BADCHARSET (UTF-8 US-ASCII)]"),
        ("THREAD SHUFFLE UTF-8 ALL", b"BAD"),
        ("THREAD REFERENCES UTF-8", b"BAD"),
        ("UID SORT RETURN (BOGUS) (SUBJECT) UTF-8 ALL", b"BAD"),
    ],
)
def test_errors(raw: Raw, command: str, status: bytes) -> None:
    reply = raw.command("z", command)
    assert reply[-1].startswith(b"z " + status), reply
    assert len(reply) == 1
    assert raw.command("n", "NOOP")[-1].startswith(b"n OK")  # the session goes on


def test_not_before_select(relentad: Daemon) -> None:
    client = Raw(relentad)
    client.login()
    assert client.command("a", "SORT (DATE) UTF-8 ALL")[-1].startswith(b"a BAD")
    assert client.command("b", "THREAD REFERENCES UTF-8 ALL")[-1].startswith(b"b BAD")
    client.close()


def test_thread_raw_syntax(relentad: Daemon) -> None:
    client = Raw(relentad)
    client.login()
    client.command("s", "SELECT Threads")
    reply = client.command("t", "THREAD REFERENCES UTF-8 ALL")
    assert reply == [b"* THREAD (7)(1 (2 4)(3))((5 6)(10))((8)(9))\r\n", b"t OK THREAD completed\r\n"]
    reply = client.command("u", "THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert reply[0] == b"* THREAD (7)(1 (2)(3)(4))(5 (6)(10))(8 9)\r\n"
    reply = client.command("v", "UID THREAD REFERENCES US-ASCII SUBJECT plans")
    assert reply[0] == b"* THREAD (1 (2 4)(3))\r\n"  # the only mailbox appended to once: UIDs are 1..10
    assert client.command("w", "THREAD REFERENCES UTF-8 SUBJECT nothing-like-this")[0] == b"* THREAD\r\n"
    client.close()


def test_imapclient_sort_and_thread(relentad: Daemon) -> None:
    with imapclient.IMAPClient(relentad.host, port=relentad.imap_port, ssl=False, timeout=15) as conn:
        conn.login(ALICE, PASSWORD)
        capabilities = conn.capabilities()
        for name in (b"SORT", b"SORT=DISPLAY", b"ESORT", b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES"):
            assert name in capabilities
        conn.select_folder("INBOX")
        assert conn.sort(["REVERSE DATE"]) == [2, 5, 4, 3]
        assert conn.sort(["SUBJECT", "SIZE"], ["UNSEEN"]) == [3, 5, 2, 4]
        conn.select_folder("Threads")
        threads = conn.thread("REFERENCES")
        assert threads == ((7,), (1, (2, 4), (3,)), ((5, 6), (10,)), ((8,), (9,)))
        assert conn.thread("ORDEREDSUBJECT", ["SUBJECT", "lunch"]) == ((5, (6,), (10,)),)
