"""TOTP (RFC 6238) and HOTP (RFC 4226) against the RFCs' test vectors; base32 secrets, the otpauth URI, the
replay and window rules, recovery codes and the account pages' session cookies, on a migrated database."""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path

import pytest

from relentad.accountpage import qr, sessions
from relentad.auth import totp
from relentad.httpserver import Request
from relentad.store import db
from tests.support.store import database_with

SHA1 = b"12345678901234567890"
SHA256 = b"12345678901234567890123456789012"
SHA512 = b"1234567890123456789012345678901234567890123456789012345678901234"

# RFC 6238 Appendix B: (time, SHA1, SHA256, SHA512), 8 digits
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
# RFC 4226 Appendix D: HOTP of counters 0-9
RFC4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]


@pytest.mark.parametrize(("when", "sha1", "sha256", "sha512"), RFC6238)
def test_rfc6238_vectors(when: int, sha1: str, sha256: str, sha512: str) -> None:
    assert totp.totp(SHA1, when, 8, "sha1") == sha1
    assert totp.totp(SHA256, when, 8, "sha256") == sha256
    assert totp.totp(SHA512, when, 8, "sha512") == sha512


def test_rfc4226_vectors() -> None:
    assert [totp.hotp(SHA1, counter) for counter in range(10)] == RFC4226


def test_base32_round_trip_and_typing() -> None:
    key = totp.new_secret()
    assert len(key) == 20
    text = totp.b32(key)
    assert len(text) == 32 and "=" not in text
    spaced = " ".join(text[i : i + 4] for i in range(0, 32, 4)).lower()
    assert totp.from_b32(spaced) == key
    assert totp.from_b32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ") == SHA1  # RFC 4648 §10 alphabet
    assert totp.from_b32("not base32!") is None
    assert totp.from_b32("1111") is None


def test_the_uri_names_the_issuer_and_account() -> None:
    found = urllib.parse.urlsplit(totp.uri(SHA1, "alice@example.test", "mx.example.test"))
    assert (found.scheme, found.netloc, urllib.parse.unquote(found.path)) == (
        "otpauth",
        "totp",
        "/mx.example.test:alice@example.test",
    )
    query = dict(urllib.parse.parse_qsl(found.query))
    assert query == {
        "secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
        "issuer": "mx.example.test",
        "algorithm": "SHA1",
        "digits": "6",
        "period": "30",
    }


def test_one_step_either_side_and_never_an_older_step() -> None:
    now = 1_700_000_000.0
    step = totp.step_of(now)
    for delta in (-1, 0, 1):
        assert totp.match(SHA1, totp.hotp(SHA1, step + delta), now, 0) == step + delta
    assert totp.match(SHA1, totp.hotp(SHA1, step + 2), now, 0) is None
    assert totp.match(SHA1, totp.hotp(SHA1, step - 2), now, 0) is None
    assert totp.match(SHA1, totp.hotp(SHA1, step), now, step) is None, "a used step is refused"
    assert totp.match(SHA1, " " + totp.hotp(SHA1, step)[:3] + " " + totp.hotp(SHA1, step)[3:], now, 0) == step
    for bad in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦"):
        assert totp.match(SHA1, bad, now, 0) is None


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return database_with(tmp_path / "t.db", "a@example.test")


def test_codes_are_used_up(conn: sqlite3.Connection) -> None:
    now = 1_700_000_000.0
    codes = totp.recovery_codes()
    assert len(set(codes)) == totp.RECOVERY_CODES
    with db.transaction(conn):
        totp.enable(conn, 1, SHA1, totp.step_of(now) - 1, codes)
    assert totp.state(conn, 1).recovery_left == 10
    code = totp.totp(SHA1, now)
    with db.transaction(conn):
        assert totp.use(conn, 1, code, now) == "2fa-ok"
        assert totp.use(conn, 1, code, now) is None, "the same code twice"
        assert totp.use(conn, 1, totp.hotp(SHA1, totp.step_of(now) - 1), now) is None, "an earlier step"
        assert totp.use(conn, 1, codes[3].upper().replace("-", " "), now) == "recovery-code-used"
        assert totp.use(conn, 1, codes[3], now) is None, "a recovery code once"
    assert totp.state(conn, 1).recovery_left == 9
    stored = [row[0] for row in conn.execute("SELECT code_hash FROM totp_recovery")]
    assert not any(code.replace("-", "") in h for h in stored for code in codes)
    with db.transaction(conn):
        assert totp.disable(conn, 1)
        assert totp.use(conn, 1, codes[0], now) is None
    assert totp.state(conn, 1) == totp.State(False)


def test_sessions_expire_and_are_stored_hashed(conn: sqlite3.Connection) -> None:
    now = 1_700_000_000.0
    with db.transaction(conn):
        token = sessions.create(conn, 1, "192.0.2.1", now)
    assert len(token) >= 43
    assert conn.execute("SELECT count(*) FROM web_sessions WHERE id_hash = ?", (token,)).fetchone()[0] == 0
    found = sessions.lookup(conn, token, now + 10)
    assert found is not None and found[0].email == "a@example.test" and not found[1]
    assert sessions.lookup(conn, token + "x", now) is None
    assert sessions.lookup(conn, token, now + sessions.IDLE + 1) is None
    with db.transaction(conn):
        sessions.touch(conn, token, now + sessions.IDLE - 10)
    assert sessions.lookup(conn, token, now + sessions.IDLE + 1) is not None, "a request keeps it alive"
    assert sessions.lookup(conn, token, now + sessions.ABSOLUTE + 1) is None
    with db.transaction(conn):
        sessions.end(conn, token)
    assert sessions.lookup(conn, token, now) is None


def test_the_cookie_is_read_among_others() -> None:
    def request(*cookies: str) -> Request:
        return Request("GET", "/", (1, 1), tuple(("cookie", c) for c in cookies))

    assert sessions.cookie_of(request("a=b; __Host-relentad-session=tok; c=d")) == "tok"
    assert sessions.cookie_of(request("a=b", "__Host-relentad-session=tok")) == "tok"
    assert sessions.cookie_of(request("relentad-session=tok")) is None
    assert sessions.cookie_of(request()) is None
    header = sessions.set_cookie("tok")[1]
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in header


def test_the_qr_code_is_inline_svg_the_pages_policy_lets_show() -> None:
    """Paths only: no style attribute (the Content-Security-Policy allows one hashed stylesheet), no script, no
    text of the link (the key is in the modules, not readable in the markup)."""
    import segno

    link = totp.uri(SHA1, "alice@example.test", "mx.example.test")
    drawn = qr.svg(link)
    assert drawn.startswith("<svg ") and drawn.endswith("</svg>")
    assert "style" not in drawn and "script" not in drawn and "GEZDGNBV" not in drawn and "href" not in drawn
    code = segno.make(link, error="m")
    assert code.error == "M" and f'width="{(code.symbol_size()[0]) * 4}"' in drawn
