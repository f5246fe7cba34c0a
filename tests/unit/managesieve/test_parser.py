"""The ManageSieve command parser (RFC 5804 §4): strings, literals, numbers, signatures and output."""

from __future__ import annotations

import random

import pytest

from relentad.managesieve.parser import Command, ParseError, parse, parse_string, pending_literal, response, string


def test_commands_with_quoted_strings_literals_and_numbers() -> None:
    assert parse(b"capability\r\n") == Command("CAPABILITY", ())
    assert parse(b'HAVESPACE "my script" 1234\r\n') == Command("HAVESPACE", ("my script", 1234))
    assert parse(b'PUTSCRIPT "a" {5+}\r\nkeep;\r\n') == Command("PUTSCRIPT", ("a", "keep;"))
    assert parse(b"PUTSCRIPT {1}\r\na {3}\r\nx\r\n\r\n") == Command("PUTSCRIPT", ("a", "x\r\n"))
    assert parse(b'GETSCRIPT "q\\"uote\\\\d"\r\n') == Command("GETSCRIPT", ('q"uote\\d',))
    assert parse('SETACTIVE "Ünïcödé"\r\n'.encode()) == Command("SETACTIVE", ("Ünïcödé",))
    assert parse(b'SETACTIVE ""\r\n') == Command("SETACTIVE", ("",))
    assert parse(b"AUTHENTICATE PLAIN\r\n") == Command("AUTHENTICATE", ("PLAIN",))
    assert parse(b'AUTHENTICATE "PLAIN" "AGEAYg=="\r\n') == Command("AUTHENTICATE", ("PLAIN", "AGEAYg=="))
    assert parse(b'NOOP "tag"\n') == Command("NOOP", ("tag",))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\r\n", "starts with its name"),
        (b"FROBNICATE\r\n", "unknown command"),
        (b"LISTSCRIPTS extra\r\n", "wrong number"),
        (b'PUTSCRIPT "a"\r\n', "wrong number"),
        (b'HAVESPACE "a" "10"\r\n', "expects a number"),
        (b'HAVESPACE "a" 99999999999\r\n', "too large"),
        (b"GETSCRIPT name\r\n", "expects strings"),
        (b'GETSCRIPT "open\r\n', "unterminated"),
        (b'GETSCRIPT "a\\nb"\r\n', "may be escaped"),
        (b'GETSCRIPT "a\x00b"\r\n', "NUL"),
        (b'GETSCRIPT "\xff"\r\n', "UTF-8"),
        (b'GETSCRIPT "a""b"\r\n', "separated by spaces"),
        (b"GETSCRIPT {5+}\r\nab\r\n", "shorter than announced"),
        (b"GETSCRIPT {x}\r\n", "bad literal"),
    ],
)
def test_malformed_commands_are_one_line_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(raw)


def test_pending_literal_and_sasl_answers() -> None:
    assert pending_literal(b'PUTSCRIPT "a" {12+}\r\n') == 12
    assert pending_literal(b'PUTSCRIPT "a" {12}\r\n') == 12
    assert pending_literal(b'PUTSCRIPT "{12}"\r\n') is None
    assert parse_string(b'"AGEAYg=="\r\n') == "AGEAYg=="
    assert parse_string(b"{4+}\r\nabcd\r\n") == "abcd"
    with pytest.raises(ParseError):
        parse_string(b"bare\r\n")


def test_output_strings_and_responses() -> None:
    assert string('say "hi" \\') == b'"say \\"hi\\" \\\\"'
    assert string("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert string("x" * 1025).startswith(b"{1025}\r\n")
    assert response("OK") == b"OK\r\n"
    assert response("NO", "gone", "NONEXISTENT") == b'NO (NONEXISTENT) "gone"\r\n'


def test_random_input_is_a_command_or_a_parse_error() -> None:
    """Seeded random mutations of real commands: only ParseError ever comes out."""
    seeds = [b'PUTSCRIPT "a" {5+}\r\nkeep;\r\n', b'HAVESPACE "x" 10\r\n', b'NOOP "t"\r\n', b"{3}\r\nabc\r\n"]
    rng = random.Random(5804)
    alphabet = b'"\\{}+ \r\n\x00\xff0123456789aZ'
    for _ in range(5000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data.insert(rng.randint(0, len(data)), rng.choice(alphabet))
            if rng.random() < 0.3 and len(data) > 1:
                del data[rng.randrange(len(data))]
        for call in (parse, parse_string, pending_literal):
            try:
                call(bytes(data))
            except ParseError:
                pass
