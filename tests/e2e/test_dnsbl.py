"""DNS blocklists on the real daemon: a client listed in a dnsmasq-served zone, from 127.0.0.2 (RFC 5782's test
point, which every list lists) against 127.0.0.1 (which none may)."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MakeDaemon, provision
from tests.support.daemon import Daemon, free_port, wait_for_port
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq, DnsRecords
from tests.support.metrics import http_get, sample

MESSAGE = b"From: someone@elsewhere.test\r\nTo: alice@example.test\r\nSubject: hello\r\n\r\nHello.\r\n"
REASON = "Listed for testing, see https://bl.test/"


@pytest.fixture
def zone_server(tmp_path: Path) -> Iterator[Dnsmasq]:
    """This test's own DNS server (the session's shared one must stay empty)."""
    server = start_or_skip(tmp_path / "dnsbl-dns")
    yield server
    server.close()


def listed_daemon(make_daemon: MakeDaemon, dns: Dnsmasq, action: str, metrics_port: int = 0) -> Daemon:
    dns.replace(DnsRecords().add_a("2.0.0.127.bl.test", "127.0.0.2").add_txt("2.0.0.127.bl.test", REASON))
    settings: dict[str, dict[str, Any]] = {
        "dns": {"nameservers": [dns.nameserver]},
        "dnsbl": {"zones": ["bl.test"], "action": action},
        "server": {"postmaster": "carol@example.test"},
    }
    if metrics_port:
        settings["listen"] = {"metrics": f"127.0.0.1:{metrics_port}"}
    daemon = provision(make_daemon(settings=settings))
    daemon.add_alias("postmaster@example.test", "carol@example.test")
    daemon.start()
    if metrics_port:
        wait_for_port("127.0.0.1", metrics_port, proc=daemon.proc)
    return daemon


def client(daemon: Daemon, source: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=15, source_address=(source, 0))
    smtp.ehlo("client.elsewhere.test")
    return smtp


def test_a_listed_client_is_refused_naming_the_list_but_may_write_to_postmaster(
    make_daemon: MakeDaemon, zone_server: Dnsmasq
) -> None:
    daemon = listed_daemon(make_daemon, zone_server, "reject")
    with client(daemon, "127.0.0.2") as smtp:
        assert smtp.mail("someone@elsewhere.test")[0] == 250
        code, text = smtp.rcpt("alice@example.test")
        assert (code, text.decode()) == (
            550,
            f"5.7.1 Service unavailable; client [127.0.0.2] blocked using bl.test (127.0.0.2: {REASON})",
        )
        assert smtp.rcpt("nobody@elsewhere.test")[0] == 554  # not ours: relay denied, no lookup needed
        assert smtp.rcpt("postmaster@example.test")[0] == 250
        assert smtp.rcpt("Postmaster")[0] == 250  # the bare one too (RFC 5321 §4.5.1)
        assert smtp.rcpt('"postmaster"@Example.Test')[0] == 250  # quoted and in capitals, it is postmaster too
        assert smtp.data(MESSAGE)[0] == 250
    assert len(daemon.messages("carol@example.test")) == 1
    assert daemon.messages("alice@example.test") == []
    with client(daemon, "127.0.0.1") as smtp:
        assert smtp.sendmail("someone@elsewhere.test", ["alice@example.test"], MESSAGE) == {}
    assert len(daemon.messages("alice@example.test")) == 1
    assert "OK   dnsbl: bl.test answers its test points" in daemon.cli("doctor", check=False).stdout


def test_with_action_junk_a_listed_clients_mail_is_filed_into_junk_saying_why(
    make_daemon: MakeDaemon, zone_server: Dnsmasq
) -> None:
    port = free_port()
    daemon = listed_daemon(make_daemon, zone_server, "junk", metrics_port=port)
    with client(daemon, "127.0.0.2") as smtp:
        assert smtp.sendmail("someone@elsewhere.test", ["alice@example.test", "bob@example.test"], MESSAGE) == {}
        assert smtp.sendmail("someone@elsewhere.test", ["carol@example.test"], MESSAGE) == {}  # asked once
    status, text = http_get(port, "/metrics")
    assert status == 200 and sample(text, "relentad_dnsbl_listed_total", 'kind="ip",zone="bl.test"') == 1.0
    for user in ("alice@example.test", "bob@example.test"):
        assert daemon.messages(user) == []
        [junked] = daemon.messages(user, "Junk")
        assert f"X-DNSBL: 127.0.0.2 listed in bl.test (127.0.0.2: {REASON})\r\n".encode() in junked


def test_a_client_is_looked_up_once_per_connection_starttls_or_not(
    make_daemon: MakeDaemon, zone_server: Dnsmasq
) -> None:
    """STARTTLS starts a new SMTP session (RFC 3207 §4.2) on the same connection from the same IP: the listing found
    before it still holds, and is counted once. The new session used to look the IP up again and count it twice."""
    port = free_port()
    daemon = listed_daemon(make_daemon, zone_server, "junk", metrics_port=port)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with client(daemon, "127.0.0.2") as smtp:
        assert smtp.mail("someone@elsewhere.test")[0] == 250
        assert smtp.rcpt("alice@example.test")[0] == 250  # looked up here
        assert smtp.rset()[0] == 250
        smtp.starttls(context=context)
        assert smtp.sendmail("someone@elsewhere.test", ["bob@example.test"], MESSAGE) == {}
    assert sample(http_get(port, "/metrics")[1], "relentad_dnsbl_listed_total", 'kind="ip",zone="bl.test"') == 1.0
    [junked] = daemon.messages("bob@example.test", "Junk")
    assert f"X-DNSBL: 127.0.0.2 listed in bl.test (127.0.0.2: {REASON})\r\n".encode() in junked


def test_an_x_dnsbl_field_arriving_with_the_message_is_removed(make_daemon: MakeDaemon, zone_server: Dnsmasq) -> None:
    """Only this server writes X-DNSBL (why a message is in Junk); a sender's own used to be kept, so anyone could
    make mail look blocklisted, or hide among real listings."""
    daemon = listed_daemon(make_daemon, zone_server, "junk")
    forged = b"X-DNSBL: 192.0.2.1 listed in zen.example (127.0.0.2: forged)\r\n" + MESSAGE
    with client(daemon, "127.0.0.1") as smtp:  # not listed
        assert smtp.sendmail("someone@elsewhere.test", ["alice@example.test"], forged) == {}
    [stored] = daemon.messages("alice@example.test")
    assert b"X-DNSBL" not in stored and b"forged" not in stored
    with client(daemon, "127.0.0.2") as smtp:  # listed: only our own field remains
        assert smtp.sendmail("someone@elsewhere.test", ["bob@example.test"], forged) == {}
    [junked] = daemon.messages("bob@example.test", "Junk")
    assert junked.count(b"X-DNSBL:") == 1 and b"forged" not in junked


def test_mail_linking_to_a_listed_domain_is_filed_into_junk(make_daemon: MakeDaemon, zone_server: Dnsmasq) -> None:
    """``domain_zones``: the registrable domain of a link (here in a quoted-printable HTML part) is listed."""
    records = DnsRecords().add_a("bad.example.dbl.test", "127.0.1.2").add_txt("bad.example.dbl.test", "spam domain")
    zone_server.replace(records.add_a("test.dbl.test", "127.0.1.2"))
    port = free_port()
    settings = {
        "dns": {"nameservers": [zone_server.nameserver]},
        "dnsbl": {"domain_zones": ["dbl.test"]},
        "listen": {"metrics": f"127.0.0.1:{port}"},
    }
    daemon = provision(make_daemon(settings=settings)).start()
    wait_for_port("127.0.0.1", port, proc=daemon.proc)
    html = (
        b"From: someone@elsewhere.test\r\nTo: alice@example.test\r\nSubject: offer\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b'<p>Buy <a href=3D"http://www.shop.bad.example/deal?id=3D1">now</a></p>\r\n'
    )
    with client(daemon, "127.0.0.1") as smtp:
        assert smtp.sendmail("someone@elsewhere.test", ["alice@example.test"], html) == {}
        assert smtp.sendmail("someone@elsewhere.test", ["alice@example.test"], MESSAGE) == {}
    [junked] = daemon.messages("alice@example.test", "Junk")
    assert b"X-DNSBL: bad.example listed in dbl.test (127.0.1.2: spam domain)\r\n" in junked
    [kept] = daemon.messages("alice@example.test")
    assert b"X-DNSBL" not in kept
    assert sample(http_get(port, "/metrics")[1], "relentad_dnsbl_listed_total", 'kind="domain",zone="dbl.test"') == 1
    assert "OK   dnsbl: dbl.test answers its test points" in daemon.cli("doctor", check=False).stdout
