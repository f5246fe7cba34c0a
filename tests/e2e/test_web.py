"""The web listeners of a real daemon: MTA-STS policy, Thunderbird autoconfig and Outlook Autodiscover over HTTPS
(SNI and Host as a real client sends them, the certificate verified), autoconfig over plain HTTP, and hostile
requests answered with their status while the daemon keeps serving."""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import ssl
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from relentad.cli import main as cli_main
from relentad.tls import make_self_signed
from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import Daemon, free_port, wait_for
from tests.support.metrics import http_get, sample

NAMES = ["mx.example.test", "example.test", "mta-sts.example.test", "autoconfig.example.test"]
NAMES += ["autodiscover.example.test", "localhost"]
AUTOCONFIG = "/mail/config-v1.1.xml?emailaddress=alice%40example.test"
REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
NS = {
    "a": "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006",
    "o": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a",
}


def autodiscover_request(address: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{REQUEST_NS}"><Request>'
        f"<EMailAddress>{address}</EMailAddress><AcceptableResponseSchema>{NS['o']}</AcceptableResponseSchema>"
        "</Request></Autodiscover>"
    ).encode()


class Web:
    """HTTPS (and HTTP) to a daemon as a client that resolved NAME to it: SNI and Host are NAME, the certificate
    is checked against NAME."""

    def __init__(self, daemon: Daemon, metrics_port: int = 0) -> None:
        self.daemon = daemon
        self.metrics_port = metrics_port
        self.context = ssl.create_default_context(cafile=str(daemon.root / "data" / "tls" / "cert.pem"))

    def connection(self, name: str) -> http.client.HTTPSConnection:
        connection = http.client.HTTPSConnection(name, self.daemon.https_port, context=self.context, timeout=10)
        raw = socket.create_connection((self.daemon.host, self.daemon.https_port), timeout=10)
        connection.sock = self.context.wrap_socket(raw, server_hostname=name)
        return connection

    def get(
        self, name: str, path: str, method: str = "GET", body: bytes | None = None, host: str | None = None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        connection = self.connection(name)
        try:
            connection.request(method, path, body=body, headers={"Host": host or name})
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    def tls_exchange(self, data: bytes, name: str = "mta-sts.example.test") -> bytes:
        """Raw bytes over TLS: everything the server answers until it closes."""
        raw = socket.create_connection((self.daemon.host, self.daemon.https_port), timeout=10)
        with self.context.wrap_socket(raw, server_hostname=name) as sock:
            try:
                sock.sendall(data)
            except ConnectionResetError:  # the server answered and closed while we were still sending
                pass
            return receive_all(sock)


def receive_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, ssl.SSLError):
        pass
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert match, answer[:200]
    return int(match.group(1))


def web_daemon(make_daemon: MakeDaemon, settings: dict[str, dict[str, object]] | None = None) -> Daemon:
    daemon = make_daemon(settings=settings, submission=True, imap=True, web=True)
    tls_dir = daemon.root / "data" / "tls"
    make_self_signed(tls_dir / "cert.pem", tls_dir / "key.pem", NAMES)
    daemon.write_config()
    return provision(daemon).start()


@pytest.fixture
def web(make_daemon: MakeDaemon) -> Web:
    port = free_port()
    return Web(web_daemon(make_daemon, {"listen": {"metrics": f"127.0.0.1:{port}"}}), port)


def servers(document: ET.Element, tag: str) -> list[tuple[str | None, int, str | None]]:
    return [
        (s.findtext("hostname"), int(s.findtext("port") or 0), s.findtext("socketType")) for s in document.iter(tag)
    ]


def test_the_policy_served_is_the_one_domain_dns_prints(web: Web) -> None:
    printed = CliRunner().invoke(cli_main, ["--config", str(web.daemon.config_path), "domain", "dns", "example.test"])
    lines = printed.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("; MTA-STS policy:")) + 1
    policy = "".join(line.removeprefix("; ") + "\n" for line in lines[start : start + 4])
    policy_id = re.search(r'_mta-sts\.example\.test\. IN TXT "v=STSv1; id=(\w+)"', printed.output)
    assert policy_id is not None and "IN CNAME mx.example.test." in printed.output
    assert "; MTA-STS policy: served by relentad as https://mta-sts.example.test/" in printed.output

    response, body = web.get("mta-sts.example.test", "/.well-known/mta-sts.txt")
    assert response.status == 200 and response.getheader("Content-Type") == "text/plain"
    assert body.decode() == policy and "mx: mx.example.test\n" in policy
    assert hashlib.sha256(body).hexdigest()[:20] == policy_id.group(1)  # the id in DNS names what is served

    # the Host in any case, with a port and a final dot; HEAD has GET's fields and no content
    response, body = web.get(
        "mta-sts.example.test", "/.well-known/mta-sts.txt", "HEAD", host="MTA-STS.Example.TEST.:443"
    )
    assert response.status == 200 and body == b"" and response.getheader("Content-Length") == str(len(policy))
    response, _ = web.get("mta-sts.example.test", "/.well-known/mta-sts.txt", "POST", body=b"x")
    assert response.status == 405 and response.getheader("Allow") == "GET, HEAD"
    for host, path in (
        ("mta-sts.elsewhere.test", "/.well-known/mta-sts.txt"),  # not a hosted domain
        ("example.test", "/.well-known/mta-sts.txt"),  # not the mta-sts name
        ("mta-sts.example.test", "/.well-known/mta-sts.txt.bak"),
        ("mta-sts.example.test", "/"),
    ):
        assert web.get("mta-sts.example.test", path, host=host)[0].status == 404, (host, path)
    # over plain HTTP the policy is never served (RFC 8461 §3.3)
    plain = http.client.HTTPConnection(web.daemon.host, web.daemon.http_port, timeout=10)
    plain.request("GET", "/.well-known/mta-sts.txt", headers={"Host": "mta-sts.example.test"})
    assert plain.getresponse().status == 404
    plain.close()

    status, exposition = http_get(web.metrics_port, "/metrics")
    assert status == 200
    assert sample(exposition, "relentad_http_requests_total", 'listener="https",route="mta-sts",status="200"') == 2
    assert sample(exposition, "relentad_http_requests_total", 'listener="https",route="other",status="404"') == 4
    assert sample(exposition, "relentad_http_requests_total", 'listener="http",route="other",status="404"') == 1


def test_autoconfig_names_the_listeners_that_are_on(web: Web) -> None:
    daemon = web.daemon
    incoming = [("mx.example.test", daemon.imaps_port, "SSL"), ("mx.example.test", daemon.imap_port, "STARTTLS")]
    outgoing = [
        ("mx.example.test", daemon.submissions_port, "SSL"),
        ("mx.example.test", daemon.submission_port, "STARTTLS"),
    ]
    connection = web.connection("autoconfig.example.test")  # one connection, kept alive for three requests
    try:
        for host, path in (
            ("autoconfig.example.test", AUTOCONFIG),
            ("Autoconfig.Example.Test", "/mail/config-v1.1.xml"),
            ("example.test", "/.well-known/autoconfig/mail/config-v1.1.xml"),
        ):
            connection.request("GET", path, headers={"Host": host})
            response = connection.getresponse()
            assert response.status == 200 and response.getheader("Content-Type").startswith("application/xml")
            document = ET.fromstring(response.read())
            assert document.tag == "clientConfig" and document.get("version") == "1.1"
            assert document.find("emailProvider/domain").text == "example.test"  # type: ignore[union-attr]
            assert servers(document, "incomingServer") == incoming
            assert servers(document, "outgoingServer") == outgoing
            assert {s.findtext("username") for s in document.iter("incomingServer")} == {"%EMAILADDRESS%"}
            assert {s.findtext("authentication") for s in document.iter("outgoingServer")} == {"password-cleartext"}
        assert daemon.stop() == 0  # SIGTERM with a kept-alive connection open: it is closed, the daemon exits
        assert "Traceback" not in daemon.log()
    finally:
        connection.close()
    daemon.start()
    assert web.get("autoconfig.example.test", AUTOCONFIG, host="autoconfig.elsewhere.test")[0].status == 404
    # Thunderbird also asks over plain HTTP
    plain = http.client.HTTPConnection(daemon.host, daemon.http_port, timeout=10)
    plain.request("GET", AUTOCONFIG, headers={"Host": "autoconfig.example.test"})
    response = plain.getresponse()
    assert response.status == 200 and servers(ET.fromstring(response.read()), "incomingServer") == incoming
    plain.close()


def test_autodiscover_answers_the_address_asked_about(web: Web) -> None:
    daemon = web.daemon
    for host, path in (
        ("autodiscover.example.test", "/autodiscover/autodiscover.xml"),
        ("example.test", "/Autodiscover/Autodiscover.xml"),
    ):
        response, body = web.get(host, path, "POST", autodiscover_request("Alice@Example.test"))
        assert response.status == 200, body
        account = ET.fromstring(body).find("o:Response/o:Account", NS)
        assert account is not None and account.findtext("o:Action", namespaces=NS) == "settings"
        protocols = {
            p.findtext("o:Type", namespaces=NS): (
                p.findtext("o:Server", namespaces=NS),
                int(p.findtext("o:Port", namespaces=NS) or 0),
                p.findtext("o:LoginName", namespaces=NS),
                p.findtext("o:Encryption", namespaces=NS),
            )
            for p in account.findall("o:Protocol", NS)
        }
        assert protocols == {
            "IMAP": ("mx.example.test", daemon.imaps_port, "alice@example.test", "SSL"),
            "SMTP": ("mx.example.test", daemon.submissions_port, "alice@example.test", "SSL"),
        }
    host = "autodiscover.example.test"
    response, _ = web.get(host, "/autodiscover/autodiscover.xml")
    assert response.status == 405 and response.getheader("Allow") == "POST"
    assert web.get(host, "/autodiscover/autodiscover.xml", "POST", b"<x/>")[0].status == 400
    assert web.get(host, "/autodiscover/autodiscover.xml", "POST", b"not xml")[0].status == 400
    request = autodiscover_request("someone@elsewhere.test")
    assert web.get(host, "/autodiscover/autodiscover.xml", "POST", request)[0].status == 404
    request = autodiscover_request("x@example.test").replace(b"x@example.test", b"</EMailAddress>")
    assert web.get(host, "/autodiscover/autodiscover.xml", "POST", request)[0].status == 400
    # over plain HTTP: Outlook's redirect step to the HTTPS listener, never the settings
    plain = http.client.HTTPConnection(daemon.host, daemon.http_port, timeout=10)
    plain.request("GET", "/AutoDiscover/AutoDiscover.xml", headers={"Host": host})
    response = plain.getresponse()
    assert response.status == 302
    assert response.getheader("Location") == f"https://{host}:{daemon.https_port}/autodiscover/autodiscover.xml"
    plain.close()


BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]><Autodiscover><Request><EMailAddress>&lol9;@example.test</EMailAddress></Request></Autodiscover>"
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>"
)


def post(body: bytes, *fields: bytes) -> bytes:
    head = b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: autodiscover.example.test\r\nConnection: close\r\n"
    head += b"".join(field + b"\r\n" for field in fields)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_hostile_requests_get_their_status_and_the_daemon_keeps_serving(web: Web) -> None:
    for request, status in (
        (b"garbage\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/3.0\r\nHost: example.test\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: example.test\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: example.test\r\nX: " + b"a" * 100_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: example.test\r\n" + b"X: 1\r\n" * 100 + b"\r\n", 431),
        (post(BOMB), 400),
        (post(EXTERNAL), 400),
        (post(b"<?xml version='1.0' encoding='bogus'?><Autodiscover/>"), 400),  # was 500 and a traceback
        (post(b"<a>" * 400_000), 413),  # over the 1 MiB body limit
        (post(b"0\r\n\r\n", b"Transfer-Encoding: chunked"), 411),
    ):
        answer = web.tls_exchange(request)
        assert status_of(answer) == status, request[:80]
        assert b"\r\nConnection: close\r\n" in answer
    # HTTP/1.0 is served and closed; bare-LF lines are read
    answer = web.tls_exchange(b"GET /.well-known/mta-sts.txt HTTP/1.0\nHost: mta-sts.example.test\n\n")
    assert status_of(answer) == 200 and answer.endswith(b"max_age: 604800\n")
    # a TLS handshake on the plain port, and plain text on the TLS port
    with socket.create_connection((web.daemon.host, web.daemon.http_port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40 + b"\r\n\r\n")
        assert status_of(receive_all(sock)) == 400
    with socket.create_connection((web.daemon.host, web.daemon.https_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        assert b"HTTP/1.1" not in receive_all(sock)
    response, body = web.get("mta-sts.example.test", "/.well-known/mta-sts.txt")
    assert response.status == 200 and body.startswith(b"version: STSv1\n")
    assert "Traceback" not in web.daemon.log()


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_connections_over_the_per_ip_limit_are_closed(make_daemon: MakeDaemon, event_loop: str) -> None:
    """Counted from accept, the TLS handshake included (tls.ImplicitTLS on either loop's TLS layer)."""
    settings: dict[str, dict[str, object]] = {"web": {"connections_per_ip": 2}, "server": {"event_loop": event_loop}}
    web = Web(web_daemon(make_daemon, settings))

    def connected() -> http.client.HTTPSConnection | None:  # the start-up probe's slot may not be free yet
        try:
            return web.connection("mta-sts.example.test")
        except OSError:  # ssl.SSLError included
            return None

    held = [wait_for("a slot", connected, timeout=10) for _ in range(2)]
    try:
        for connection in held:  # both handshaken and served
            connection.request("GET", "/.well-known/mta-sts.txt", headers={"Host": "mta-sts.example.test"})
            assert connection.getresponse().read().startswith(b"version: STSv1")
        with pytest.raises(OSError):  # closed without a word: no handshake
            web.get("mta-sts.example.test", "/.well-known/mta-sts.txt")
    finally:
        for connection in held:
            connection.close()
    again = wait_for("a free slot", connected, timeout=10)  # the server sees the closes a moment later
    again.close()
    assert "web connection from 127.0.0.1 refused: too many connections" in web.daemon.log()
