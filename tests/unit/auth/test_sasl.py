"""SASL PLAIN decoding shared by IMAP, ManageSieve and POP3 (RFC 4616)."""

from __future__ import annotations

import base64

import pytest

from relentad.auth import sasl


def test_plain_gives_authcid_and_password() -> None:
    assert sasl.plain(b"\0ann@example.org\0secret") == ("ann@example.org", "secret")
    assert sasl.plain(b"ANN@example.org\0ann@example.org\0p\xc3\xa9") == ("ann@example.org", "pé")


@pytest.mark.parametrize(
    ("response", "text"),
    [
        (b"ann\0secret", "authzid NUL authcid NUL password"),
        (b"\0ann\0\xff", "must be UTF-8"),
    ],
)
def test_malformed_plain(response: bytes, text: str) -> None:
    with pytest.raises(sasl.SaslError, match=text) as caught:
        sasl.plain(response)
    assert not caught.value.authorization


def test_another_users_authzid_is_an_authorization_error() -> None:
    with pytest.raises(sasl.SaslError) as caught:
        sasl.plain(b"bob\0ann\0secret")
    assert caught.value.authorization


def test_base64_is_strict() -> None:
    assert sasl.decode_base64(base64.b64encode(b"\0a\0b")) == b"\0a\0b"
    assert sasl.decode_base64("AGEAYg==") == b"\0a\0b"
    for bad in (b"AGEA Yg==", "é", b"AGE"):
        with pytest.raises(sasl.SaslError, match="not valid base64"):
            sasl.decode_base64(bad)
