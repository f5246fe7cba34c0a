"""Operating relentad: /metrics and /healthz on the metrics listener, `domain dns`, `doctor`."""

from __future__ import annotations

import asyncio
import imaplib
import json
import re
import smtplib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from relentad import httpserver, metrics
from relentad.cli import main as cli_main
from relentad.store.db import Store
from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import Daemon, free_port, wait_for_port
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import DnsRecords
from tests.support.metrics import http_get, sample


def settled_metrics(port: int) -> str:
    """/metrics once no store commit is in flight: the histogram's count and its +Inf bucket are separate
    counters, so a read during a commit (the daemon's start-up jobs write too) can see them apart."""
    for _ in range(100):
        status, body = http_get(port, "/metrics")
        assert status == 200
        count = sample(body, "relentad_store_commit_seconds_count")
        if sample(body, "relentad_store_commit_seconds_bucket", 'le="+Inf"') == count:
            return body
        time.sleep(0.05)
    raise AssertionError("store commit histogram never settled")


def metrics_daemon(make_daemon: MakeDaemon) -> tuple[Daemon, int]:
    port = free_port()
    daemon = make_daemon(settings={"listen": {"metrics": f"127.0.0.1:{port}"}}, imap=True)
    provision(daemon).start()
    wait_for_port("127.0.0.1", port, proc=daemon.proc)  # the metrics listener starts after the mail listeners
    return daemon, port


def test_metrics_count_mail_sessions_and_commits(make_daemon: MakeDaemon) -> None:
    daemon, port = metrics_daemon(make_daemon)
    status, body = http_get(port, "/healthz")
    assert (status, body) == (200, "ok\n")
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port) as client:
        assert client.docmd("EHLO")[0] == 501  # refused inside the EHLO reply path: counted as well
        client.sendmail("someone@a.test", ["alice@example.test"], b"Subject: hi\r\n\r\nhello\r\n")
        try:
            client.sendmail("someone@a.test", ["nobody@elsewhere.test"], b"Subject: relay\r\n\r\nno\r\n")
            raise AssertionError("relayed")
        except smtplib.SMTPRecipientsRefused:
            pass
        try:
            client.sendmail("someone@a.test", ["ghost@example.test"], b"Subject: x\r\n\r\nno\r\n")
            raise AssertionError("accepted an unknown user")
        except smtplib.SMTPRecipientsRefused:
            pass
    imap = imaplib.IMAP4("127.0.0.1", daemon.imap_port)
    imap.noop()  # an open (not yet authenticated) session
    try:
        body = settled_metrics(port)
        assert sample(body, "relentad_messages_received_total", 'listener="smtp"') == 1
        assert sample(body, "relentad_smtp_rejected_total", 'listener="smtp",reason="relay_denied"') == 1
        assert sample(body, "relentad_smtp_rejected_total", 'listener="smtp",reason="unknown_user"') == 1
        assert sample(body, "relentad_smtp_rejected_total", 'listener="smtp",reason="501"') == 1
        assert sample(body, "relentad_sessions_open", 'listener="imap"') == 1
        assert sample(body, "relentad_sessions_open", 'listener="smtp"') == 0
        assert sample(body, "relentad_queue_messages") == 0
        assert sample(body, "relentad_queue_oldest_age_seconds") == 0
        commits = sample(body, "relentad_store_commit_seconds_count")
        assert commits >= 1
        assert sample(body, "relentad_store_commit_seconds_bucket", 'le="+Inf"') == commits
        # the store's counters are counters (they were gauges): TYPE counter and the _total name
        assert sample(body, "relentad_store_jobs_total") >= commits
        assert sample(body, "relentad_store_commit_failures_total") == 0
        assert (
            re.search(r"^# TYPE relentad_store_jobs(_total)? counter$", body, re.M)
            and "relentad_store_jobs " not in body
        )
        assert "relentad_spam_verdicts_total" in body
    finally:
        imap.logout()
    assert http_get(port, "/nothing")[0] == 404


async def test_healthz_reports_a_listener_that_is_down(tmp_path: Path) -> None:
    store = Store(tmp_path / "relentad.db")
    store.start(asyncio.get_running_loop())
    serving = {"smtp": True, "imap": True}
    view = metrics.DaemonView(store, lambda: 0, dict, lambda: dict(serving))
    server = metrics.MetricsServer(view)
    healthz = httpserver.Request("GET", "/healthz", (1, 0))
    try:
        assert server.respond(healthz) == httpserver.text(200, "ok")
        serving["imap"] = False
        response = server.respond(healthz)
        assert response.status == 503 and b"listener imap is not serving" in response.body
        assert server.respond(httpserver.Request("POST", "/metrics", (1, 0))).status == 405
    finally:
        await asyncio.to_thread(store.close)


@pytest.fixture
async def metrics_port(tmp_path: Path) -> AsyncIterator[int]:
    """The port of a metrics listener on loopback over an empty store."""
    store = Store(tmp_path / "relentad.db")
    store.start(asyncio.get_running_loop())
    server = metrics.MetricsServer(metrics.DaemonView(store, lambda: 0, dict, dict))
    listening = await server.start("127.0.0.1", 0)
    try:
        yield listening.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.to_thread(store.close)


async def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` over a new connection; what came back until the server closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await reader.read()
    writer.close()
    return answer


async def test_head_gets_the_headers_of_get_without_a_body(metrics_port: int) -> None:
    """RFC 9110 §9.3.2: a response to HEAD has no content (it had the whole exposition after its headers)."""
    got = await exchange(metrics_port, b"GET /healthz HTTP/1.0\r\n\r\n")
    head = await exchange(metrics_port, b"HEAD /healthz HTTP/1.0\r\n\r\n")
    assert got.endswith(b"\r\n\r\nok\n") and b"Content-Length: 3\r\n" in got
    undated = re.compile(rb"^Date: .*\r\n", re.M)  # the clock may tick between the two
    assert undated.sub(b"", head) == undated.sub(b"", got.removesuffix(b"ok\n"))


async def test_malformed_requests_get_the_right_status(metrics_port: int) -> None:
    """RFC 9110/9112 over a real socket: a bare-LF head (``printf … | nc``) and the absolute form are served; a
    request line with no HTTP/1.x version is 400 (HTTP/0.9), another major version 505, another method 405 with
    the Allow field it requires."""

    async def ask(request: bytes) -> tuple[str, bytes]:
        head, _, body = (await exchange(metrics_port, request)).partition(b"\r\n\r\n")
        return head.split(b"\r\n", 1)[0].decode(), head + b"\r\n" + body

    assert (await ask(b"GET /healthz HTTP/1.0\n\n"))[0] == "HTTP/1.1 200 OK"
    assert (await ask(b"GET http://127.0.0.1/healthz HTTP/1.1\r\nHost: x\r\n\r\n"))[0] == "HTTP/1.1 200 OK"
    assert (await ask(b"GET /healthz\r\n\r\n"))[0] == "HTTP/1.1 400 Bad Request"
    assert (await ask(b"GET /healthz FOO/1.0\r\n\r\n"))[0] == "HTTP/1.1 400 Bad Request"
    assert (await ask(b"GET /healthz HTTP/2.0\r\n\r\n"))[0] == "HTTP/1.1 505 HTTP Version Not Supported"
    status, answer = await ask(b"POST /metrics HTTP/1.0\r\n\r\n")
    assert status == "HTTP/1.1 405 Method Not Allowed" and b"\r\nAllow: GET, HEAD\r\n" in answer
    for size in (9000, 100_000):  # over 8 KiB; over the stream reader's 64 KiB line limit
        header = b"X-Long: " + b"a" * size + b"\r\n"
        assert (await ask(b"GET /metrics HTTP/1.0\r\n" + header + b"\r\n"))[0].startswith("HTTP/1.1 431")


# -- domain dns and doctor ---------------------------------------------------------------------------------


def cli(daemon: Daemon, *args: str) -> Result:
    """The CLI in-process (a subprocess costs seconds of imports); same code path as `relentad ARGS`."""
    return CliRunner().invoke(cli_main, ["--config", str(daemon.config_path), *args])


def published(records: list[dict[str, Any]]) -> DnsRecords:
    """A zone serving exactly what `relentad domain dns --json` asks for, the host at 127.0.0.1."""
    zone = DnsRecords().add_a("mx.example.test", "127.0.0.1")
    for record in records:
        name, value = record["name"], record["value"]
        if value is None:
            continue
        if record["type"] == "MX":
            preference, host = value.split()
            zone.add_mx(name, host, int(preference))
        elif record["type"] == "TXT":
            zone.add_txt(name, value)
        elif record["type"] == "SRV":
            priority, weight, port, target = value.split()
            zone.add_srv(name, int(priority), int(weight), int(port), target)
    return zone


def test_domain_dns_prints_every_record_and_doctor_checks_them(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    zone = start_or_skip(tmp_path / "zone")
    try:
        daemon = make_daemon(
            settings={"dns": {"nameservers": [zone.nameserver]}}, submission=True, imap=True, pop3=True
        )
        provision(daemon).start()
        daemon.cli("dkim", "generate", "example.test")
        text = cli(daemon, "domain", "dns", "example.test").output
        assert "example.test. IN MX 10 mx.example.test." in text
        assert 'example.test. IN TXT "v=spf1 mx -all"' in text
        assert '._domainkey.example.test. IN TXT "v=DKIM1; k=rsa; p=' in text
        assert '_dmarc.example.test. IN TXT "v=DMARC1;' in text
        assert '_mta-sts.example.test. IN TXT "v=STSv1; id=' in text
        assert '_smtp._tls.example.test. IN TXT "v=TLSRPTv1;' in text
        assert f"_submission._tcp.example.test. IN SRV 0 1 {daemon.submission_port} mx.example.test." in text
        assert f"_imaps._tcp.example.test. IN SRV 0 1 {daemon.imaps_port} mx.example.test." in text
        assert f"_imap._tcp.example.test. IN SRV 0 1 {daemon.imap_port} mx.example.test." in text
        assert f"_pop3s._tcp.example.test. IN SRV 10 1 {daemon.pop3s_port} mx.example.test." in text
        assert "autoconfig.example.test. IN CNAME mx.example.test." in text
        assert "; mode: enforce" in text and "; mx: mx.example.test" in text
        records = json.loads(cli(daemon, "domain", "dns", "example.test", "--json").output)["records"]

        zone.replace(published(records))
        good = cli(daemon, "doctor")
        assert good.exit_code == 0, good.output
        assert "FAIL" not in good.output
        assert "OK   reverse dns 127.0.0.1: mx.example.test" in good.output
        assert "OK   tls names: covers mx.example.test" in good.output
        assert "OK   port imaps:" in good.output and "OK   port pop3s:" in good.output
        assert "WARN spam model: no global model trained" in good.output  # a warning: the exit status stays 0

        broken = published([r for r in records if not str(r["value"] or "").startswith(("v=spf1", "v=DKIM1"))])
        broken.a.clear()
        broken.add_a("mx.example.test", "127.0.0.9").add_ptr("127.0.0.9", "vps-1234.provider.test")
        zone.replace(broken)
        daemon.stop()
        bad = CliRunner().invoke(cli_main, ["--config", str(daemon.config_path), "doctor", "--json"])
        assert bad.exit_code == 1
        findings = {(f["status"], f["check"]): f for f in json.loads(bad.stdout)}
        spf = findings[("fail", "dns TXT example.test")]
        assert spf["message"] == "missing" and "v=spf1 mx -all" in spf["fix"]
        assert any(check.endswith("._domainkey.example.test") for status, check in findings if status == "fail")
        ptr = findings[("fail", "reverse dns 127.0.0.9")]
        assert "vps-1234.provider.test" in ptr["message"] and "PTR" in ptr["fix"]
        assert ("fail", "port smtp") in findings
    finally:
        zone.close()


def test_domain_dns_refuses_names_that_are_not_domains(make_daemon: MakeDaemon) -> None:
    relentad = provision(make_daemon())  # not started: `domain dns` reads the configuration only
    # NUL cannot reach argv (execve refuses it); an overlong UTF-8 "/" (C0 AF) arrives as surrogate escapes.
    for name in ("../../etc", "exa\udcc0\udcafmple.test", "example..test", "a/b.test", "example.test/../x"):
        result = CliRunner().invoke(cli_main, ["--config", str(relentad.config_path), "domain", "dns", name])
        assert result.exit_code == 1
        assert "not a domain name" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
