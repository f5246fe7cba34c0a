"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3): known vectors, strictness, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relentad.imap import mutf7

VECTORS = [
    ("INBOX", "INBOX"),
    ("", ""),
    ("&", "&-"),
    ("Tom & Jerry", "Tom &- Jerry"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
    ("€", "&IKw-"),
    ("😀", "&2D3eAA-"),
    ("a\tb", "a&AAk-b"),
    ("Ärger & Ölung", "&AMQ-rger &- &ANY-lung"),
]


@pytest.mark.parametrize(("text", "wire"), VECTORS)
def test_encode_known_vectors(text: str, wire: str) -> None:
    assert mutf7.encode(text) == wire


@pytest.mark.parametrize(("text", "wire"), VECTORS)
def test_decode_known_vectors(text: str, wire: str) -> None:
    assert mutf7.decode(wire) == text


@pytest.mark.parametrize(
    "wire",
    [
        "&",  # unterminated
        "&Jjo",  # unterminated run
        "&Jjo!-",  # invalid base64 character
        "&AGE-",  # "a" encoded although it is printable ASCII
        "&ACY-",  # "&" encoded instead of "&-"
        "&Jjo-&Jjo-",  # two adjacent runs: not canonical
        "&AM-",  # odd number of UTF-16 bytes
        "&2D0-",  # lone high surrogate
        "&3gA-",  # lone low surrogate
        "&AMQB-",  # leftover non-zero bits
        "caf\u00e9",  # raw 8-bit character
        "a\x01b",  # raw control character
        "&Jjo=-",  # padding is not allowed
        "&Jjo/-",  # "/" is written "," in modified base64
    ],
)
def test_decode_rejects_malformed(wire: str) -> None:
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.decode(wire)


def test_encode_rejects_lone_surrogate() -> None:
    with pytest.raises(mutf7.MUTF7Error):
        mutf7.encode("bad\udcff")


def test_error_is_value_error() -> None:
    assert issubclass(mutf7.MUTF7Error, ValueError)


@given(st.text(alphabet=st.characters(max_codepoint=0xD7FF) | st.characters(min_codepoint=0xE000)))
def test_round_trip(text: str) -> None:
    wire = mutf7.encode(text)
    assert wire.isascii()
    assert all(" " <= c <= "~" for c in wire)
    assert mutf7.decode(wire) == text


@given(st.text())
def test_decode_never_raises_anything_else(wire: str) -> None:
    try:
        mutf7.decode(wire)
    except mutf7.MUTF7Error:
        pass
