"""Two-factor login on the account pages end to end: the real daemon's HTTPS listener and http.client as the
browser; the codes computed here from the secret the page shows, as a phone's authenticator app would."""

from __future__ import annotations

import html
import json
import re
import sqlite3
import threading
import time
import urllib.parse

import pytest

from relentad.auth import totp
from tests.e2e.conftest import MakeDaemon
from tests.e2e.test_account_page import ORIGIN, Browser, imap_login
from tests.e2e.test_carddav import ALICE, basic
from tests.e2e.test_web import web_daemon
from tests.support.daemon import PASSWORD, free_port

COOKIE = "__Host-relentad-session"


@pytest.fixture
def browser(make_daemon: MakeDaemon) -> Browser:
    settings = {"dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5}}
    return Browser(web_daemon(make_daemon, settings), free_port())


def post(browser: Browser, path: str, fields: dict[str, str], cookie: str = "") -> tuple[int, dict[str, str], bytes]:
    """A form POST of the page's own form: Basic unless ``cookie`` is given."""
    headers = {"Content_Type": "application/x-www-form-urlencoded", "Origin": ORIGIN, "Sec_Fetch_Site": "same-origin"}
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    return browser.request("POST", path, urllib.parse.urlencode(fields), auth="" if cookie else None, **headers)


def get(browser: Browser, path: str, cookie: str) -> tuple[int, dict[str, str], bytes]:
    return browser.request("GET", path, auth="", Cookie=f"{COOKIE}={cookie}")


def token_of(body: bytes) -> str:
    found = re.search(rb'name="token" value="([^"]+)"', body)
    assert found is not None, body
    return found.group(1).decode()


def cookie_of(headers: dict[str, str]) -> str:
    found = re.match(COOKIE + r"=([^;]+);", headers["set-cookie"])
    assert found is not None, headers
    return found.group(1)


def enroll(browser: Browser) -> tuple[bytes, str, list[str]]:
    """Turn two-factor login on over Basic: (the secret, the session the answer opens, the recovery codes)."""
    status, _, body = browser.request("GET", "/account/2fa")
    assert status == 200 and b"Two-factor login is <strong>off</strong>" in body
    secret = re.search(rb'class="secret">([A-Z2-7]{32})<', body)
    link = re.search(rb'href="(otpauth://totp/[^"]+)"', body)
    assert secret is not None and link is not None
    assert re.search(rb'<p class="qr"><svg width="\d+" height="\d+" class="segno">', body), (
        "the QR code (segno, a dependency)"
    )
    assert totp.b32(totp.from_b32(secret.group(1).decode()) or b"") == secret.group(1).decode()
    assert f"secret={secret.group(1).decode()}" in html.unescape(link.group(1).decode())
    key = totp.from_b32(secret.group(1).decode())
    assert key is not None
    fields = {"token": token_of(body), "action": "enable", "secret": secret.group(1).decode()}
    wrong = str((int(totp.totp(key, time.time())) + 500_000) % 1_000_000).zfill(6)
    status, _, body = post(browser, "/account/2fa", {**fields, "code": wrong})
    assert status == 400 and b"The code is not right" in body and secret.group(1) in body, "the same key again"
    status, headers, body = post(browser, "/account/2fa", {**fields, "code": totp.totp(key, time.time())})
    assert status == 200 and b"Two-factor login is on." in body, body
    codes = re.findall(r"<li><code>([a-z2-9-]{19})</code></li>", body.decode())
    assert len(codes) == 10
    return key, cookie_of(headers), codes


def login(browser: Browser, password: str, code: str = "") -> tuple[int, dict[str, str], bytes]:
    status, _, body = browser.request("GET", "/account/login", auth="")
    assert status == 200 and b'autocomplete="one-time-code"' in body
    fields = {"token": token_of(body), "email": ALICE, "password": password, "code": code}
    headers = {"Content_Type": "application/x-www-form-urlencoded", "Origin": ORIGIN, "Sec_Fetch_Site": "same-origin"}
    return browser.request("POST", "/account/login", urllib.parse.urlencode(fields), auth="", **headers)


def next_code(key: bytes) -> str:
    """A code for a step not used yet: the next one (within the ±1 step the server takes)."""
    return totp.hotp(key, totp.step_of(time.time()) + 1)


def test_enroll_log_in_with_a_code_replay_recovery_and_admin_reset(browser: Browser) -> None:
    key, session, codes = enroll(browser)
    refused = browser.request("GET", "/account/")
    wrong = browser.request("GET", "/account/", auth=basic(password="wrong password"))
    assert refused[0] == 401 and b'href="/account/login"' in refused[2], "the password alone no longer opens them"
    assert (refused[0], refused[1]["www-authenticate"], refused[2]) == (
        wrong[0],
        wrong[1]["www-authenticate"],
        wrong[2],
    )
    status, _, body = get(browser, "/account/", session)
    assert status == 200 and b"Log out</button>" in body, "the browser that enrolled is logged in"
    imap_login(browser, PASSWORD)  # mail protocols are not affected

    status, headers, _ = post(browser, "/account/logout", {"token": token_of(body)}, session)
    assert status == 303 and headers["location"] == "/account/login?out" and "Max-Age=0" in headers["set-cookie"]
    assert b"You are logged out." in browser.request("GET", headers["location"], auth="")[2]
    status, headers, _ = get(browser, "/account/", session)
    assert status == 303 and headers["location"] == "/account/login", "the session ended"

    status, headers, body = login(browser, PASSWORD)
    assert status == 403 and b"not right" in body and "set-cookie" not in headers, "the password alone"
    assert login(browser, "wrong password", next_code(key))[0] == 403
    code = next_code(key)
    status, headers, _ = login(browser, PASSWORD, code)
    assert status == 303 and headers["location"] == "/account/"
    assert all(a in headers["set-cookie"] for a in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"))
    session = cookie_of(headers)
    status, _, body = get(browser, "/account/logins", session)
    notes = [row[4] for row in re.findall(r"<tr>" + "<td>(.*?)</td>" * 6 + "</tr>", body.decode())]
    assert status == 200 and {"code right", "code wrong or missing", "two-factor login on"} <= set(notes), notes
    assert login(browser, PASSWORD, code)[0] == 403, "the same code a second time"
    status, headers, _ = login(browser, PASSWORD, codes[0].upper())
    assert status == 303 and headers["location"] == "/account/"
    assert login(browser, PASSWORD, codes[0])[0] == 403, "a recovery code works once"

    status = browser.daemon.cli("user", "2fa", "status", ALICE).stdout
    assert (
        "two-factor login on since" in status and "9 recovery codes left" in status and "2 browser sessions" in status
    )
    assert totp.b32(key) not in status
    assert json.loads(browser.daemon.cli("user", "show", ALICE, "--json").stdout)["two_factor"] is True
    assert "two-factor login: on" in browser.daemon.cli("user", "show", ALICE).stdout
    conn = sqlite3.connect(browser.daemon.db_path)
    rows = conn.execute("SELECT result, reason FROM login_history WHERE protocol = 'web' AND reason LIKE '%2fa%'")
    reasons = rows.fetchall()
    recovered = conn.execute("SELECT result FROM login_history WHERE reason = 'recovery-code-used'").fetchall()
    conn.close()
    assert reasons.count(("success", "2fa-ok")) == 1 and ("success", "2fa-enabled") in reasons
    assert reasons.count(("failure", "2fa-failed")) == 3 and recovered == [("success",)]
    assert ("failure", "2fa-required") in reasons, "the Basic login refused for want of a code"

    assert (
        "two-factor login off (2 browser sessions ended)" in browser.daemon.cli("user", "2fa", "disable", ALICE).stdout
    )
    assert get(browser, "/account/", session)[0] == 303
    assert browser.request("GET", "/account/")[0] == 200, "HTTP Basic again"
    assert "two-factor login off" in browser.daemon.cli("user", "2fa", "status", ALICE).stdout


def enrolled_form(browser: Browser, action: str) -> tuple[bytes, str, list[str], dict[str, str]]:
    """Enroll, then check that the two-factor page's ``action`` refuses a wrong code: (the secret, the session, the
    recovery codes, the form's fields for the right code)."""
    key, session, codes = enroll(browser)
    status, _, body = get(browser, "/account/2fa", session)
    assert status == 200 and b"10 recovery codes left" in body
    fields = {"token": token_of(body), "action": action}
    status, _, body = post(browser, "/account/2fa", {**fields, "code": "000000"}, session)
    assert status == 403 and b"The code is not right." in body and b"<li><code>" not in body
    return key, session, codes, fields


def test_turning_it_off_needs_a_code_and_a_wrong_one_counts_as_a_failed_login(browser: Browser) -> None:
    key, session, _, fields = enrolled_form(browser, "disable")
    status, _, body = post(browser, "/account/2fa", {**fields, "code": next_code(key)}, session)
    assert status == 200 and b"Two-factor login is off." in body and b"<strong>off</strong>" in body
    assert browser.request("GET", "/account/")[0] == 200
    cross = {"Content_Type": "application/x-www-form-urlencoded", "Origin": "https://evil.test"}
    body = urllib.parse.urlencode({"token": token_of(body), "email": ALICE, "password": PASSWORD})
    assert browser.request("POST", "/account/login", body, auth="", **cross)[0] == 403, "a cross-site login"


def test_new_recovery_codes_need_a_code_and_void_the_old_ones(browser: Browser) -> None:
    key, session, old, fields = enrolled_form(browser, "recovery")
    assert b"Make new recovery codes" in get(browser, "/account/2fa", session)[2]
    status, _, body = post(browser, "/account/2fa", {**fields, "code": old[0]}, session)
    assert status == 200 and b"New recovery codes: the old ones are void." in body, body
    new = re.findall(r"<li><code>([a-z2-9-]{19})</code></li>", body.decode())
    assert len(new) == 10 and not set(new) & set(old) and b"10 recovery codes left" in body
    assert get(browser, "/account/", session)[0] == 200, "this browser's session goes on"
    assert login(browser, PASSWORD, old[1])[0] == 403, "an old code no longer logs in"
    assert login(browser, PASSWORD, new[0])[0] == 303
    status, _, body = post(browser, "/account/2fa", {**fields, "code": next_code(key)}, session)
    assert status == 200 and len(re.findall(r"<li><code>", body.decode())) == 10, "a TOTP code does it too"
    status, _, body = get(browser, "/account/logins", session)
    notes = [row[4] for row in re.findall(r"<tr>" + "<td>(.*?)</td>" * 6 + "</tr>", body.decode())]
    assert notes.count("new recovery codes") == 2, notes
    assert "10 recovery codes left" in browser.daemon.cli("user", "2fa", "status", ALICE).stdout


def test_the_form_logs_in_an_account_without_two_factor_and_basic_still_works(browser: Browser) -> None:
    assert browser.request("GET", "/account/")[0] == 200
    status, headers, body = browser.request("GET", "/account/", auth="")
    assert status == 401 and headers["www-authenticate"].startswith("Basic") and b"/account/login" in body
    status, headers, _ = login(browser, PASSWORD)
    assert status == 303
    session = cookie_of(headers)
    status, _, body = get(browser, "/account/password", session)
    assert status == 200 and b"Log out</button>" in body
    assert post(browser, "/account/logout", {"token": token_of(body)})[0] == 400, "HTTP Basic has no logout"
    status, _, answer = post(browser, "/account/password", {"token": token_of(body), "current": "wrong"}, session)
    assert status == 400 and b"Log out</button>" in answer, "a form's answer in a cookie session keeps Log out"
    status, _, answer = post(browser, "/account/app-passwords", {"token": "stale", "action": "add"}, session)
    assert status == 403 and b"Log out</button>" in answer
    new = "another pass phrase"
    fields = {"token": token_of(body), "current": PASSWORD, "new": new, "again": new}
    assert post(browser, "/account/password", fields, session)[0] == 303
    assert get(browser, "/account/", session)[0] == 200, "the session that changed the password goes on"
    assert browser.request("GET", "/account/", auth=basic(password=new))[0] == 200
    browser.daemon.cli("user", "passwd", "--password-stdin", ALICE, input="the admin's new one\n")
    assert get(browser, "/account/", session)[0] == 303, "the admin's new password ends the browser sessions"
    failed = browser.daemon.cli("user", "2fa", "status", "nobody@example.test", check=False)
    assert failed.returncode != 0 and failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    assert '"enabled": false' in browser.daemon.cli("user", "2fa", "status", ALICE, "--json").stdout


def test_wrong_codes_count_for_the_login_throttle(make_daemon: MakeDaemon) -> None:
    settings = {"dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5}, "auth": {"failures_per_account": 3}}
    browser = Browser(web_daemon(make_daemon, settings), free_port())
    key, _, _ = enroll(browser)
    answers = [login(browser, PASSWORD, "000000")[0] for _ in range(4)]
    assert answers == [403, 403, 403, 429], "the right password with wrong codes: failed logins"
    assert login(browser, PASSWORD, next_code(key))[0] == 429, "throttled before the code is looked at"


def test_one_code_or_recovery_code_opens_one_of_several_racing_logins(browser: Browser) -> None:
    """The step moves forward, and a recovery code is deleted, in the statement that checks it."""
    key, _, codes = enroll(browser)
    for code in (next_code(key), codes[0]):
        answers: list[int] = []

        def race(code: str = code, answers: list[int] = answers) -> None:
            answers.append(login(browser, PASSWORD, code)[0])

        racers = [threading.Thread(target=race) for _ in range(4)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        assert sorted(answers) == [303, 403, 403, 403], code
