"""Response rendering: the value tree, status lines, mailbox names, and that output re-parses as IMAP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relentad.imap.parser_cursor import Cursor
from relentad.imap.responses import (
    MAX_QUOTED,
    Atom,
    ImapValue,
    Literal8,
    astring,
    continuation,
    flag_list,
    format_date_time,
    mailbox_name,
    mailbox_value,
    render,
    tagged,
    untagged,
    untagged_status,
)


def test_scalars() -> None:
    assert render(None) == b"NIL"
    assert render(0) == b"0"
    assert render(4294967296) == b"4294967296"
    assert render("hello") == b'"hello"'
    assert render(b"hello") == b'"hello"'
    assert render("") == b'""'
    assert render(Atom("\\Seen")) == b"\\Seen"


def test_quoted_escapes_quote_and_backslash() -> None:
    assert render('say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'


@pytest.mark.parametrize("value", ["a\r\nb", "a\nb", "tab\x01ctl"])
def test_control_characters_force_a_literal(value: str) -> None:
    data = value.encode()
    assert render(value) == b"{%d}\r\n" % len(data) + data


def test_nul_never_goes_out_in_a_literal() -> None:
    """A literal is CHAR8, no NUL (RFC 9051 §4.3): stored NULs go out as 0x80, the length kept; it used to send
    them as they were. Only a BINARY literal8 carries NUL."""
    assert render("nul\0") == b"{4}\r\nnul\x80"
    assert render(b"a\0b\0" + b"x" * 2000).startswith(b"{2004}\r\na\x80b\x80x")
    assert render(Literal8(b"a\0")) == b"~{2}\r\na\0"


def test_non_ascii_is_a_literal_unless_utf8() -> None:
    data = "Grüße".encode()
    assert render("Grüße") == b"{%d}\r\n" % len(data) + data
    assert render("Grüße", utf8=True) == b'"' + data + b'"'


def test_invalid_utf8_bytes_stay_a_literal_in_utf8_mode() -> None:
    assert render(b"\xff\xfe", utf8=True) == b"{2}\r\n\xff\xfe"


def test_long_strings_become_literals() -> None:
    short = "x" * MAX_QUOTED
    assert render(short) == b'"' + short.encode() + b'"'
    long = "x" * (MAX_QUOTED + 1)
    assert render(long).startswith(b"{%d}\r\n" % (MAX_QUOTED + 1))


def test_malformed_text_never_raises() -> None:
    assert render("a\udcffb") == b"{3}\r\na\xffb"  # surrogateescape'd byte goes out as it came in
    assert render("a\ud800b") == b'"a?b"'  # any other lone surrogate is replaced


def test_literal8() -> None:
    assert render(Literal8(b"\x00\x01")) == b"~{2}\r\n\x00\x01"


def test_lists_nest() -> None:
    value: ImapValue = [Atom("UID"), 7, Atom("FLAGS"), [Atom("\\Seen"), Atom("$Junk")], [], [None, ["a"]]]
    assert render(value) == b'(UID 7 FLAGS (\\Seen $Junk) () (NIL ("a")))'
    assert render((1, 2)) == b"(1 2)"
    assert render([[1], [2], 3, [4], [5]]) == b"((1)(2) 3 (4) (5))"
    assert render([]) == b"()"


def test_negative_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="unsigned"):
        render(-1)


@pytest.mark.parametrize("text", ["", "a\r\nb", "x\0"])
def test_atom_validates(text: str) -> None:
    with pytest.raises(ValueError, match="atom"):
        Atom(text)


def test_envelope_matches_rfc3501_example() -> None:
    gray = [["Terry Gray", None, "gray", "cac.washington.edu"]]
    envelope: ImapValue = [
        "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        "IMAP4rev1 WG mtg summary and minutes",
        gray,
        gray,
        gray,
        [[None, None, "imap", "cac.washington.edu"]],
        [[None, None, "minutes", "CNRI.Reston.VA.US"], ["John Klensin", None, "KLENSIN", "MIT.EDU"]],
        None,
        None,
        "<B27397-0100000@cac.washington.edu>",
    ]
    assert render(envelope) == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes"'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu"))'
        b' (("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu"))'
        b' ((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL'
        b' "<B27397-0100000@cac.washington.edu>")'
    )


def test_envelope_escapes_quotes() -> None:
    assert render([['John "K" Klensin', None, "k", "mit.edu"]]) == b'(("John \\"K\\" Klensin" NIL "k" "mit.edu"))'


def test_multipart_bodystructure_matches_rfc3501_example() -> None:
    structure: ImapValue = [
        ["TEXT", "PLAIN", ["CHARSET", "US-ASCII"], None, None, "7BIT", 1152, 23],
        ["TEXT", "PLAIN", ["CHARSET", "US-ASCII", "NAME", "cc.diff"], "<960723163407.20117h@cac.washington.edu>",
         "Compiler diff", "BASE64", 4554, 73],
        "MIXED",
    ]  # fmt: skip
    assert render(structure) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)("TEXT" "PLAIN" ("CHARSET" "US-ASCII"'
        b' "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
    )


def test_multipart_extension_lists_keep_their_spaces() -> None:
    child: ImapValue = ["TEXT", "PLAIN", ["CHARSET", "UTF-8"], None, None, "7BIT", 5, 1]
    structure: ImapValue = [
        child, child, "MIXED", ["BOUNDARY", "b1"], ["attachment", ["FILENAME", "a.txt"]], ["en", "de"], None,
    ]  # fmt: skip
    child_wire = b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 5 1)'
    assert render(structure) == (
        b"(" + child_wire + child_wire + b' "MIXED" ("BOUNDARY" "b1") ("attachment" ("FILENAME" "a.txt"))'
        b' ("en" "de") NIL)'
    )


def test_message_rfc822_part_keeps_spaces_between_envelope_and_body() -> None:
    inner: ImapValue = ["TEXT", "PLAIN", None, None, None, "7BIT", 2, 1]
    envelope: ImapValue = [None, "s", None, None, None, None, None, None, None, None]
    part: ImapValue = ["MESSAGE", "RFC822", None, None, None, "7BIT", 100, envelope, inner, 4]
    assert render(part) == (
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 100 (NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL)'
        b' ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 2 1) 4)'
    )


def test_namespace_lists_are_back_to_back() -> None:
    assert render([["", "/"], ["Shared/", "/"]]) == b'(("" "/")("Shared/" "/"))'


def _read_value(cur: Cursor) -> object:
    """A tiny reader for the rendered grammar, to prove the output re-parses."""
    if cur.skip(b"("):
        items: list[object] = []
        while not cur.skip(b")"):
            if items:
                cur.skip(b" ")  # optional: lists at the start of a list are written back to back
            items.append(_read_value(cur))
        return items
    if cur.skip(b"NIL"):
        return None
    if cur.peek() in (ord('"'), ord("{")):
        return cur.string()
    return int(cur.take(frozenset(b"0123456789")))


values = st.recursive(
    st.none() | st.integers(min_value=0, max_value=2**63) | st.binary(max_size=40) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5),
    max_leaves=30,
)


def _expected(value: object) -> object:
    """What reads back: strings as bytes, and NUL as 0x80 (a literal carries no NUL)."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return value.replace(b"\0", b"\x80")
    if isinstance(value, list):
        return [_expected(item) for item in value]
    return value


@given(values)
def test_rendered_values_parse_back(value: ImapValue) -> None:
    cur = Cursor(render(value))
    assert _read_value(cur) == _expected(value)
    assert cur.at_end()


@given(values)
def test_no_bare_newlines_outside_literals(value: ImapValue) -> None:
    wire = untagged(Atom("X"), value)
    assert wire.endswith(b"\r\n")
    cur = Cursor(wire[2:])
    cur.atom("x")
    cur.sp()
    _read_value(cur)
    assert cur.buf[cur.pos :] == b"\r\n"


def test_tagged() -> None:
    assert tagged("a1", "OK", "FETCH completed") == b"a1 OK FETCH completed\r\n"
    assert tagged("a2", "NO", "no such mailbox", "TRYCREATE") == b"a2 NO [TRYCREATE] no such mailbox\r\n"
    assert tagged("a3", "OK", "done", [Atom("APPENDUID"), 38505, 3955]) == b"a3 OK [APPENDUID 38505 3955] done\r\n"
    assert tagged("a4", "BAD", "bad\r\nthing") == b"a4 BAD bad  thing\r\n"
    assert tagged("a5", "OK", "") == b"a5 OK done\r\n"


def test_tagged_code_with_list() -> None:
    code: list[ImapValue] = ["PERMANENTFLAGS", flag_list(["\\Seen", "\\*"])]
    line = untagged_status("OK", "Limited", code)
    assert line == b'* OK ["PERMANENTFLAGS" (\\Seen \\*)] Limited\r\n'
    code = [Atom("PERMANENTFLAGS"), flag_list(["\\Seen", "\\*"])]
    assert untagged_status("OK", "Limited", code) == b"* OK [PERMANENTFLAGS (\\Seen \\*)] Limited\r\n"


def test_response_code_refuses_newlines() -> None:
    with pytest.raises(ValueError, match="response code"):
        tagged("a", "NO", "x", "BAD\r\nCODE")


def test_untagged() -> None:
    assert untagged(5, Atom("EXISTS")) == b"* 5 EXISTS\r\n"
    assert untagged(Atom("FLAGS"), flag_list(["\\Answered", "$Forwarded"])) == b"* FLAGS (\\Answered $Forwarded)\r\n"
    fetch = untagged(12, Atom("FETCH"), [Atom("UID"), 44, Atom("BODY[HEADER]"), b"Subject: x\r\n\r\n"])
    assert fetch == b"* 12 FETCH (UID 44 BODY[HEADER] {14}\r\nSubject: x\r\n\r\n)\r\n"
    assert untagged_status("BYE", "logging out") == b"* BYE logging out\r\n"
    assert untagged_status("OK", "UIDs valid", "UIDVALIDITY 3857529045") == (
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
    )


def test_continuation() -> None:
    assert continuation() == b"+ \r\n"
    assert continuation("idling") == b"+ idling\r\n"
    assert continuation("a\r\nb") == b"+ a  b\r\n"


def test_flag_list() -> None:
    assert render(flag_list([])) == b"()"
    assert render(flag_list(["\\Seen", "\\Deleted"])) == b"(\\Seen \\Deleted)"


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("a]b", b"a]b"),
        ("", b'""'),
        ("two words", b'"two words"'),
        ("NIL", b'"NIL"'),
        ("nil", b'"nil"'),
        ("50%", b'"50%"'),
        ("star*", b'"star*"'),
        ("{x", b'"{x"'),
        ('q"q', b'"q\\"q"'),
    ],
)
def test_astring(text: str, wire: bytes) -> None:
    assert astring(text) == wire


def test_mailbox_names() -> None:
    assert mailbox_name("INBOX") == b"INBOX"
    assert mailbox_name("Entwürfe") == b"Entw&APw-rfe"
    assert mailbox_name("Entwürfe", utf8=True) == '"Entwürfe"'.encode()
    assert mailbox_name("Sent Items") == b'"Sent Items"'
    assert mailbox_name("Tom & Jerry") == b'"Tom &- Jerry"'
    assert mailbox_value("Archive/2024") == Atom("Archive/2024")
    assert mailbox_value("a b") == "a b"


def test_format_date_time() -> None:
    zone = timezone(-timedelta(hours=7))
    assert format_date_time(datetime(1996, 7, 17, 2, 44, 25, tzinfo=zone)) == "17-Jul-1996 02:44:25 -0700"
    assert format_date_time(datetime(2024, 1, 5, 9, 8, 7, tzinfo=UTC)) == "05-Jan-2024 09:08:07 +0000"
    assert format_date_time(datetime(2024, 12, 31, 23, 0, 0)) == "31-Dec-2024 23:00:00 +0000"
    india = timezone(timedelta(hours=5, minutes=30))
    assert format_date_time(datetime(2024, 3, 1, 0, 0, 0, tzinfo=india)) == "01-Mar-2024 00:00:00 +0530"
