"""OBJECTID (RFC 8474), PREVIEW (RFC 8970) and REPLACE (RFC 8508): the ids, the preview text, and the grammar."""

from __future__ import annotations

import base64
import re

import pytest

from relentad.imap.objectid import email_id, mailbox_id, parse_email_id, parse_thread_id, thread_id
from relentad.imap.parser import (
    Command,
    Fetch,
    FetchItem,
    ParseError,
    Replace,
    Search,
    SearchObjectId,
    SearchOr,
    message_literal,
    parse_command,
    replace_target,
)
from relentad.imap.preview import LENGTH, preview, slicer
from relentad.message import normalize_crlf, parse

OBJECTID = re.compile(r"[A-Za-z0-9_-]{1,255}")


def command(line: bytes | str) -> Command:
    return parse_command((line.encode() if isinstance(line, str) else line) + b"\r\n")


def text_preview(raw: bytes) -> str:
    parsed = parse(raw)
    data = normalize_crlf(raw) if parsed.needs_crlf else raw
    return preview(parsed.tree, slicer(data))


def test_ids_are_objectids_and_round_trip() -> None:
    assert mailbox_id(12, 7) == "F12-7"
    sha256 = bytes(range(32))
    plain, traced = email_id(sha256, b""), email_id(sha256, b"Received: from x\r\n")
    assert plain == "M" + sha256[:12].hex() and traced.startswith(plain + "-")
    assert traced != email_id(sha256, b"Received: from y\r\n")
    assert all(OBJECTID.fullmatch(i) for i in (plain, traced, "T9"))
    assert parse_email_id(plain) == (sha256[:12], None)
    assert parse_email_id(traced) == (sha256[:12], traced[len(plain) + 1 :])
    assert thread_id(9) == "T9" and thread_id(None) is None and parse_thread_id("T9") == 9


@pytest.mark.parametrize(
    "text",
    [
        "",
        "M",
        "M42",
        "m" + "a" * 24,
        "M" + "a" * 23,
        "M" + "A" * 24,
        "M" + "a" * 25,
        "M" + "a" * 24 + "-",
        "M" + "a" * 24 + "-XYZ",
        "M" + "a" * 24 + "-" + "0" * 15,
        "T42",
    ],
)
def test_foreign_email_ids_parse_to_none(text: str) -> None:
    assert parse_email_id(text) is None


@pytest.mark.parametrize("text", ["", "T", "T0", "t1", "M1", "T" + "9" * 19, "T1-2"])
def test_foreign_thread_ids_parse_to_none(text: str) -> None:
    assert parse_thread_id(text) is None


def test_preview_plain_html_base64_and_nothing() -> None:
    assert text_preview(b"Subject: x\r\n\r\nHello\r\n\r\n   world\tagain\r\n") == "Hello world again"
    html = b"Content-Type: text/html\r\n\r\n<style>b{}</style><p>A&amp;B</p><p>n<b>ew</b></p>\r\n"
    assert text_preview(html) == "A&B new"
    encoded = base64.encodebytes("Grüße".encode())
    assert (
        text_preview(b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded)
        == "Grüße"
    )
    assert text_preview(b"Subject: x\r\n\r\n") == ""
    assert text_preview(b"Content-Type: image/png\r\n\r\nxxxx\r\n") == ""


def test_preview_skips_attachments_and_prefers_the_first_text() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nnotes.txt\r\n--b\r\n"
        b'Content-Type: multipart/alternative; boundary="c"\r\n\r\n--c\r\n'
        b"Content-Type: text/plain\r\n\r\nplain version\r\n--c\r\n"
        b"Content-Type: text/html\r\n\r\n<p>html</p>\r\n--c--\r\n"
        b"--b--\r\n"
    )
    assert text_preview(raw) == "plain version"


def test_preview_skips_an_attached_message() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
        b"Subject: old\r\n\r\nforwarded text\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b--\r\n"
    )
    assert text_preview(raw) == "see attached"
    many = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + b"--b\r\n\r\n\r\n" * 100
        + b"--b\r\n\r\nlate\r\n--b--\r\n"
    )
    assert text_preview(many) == "", "only the first parts are tried"


def test_preview_is_bounded() -> None:
    assert len(text_preview(b"Subject: x\r\n\r\n" + b"word " * 10_000)) == LENGTH
    late = b"Content-Type: text/html\r\n\r\n<style>" + b"x" * 10_000 + b"</style><p>late text</p>\r\n"
    assert text_preview(late) == "late text", "a second, longer read when the first yields too little"
    bare_lf = b"Subject: x\n\nbare\nline feeds\n"
    assert text_preview(bare_lf) == "bare line feeds"


def test_preview_has_no_control_characters() -> None:
    """A NUL would go out as 0x80 (no UTF-8), an escape sequence would reach the client's message list."""
    raw = b"Subject: x\r\n\r\nhello\x00\x01\x1b[31m red\x7f\xc2\x85 end\x0b\r\n"
    assert text_preview(raw) == "hello [31m red end"


def test_fetch_items() -> None:
    fetch = command("a FETCH 1:* (EMAILID THREADID PREVIEW (LAZY) UID)")
    assert isinstance(fetch, Fetch)
    assert fetch.attributes == tuple(FetchItem(n) for n in ("EMAILID", "THREADID", "PREVIEW", "UID"))
    single = command("a FETCH 1 preview (lazy)")
    assert isinstance(single, Fetch) and single.attributes == (FetchItem("PREVIEW"),)
    modified = command("a FETCH 1 PREVIEW (CHANGEDSINCE 5)")
    assert isinstance(modified, Fetch) and modified.changed_since == 5
    for line in ("a FETCH 1 (PREVIEW (FOO))", "a FETCH 1 PREVIEW (LAZY", "a FETCH 1 EMAILID (x)"):
        with pytest.raises(ParseError):
            command(line)


def test_search_keys() -> None:
    search = command("a SEARCH OR EMAILID M1-abc THREADID T_2")
    assert isinstance(search, Search)
    assert search.key == SearchOr(SearchObjectId("EMAILID", "M1-abc"), SearchObjectId("THREADID", "T_2"))
    for line in (
        "a SEARCH EMAILID",
        "a SEARCH EMAILID (M1)",
        "a SEARCH THREADID " + "a" * 256,
        'a SEARCH EMAILID "M1"',
    ):
        with pytest.raises(ParseError):
            command(line)


def test_replace_grammar() -> None:
    replace = command(b'a UID REPLACE 7 Drafts (\\Seen) "25-Nov-2026 08:00:00 +0100" {5+}\r\nhello')
    assert isinstance(replace, Replace)
    assert (replace.uid, replace.target, replace.mailbox, replace.message.data) == (True, 7, "Drafts", b"hello")
    assert replace.message.flags == ("\\Seen",) and replace.message.date is not None
    star = command(b"a REPLACE * INBOX ~{2+}\r\nhi")
    assert isinstance(star, Replace) and star.target is None and not star.uid and star.message.binary
    for line in (
        b"a REPLACE 0 INBOX {1+}\r\nx",
        b"a REPLACE 1:2 INBOX {1+}\r\nx",
        b"a REPLACE 1 INBOX",
        b"a REPLACE 1",
    ):
        with pytest.raises(ParseError):
            command(line)


@pytest.mark.parametrize(
    ("first", "opening", "expected"),
    [
        (b"a REPLACE 1 Drafts {310}\r\n", True, True),
        (b"a uid replace 9 Drafts (\\Seen) ~{12+}\r\n", True, True),
        (b"a REPLACE 1 {5}\r\n", True, False),  # the mailbox name
        (b"a REPLACE 1 {5+}\r\n", False, True),  # the message after it
    ],
)
def test_replace_literals_are_messages(first: bytes, opening: bool, expected: bool) -> None:
    assert message_literal(first, opening=opening) is expected


def test_replace_target() -> None:
    assert replace_target(b"a REPLACE 3 Drafts {5}\r\n") == (False, 3)
    assert replace_target(b"a UID REPLACE * Drafts {5}\r\n") == (True, None)
    assert replace_target(b"a APPEND Drafts {5}\r\n") is None
    assert replace_target(b"a REPLACE x Drafts {5}\r\n") is None
