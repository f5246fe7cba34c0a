"""CardDAV end to end: the real daemon's HTTPS listener, vdirsyncer (a real CardDAV client) syncing Alice's
address book into a folder of .vcf files, and http.client for discovery, sync-collection, refusals and hostile
XML."""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import smtplib
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.e2e.conftest import MakeDaemon
from tests.e2e.test_submission import tls_context
from tests.e2e.test_web import BOMB, Web, web_daemon
from tests.support.daemon import PASSWORD, Daemon, free_port
from tests.support.metrics import http_get, sample

ALICE = "alice@example.test"
BOOK = "/dav/addressbooks/alice@example.test/contacts/"
NS = {"d": "DAV:", "card": "urn:ietf:params:xml:ns:carddav", "cs": "http://calendarserver.org/ns/"}
DAV = "{DAV:}"


def basic(user: str = ALICE, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Dav(Web):
    """HTTPS requests to the daemon as mx.example.test, logged in as Alice unless told otherwise."""

    def request(
        self, method: str, path: str, body: str | bytes = b"", auth: str | None = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        connection = self.connection("mx.example.test")
        try:
            fields = {"Host": "mx.example.test", "Authorization": auth or basic(), **headers}
            if auth == "":
                del fields["Authorization"]
            data = body.encode() if isinstance(body, str) else body
            connection.request(method, path, body=data, headers={k.replace("_", "-"): v for k, v in fields.items()})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def xml(self, method: str, path: str, body: str, depth: str = "0") -> ET.Element:
        status, headers, data = self.request(method, path, body, Depth=depth, Content_Type="application/xml")
        assert status == 207 and headers["content-type"].startswith("application/xml"), (status, data)
        return ET.fromstring(data)


def propfind(*props: str) -> str:
    names = "".join(f"<{p}/>" for p in props)
    return (
        '<d:propfind xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav" '
        f'xmlns:cs="http://calendarserver.org/ns/" xmlns:x="urn:example:other"><d:prop>{names}</d:prop></d:propfind>'
    )


def sync_collection(token: str) -> str:
    return (
        '<d:sync-collection xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">'
        f"<d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level>"
        "<d:prop><d:getetag/><card:address-data/></d:prop></d:sync-collection>"
    )


def sync(dav: Dav, token: str) -> tuple[str, dict[str, str], list[str]]:
    """(new token, {href: address-data} changed, [hrefs removed]) of a sync-collection report."""
    root = dav.xml("REPORT", BOOK, sync_collection(token))
    changed, removed = {}, []
    for response in root.findall("d:response", NS):
        href = response.findtext("d:href", namespaces=NS) or ""
        if "404" in (response.findtext("d:status", namespaces=NS) or ""):
            removed.append(href)
        else:
            changed[href] = response.findtext("d:propstat/d:prop/card:address-data", namespaces=NS) or ""
    return root.findtext("d:sync-token", namespaces=NS) or "", changed, removed


def submit_to(daemon: Daemon, recipient: str) -> None:
    """Alice writes to ``recipient`` through submission: the contact is confirmed, so in her address book."""
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=10) as client:
        client.starttls(context=tls_context())
        client.login(ALICE, PASSWORD)
        raw = f"From: Alice <{ALICE}>\r\nTo: {recipient}\r\nSubject: Offer\r\n\r\nHello.\r\n"
        assert client.sendmail(ALICE, [recipient.rpartition("<")[2].rstrip(">")], raw.encode("utf-8")) == {}


def receive(daemon: Daemon, sender: str, address: str) -> None:
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        raw = f"From: {sender}\r\nTo: {ALICE}\r\nSubject: Hi\r\nMessage-ID: <{address}>\r\n\r\nHi.\r\n"
        assert client.sendmail(address, [ALICE], raw.encode("utf-8")) == {}


@pytest.fixture
def dav(make_daemon: MakeDaemon) -> Dav:
    port = free_port()
    settings = {"listen": {"metrics": f"127.0.0.1:{port}"}, "dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5}}
    return Dav(web_daemon(make_daemon, settings), port)


def vdirsyncer() -> list[str]:
    found = shutil.which("vdirsyncer", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if found is None:
        pytest.skip("vdirsyncer is not installed (scripts/test installs the Debian package)")
    return [found]


def run_vdirsyncer(config: Path, *args: str) -> None:
    command = [*vdirsyncer(), "-vdebug", "-c", str(config), *args]  # debug: the requests, shown on failure
    done = subprocess.run(command, input="y\n" * 4, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def local_cards(folder: Path) -> dict[str, str]:
    return {path.name: path.read_bytes().decode() for path in folder.rglob("*.vcf")}


def vdirsyncer_config(daemon: Daemon, tmp_path: Path, conflict_resolution: str = "") -> tuple[Path, Path]:
    """(config, local folder) of vdirsyncer syncing Alice's book with a folder of .vcf files (the "phone")."""
    config = tmp_path / "vdirsyncer.conf"
    folder = tmp_path / "contacts"
    conflicts = f'conflict_resolution = "{conflict_resolution}"\n' if conflict_resolution else ""
    config.write_text(
        f"""[general]
status_path = "{tmp_path / "status"}/"

[pair relentad]
a = "server"
b = "phone"
collections = ["from a"]
{conflicts}
[storage server]
type = "carddav"
url = "https://localhost:{daemon.https_port}/"
username = "{ALICE}"
password = "{PASSWORD}"
verify = "{daemon.root / "data" / "tls" / "cert.pem"}"

[storage phone]
type = "filesystem"
path = "{folder}/"
fileext = ".vcf"
"""
    )
    return config, folder


def test_vdirsyncer_follows_mail_renames_and_merges(dav: Dav, tmp_path: Path) -> None:
    daemon = dav.daemon
    submit_to(daemon, "=?utf-8?q?J=C3=BCrgen_Schmidt?= <juergen@acme.example>")
    receive(daemon, "Petra <petra@acme.example>", "petra@acme.example")  # unconfirmed: not in the book
    config, folder = vdirsyncer_config(daemon, tmp_path, conflict_resolution="a wins")
    run_vdirsyncer(config, "discover")  # /.well-known/carddav → principal → home → the one book
    run_vdirsyncer(config, "sync")
    cards = local_cards(folder)
    assert len(cards) == 1, cards
    (card,) = cards.values()
    assert "FN:Jürgen Schmidt\r\n" in card and "EMAIL;TYPE=INTERNET,PREF:juergen@acme.example\r\n" in card
    assert "VERSION:3.0\r\n" in card and "N:Schmidt;Jürgen;;;\r\n" in card and "ORG:" in card

    token, changed, removed = sync(dav, "")
    assert list(changed) == [BOOK + next(iter(cards))] and removed == []
    assert sync(dav, token)[1:] == ({}, [])  # nothing since

    daemon.cli("contacts", "rename", ALICE, "juergen@acme.example", "Jürgen S.")
    token2, changed, removed = sync(dav, token)
    assert "FN:Jürgen S.\r\n" in next(iter(changed.values())) and removed == []
    run_vdirsyncer(config, "sync")
    assert "FN:Jürgen S.\r\n" in next(iter(local_cards(folder).values()))

    daemon.cli("contacts", "tag", ALICE, "petra@acme.example", "supplier")  # confirms Petra: she joins
    token3, changed, removed = sync(dav, token2)
    assert len(changed) == 1 and "CATEGORIES:supplier\r\n" in next(iter(changed.values())) and removed == []
    petra = next(iter(changed))
    run_vdirsyncer(config, "sync")
    assert len(local_cards(folder)) == 2

    daemon.cli("contacts", "merge", ALICE, "juergen@acme.example", "petra@acme.example")
    _, changed, removed = sync(dav, token3)
    assert removed == [petra] and len(changed) == 1
    assert "EMAIL;TYPE=INTERNET:petra@acme.example\r\n" in next(iter(changed.values()))
    run_vdirsyncer(config, "sync")
    assert len(local_cards(folder)) == 1  # the merged-away card is gone from the phone too
    assert "Traceback" not in daemon.log()


def test_discovery_properties_and_refusals(dav: Dav) -> None:
    daemon = dav.daemon
    submit_to(daemon, "Bob Builder <bob@builder.example>")
    status, headers, _ = dav.request("PROPFIND", "/.well-known/carddav", auth="", Depth="0")
    assert status == 301 and headers["location"] == "/dav/"
    root = dav.xml("PROPFIND", "/dav/", propfind("d:current-user-principal"))
    principal = root.findtext(".//d:current-user-principal/d:href", namespaces=NS)
    assert principal == "/dav/principals/alice@example.test/"
    root = dav.xml("PROPFIND", principal, propfind("card:addressbook-home-set", "d:displayname"))
    home = root.findtext(".//card:addressbook-home-set/d:href", namespaces=NS)
    assert home == "/dav/addressbooks/alice@example.test/"
    props = ("d:resourcetype", "d:displayname", "cs:getctag", "d:sync-token", "card:supported-address-data")
    root = dav.xml("PROPFIND", home, propfind(*props, "d:current-user-privilege-set", "x:nope"), depth="1")
    book = next(r for r in root.findall("d:response", NS) if r.findtext("d:href", namespaces=NS) == BOOK)
    assert book.find(".//d:resourcetype/card:addressbook", NS) is not None
    assert book.findtext(".//d:displayname", namespaces=NS) == "Contacts"
    assert book.findtext(".//cs:getctag", namespaces=NS) == book.findtext(".//d:sync-token", namespaces=NS)
    versions = {e.get("version") for e in book.iterfind(".//card:address-data-type", NS)}
    assert versions == {"3.0", "4.0"}
    privileges = {p.tag for p in book.iterfind(".//d:current-user-privilege-set/d:privilege/*", NS)}
    assert privileges == {f"{DAV}{name}" for name in ("read", "write-content", "bind", "unbind")}
    assert book.findtext(".//card:max-resource-size", namespaces=NS) is None  # not asked for
    assert "404" in (book.findtext("d:propstat[2]/d:status", namespaces=NS) or "")  # x:nope, named as sent

    # the book's members with their ETags; GET serves the same ETag, HEAD the same fields
    root = dav.xml("PROPFIND", BOOK, propfind("d:getetag", "d:getcontenttype"), depth="1")
    cards = [r for r in root.findall("d:response", NS) if r.findtext("d:href", namespaces=NS) != BOOK]
    assert len(cards) == 1
    href, etag = cards[0].findtext("d:href", namespaces=NS) or "", cards[0].findtext(".//d:getetag", namespaces=NS)
    status, headers, body = dav.request("GET", href)
    assert status == 200 and headers["etag"] == etag and headers["content-type"] == "text/vcard; charset=utf-8"
    assert body.startswith(b"BEGIN:VCARD\r\nVERSION:3.0\r\n") and b"FN:Bob Builder\r\n" in body
    status, headers, body = dav.request("HEAD", href)
    assert status == 200 and body == b"" and headers["etag"] == etag
    status, _, body = dav.request("GET", href, Accept="text/vcard; version=4.0")
    assert b"VERSION:4.0\r\n" in body and b"KIND:individual\r\n" in body
    multiget = (
        '<card:addressbook-multiget xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav">'
        f'<d:prop><d:getetag/><card:address-data version="4.0"/></d:prop><d:href>{href}</d:href>'
        f"<d:href>{BOOK}nobody.vcf</d:href></card:addressbook-multiget>"
    )
    root = dav.xml("REPORT", BOOK, multiget, depth="1")
    found, missing = root.findall("d:response", NS)
    assert "VERSION:4.0" in (found.findtext(".//card:address-data", namespaces=NS) or "")
    assert "404" in (missing.findtext("d:status", namespaces=NS) or "")
    query = (
        '<card:addressbook-query xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav"><d:prop><d:getetag/>'
        '</d:prop><card:filter><card:prop-filter name="EMAIL"><card:text-match match-type="ends-with">'
        "{}</card:text-match></card:prop-filter></card:filter></card:addressbook-query>"
    )
    assert len(dav.xml("REPORT", BOOK, query.format("@BUILDER.example"), "1").findall("d:response", NS)) == 1
    assert dav.xml("REPORT", BOOK, query.format("@acme.example"), "1").findall("d:response", NS) == []

    # one connection, several requests: one login (one history row), as an IMAP session
    logins = len(daemon.query("SELECT id FROM login_history WHERE protocol = 'carddav'"))
    connection = dav.connection("mx.example.test")
    try:
        for _ in range(3):
            connection.request("PROPFIND", BOOK, propfind("d:getetag"), {"Authorization": basic(), "Depth": "1"})
            response = connection.getresponse()
            assert response.status == 207 and len(response.read()) > 0
    finally:
        connection.close()
    assert len(daemon.query("SELECT id FROM login_history WHERE protocol = 'carddav'")) == logins + 1
    # never over plain HTTP
    plain = http.client.HTTPConnection(daemon.host, daemon.http_port, timeout=10)
    plain.request("PROPFIND", BOOK, headers={"Host": "mx.example.test", "Authorization": basic(), "Depth": "0"})
    assert plain.getresponse().status == 404
    plain.close()

    status, headers, body = dav.request("OPTIONS", BOOK, auth="")
    assert status == 200 and headers["dav"] == "1, 3, addressbook"
    assert {"REPORT", "PUT", "DELETE"} <= set(headers["allow"].replace(" ", "").split(","))

    def refused(status: int, *request: str, condition: str | None = None, **fields: str) -> None:
        got, _, body = dav.request(*request, **fields)
        assert got == status, (request, got, body)
        if condition is not None:
            name = condition if ":" in condition else f"d:{condition}"
            assert ET.fromstring(body).find(name, NS) is not None, body

    # logins: none, a wrong password, a terminated account (all 401 with the Basic challenge)
    status, headers, _ = dav.request("PROPFIND", BOOK, auth="", Depth="0")
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="mx.example.test", charset="UTF-8"'
    refused(401, "PROPFIND", BOOK, auth=basic(password="wrong"), Depth="0")
    rows = daemon.query("SELECT result, protocol FROM login_history WHERE protocol = 'carddav' ORDER BY id")
    assert [tuple(r) for r in rows][-1] == ("failure", "carddav") and ("success", "carddav") in map(tuple, rows)
    # another account's book, whether it exists or not, and paths that are none
    refused(403, "PROPFIND", "/dav/addressbooks/bob@example.test/contacts/", Depth="0")
    refused(403, "GET", "/dav/addressbooks/nobody@example.test/contacts/x.vcf")
    refused(404, "GET", BOOK + "nobody.vcf")
    refused(404, "PROPFIND", "/dav/calendars/", Depth="0")
    # only cards are written (test_carddav_write has the rest), finite depth, known reports and tokens
    refused(400, "PUT", BOOK + "new.vcf", "BEGIN:VCARD\r\nEND:VCARD\r\n", condition="card:valid-address-data")
    refused(405, "PUT", BOOK, "BEGIN:VCARD\r\nEND:VCARD\r\n")
    refused(403, "DELETE", BOOK)
    refused(403, "PROPPATCH", BOOK, propfind("d:displayname"), condition="need-privileges")
    refused(403, "MKCOL", BOOK, condition="need-privileges")
    refused(403, "PROPFIND", BOOK, propfind("d:getetag"), condition="propfind-finite-depth", Depth="infinity")
    refused(403, "PROPFIND", BOOK, propfind("d:getetag"), condition="propfind-finite-depth")  # no Depth: infinity
    refused(403, "REPORT", BOOK, sync_collection("urn:relentad:sync:999"), condition="valid-sync-token")
    refused(403, "REPORT", BOOK, sync_collection("http://elsewhere/sync/1"), condition="valid-sync-token")
    refused(403, "REPORT", BOOK, '<d:expand-property xmlns:d="DAV:"/>', condition="supported-report")
    refused(405, "PATCH", BOOK)
    # hostile or broken XML: 400, and the daemon goes on
    refused(400, "PROPFIND", BOOK, BOMB, Depth="0")
    refused(400, "REPORT", BOOK, "<d:sync-collection xmlns:d='DAV:'>", Depth="0")
    refused(400, "PROPFIND", BOOK, "<a>" * 40 + "</a>" * 40, Depth="0")  # nested too deep
    refused(400, "PROPFIND", BOOK, "<x/>", Depth="0")
    refused(400, "PROPFIND", BOOK, propfind("d:getetag"), Depth="2")

    daemon.cli("user", "terminate", "--yes", ALICE)
    refused(401, "PROPFIND", BOOK, propfind("d:getetag"), Depth="0")
    status, exposition = http_get(dav.metrics_port, "/metrics")
    assert sample(exposition, "relentad_http_requests_total", 'listener="https",route="carddav",status="207"') > 5
    assert "Traceback" not in daemon.log()
