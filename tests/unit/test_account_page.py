"""The account pages' pure parts: CSRF tokens, the cross-origin check, the secret file, and the HTML (escaped,
its stylesheet allowed by the policy's hash); and the export's stream on a real SQLite file."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import re
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, cast

import pytest

from relentad.accountpage import csrf, export, pages, server, sessions
from relentad.accountpage.server import AccountPages, handles
from relentad.auth import totp
from relentad.auth.apppasswords import AppPassword
from relentad.auth.authenticator import Authenticator
from relentad.auth.authenticator import Login as Account
from relentad.auth.basic import BasicLogin, Session
from relentad.config import Config, ServerConfig, WebConfig
from relentad.errors import StoreUnavailable
from relentad.httpserver import Request
from relentad.lifecycle.activity import Day, Login
from relentad.message import parse
from relentad.quota import Usage
from relentad.store import accounts, db, mailboxes, messages
from relentad.store.imapview import ReaderPool
from tests.support.store import database_with

SECRET = b"k" * 32
NOW = 1_800_000_000.0


def test_a_token_is_good_for_its_account_and_a_while_only() -> None:
    token = csrf.make_token(SECRET, 7, NOW)
    assert csrf.check_token(SECRET, 7, token, NOW) and csrf.check_token(SECRET, 7, token, NOW + csrf.MAX_AGE)
    assert not csrf.check_token(SECRET, 8, token, NOW)  # another account
    assert not csrf.check_token(b"j" * 32, 7, token, NOW)  # another server
    assert not csrf.check_token(SECRET, 7, token, NOW + csrf.MAX_AGE + 1)  # too old
    assert not csrf.check_token(SECRET, 7, token, NOW - 3600)  # from the future
    raw = bytearray(base64.urlsafe_b64decode(token + "=="))
    raw[3] ^= 1  # another time under the same MAC
    assert not csrf.check_token(SECRET, 7, base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("="), NOW)
    for garbage in ("", "x", "é" * 10, "A" * 54, token + "AAAA", "!!!!"):
        assert not csrf.check_token(SECRET, 7, garbage, NOW)


def test_the_secret_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "web-secret"
    first = csrf.load_secret(path)
    assert len(first) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert csrf.load_secret(path) == first
    path.write_bytes(b"short")
    assert csrf.load_secret(path) != first and len(path.read_bytes()) == 32


def post(**fields: str) -> Request:
    named = tuple((name.replace("_", "-").lower(), value) for name, value in fields.items())
    return Request("POST", "/account/password", (1, 1), (("host", "mx.example.test:8443"), *named))


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({}, False),  # no browser: the token decides
        ({"Origin": "https://mx.example.test:8443", "Sec_Fetch_Site": "same-origin"}, False),
        ({"Origin": "https://MX.example.test:8443"}, False),
        ({"Origin": "null", "Sec_Fetch_Site": "same-origin"}, False),  # no-referrer pages send null
        ({"Referer": "https://mx.example.test:8443/account/password"}, False),
        ({"Origin": "null"}, True),
        ({"Origin": "https://evil.test"}, True),
        ({"Origin": "http://mx.example.test:8443"}, True),
        ({"Origin": "https://mx.example.test"}, True),  # another port: another origin
        ({"Sec_Fetch_Site": "same-site"}, True),
        ({"Sec_Fetch_Site": "cross-site", "Origin": "https://mx.example.test:8443"}, True),
        ({"Referer": "https://evil.test/mx.example.test:8443"}, True),
    ],
)
def test_cross_origin(fields: dict[str, str], refused: bool) -> None:
    assert (csrf.cross_origin(post(**fields)) is not None) is refused


def test_pages_escape_everything_and_the_style_matches_its_hash() -> None:
    hostile = '<script>alert("x")</script>'
    usage = Usage(
        account_id=1, bytes=2048, messages=3, limit=0, daily_send=0, hourly_send=10, sent_today=2, sent_this_hour=1
    )
    overview = pages.overview(pages.Overview("a@b.test", hostile, usage, [(hostile, 3, 2048)]))
    logins = pages.logins([Login(NOW, "<ip>", "imap", "success")], 30)
    days = pages.activity([Day("2027-01-15", 1, 0, 10, 0, 0)], [], dict.fromkeys(
        ("received", "sent", "bytes_stored", "logins", "failed_logins"), 0))  # fmt: skip
    form = pages.password_form('"><b>', error=hostile)
    page = pages.page(hostile, "a@b.test", hostile, "", overview + logins + days + form).decode()
    assert "<script>" not in page and "<ip>" not in page and '"><b>' not in page
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") == 5  # title, header, h1, box, error
    assert "<td>1 of 10 (10.0 %)</td>" in page and "<td>2 (no limit)</td>" in page  # this hour, today
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"sha256-{digest}" == pages.STYLE_HASH and "<script" not in page.lower()


def test_the_app_passwords_page_escapes_names_and_shows_a_new_password_once() -> None:
    hostile = '"><script>x</script>'
    entry = AppPassword(1, hostile, ("imap", "smtp"), NOW, NOW, "imap", "<ip>")
    html = pages.app_passwords(pages.AppPasswords('"t', [entry], only=True, created=(hostile, "abcd-efgh-jkmn-pqrs")))
    assert "<script>" not in html and "<ip>" not in html and 'value=""t"' not in html
    assert html.count("&quot;&gt;&lt;script&gt;") == 3  # the row, its Revoke form, the note
    assert "<code>abcd-efgh-jkmn-pqrs</code>" in html and "App passwords only" in html
    assert "imap, smtp" in html and "2027-01-15" in html
    again = pages.app_passwords(pages.AppPasswords("t", [entry], only=False))
    assert "abcd-efgh" not in again and "App passwords only" not in again
    assert "No app passwords yet" in pages.app_passwords(pages.AppPasswords("t", [], only=False))


def test_the_pages_name_every_protocol_a_password_opens() -> None:
    for text in (pages.logins([], 30), pages.password_form("t")):
        assert all(name in text for name in ("IMAP", "POP3", "SMTP", "ManageSieve", "CardDAV"))


def test_the_routes_and_the_switch() -> None:
    assert handles(Request("GET", "/account", (1, 1))) and handles(Request("GET", "/account/x", (1, 1)))
    assert not handles(Request("GET", "/accounts", (1, 1)))
    config = Config(server=ServerConfig(hostname="mx.example.test"), web=WebConfig(account_page=False))
    site = AccountPages(cast(Any, None), cast(Any, None), cast(Any, None), lambda: config, lambda domain: True)
    request = Request("GET", "/account/", (1, 1), (("host", "mx.example.test"),))
    response = asyncio.run(site.respond(request, Session("127.0.0.1")))
    assert response.status == 404 and ("X-Frame-Options", "DENY") in response.headers


async def test_the_export_reaches_the_loop_in_small_pieces_whatever_a_message_deflates_to(tmp_path: Path) -> None:
    """One message that deflates to megabytes was one queued piece of that size (four queued: four times it)."""
    conn = database_with(tmp_path / "t.db", "a@example.test")
    account = accounts.get_account(conn, "a@example.test").id
    inbox = mailboxes.find(conn, account, "INBOX")
    assert inbox is not None
    raw = b"Subject: photos\r\n\r\n" + base64.encodebytes(os.urandom(3_000_000)).replace(b"\n", b"\r\n")
    with db.transaction(conn):
        blob = messages.store_blob(conn, raw, parse(raw).to_json())
        messages.append(conn, inbox, blob, prefix=b"", size=len(raw), internaldate=1e9)
    conn.close()
    response = export.response(tmp_path / "t.db", Account(account, "a@example.test"))
    assert response.stream is not None
    pieces = [piece async for piece in response.stream()]
    assert max(map(len, pieces)) <= export.CHUNK
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.testzip() is None
    mbox = archive.read("relentad-export-a@example.test/mail/INBOX.mbox")
    assert mbox.startswith(b"From MAILER-DAEMON ") and raw in mbox


class _Accepts:
    """An authenticator that takes any password (the Basic login path is tested end to end)."""

    def __init__(self, account_id: int) -> None:
        self.account_id = account_id

    async def verify(self, user: str, password: str, ip: str, protocol: str) -> Account:
        return Account(self.account_id, user)


async def test_a_page_is_read_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The overview sums the size of every message of the account: on the loop's thread it held up every IMAP and
    SMTP session for as long as that takes."""
    conn = database_with(tmp_path / "relentad.db", "a@example.test")
    account = accounts.get_account(conn, "a@example.test").id
    conn.close()
    threads = []
    overview = server._overview

    def recorded(*args: Any) -> pages.Overview:
        threads.append(threading.current_thread())
        return overview(*args)

    monkeypatch.setattr(server, "_overview", recorded)
    config = Config(server=ServerConfig(hostname="mx.example.test", data_dir=str(tmp_path)))
    store, readers = db.Store(tmp_path / "relentad.db"), ReaderPool(tmp_path / "relentad.db")
    try:
        basic = BasicLogin(store, cast(Any, _Accepts(account)), lambda: "mx.example.test")
        site = AccountPages(store, basic, readers, lambda: config, lambda domain: False)
        credentials = base64.b64encode(b"a@example.test:secret").decode()
        fields = (("host", "mx.example.test"), ("authorization", f"Basic {credentials}"))
        response = await site.respond(Request("GET", "/account/", (1, 1), fields), Session("127.0.0.1"))
    finally:
        readers.close()
        store.close()
    assert response.status == 200 and b"a@example.test" in response.body
    assert threads and threading.main_thread() not in threads


def test_the_dev_setup_points_at_an_account_page_address_that_is_served() -> None:
    """scripts/run printed https://127.0.0.1:2443/account/, a Host the pages refuse (404): they answer by name."""
    from relentad import devsetup
    from relentad.config import ListenConfig, TLSConfig

    config = Config(
        server=ServerConfig(hostname="localhost"),
        listen=ListenConfig(https="127.0.0.1:2443"),
        tls=TLSConfig(cert="c.pem", key="k.pem"),
    )
    site = AccountPages(cast(Any, None), cast(Any, None), cast(Any, None), lambda: config, lambda domain: False)
    urls = [line.strip() for line in devsetup.connection_help(config, "pw") if line.strip().endswith("/account/")]
    assert urls == ["https://localhost:2443/account/"]
    assert site.serves("localhost") and not site.serves("127.0.0.1")


def test_the_login_and_two_factor_pages_escape_what_came_from_outside() -> None:
    hostile = '<script>alert(1)</script>"'
    page = pages.login_page(hostile, error=hostile, email=hostile).decode()
    assert "<script>" not in page and "&lt;script&gt;" in page
    data = pages.TwoFactor(hostile, False, secret=hostile, uri=hostile, error=hostile, note=hostile, codes=(hostile,))
    assert "<script>" not in pages.two_factor(data)


async def test_logging_out_and_turning_two_factor_off_on_a_full_disk_answer_503(tmp_path: Path) -> None:
    """Both wrote without a guard: a full disk was a traceback and a 500 (the other forms answer 503)."""
    conn = database_with(tmp_path / "relentad.db", "a@example.test")
    account = accounts.get_account(conn, "a@example.test").id
    key = totp.new_secret()
    with db.transaction(conn):
        totp.enable(conn, account, key, 0, [])
        cookie = sessions.create(conn, account, "127.0.0.1")
    config = Config(server=ServerConfig(hostname="mx.example.test", data_dir=str(tmp_path)))
    store = db.Store(tmp_path / "relentad.db")
    writes: list[object] = []

    async def write(job: Any) -> Any:  # the first write (the code used up) goes through, then the disk is full
        writes.append(job)
        if len(writes) > 1:
            raise StoreUnavailable("disk full")
        with db.transaction(conn):
            return job(conn)

    store.write = write  # type: ignore[method-assign]
    try:
        basic = BasicLogin(store, Authenticator(store, lambda: config.auth), lambda: "mx.example.test")
        site = AccountPages(store, basic, cast(Any, None), lambda: config, lambda domain: False)
        token = csrf.make_token(site.secret(), account, time.time())
        fields = (
            ("host", "mx.example.test"),
            ("cookie", f"{sessions.COOKIE}={cookie}"),
            ("content-type", "application/x-www-form-urlencoded"),
        )
        code = totp.hotp(key, totp.step_of(time.time()))
        body = f"token={token}&action=disable&code={code}".encode()
        off = await site.respond(Request("POST", "/account/2fa", (1, 1), fields, body), Session("127.0.0.1"))
        out = await site.respond(
            Request("POST", "/account/logout", (1, 1), fields, f"token={token}".encode()), Session("127.0.0.1")
        )
    finally:
        store.close()
    assert off.status == 503 and out.status == 503
    assert not any(name.lower() == "set-cookie" for name, _ in out.headers), "the session goes on"
    assert sessions.lookup(conn, cookie) is not None
    conn.close()
