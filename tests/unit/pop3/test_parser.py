"""The POP3 command parser and the multi-line output rules (RFC 1939 §3, RFC 2449 §3)."""

from __future__ import annotations

import pytest

from relentad.pop3.parser import Command, ParseError, multiline, number, parse, status, top


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"STAT\r\n", Command("STAT", ())),
        (b"list\r\n", Command("LIST", ())),
        (b"List 12\r\n", Command("LIST", ("12",))),
        (b"TOP 1 0\n", Command("TOP", ("1", "0"))),
        (b"USER alice@example.test\r\n", Command("USER", ("alice@example.test",))),
        (b"PASS two words  and more\r\n", Command("PASS", ("two words  and more",))),
        (b"AUTH\r\n", Command("AUTH", ())),
        (b"AUTH PLAIN " + b"A" * 200 + b"\r\n", Command("AUTH", ("PLAIN", "A" * 200))),
        ("USER jörg@example.test\r\n".encode(), Command("USER", ("jörg@example.test",))),
        (b"USER " + b"a" * 60 + b"@example.test\r\n", Command("USER", ("a" * 60 + "@example.test",))),
    ],
)
def test_parse(line: bytes, expected: Command) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"\r\n", "empty command"),
        (b"FROB\r\n", "unknown command 'FROB'"),
        (b"STAT 1\r\n", "wrong number of arguments for STAT"),
        (b"RETR\r\n", "wrong number of arguments for RETR"),
        (b"TOP 1\r\n", "wrong number of arguments for TOP"),
        (b"PASS\r\n", "wrong number of arguments for PASS"),
        (b"LIST  1\r\n", "separated by one space"),
        (b"LIST 1 \r\n", "separated by one space"),
        (b"LIST " + b"1" * 41 + b"\r\n", "at most 40 characters"),
        (b"USER a\0b\r\n", "NUL or CR"),
        (b"USER a\rb\r\n", "NUL or CR"),
        (b"USER \xff\r\n", "ASCII or UTF-8"),
    ],
)
def test_parse_errors(line: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(line)


def test_numbers() -> None:
    assert number("7") == 7 and number("007") == 7 and number("0", zero=True) == 0
    for text, reason in (("0", "start at 1"), ("-1", "not a number"), ("1e3", "not a number"), ("١", "not a number")):
        with pytest.raises(ParseError, match=reason):
            number(text)
    with pytest.raises(ParseError, match="no message 9999999999"):
        number("9999999999")
    with pytest.raises(ParseError, match="no message 99999999999999999999"):
        number("99999999999999999999")
    assert number("99999999999999999999", zero=True) == 2**31 - 1, "TOP's line count: capped, not refused"


def test_status_lines_carry_response_codes_and_never_a_line_break() -> None:
    assert status(True, "") == b"+OK\r\n"
    assert status(False, "bad\r\nRETR 1", "AUTH") == b"-ERR [AUTH] bad  RETR 1\r\n"


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"", b".\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b".a\r\n.\r\nb\r\n..c\r\n", b"..a\r\n..\r\nb\r\n...c\r\n.\r\n"),
    ],
)
def test_multiline_stuffs_dots_and_terminates(data: bytes, wire: bytes) -> None:
    assert multiline(data) == wire


def test_top_is_the_header_the_blank_line_and_n_body_lines() -> None:
    message = b"Subject: x\r\nFrom: y\r\n\r\none\r\ntwo\r\nthree\r\n"
    assert top(message, 0) == b"Subject: x\r\nFrom: y\r\n\r\n"
    assert top(message, 2) == b"Subject: x\r\nFrom: y\r\n\r\none\r\ntwo\r\n"
    assert top(message, 10) == message
    assert top(b"Subject: no body\r\n", 3) == b"Subject: no body\r\n"
    assert top(b"\r\nbody only\r\n", 0) == b"\r\n"
    assert top(b"H: 1\r\n\r\nunterminated", 5) == b"H: 1\r\n\r\nunterminated"
