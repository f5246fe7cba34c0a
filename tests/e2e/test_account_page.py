"""The account pages end to end: the real daemon's HTTPS listener and http.client as the browser, with mail
delivered over SMTP, logins made with imaplib, and the CLI as the admin's view of the same numbers."""

from __future__ import annotations

import html
import http.client
import imaplib
import io
import json
import plistlib
import re
import smtplib
import sqlite3
import time
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from relentad.store.flags import SEEN
from tests.e2e.conftest import MakeDaemon
from tests.e2e.test_carddav import ALICE, Dav, basic, receive
from tests.e2e.test_submission import tls_context
from tests.e2e.test_web import web_daemon
from tests.support.daemon import PASSWORD, free_port, wait_for
from tests.support.metrics import http_get, sample

NEW_PASSWORD = "a new pass phrase"
ORIGIN = "https://mx.example.test"


class Browser(Dav):
    """Requests to the account pages as Alice (HTTP Basic, as a browser sends it once asked)."""

    def page(self, path: str, auth: str | None = None) -> str:
        status, headers, body = self.request("GET", path, auth=auth)
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8", (status, body)
        return body.decode()

    def token(self) -> str:
        found = re.search(r'name="token" value="([^"]+)"', self.page("/account/password"))
        assert found is not None
        return found.group(1)

    def change(self, fields: dict[str, str], **headers: str) -> tuple[int, dict[str, str], bytes]:
        body = urllib.parse.urlencode(fields)
        given = {name.replace("_", "-"): value for name, value in headers.items()}  # "" drops a default
        extra = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin", **given}
        extra = {k: v for k, v in extra.items() if v}
        return self.request(
            "POST", "/account/password", body, Content_Type="application/x-www-form-urlencoded", **extra
        )


@pytest.fixture
def browser(make_daemon: MakeDaemon) -> Browser:
    port = free_port()
    settings = {"listen": {"metrics": f"127.0.0.1:{port}"}, "dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5}}
    return Browser(web_daemon(make_daemon, settings), port)


def imap_login(browser: Browser, password: str) -> None:
    with imaplib.IMAP4_SSL(browser.daemon.host, browser.daemon.imaps_port, ssl_context=tls_context()) as client:
        client.login(ALICE, password)
        client.logout()


def cells(page: str) -> list[list[str]]:
    """The rows of the page's tables as unescaped cell texts."""
    return [
        [html.unescape(cell) for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", page)
    ]


def test_every_page_needs_a_login_and_carries_the_security_headers(browser: Browser) -> None:
    for auth in ("", basic(password="wrong password")):
        status, headers, _ = browser.request("GET", "/account/", auth=auth)
        assert status == 401 and headers["www-authenticate"].startswith('Basic realm="mx.example.test"')
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    status, headers, body = browser.request("GET", "/account/")
    assert status == 200 and b"<title>Your account" in body
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src" not in policy
    assert headers["referrer-policy"] == "same-origin" and headers["x-content-type-options"] == "nosniff"
    assert browser.request("GET", "/account")[:2][0] == 301
    status, headers, _ = browser.request("POST", "/account/activity")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert browser.request("GET", "/account/nothing")[0] == 404
    assert browser.request("GET", "/account/", Host="elsewhere.test")[0] == 404  # not a name of this server
    assert browser.request("GET", "/account/", auth="Basic " + "x" * 5)[0] == 401
    plain = http.client.HTTPConnection(browser.daemon.host, browser.daemon.http_port, timeout=10)
    plain.request("GET", "/account/", headers={"Host": "mx.example.test", "Authorization": basic()})
    assert plain.getresponse().status == 404  # no password over plain HTTP
    plain.close()
    browser.daemon.cli("user", "terminate", "--yes", ALICE)
    assert browser.request("GET", "/account/")[0] == 401
    _, exposition = http_get(browser.metrics_port, "/metrics")
    assert sample(exposition, "relentad_http_requests_total", 'listener="https",route="account",status="200"') == 1


def test_the_overview_shows_what_quota_show_says(browser: Browser) -> None:
    receive(browser.daemon, "Zed <zed@outside.test>", "zed@outside.test")
    with smtplib.SMTP(browser.daemon.host, browser.daemon.submission_port, timeout=10) as client:
        client.starttls(context=tls_context())
        client.login(ALICE, PASSWORD)
        client.sendmail(ALICE, ["bob@example.test", "carol@example.test"], b"From: alice@example.test\r\n\r\nHi.\r\n")
    browser.daemon.cli("quota", "set", ALICE, "--disk", "10MB", "--hourly-send", "50")
    shown = json.loads(browser.daemon.cli("quota", "show", "--json", ALICE).stdout)
    assert shown["messages"] >= 2 and shown["sent_today"] == 2
    rows = {row[0]: row[1] for row in cells(browser.page("/account/")) if len(row) == 2}
    from relentad.units import format_size

    assert rows["Address"] == ALICE
    assert rows["Disk used"] == f"{format_size(shown['bytes'])} of 10MB ({shown['percent']:.1f} %)"
    assert rows["Messages"] == f"{shown['messages']} (no limit)"
    assert rows["Recipients sent this hour"] == f"{shown['sent_this_hour']} of 50 (4.0 %)"
    assert rows["Recipients sent today (UTC)"] == "2 (no limit)"
    boxes = {row[0]: row[1:] for row in cells(browser.page("/account/")) if len(row) == 3}
    assert boxes["INBOX"][0] == "1" and boxes["Sent"][0] == "1"
    activity = cells(browser.page("/account/activity"))
    total = next(row for row in activity if row[0] == "All time")
    assert total[1:3] == ["1", "2"]  # received (the Sent copy is not), recipients sent


def test_the_login_history_lists_an_imap_login(browser: Browser) -> None:
    imap_login(browser, PASSWORD)
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(browser, "not the password")
    rows = cells(browser.page("/account/logins"))
    assert rows[0] == ["Time", "Protocol", "IP address", "Result", "Note", "App password"]
    seen = [row[1:4] for row in rows[1:]]
    assert ["imap", "127.0.0.1", "success"] in seen and ["imap", "127.0.0.1", "failure"] in seen
    assert ["web", "127.0.0.1", "success"] in seen
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row[0]) for row in rows[1:])


def test_changing_the_password(browser: Browser) -> None:
    token = browser.token()
    good = {"token": token, "current": PASSWORD, "new": NEW_PASSWORD, "again": NEW_PASSWORD}
    assert browser.change(good, Origin="https://evil.test")[0] == 403
    assert browser.change(good, Origin="", Sec_Fetch_Site="cross-site")[0] == 403
    assert browser.change(good, Origin="", Sec_Fetch_Site="", Referer="https://evil.test/x")[0] == 403
    status, _, body = browser.change({**good, "token": token[:-2] + "AA"})
    assert status == 403 and b"The form had expired" in body
    assert browser.change({k: v for k, v in good.items() if k != "token"})[0] == 403
    status, _, body = browser.change({**good, "current": "guess guess"})
    assert status == 403 and b"The current password is not right." in body
    status, _, body = browser.change({**good, "again": "something else"})
    assert status == 400 and b"The two new passwords differ." in body
    status, _, body = browser.change({**good, "new": "short", "again": "short"})
    assert status == 400 and b"Password too short: at least 8 characters." in body
    imap_login(browser, PASSWORD)  # nothing changed yet, and the old password is now in the credential cache

    status, headers, _ = browser.change(good)
    assert status == 303 and headers["location"] == "/account/password?changed"
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(browser, PASSWORD)
    imap_login(browser, NEW_PASSWORD)
    assert browser.request("GET", "/account/password?changed")[0] == 401  # the browser asks for the new one
    new = basic(password=NEW_PASSWORD)
    assert "Your password was changed." in browser.page("/account/password?changed", auth=new)
    conn = sqlite3.connect(browser.daemon.db_path)
    rows = conn.execute("SELECT protocol, result, reason FROM login_history WHERE reason = 'password-changed'")
    assert rows.fetchall() == [("web", "success", "password-changed")]
    conn.close()


def own_form_origin(policy: str) -> str:
    """The Origin a browser puts on a POST of a page's own form under the page's Referrer-Policy (Fetch standard,
    "append a request Origin header": "null" under no-referrer; a same-origin request otherwise keeps its origin)."""
    return "null" if policy == "no-referrer" else ORIGIN


def test_a_browser_without_sec_fetch_site_can_change_the_password(browser: Browser) -> None:
    """Safari before 16.4 sends no Sec-Fetch-Site: the Origin the page's policy gives its own form must pass."""
    status, headers, body = browser.request("GET", "/account/password")
    assert status == 200
    token = re.search(r'name="token" value="([^"]+)"', body.decode())
    assert token is not None
    policy = headers["referrer-policy"]
    assert policy not in ("unsafe-url", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin")
    fields = {"token": token.group(1), "current": PASSWORD, "new": NEW_PASSWORD, "again": NEW_PASSWORD}
    status, headers, _ = browser.change(fields, Origin=own_form_origin(policy), Sec_Fetch_Site="")
    assert status == 303 and headers["location"] == "/account/password?changed"


def test_hostile_names_are_escaped(browser: Browser) -> None:
    hostile = '<script>alert("x")</script>'
    browser.daemon.cli("user", "add", "eve@example.test", "--password-stdin", "--name", hostile, input=PASSWORD)
    with imaplib.IMAP4_SSL(browser.daemon.host, browser.daemon.imaps_port, ssl_context=tls_context()) as client:
        client.login("eve@example.test", PASSWORD)
        assert client.create('"<img src=x onerror=alert(1)>&-"')[0] == "OK"
    page = browser.page("/account/", auth=basic("eve@example.test"))
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;" in page


def test_the_export_is_the_cli_export_as_a_zip(browser: Browser, tmp_path: Path) -> None:
    receive(browser.daemon, "Zed <zed@outside.test>", "zed@outside.test")
    status, headers, body = browser.request("GET", "/account/export")
    assert status == 200 and headers["content-type"] == "application/zip"
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert 'filename="relentad-export-alice@example.test-' in headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = set(archive.namelist())
        folder = "relentad-export-alice@example.test/"
        assert {folder + n for n in ("mail/INBOX.mbox", "flags.json", "activity.csv")} <= names
        mbox = archive.read(folder + "mail/INBOX.mbox")
        assert mbox.startswith(b"From MAILER-DAEMON ") and b"Subject: Hi" in mbox
        files = {name.removeprefix(folder): archive.read(name) for name in names}
    target = tmp_path / "cli"
    browser.daemon.cli("export", ALICE, str(target))
    written = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert files == written
    status, headers, body = browser.request("HEAD", "/account/export")
    assert status == 200 and headers["transfer-encoding"] == "chunked" and body == b""


def post(browser: Browser, path: str, fields: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A form of the account's own page, sent as the browser sends it."""
    return browser.request(
        "POST",
        path,
        urllib.parse.urlencode(fields),
        Content_Type="application/x-www-form-urlencoded",
        Origin=ORIGIN,
        Sec_Fetch_Site="same-origin",
    )


def test_the_automatic_reply_answers_mail_in_its_days(browser: Browser, tmp_path: Path) -> None:
    daemon = browser.daemon
    assert "Your automatic reply is off." in browser.page("/account/autoreply")
    token = browser.token()
    today = time.strftime("%Y-%m-%d")  # the server's calendar: the daemon runs in this machine's time zone
    reply = {
        "token": token,
        "enabled": "on",
        "subject": "Away: back on Monday",
        "message": 'Hello,\r\nI am away until Monday. For orders write to "sales".\r\n',
        "first_day": today,
        "last_day": "2099-12-31",
        "days": "3",
    }
    status, _, body = post(browser, "/account/autoreply", {**reply, "last_day": "2000-01-01"})
    assert status == 400 and b"The last day is before the first day." in body
    assert b"I am away until Monday" in body, "what was typed comes back with the error"
    assert post(browser, "/account/autoreply", {**reply, "token": "x"})[0] == 403
    assert "Your automatic reply is off." in browser.page("/account/autoreply")
    status, headers, _ = post(browser, "/account/autoreply", reply)
    assert status == 303 and headers["location"] == "/account/autoreply?saved"
    shown = browser.page("/account/autoreply?saved")
    assert f"Your automatic reply is on from {today} to 2099-12-31." in shown and "Saved." in shown
    assert json.loads(daemon.cli("autoreply", "show", ALICE, "--json").stdout)["days"] == 3

    receive(daemon, "Bob <bob@elsewhere.test>", "bob@elsewhere.test")
    queued = wait_for(
        "the reply queued",
        lambda: daemon.query(
            "SELECT m.data FROM queue_messages m JOIN queue_recipients r ON r.message_id = m.id"
            " WHERE r.address = 'bob@elsewhere.test'"
        ),
    )
    data = bytes(queued[0]["data"])
    assert b"Subject: Away: back on Monday\r\n" in data and b"Auto-Submitted: auto-replied" in data
    assert b'I am away until Monday. For orders write to "sales".' in data
    receive(daemon, "Bob <bob@elsewhere.test>", "bob2@elsewhere.test")  # the same sender within its 3 days
    time.sleep(0.5)
    assert len(daemon.query("SELECT 1 FROM queue_recipients WHERE address = 'bob@elsewhere.test'")) == 1

    # the admin's view and commands: the same reply, off and on again, and days that are over
    sample = tmp_path / "m.eml"
    sample.write_bytes(b"From: Carol <carol@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Hi\r\n\r\nHi.\r\n")
    assert (
        "vacation reply to <carol@elsewhere.test>"
        in daemon.cli("rules", "test", ALICE, str(sample), "--mail-from", "carol@elsewhere.test").stdout
    )
    assert "automatic reply off" in daemon.cli("autoreply", "off", ALICE).stdout
    assert (
        "vacation" not in daemon.cli("rules", "test", ALICE, str(sample), "--mail-from", "carol@elsewhere.test").stdout
    )
    daemon.cli("autoreply", "set", ALICE, "--first-day", "2001-01-01", "--last-day", "2001-01-02")
    assert (
        "vacation" not in daemon.cli("rules", "test", ALICE, str(sample), "--mail-from", "carol@elsewhere.test").stdout
    ), "its days are over"
    daemon.cli("export", ALICE, str(tmp_path / "export"))
    exported = json.loads((tmp_path / "export" / "autoreply.json").read_text())
    assert exported["enabled"] and exported["last_day"] == "2001-01-02" and "away until Monday" in exported["message"]
    refused = daemon.cli("autoreply", "set", ALICE, "--days", "0", check=False)
    assert refused.returncode != 0 and "1 to 90" in refused.stderr and "Traceback" not in refused.stderr


def test_the_apple_profile_downloads_for_the_logged_in_account(browser: Browser) -> None:
    assert "/account/mobileconfig" in browser.page("/account/")
    assert browser.request("GET", "/account/mobileconfig", auth="")[0] == 401
    status, headers, body = browser.request("GET", "/account/mobileconfig")
    assert status == 200 and headers["content-type"] == "application/x-apple-aspen-config"
    assert headers["content-disposition"] == 'attachment; filename="alice-at-example.test.mobileconfig"'
    assert headers["x-frame-options"] == "DENY"
    mail = plistlib.loads(body)["PayloadContent"][0]
    assert mail["EmailAddress"] == ALICE and mail["IncomingMailServerPortNumber"] == browser.daemon.imaps_port
    assert browser.daemon.cli("user", "mobileconfig", ALICE).stdout.encode() == body, "the admin's copy is the same"


def test_the_spam_sender_lists_are_the_users_own(browser: Browser) -> None:
    daemon = browser.daemon
    assert "Both lists are empty." in browser.page("/account/senders")
    token = browser.token()
    status, headers, _ = post(browser, "/account/senders", {"token": token, "action": "allow", "pattern": "@Shop.Test"})
    assert status == 303 and headers["location"] == "/account/senders?added"
    post(browser, "/account/senders", {"token": token, "action": "block", "pattern": "Spam@Bad.test"})
    shown = browser.page("/account/senders?added")
    assert [row[:2] for row in cells(shown)[1:]] == [["@shop.test", "allow"], ["spam@bad.test", "block"]]
    assert "Added." in shown
    assert "@shop.test" in daemon.cli("spam", "senders", ALICE).stdout, "the admin's view is the same list"
    status, _, body = post(
        browser, "/account/senders", {"token": token, "action": "allow", "pattern": "not an address"}
    )
    assert status == 400 and b"Not a domain name: &#x27;not an address&#x27;." in body
    status, _, body = post(browser, "/account/senders", {"token": token, "action": "remove", "pattern": "x@y.test"})
    assert status == 400 and b"x@y.test is on neither list." in body
    assert post(browser, "/account/senders", {"token": "x", "action": "allow", "pattern": "a@b.test"})[0] == 403
    status, headers, _ = post(
        browser, "/account/senders", {"token": token, "action": "remove", "pattern": "@shop.test"}
    )
    assert headers["location"] == "/account/senders?removed"
    # the lists decide at delivery: mail from the blocked sender goes to Junk
    receive(daemon, "Spammer <spam@bad.test>", "spam@bad.test")
    wait_for("filed into Junk", lambda: daemon.messages(ALICE, "Junk"))


def test_forwarding_takes_the_password_and_sends_mail_on(browser: Browser, tmp_path: Path) -> None:
    daemon = browser.daemon
    assert "Forwarding is off." in browser.page("/account/forwarding")
    token = browser.token()
    good = {"token": token, "enabled": "on", "address": "Me@Elsewhere.test", "keep": "on", "current": PASSWORD}
    status, _, body = post(browser, "/account/forwarding", {**good, "current": "guess guess"})
    assert status == 403 and b"The password is not right." in body
    status, _, body = post(browser, "/account/forwarding", {**good, "address": "bob@example.test"})
    assert status == 400 and b"is at a domain of this server: ask for an alias instead" in body
    status, _, body = post(browser, "/account/forwarding", {**good, "address": "not an address"})
    assert status == 400 and b"is not an email address" in body
    status, headers, _ = post(browser, "/account/forwarding", good)
    assert status == 303 and headers["location"] == "/account/forwarding?saved"
    shown = browser.page("/account/forwarding?saved")
    assert "Forwarding is on: to me@elsewhere.test, a copy kept here." in shown
    assert "forwarding changed" in browser.page("/account/logins")
    assert ["Forwarding", "on: to me@elsewhere.test, a copy kept here"] in cells(browser.page("/account/")), (
        "a reminder"
    )
    receive(daemon, "Bob <bob@elsewhere.test>", "bob@elsewhere.test")
    wait_for(
        "the forward queued", lambda: daemon.query("SELECT 1 FROM queue_recipients WHERE address = 'me@elsewhere.test'")
    )
    wait_for("and a copy kept", lambda: daemon.messages(ALICE))
    daemon.cli("export", ALICE, str(tmp_path / "export"))
    assert json.loads((tmp_path / "export" / "forwarding.json").read_text())["address"] == "me@elsewhere.test"
    # without a copy, then off
    post(browser, "/account/forwarding", {**good, "keep": ""})
    assert "no copy kept here" in browser.page("/account/forwarding")
    post(browser, "/account/forwarding", {"token": token, "address": "me@elsewhere.test", "current": PASSWORD})
    assert "Forwarding is off." in browser.page("/account/forwarding")
    receive(daemon, "Bob <bob@elsewhere.test>", "bob2@elsewhere.test")
    wait_for("filed, not forwarded", lambda: len(daemon.messages(ALICE)) == 2)
    assert len(daemon.query("SELECT 1 FROM queue_recipients WHERE address = 'me@elsewhere.test'")) == 1


def test_filters_file_incoming_mail(browser: Browser) -> None:
    daemon = browser.daemon
    assert "No filters yet." in browser.page("/account/filters")
    token = browser.token()
    add = {"token": token, "action": "add", "field": "from", "value": "bob@elsewhere", "folder": "Bob", "seen": "on"}
    status, headers, _ = post(browser, "/account/filters", add)
    assert status == 303 and headers["location"] == "/account/filters?added"
    status, _, body = post(browser, "/account/filters", {**add, "folder": "Contacts/Bob"})
    assert status == 400 and b"read-only" in body
    assert "From contains “bob@elsewhere” → Bob, marked read" in html.unescape(browser.page("/account/filters"))
    receive(daemon, "Bob <bob@elsewhere.test>", "bob@elsewhere.test")
    [filed] = wait_for("filed by the filter", lambda: daemon.messages(ALICE, "Bob"))
    assert filed and not daemon.messages(ALICE)
    flags = daemon.query("SELECT m.flags FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.name = 'Bob'")
    assert flags[0]["flags"] & SEEN, "marked read"
    listed = daemon.cli("rules", "list", ALICE).stdout
    assert "account page: filter " in listed and ": From contains “bob@elsewhere” → Bob, marked read" in listed
    [(filter_id,)] = re.findall(r'name="id" value="(\d+)"', browser.page("/account/filters"))
    status, headers, _ = post(browser, "/account/filters", {"token": token, "action": "remove", "id": filter_id})
    assert headers["location"] == "/account/filters?removed"
    status, _, body = post(browser, "/account/filters", {"token": token, "action": "remove", "id": filter_id})
    assert status == 400 and b"That filter is gone already." in body
    receive(daemon, "Bob <bob@elsewhere.test>", "bob2@elsewhere.test")
    wait_for("in INBOX now", lambda: daemon.messages(ALICE))
    post(browser, "/account/filters", {**add, "value": "<b>x</b>", "folder": 'A&"B'})
    shown = browser.page("/account/filters")
    assert "&lt;b&gt;x&lt;/b&gt;" in shown and "<b>x" not in shown and "A&amp;&quot;B" in shown


def test_filters_are_changed_in_place_and_reordered(browser: Browser) -> None:
    daemon = browser.daemon
    token = browser.token()
    by_sender = {"token": token, "action": "add", "field": "from", "value": "bob@elsewhere", "folder": "Bob"}
    by_subject = {"token": token, "action": "add", "field": "subject", "value": "Hi", "folder": "Greetings"}
    for fields in (by_sender, by_subject):
        assert post(browser, "/account/filters", fields)[0] == 303
    first, second = re.findall(r'name="action" value="remove"><input type="hidden" name="id" value="(\d+)"',
                               browser.page("/account/filters"))  # fmt: skip
    receive(daemon, "Bob <bob@elsewhere.test>", "one@elsewhere.test")
    wait_for("the first filter", lambda: daemon.messages(ALICE, "Bob"))
    status, headers, _ = post(browser, "/account/filters", {"token": token, "action": "up", "id": second})
    assert status == 303 and headers["location"] == "/account/filters?moved"
    shown = html.unescape(browser.page("/account/filters?moved"))
    assert "Moved up." in shown and shown.index("“Hi” → Greetings") < shown.index("“bob@elsewhere” → Bob")
    receive(daemon, "Bob <bob@elsewhere.test>", "two@elsewhere.test")
    wait_for("the filter moved up first", lambda: daemon.messages(ALICE, "Greetings"))
    assert len(daemon.messages(ALICE, "Bob")) == 1
    # the edit form holds the filter; a refused change comes back as typed; a saved one keeps its place
    edit = browser.page(f"/account/filters?edit={first}")  # the first row: the subject filter since the move
    assert "Change the filter" in edit and 'value="Greetings"' in edit and 'value="subject" selected' in edit
    change = {"token": token, "action": "edit", "id": first, "field": "subject", "value": "Hi", "folder": "Contacts/X"}
    status, _, body = post(browser, "/account/filters", change)
    assert status == 400 and b"read-only" in body and b'value="Contacts/X"' in body and b"Change the filter" in body
    status, headers, _ = post(browser, "/account/filters", {**change, "folder": "Hello", "seen": "on"})
    assert status == 303 and headers["location"] == "/account/filters?changed"
    shown = html.unescape(browser.page("/account/filters"))
    assert shown.index("“Hi” → Hello, marked read") < shown.index("“bob@elsewhere” → Bob")
    receive(daemon, "Bob <bob@elsewhere.test>", "three@elsewhere.test")
    wait_for("the changed filter", lambda: daemon.messages(ALICE, "Hello"))
    status, _, body = post(browser, "/account/filters", {"token": token, "action": "up", "id": first})
    assert status == 400 and b"runs first already" in body


@pytest.mark.parametrize("path", ["/account/autoreply", "/account/senders", "/account/forwarding", "/account/filters"])
def test_the_self_service_forms_need_a_login_and_their_own_origin(browser: Browser, path: str) -> None:
    assert browser.request("GET", path, auth="")[0] == 401
    assert browser.request("POST", path, "token=x", auth="", Content_Type="application/x-www-form-urlencoded")[0] == 401
    fields = urllib.parse.urlencode({"token": browser.token(), "action": "add", "enabled": "on"})
    status, _, body = browser.request(
        "POST", path, fields, Content_Type="application/x-www-form-urlencoded", Origin="https://evil.test"
    )
    assert status == 403 and b"must be sent from its own page" in body
    assert browser.request("GET", "/account/mobileconfig", auth="")[0] == 401


def test_the_admin_can_turn_the_users_forwarding_off(browser: Browser) -> None:
    daemon = browser.daemon
    good = {"token": browser.token(), "enabled": "on", "address": "me@elsewhere.test", "current": PASSWORD}
    assert post(browser, "/account/forwarding", good)[0] == 303
    daemon.stop()
    daemon.write_config(web={"user_forwarding": False})
    daemon.start()
    assert "turned off by the administrator" in browser.page("/account/forwarding")
    status, _, body = post(browser, "/account/forwarding", {**good, "token": browser.token()})
    assert status == 403 and b"turned off by the administrator" in body
    receive(daemon, "Bob <bob@elsewhere.test>", "bob@elsewhere.test")
    wait_for("kept here, not forwarded", lambda: daemon.messages(ALICE))
    assert daemon.query("SELECT 1 FROM queue_recipients WHERE address = 'me@elsewhere.test'") == []
    sample = daemon.root / "m.eml"
    sample.write_bytes(b"From: Bob <bob@elsewhere.test>\r\nTo: alice@example.test\r\nSubject: Hi\r\n\r\nHi.\r\n")
    shown = daemon.cli("rules", "test", ALICE, str(sample), "--mail-from", "bob@elsewhere.test").stdout
    assert "redirect" not in shown and "file into INBOX" in shown, "rules test agrees with delivery"
