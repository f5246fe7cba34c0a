"""ACME end to end: the real daemon gets its certificate from Debian's pebble, answering tls-alpn-01 on its HTTPS
listener or http-01 on its HTTP listener, serves it on every TLS listener, renews on request, and keeps serving
the old one when the CA is unreachable."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from relentad.acme import client as client_mod
from relentad.acme import jws
from relentad.acme.challenges import ACME_IDENTIFIER_OID
from relentad.acme.client import AcmeError, Client
from tests.e2e.conftest import MakeDaemon
from tests.support.daemon import Daemon, free_port, wait_for
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq, DnsRecords
from tests.support.fakeacme import FakeAcme, json_reply
from tests.support.metrics import http_get, sample
from tests.support.pebble import Pebble
from tests.support.pki import TestCA

NAMES = ("mx.example.test", "mta-sts.example.test", "autoconfig.example.test", "autodiscover.example.test")


@pytest.fixture
def acme_dns(tmp_path: Path) -> Iterator[Dnsmasq]:
    """Every name of the certificate at 127.0.0.1, where pebble validates them."""
    records = DnsRecords()
    for name in NAMES:
        records.add_a(name, "127.0.0.1")
    server = start_or_skip(tmp_path / "acme-dns", records)
    yield server
    server.close()


Setup = Callable[..., tuple[Daemon, Pebble]]


@pytest.fixture
def acme_setup(tmp_path: Path, make_daemon: MakeDaemon, acme_dns: Dnsmasq) -> Iterator[Setup]:
    pebbles: list[Pebble] = []

    def setup(challenges: list[str], extra_domain: str = "", metrics_port: int = 0) -> tuple[Daemon, Pebble]:
        http_port, https_port = free_port(), free_port()
        pebble = Pebble(tmp_path / f"pebble{len(pebbles)}", http_port, https_port, acme_dns.nameserver)
        pebbles.append(pebble.start())
        settings = {
            "acme": {
                "enabled": True,
                "directory": pebble.directory,
                "ca_file": str(pebble.ca.pem),
                "email": "postmaster@example.test",
                "challenges": challenges,
            }
        }
        daemon = make_daemon(
            settings=settings, tls=False, imap=True, imaps_port=free_port(), http_port=http_port, https_port=https_port
        )
        if metrics_port:
            daemon.write_config(listen={"metrics": f"127.0.0.1:{metrics_port}"})
        daemon.add_domain("example.test")
        if extra_domain:
            daemon.add_domain(extra_domain)
        return daemon.start(), pebble

    yield setup
    for pebble in pebbles:
        pebble.stop()


def state(daemon: Daemon) -> dict[str, object]:
    path = daemon.root / "data" / "acme" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def client_context(pebble: Pebble) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=pebble.root_pem().decode())


def imaps_certificate(daemon: Daemon, context: ssl.SSLContext) -> x509.Certificate:
    """The certificate 993 presents, verified against pebble's root and for the host name."""
    with (
        socket.create_connection(("127.0.0.1", daemon.imaps_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="mx.example.test") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


def names_of(cert: x509.Certificate) -> set[str]:
    return set(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    )


def test_tls_alpn_certificate_renewal_and_ca_outage(acme_setup: Setup) -> None:
    daemon, pebble = acme_setup(["tls-alpn-01"])
    wait_for("the first certificate", lambda: state(daemon).get("last_success"), timeout=60)
    context = client_context(pebble)
    first = imaps_certificate(daemon, context)
    assert names_of(first) == set(NAMES)
    key = daemon.root / "data" / "acme" / "key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (daemon.root / "data" / "acme" / "account.key").stat().st_mode & 0o777 == 0o600
    assert "tls-alpn-01 challenge certificate presented for mx.example.test" in daemon.log()

    # SMTP STARTTLS on the MX port serves the same certificate, chained to pebble's root
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as smtp:
        tls_context = client_context(pebble)
        tls_context.check_hostname = False  # the client dials 127.0.0.1; the names are checked below
        smtp.starttls(context=tls_context)
        der = smtp.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
        assert x509.load_der_x509_certificate(der).serial_number == first.serial_number

    status = daemon.cli("acme", "status").stdout
    assert "names: " in status and "mx.example.test" in status and "last error" not in status

    renewed = daemon.cli("acme", "renew", "--force")
    assert renewed.stdout.startswith("certificate obtained for 4 name(s)")
    second = wait_for(
        "the renewed certificate on 993",
        lambda: (c := imaps_certificate(daemon, context)).serial_number != first.serial_number and c,
        timeout=10,
    )
    assert names_of(second) == set(NAMES)

    not_due = daemon.cli("acme", "renew")
    assert not_due.stdout.startswith("not due: valid until")

    pebble.stop()
    failed = daemon.cli("acme", "renew", "--force", check=False)
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error: renewal failed: cannot reach the ACME server")
    assert len(failed.stderr.strip().splitlines()) == 1
    assert imaps_certificate(daemon, context).serial_number == second.serial_number
    failures = [line for line in daemon.log().splitlines() if "ACME: certificate not obtained" in line]
    assert len(failures) == 1, failures
    assert "Traceback" not in daemon.log()
    status = daemon.cli("acme", "status").stdout
    assert "last error: cannot reach the ACME server" in status
    doctor = daemon.cli("doctor", check=False).stdout
    assert "WARN acme: 1 attempt(s) in a row failed" in doctor


def test_http01_certificate_leaves_out_a_name_that_does_not_validate(acme_setup: Setup) -> None:
    """other.test's web names resolve nowhere: the certificate covers the rest, the left-out names wait for the
    back-off (a restart does not order again), and status, doctor and /metrics say so."""
    metrics_port = free_port()
    daemon, pebble = acme_setup(["http-01"], extra_domain="other.test", metrics_port=metrics_port)
    wait_for("the first certificate", lambda: state(daemon).get("last_success"), timeout=60)
    cert = imaps_certificate(daemon, client_context(pebble))
    assert names_of(cert) == set(NAMES)
    log = daemon.log()
    assert "http-01 challenge answered for mx.example.test" in log
    assert "tls-alpn-01" not in log
    assert (
        "ACME: certificate obtained without mta-sts.other.test, autoconfig.other.test, autodiscover.other.test" in log
    )
    assert state(daemon)["left_out"] == ["mta-sts.other.test", "autoconfig.other.test", "autodiscover.other.test"]
    status = daemon.cli("acme", "status").stdout
    assert "last error: left out mta-sts.other.test" in status
    _, text = http_get(metrics_port, "/metrics")
    expiry = sample(text, "relentad_tls_certificate_expiry_timestamp_seconds")
    assert expiry == cert.not_valid_after_utc.timestamp()
    assert sample(text, "relentad_acme_renewal_failures_total") == 1

    daemon.stop()
    stopped = daemon.cli("acme", "renew", check=False)
    assert stopped.stderr.strip() == (
        "Error: relentad is not running: start it (it gets a certificate at start and answers the challenges)"
    )
    daemon.start()  # the certificate on disk is valid and the left-out names are backing off: no new order
    assert imaps_certificate(daemon, client_context(pebble)).serial_number == cert.serial_number
    assert daemon.log().count("ACME: requesting a certificate") == 1

    # past the back-off (`acme renew` skips it) the left-out names are tried again and fail again: the certificate
    # in service already covers the rest, so no new one for the same names (each would count against the CA's
    # duplicate-certificate limit, every 6 hours)
    again = daemon.cli("acme", "renew", check=False)
    assert again.returncode == 1 and again.stderr.startswith("Error: renewal failed: ")
    assert "autoconfig.other.test: http-01 failed" in again.stderr and "mx.example.test" not in again.stderr
    assert imaps_certificate(daemon, client_context(pebble)).serial_number == cert.serial_number
    assert daemon.log().count("ACME: requesting a certificate") == 2
    assert daemon.log().count("certificate obtained without") == 1
    assert state(daemon)["left_out"] == ["mta-sts.other.test", "autoconfig.other.test", "autodiscover.other.test"]


@pytest.fixture
def fake_ca(tmp_path: Path) -> Iterator[FakeAcme]:
    fake = FakeAcme(tmp_path / "fake-ca", ["mx.example.test"]).start()
    yield fake
    fake.stop()


def fake_ca_daemon(make_daemon: MakeDaemon, fake: FakeAcme, challenges: list[str], **kwargs: Any) -> Daemon:
    """A daemon (not started) whose ACME CA is ``fake``, for mx.example.test alone."""
    settings = {
        "acme": {
            "enabled": True,
            "directory": fake.directory,
            "ca_file": str(fake.ca.pem),
            "names": ["mx.example.test"],
            "challenges": challenges,
        }
    }
    return make_daemon(settings=settings, tls=False, http_port=free_port(), https_port=free_port(), **kwargs)


def test_shutdown_does_not_wait_for_a_silent_ca(make_daemon: MakeDaemon, fake_ca: FakeAcme) -> None:
    """A CA that takes a request and never answers (the client's timeout is 30 s) does not hold SIGTERM: the
    daemon exits 0 at once rather than being killed by systemd's TimeoutStopSec."""
    fake_ca.script["/authz/0"] = fake_ca.hang
    daemon = fake_ca_daemon(make_daemon, fake_ca, ["http-01"]).start()
    wait_for("the attempt in flight", lambda: ("POST", "/authz/0") in fake_ca.requests, timeout=20)
    assert daemon.stop(timeout=15) == 0
    assert "relentad: stopped" in daemon.log()


def fake_client(fake: FakeAcme) -> Client:
    return Client(fake.directory, jws.new_key("ec256"), str(fake.ca.pem), sleep=lambda _: None)


def test_client_refuses_a_redirect_to_plain_http_and_follows_one_to_https(fake_ca: FakeAcme) -> None:
    moved = fake_ca.reply("/dir")
    fake_ca.script["/dir"] = lambda: (302, {"Location": "http://127.0.0.1:9/dir"}, b"")
    with pytest.raises(AcmeError, match=r"^the ACME server redirected to a URL that is not https: 'http://127"):
        fake_client(fake_ca).get_directory()
    fake_ca.script["/dir"] = lambda: (301, {"Location": "/dir2"}, b"")
    fake_ca.script["/dir2"] = lambda: moved
    assert "newOrder" in fake_client(fake_ca).get_directory()


def test_client_refuses_an_oversized_or_trickling_answer(fake_ca: FakeAcme, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ca.script["/dir"] = lambda: (200, {"Content-Type": "application/json"}, b"{" + b" " * (2 << 20) + b"}")
    with pytest.raises(AcmeError, match=r"^the ACME server's answer from \S+/dir is larger than 1024 KiB$"):
        fake_client(fake_ca).get_directory()
    monkeypatch.setattr(client_mod, "RESPONSE_DEADLINE", 0.5)
    fake_ca.script["/dir"] = lambda: (200, {}, b" " * 200)
    fake_ca.trickle["/dir"] = 0.05  # 10 s in all
    with pytest.raises(AcmeError, match=r"^the ACME server's answer from \S+/dir took longer than 0 s$"):
        fake_client(fake_ca).get_directory()


def handshake(port: int, server_name: str | None, alpn: list[str] | None) -> tuple[x509.Certificate, str | None]:
    """The certificate the HTTPS listener presents to such a client, and the ALPN protocol it chose."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der), tls.selected_alpn_protocol()


def client_hello(server_name: str, alpn: list[str]) -> bytes:
    """The first flight (the ClientHello record) a Python client sends."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_tls_alpn_challenge_certificate_only_for_the_cas_handshake(
    tmp_path: Path, make_daemon: MakeDaemon, fake_ca: FakeAcme, event_loop: str
) -> None:
    """While a tls-alpn-01 challenge is pending (the fake CA leaves it so), only a handshake offering exactly
    acme-tls/1 with the pending name gets the challenge certificate (its critical acmeIdentifier the SHA-256 of
    the key authorization); a browser offering h2 and acme-tls/1, a client without SNI, one naming another host
    get the certificate in service; once the challenge is over, nobody gets the challenge certificate."""
    daemon = fake_ca_daemon(make_daemon, fake_ca, ["tls-alpn-01"])
    daemon.write_config(server={"event_loop": event_loop})
    cert, key = TestCA(tmp_path / "in-service").issue("localhost")  # not naming mx.example.test: renewed at start
    (daemon.root / "data" / "acme").mkdir(parents=True)
    shutil.copy(cert, daemon.root / "data" / "acme" / "cert.pem")
    shutil.copy(key, daemon.root / "data" / "acme" / "key.pem")
    daemon.start()
    wait_for("the challenge", lambda: any(path.startswith("/chall/") for _, path in fake_ca.requests), timeout=20)
    port = daemon.https_port

    challenge, protocol = handshake(port, "mx.example.test", ["acme-tls/1"])
    assert protocol == "acme-tls/1"
    assert names_of(challenge) == {"mx.example.test"}
    extension = challenge.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    account_key = jws.load_key((daemon.root / "data" / "acme" / "account.key").read_bytes())
    digest = hashlib.sha256(jws.key_authorization(fake_ca.token(0), account_key).encode()).digest()
    assert extension.critical and extension.value.public_bytes() == b"\x04\x20" + digest
    assert names_of(handshake(port, "MX.Example.Test", ["acme-tls/1"])[0]) == {"mx.example.test"}

    for server_name, alpn in (
        ("mx.example.test", ["h2", "acme-tls/1"]),
        ("mx.example.test", ["h2", "http/1.1"]),
        (None, ["acme-tls/1"]),
        (None, None),
        ("other.test", ["acme-tls/1"]),
    ):
        served, protocol = handshake(port, server_name, alpn)
        assert names_of(served) == {"localhost"}, (server_name, alpn)
        assert protocol is None

    # a server name that is not ASCII: refused in one log line (CPython printed a traceback), the listener serves on
    hello = client_hello("aaaa.example.test", ["acme-tls/1"]).replace(b"aaaa.example", b"\xff\xfe\xfd\xfc.example")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(hello)
        raw.recv(100)  # an alert, or the connection closed
    wait_for("the refusal", lambda: "the client's server name is not ASCII" in daemon.log(), timeout=10)
    assert names_of(handshake(port, "mx.example.test", ["acme-tls/1"])[0]) == {"mx.example.test"}

    invalid = {"status": "invalid", "identifier": {"type": "dns", "value": "mx.example.test"}, "challenges": []}
    fake_ca.script["/authz/0"] = lambda: (200, {"Content-Type": "application/json"}, json.dumps(invalid).encode())
    wait_for("the failed attempt", lambda: "ACME: certificate not obtained" in daemon.log(), timeout=20)
    served, protocol = handshake(port, "mx.example.test", ["acme-tls/1"])
    assert names_of(served) == {"localhost"} and protocol is None
    assert "Traceback" not in daemon.log()


def test_concurrent_renew_requests_each_get_the_answer(
    tmp_path: Path, make_daemon: MakeDaemon, fake_ca: FakeAcme
) -> None:
    """Three `acme renew` at once (cron and an admin, say): each gets the daemon's answer; one request file
    overwrote the others and two CLIs waited 5½ minutes for nothing. A stale request left by a CLI long gone is
    dropped, not answered with a forced renewal."""
    daemon = fake_ca_daemon(make_daemon, fake_ca, ["http-01"])
    cert, key = TestCA(tmp_path / "in-service").issue("mx.example.test")  # valid for 30 days: not due
    acme_dir = daemon.root / "data" / "acme"
    acme_dir.mkdir(parents=True)
    shutil.copy(cert, acme_dir / "cert.pem")
    shutil.copy(key, acme_dir / "key.pem")
    stale = acme_dir / "renew-request.0123abcd"
    stale.write_text('{"force": true}')
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    daemon.start()
    command = [sys.executable, "-m", "relentad", "--config", str(daemon.config_path), "acme", "renew"]
    clis = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for cli in clis:
        out, err = cli.communicate(timeout=60)
        assert (cli.returncode, err) == (0, "")
        assert out.startswith("not due: valid until")
    assert not stale.exists()
    assert "ACME: requesting a certificate" not in daemon.log()


def test_a_certificate_for_another_key_is_a_failure_not_written(
    tmp_path: Path, make_daemon: MakeDaemon, fake_ca: FakeAcme
) -> None:
    """A CA whose chain does not start with a certificate for the CSR's key (a broken CA, a chain in the wrong
    order): the attempt fails and backs off, nothing is written. It was recorded as a success, the pair on disk
    did not load (no TLS after a restart), and the order was placed again every 10 minutes."""
    ca = TestCA(tmp_path / "other-ca")
    cert, _ = ca.issue("mx.example.test")
    fake_ca.grant(cert.read_bytes() + ca.pem.read_bytes())
    daemon = fake_ca_daemon(make_daemon, fake_ca, ["http-01"]).start()
    wait_for("the attempt", lambda: state(daemon).get("last_attempt"), timeout=20)
    assert state(daemon)["failures"] == 1
    assert "does not start with a certificate for the key" in str(state(daemon)["last_error"])
    assert not (daemon.root / "data" / "acme" / "cert.pem").exists()
    assert "certificate reloaded" not in daemon.log()


def test_client_gives_up_at_once_on_a_deactivated_authorization(
    fake_ca: FakeAcme, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An authorization the CA deactivates (or lets expire, or revokes) while it is polled is final (RFC 8555
    §7.1.6): the attempt ends with its status, instead of polling it for 5 minutes."""
    monkeypatch.setattr(client_mod, "POLL_DEADLINE", 1.0)
    pending = fake_ca.reply("/authz/0")
    deactivated = {"status": "deactivated", "identifier": {"type": "dns", "value": "mx.example.test"}}
    fake_ca.script["/authz/0"] = lambda: (
        json_reply(200, deactivated) if any(path.startswith("/chall/") for _, path in fake_ca.requests) else pending
    )
    client = fake_client(fake_ca)
    client.register("")
    with pytest.raises(AcmeError, match=r"^authorization for mx.example.test is deactivated: HTTP 400$"):
        client.issue(["mx.example.test"], jws.new_key("ec256"), ["http-01"], lambda *a: None, lambda *a: None)


def test_client_polls_of_one_order_share_one_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first name validates after 250 s, the others never: the attempt gives up at POLL_DEADLINE in all (what
    `acme renew` waits for), not 300 s after each name's polls began (550 s here; with authorizations, readiness
    and issuance each slow, 15 minutes). The clock is a fake one that the client's sleeps advance."""
    names = ["mx.example.test", "mta-sts.example.test", "autoconfig.example.test"]
    fake = FakeAcme(tmp_path / "fake-ca", names).start()
    now = [1000.0]
    pending = fake.reply("/authz/0")
    valid = json_reply(200, {"status": "valid", "identifier": {"type": "dns", "value": names[0]}, "challenges": []})
    fake.script["/authz/0"] = lambda: valid if now[0] >= 1250.0 else pending

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(client_mod.time, "monotonic", lambda: now[0])
    try:
        client = Client(fake.directory, jws.new_key("ec256"), str(fake.ca.pem), sleep=sleep)
        client.register("")
        with pytest.raises(AcmeError, match=r"^authorization for mta-sts.example.test still pending after 300 s$"):
            client.issue(names, jws.new_key("ec256"), ["http-01"], lambda *a: None, lambda *a: None)
    finally:
        fake.stop()
    assert now[0] - 1000.0 <= client_mod.POLL_DEADLINE + 30.0


def test_client_refuses_an_answer_cut_short_or_not_http(fake_ca: FakeAcme) -> None:
    """A connection that drops inside the body (a chain cut after the leaf would have been served without its
    intermediates) or a server that does not speak HTTP: one line each, no traceback in the daemon's log."""
    fake_ca.script["/dir"] = lambda: (200, {"Content-Length": "1000", "Connection": "close"}, b'{"newNonce": 1}')
    with pytest.raises(AcmeError, match=r"^the ACME server's answer from \S+/dir was cut short$"):
        fake_client(fake_ca).get_directory()
    fake_ca.script["/dir"] = lambda: (0, {}, b"GARBAGE\r\n\r\n")
    with pytest.raises(AcmeError, match=r"^the ACME server \S+/dir answered no valid HTTP \(BadStatusLine\)$"):
        fake_client(fake_ca).get_directory()


def test_reload_keeps_the_certificate_in_service_when_acmes_pair_does_not_load(
    tmp_path: Path, make_daemon: MakeDaemon, fake_ca: FakeAcme
) -> None:
    """A SIGHUP while ACME's files do not load (a damaged cert.pem here): STARTTLS and 993 keep the certificate in
    service, as a reload does with [tls] files; it turned TLS off until the next renewal, weeks later."""
    daemon = fake_ca_daemon(make_daemon, fake_ca, ["http-01"], imap=True, imaps_port=free_port())
    cert, key = TestCA(tmp_path / "in-service").issue("mx.example.test")
    acme_dir = daemon.root / "data" / "acme"
    acme_dir.mkdir(parents=True)
    shutil.copy(cert, acme_dir / "cert.pem")
    shutil.copy(key, acme_dir / "key.pem")
    daemon.start()
    (acme_dir / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\ndamaged\n")
    daemon.signal(signal.SIGHUP)
    wait_for("the reload", lambda: "configuration reloaded" in daemon.log(), timeout=10)
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
    served, _ = handshake(daemon.imaps_port, "mx.example.test", None)
    assert served.serial_number == x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
