"""App passwords end to end: the real daemon, made with the CLI, used by imaplib, smtplib (submission), poplib,
a ManageSieve socket and HTTP Basic (CardDAV); scopes, revocation (live sessions end), ``app_passwords_only``, the
login history and the account pages (which take only the account's password and manage app passwords)."""

from __future__ import annotations

import base64
import imaplib
import json
import poplib
import re
import smtplib
import socket
import time
import urllib.parse

import pytest

from relentad.auth import apppasswords
from relentad.store import db
from relentad.tls import make_self_signed
from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_account_page import ORIGIN, Browser
from tests.e2e.test_carddav import BOOK, basic
from tests.support.daemon import PASSWORD, Daemon, free_port, password_hash

ALICE = "alice@example.test"
NAMES = ["mx.example.test", "localhost"]


@pytest.fixture
def relentad(make_daemon: MakeDaemon) -> Daemon:
    settings = {
        "auth": {"plaintext_loopback": True},
        "mailauth": {"verify": False},
        "dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5},
    }
    daemon = make_daemon(settings=settings, submission=True, imap=True, pop3=True, managesieve=True, web=True)
    tls_dir = daemon.root / "data" / "tls"
    make_self_signed(tls_dir / "cert.pem", tls_dir / "key.pem", NAMES)
    daemon.write_config()
    return provision(daemon).start()


def add(daemon: Daemon, name: str, *scope: str) -> str:
    """A new app password for Alice, made by the CLI (which prints it once)."""
    args = ["user", "app-password", "add", ALICE, name] + (["--scope", ",".join(scope)] if scope else [])
    out = daemon.cli(*args).stdout
    found = re.search(r"^password: ([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})$", out, re.M)
    assert found is not None, out
    return found.group(1)


def given(daemon: Daemon, name: str, password: str, *scope: str) -> str:
    """``password`` as Alice's app password ``name``, written as the CLI would (its argon2 hash made once a run)."""
    normalized = apppasswords.normalize(password)
    assert normalized is not None
    conn = db.open_database(daemon.db_path)
    with db.transaction(conn):
        apppasswords.add(conn, 1, name, scope or apppasswords.SCOPES, password_hash(normalized), normalized)
    conn.close()
    return password


def imap(daemon: Daemon, password: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=10)
    client.login(ALICE, password)
    return client


def submission(daemon: Daemon, password: str) -> smtplib.SMTP:
    client = smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10)
    client.login(ALICE, password)
    return client


def pop3(daemon: Daemon, password: str) -> poplib.POP3:
    client = poplib.POP3(daemon.host, daemon.pop3_port, timeout=10)
    client.user(ALICE)
    client.pass_(password)
    return client


def sieve_login(daemon: Daemon, password: str) -> bytes:
    """The answer to AUTHENTICATE "PLAIN" with ``password`` (OK or NO line)."""
    with socket.create_connection((daemon.host, daemon.managesieve_port), timeout=10) as sock:
        reader = sock.makefile("rb")
        while not reader.readline().startswith(b"OK"):
            pass
        token = base64.b64encode(f"\0{ALICE}\0{password}".encode()).decode()
        sock.sendall(f'AUTHENTICATE "PLAIN" "{token}"\r\n'.encode())
        return reader.readline()


def listed(daemon: Daemon) -> dict[str, dict[str, object]]:
    return {p["name"]: p for p in json.loads(daemon.cli("user", "app-password", "list", ALICE, "--json").stdout)}


def test_an_app_password_logs_in_everywhere_its_scope_allows(relentad: Daemon) -> None:
    everywhere = add(relentad, "laptop")
    reading = given(relentad, "mbsync cron", "mbsy-ncro-nabc-defg", "imap")
    typed = everywhere.replace("-", "").capitalize()  # a phone's keyboard: no hyphens, a capital first letter
    imap(relentad, typed).logout()
    plain = imaplib.IMAP4(relentad.host, relentad.imap_port, timeout=10)
    assert plain.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{everywhere}".encode())[0] == "OK"
    plain.logout()
    submission(relentad, everywhere).quit()
    pop3(relentad, everywhere.replace("-", " ")).quit()
    assert sieve_login(relentad, everywhere).startswith(b"OK")
    dav = Browser(relentad, free_port())
    assert dav.request("PROPFIND", BOOK, auth=basic(ALICE, everywhere), Depth="0")[0] == 207

    imap(relentad, reading).logout()
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        submission(relentad, reading)
    assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (535, b"5.7.8"), "as a wrong password"
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
        pop3(relentad, reading)
    assert sieve_login(relentad, reading).startswith(b"NO")
    assert dav.request("PROPFIND", BOOK, auth=basic(ALICE, reading), Depth="0")[0] == 401
    imap(relentad, PASSWORD).logout()  # the account's password still works

    history = relentad.query(
        "SELECT protocol, result, reason, app_password FROM login_history WHERE login = ? ORDER BY id", ALICE
    )
    rows = [tuple(row) for row in history]
    protocols = ("imap", "imap", "smtp", "pop3", "managesieve", "carddav")
    assert [(r[0], r[1], r[3]) for r in rows[:6]] == [(p, "success", "laptop") for p in protocols]
    assert ("smtp", "failure", "app-password-scope", "mbsync cron") in rows
    assert rows[-1] == ("imap", "success", "", "")
    assert "login failed protocol=smtp" in relentad.log() and "reason=app-password-scope" in relentad.log()
    shown = listed(relentad)
    assert shown["laptop"]["last_protocol"] == "carddav" and shown["laptop"]["last_ip"] == "127.0.0.1"
    assert shown["mbsync cron"]["scope"] == ["imap"] and shown["mbsync cron"]["last_protocol"] == "imap"
    assert "password_hash" not in shown["laptop"]
    assert all(everywhere.replace("-", "") not in str(row) for row in relentad.query("SELECT * FROM app_passwords"))


def test_revoking_ends_live_sessions_and_refuses_the_next_login(relentad: Daemon) -> None:
    """Every kind of session logged in with the app password ends (an idling IMAP one at the next change it would
    be told about); one with the account's password goes on."""
    phone = given(relentad, "phone", "phon-e234-5678-9abc")
    imap(relentad, phone).logout()  # a second login below comes from the credential cache
    session = imap(relentad, phone)
    session.select("INBOX")
    other = imap(relentad, PASSWORD)
    other.select("INBOX")
    mail = submission(relentad, phone)
    box = pop3(relentad, phone)
    sieve = socket.create_connection((relentad.host, relentad.managesieve_port), timeout=10)
    scripts = sieve.makefile("rb")
    while not scripts.readline().startswith(b"OK"):
        pass
    plain = base64.b64encode(f"\0{ALICE}\0{phone}".encode()).decode()
    sieve.sendall(f'AUTHENTICATE "PLAIN" "{plain}"\r\n'.encode())
    assert scripts.readline().startswith(b"OK")
    dav = Browser(relentad, free_port()).connection("mx.example.test")  # one kept-alive connection, as a phone's

    def propfind() -> int:
        dav.request(
            "PROPFIND", BOOK, headers={"Host": "mx.example.test", "Authorization": basic(ALICE, phone), "Depth": "0"}
        )
        response = dav.getresponse()
        response.read()
        return response.status

    assert propfind() == 207
    idling = socket.create_connection((relentad.host, relentad.imap_port), timeout=10)
    idle = idling.makefile("rb")
    idle.readline()
    idling.sendall(f'a LOGIN {ALICE} "{phone}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
    while not idle.readline().startswith(b"+ "):
        pass

    assert "revoked" in relentad.cli("user", "app-password", "revoke", ALICE, "phone").stdout
    code, text = mail.mail(ALICE)
    assert (code, text[:5]) == (530, b"5.7.0"), "no more mail through the revoked password"
    mail.close()
    time.sleep(1.1)  # past the sessions' account check interval
    with pytest.raises(imaplib.IMAP4.abort, match="app password was revoked"):
        session.noop()
    with pytest.raises(poplib.error_proto, match="app password was revoked"):
        box.stat()
    sieve.sendall(b"LISTSCRIPTS\r\n")
    assert scripts.readline() == b'BYE "the app password was revoked"\r\n'
    sieve.close()
    assert propfind() == 401, "the connection's login is looked at again on each request"
    dav.close()
    with smtplib.SMTP(relentad.host, relentad.smtp_port, timeout=10) as mx:  # a lost phone idles: no EXISTS for it
        mx.sendmail("x@far.test", [ALICE], b"From: x@far.test\r\nSubject: for the phone\r\n\r\nhi\r\n")
    assert idle.readline() == b"* BYE the app password was revoked\r\n"
    idling.close()
    assert other.noop()[0] == "OK", "a session with the account's password goes on"
    other.logout()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap(relentad, phone)
    assert relentad.query("SELECT count(*) FROM app_passwords")[0][0] == 0
    assert relentad.cli("user", "app-password", "revoke", ALICE, "phone", check=False).stderr == (
        "Error: no app password named 'phone'\n"
    )


def test_app_passwords_only_refuses_the_account_password_on_mail_protocols(relentad: Daemon) -> None:
    phone = given(relentad, "phone", "phon-e234-5678-9abc")
    assert "app passwords only on" in relentad.cli("user", "set", ALICE, "--app-passwords-only").stdout
    shown = json.loads(relentad.cli("user", "show", ALICE, "--json").stdout)
    assert (shown["app_passwords_only"], shown["app_passwords"]) == (True, ["phone"])
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED") as refused:
        imap(relentad, PASSWORD)
    with pytest.raises(imaplib.IMAP4.error) as wrong:
        imap(relentad, "not the password")
    assert str(refused.value) == str(wrong.value), "the same answer as a wrong password"
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submission(relentad, PASSWORD)
    with smtplib.SMTP(relentad.host, relentad.submission_port, timeout=10) as client:  # SASL LOGIN too
        client.ehlo()
        assert client.docmd("AUTH", "LOGIN " + base64.b64encode(ALICE.encode()).decode())[0] == 334
        assert client.docmd(base64.b64encode(PASSWORD.encode()).decode())[0] == 535
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
        pop3(relentad, PASSWORD)
    box = poplib.POP3(relentad.host, relentad.pop3_port, timeout=10)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
        box._shortcmd("AUTH PLAIN " + base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode())
    box.close()
    assert sieve_login(relentad, PASSWORD).startswith(b"NO")
    dav = Browser(relentad, free_port())
    assert dav.request("PROPFIND", BOOK, auth=basic(ALICE, PASSWORD), Depth="0")[0] == 401
    assert dav.request("PROPFIND", BOOK, auth=basic(ALICE, phone), Depth="0")[0] == 207
    imap(relentad, phone).logout()
    browser = Browser(relentad, free_port())
    assert "app passwords only" in browser.page("/account/app-passwords").lower(), "the pages take the password"
    assert "reason=main-password-refused" in relentad.log()
    relentad.cli("user", "set", ALICE, "--no-app-passwords-only")
    imap(relentad, PASSWORD).logout()


def test_the_account_page_manages_app_passwords_with_the_account_password_only(relentad: Daemon) -> None:
    browser = Browser(relentad, free_port())
    page = browser.page("/account/app-passwords")
    token = re.search(r'name="token" value="([^"]+)"', page)
    assert token is not None and "No app passwords yet" in page

    def post(fields: dict[str, str], auth: str | None = None, **headers: str) -> tuple[int, dict[str, str], bytes]:
        extra = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", **headers}
        body = urllib.parse.urlencode(fields)
        return browser.request(
            "POST", "/account/app-passwords", body, auth, Content_Type="application/x-www-form-urlencoded", **extra
        )

    status, _, body = post({"token": token.group(1), "action": "add", "name": "Phone <b>", "scope": "imap"})
    assert status == 200, body
    shown = re.search(rb"<code>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</code>", body)
    assert shown is not None and b"Phone &lt;b&gt;" in body
    phone = shown.group(1).decode()
    imap(relentad, phone).logout()
    assert phone not in browser.page("/account/app-passwords"), "shown once"
    assert "Phone &lt;b&gt;" in browser.page("/account/app-passwords")

    # the app password opens the mail, not the account pages: it cannot make or revoke app passwords
    assert browser.request("GET", "/account/app-passwords", auth=basic(ALICE, phone))[0] == 401
    refused = post({"token": token.group(1), "action": "revoke", "name": "Phone <b>"}, auth=basic(ALICE, phone))
    assert refused[0] == 401
    assert post({"token": "forged", "action": "revoke", "name": "Phone <b>"})[0] == 403
    assert (
        post({"token": token.group(1), "action": "revoke", "name": "Phone <b>"}, Sec_Fetch_Site="cross-site")[0] == 403
    )
    assert listed(relentad).keys() == {"Phone <b>"}

    status, headers, _ = post({"token": token.group(1), "action": "revoke", "name": "Phone <b>"})
    assert (status, headers["location"]) == (303, "/account/app-passwords?revoked")
    assert listed(relentad) == {}
    with pytest.raises(imaplib.IMAP4.error):
        imap(relentad, phone)
    assert post({"token": token.group(1), "action": "add", "name": " "})[0] == 400
    spoofed = {"token": token.group(1), "action": "add", "name": "phone\u202egnp.exe", "scope": "imap"}
    assert post(spoofed)[0] == 400, "a right-to-left override would show another name"
    made = relentad.cli("user", "app-password", "add", ALICE, "tty\x9b2J", check=False)  # C1 CSI: clears a terminal
    assert made.stderr == "Error: app password name must not contain control or formatting characters\n"
    logins = browser.page("/account/logins")
    assert "Phone &lt;b&gt;" in logins, "the login history names the app password"
