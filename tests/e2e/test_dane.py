"""DANE (RFC 7672) on outbound delivery, against a real DNSSEC world on loopback.

Knot DNS signs the ``test.`` zone and serves it with an unsigned child (``plain.test``: insecure) and a child
whose DS is wrong (``_tcp.mx.bad.test``: bogus, so unbound answers SERVFAIL); unbound validates with ``test.``'s
DS as trust anchor, and relentad asks unbound. The MX hosts: an aiosmtpd server with STARTTLS on 127.0.0.72:25
(a certificate from a private CA, sent with the CA: DANE-TA can match it) and one without STARTTLS on
127.0.0.73:25. Every recipient domain publishes a different case. The DNS servers and MX hosts start once per
module. Needs root (port 25) and the knot and unbound packages.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import hashlib
import json
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from relentad import dnsrecords
from relentad import doctor as doctor_mod
from relentad.dns import make_resolver
from relentad.queue import dane, danecheck
from relentad.tls import make_self_signed
from tests.e2e.conftest import MakeDaemon
from tests.e2e.test_outbound import message, queue_list, submit
from tests.support.daemon import Daemon, free_port, wait_for
from tests.support.dnssec import SignedDns, Zone
from tests.support.metrics import http_get, sample
from tests.support.pki import TestCA
from tests.support.smtp_peer import Sink

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binds port 25 on 127.0.0.72-73: needs root")

A_HOST, TLS_HOST, PLAIN_HOST = "127.0.0.71", "127.0.0.72", "127.0.0.73"
RESOLVER_HOST, AUTH_HOST = "127.0.0.74", "127.0.0.75"
FAST_QUEUE = {"retry_schedule": ["1s"], "scan_interval": "1s", "timeout": "10s"}
ZEROS = "00" * 32


@dataclass
class World:
    dns: SignedDns
    tls: Sink  # the MX with STARTTLS
    plain: Sink  # the MX without
    spki: str  # the TLS MX's 3 1 1 association
    cert: Path  # a.test's own certificate and key, whose 3 1 1 record mx.a.test publishes
    key: Path
    own: str
    sni: list[str]  # the server names the TLS MX was asked for (SNI)


def _mx(label: str, host: str, *tlsa: str) -> str:
    lines = [f"{label} MX 10 mx.{label}.test.", f"mx.{label} A {host}"]
    return "\n".join(lines + [f"_25._tcp.mx.{label} TLSA {record}" for record in tlsa]) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("dane")
    ca = TestCA(workdir / "ca")
    cert_path, key_path = ca.issue("mx.good.test", "mx.ta.test", "mx.wrong.test", "mx.bad.test", "real.alias.test")
    chain = workdir / "chain.pem"
    chain.write_bytes(cert_path.read_bytes() + ca.pem.read_bytes())  # the CA goes along: DANE-TA needs it
    leaf = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    spki = dane.record_for(leaf).text()
    own_cert, own_key = workdir / "own.pem", workdir / "own.key"
    make_self_signed(own_cert, own_key, ["mx.a.test"])
    own_der = x509.load_pem_x509_certificate(own_cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    own = dane.record_for(own_der).text()
    ca_hash = hashlib.sha256(ca.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    top = (
        f"ns A {AUTH_HOST}\n"
        + _mx("a", A_HOST, own)
        + _mx("good", TLS_HOST, spki, f"1 1 1 {ZEROS}")
        + _mx("ta", TLS_HOST, f"2 0 1 {ca_hash}", f"0 0 1 {ca_hash}")
        + _mx("taname", TLS_HOST, f"2 0 1 {ca_hash}")
        + _mx("wrong", TLS_HOST, f"3 1 1 {ZEROS}", f"2 0 1 {ZEROS}")
        + '_smtp._tls.wrong TXT "v=TLSRPTv1; rua=mailto:tls@notls.test"\n'
        + _mx("notls", PLAIN_HOST, spki)
        + _mx("pkix", PLAIN_HOST, f"1 1 1 {ZEROS}")
        + _mx("pkixtls", TLS_HOST, f"1 1 1 {ZEROS}", f"3 9 1 {ZEROS}")
        + _mx("bad", TLS_HOST)
        + f"_tcp.mx.bad NS ns.test.\n_tcp.mx.bad DS 12345 13 2 {ZEROS}\n"
        + "plain NS ns.test.\n"
        # an MX host that is an alias: the TLSA records at its target come first (the wrong one at the alias is not
        # looked at) and the target is the TLSA base domain, sent as SNI (RFC 7672 §2.2.3, §8.1)
        + f"alias MX 10 mx.alias.test.\nmx.alias CNAME real.alias.test.\nreal.alias A {TLS_HOST}\n"
        + f"_25._tcp.real.alias TLSA 2 0 1 {ca_hash}\n_25._tcp.mx.alias TLSA 3 1 1 {ZEROS}\n"
        # an alias in the signed zone for a host in the unsigned one: the records at the alias apply (§2.2.2)
        + f"partial MX 10 mx.partial.test.\nmx.partial CNAME mx.plain.test.\n_25._tcp.mx.partial TLSA {spki}\n"
    )
    zones = [
        Zone("test", top),
        Zone("plain.test", f"@ MX 10 mx.plain.test.\nmx A {PLAIN_HOST}\n_25._tcp.mx TLSA 3 1 1 {ZEROS}\n", False),
        Zone("_tcp.mx.bad.test", f"_25 TLSA {spki}\n", False),
    ]
    dns_server = SignedDns(workdir / "dns", zones, top="test", host=RESOLVER_HOST, auth_host=AUTH_HOST)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key_path)
    sni: list[str] = []
    context.sni_callback = lambda _sock, name, _context: sni.append(name or "")
    tls, plain = Sink(), Sink()
    controllers = [
        Controller(tls, hostname=TLS_HOST, port=25, tls_context=context),
        Controller(plain, hostname=PLAIN_HOST, port=25),
    ]
    try:
        dns_server.start()
        for controller in controllers:
            controller.start()
        yield World(dns_server, tls, plain, spki, own_cert, own_key, own, sni)
    finally:
        for controller in controllers:
            if controller._thread is not None:  # started
                controller.stop()
        dns_server.close()


def sender(make_daemon: MakeDaemon, world: World, start: bool = True, **queue: object) -> Daemon:
    metrics_port = free_port()
    a = make_daemon(
        "a",
        host=A_HOST,
        submission=True,
        settings={
            "dns": {"nameservers": [world.dns.nameserver], "timeout": 3.0},
            "queue": {**FAST_QUEUE, **queue},
            "server": {"hostname": "mx.a.test"},
            "tlsrpt": {"send_reports": True},
            "dmarc": {"reporter": "reports@a.test"},
            "tls": {"cert": str(world.cert), "key": str(world.key)},
            "listen": {"metrics": f"127.0.0.1:{metrics_port}"},
        },
    )
    a.add_domain("a.test")
    a.add_user("alice@a.test")
    return a.start() if start else a


def replies(a: Daemon, count: int) -> dict[str, str]:
    """Each recipient's last reply once ``count`` of them were attempted (delivered ones leave the queue)."""

    def attempted() -> dict[str, str] | None:
        found = {r["address"]: r["last_reply"] for m in queue_list(a) for r in m["recipients"] if r["attempts"]}
        return found if len(found) >= count else None

    result: dict[str, str] = wait_for(f"{count} attempted recipients", attempted, timeout=30)
    return result


def took(sink: Sink, recipient: str) -> list[bool]:
    """For each message ``sink`` accepted for ``recipient``: whether its MAIL came over TLS."""
    found = []
    for index, command in enumerate(sink.commands):
        if command == f"RCPT <{recipient}>":
            mail = max(i for i in range(index) if sink.commands[i].startswith("MAIL"))
            found.append(sink.tls[mail])
    return found


def test_dane_decides_tls_per_mx_host_and_never_downgrades(make_daemon: MakeDaemon, world: World) -> None:
    a = sender(make_daemon, world)
    delivered = ["good@good.test", "ta@ta.test", "plain@plain.test", "pkixtls@pkixtls.test", "alias@alias.test"]
    kept = ["wrong@wrong.test", "notls@notls.test", "bad@bad.test", "taname@taname.test", "pkix@pkix.test"]
    kept.append("partial@partial.test")
    for recipient in delivered + kept:
        submit(a, [recipient], message(recipient))
    sink = {r: world.plain if r.startswith("plain@") else world.tls for r in delivered}
    wait_for("the deliveries", lambda: all(took(sink[r], r) for r in delivered))
    assert took(world.tls, "good@good.test") == [True], "DANE-EE: the key matches, over TLS"
    assert took(world.tls, "ta@ta.test") == [True], "DANE-TA: the CA sent along matches, the name is right"
    assert took(world.plain, "plain@plain.test") == [False], "insecure zone: opportunistic, as without DANE"
    assert took(world.tls, "pkixtls@pkixtls.test") == [True], "only unusable records: TLS, the certificate unchecked"
    assert took(world.tls, "alias@alias.test") == [True], "the records at the alias's target"
    assert "real.alias.test" in world.sni and "mx.alias.test" not in world.sni, world.sni

    last = replies(a, len(kept))
    assert last["wrong@wrong.test"].startswith("451 4.7.5 DANE: mx.wrong.test[127.0.0.72]: ")
    assert "matches a TLSA record" in last["wrong@wrong.test"]
    assert last["notls@notls.test"] == "451 4.7.5 DANE: mx.notls.test[127.0.0.73] does not offer STARTTLS"
    # RFC 7672 §2.2: a secure TLSA RRset of unusable records (PKIX-EE) still promises TLS: no plain text
    assert last["pkix@pkix.test"] == "451 4.7.5 DANE: mx.pkix.test[127.0.0.73] does not offer STARTTLS"
    assert last["partial@partial.test"] == "451 4.7.5 DANE: mx.partial.test[127.0.0.73] does not offer STARTTLS"
    assert last["bad@bad.test"].startswith("451 4.7.5 DANE: mx.bad.test: TLSA lookup of _25._tcp.mx.bad.test failed")
    assert "do not include mx.taname.test" in last["taname@taname.test"]
    for recipient in kept:  # never in plain text, never after a failed check
        assert took(world.tls, recipient) == [] and took(world.plain, recipient) == []

    rows = {tuple(r) for r in a.query("SELECT domain, policy_type, result, mx_host FROM tlsrpt_results")}
    assert {
        ("good.test", "tlsa", "success", "mx.good.test"),
        ("ta.test", "tlsa", "success", "mx.ta.test"),
        ("plain.test", "no-policy-found", "starttls-not-supported", "mx.plain.test"),
        ("pkix.test", "tlsa", "starttls-not-supported", "mx.pkix.test"),
        ("pkixtls.test", "tlsa", "success", "mx.pkixtls.test"),
        ("alias.test", "tlsa", "success", "mx.alias.test"),
        ("partial.test", "tlsa", "starttls-not-supported", "mx.partial.test"),
        ("wrong.test", "tlsa", "tlsa-invalid", "mx.wrong.test"),
        ("notls.test", "tlsa", "starttls-not-supported", "mx.notls.test"),
        ("bad.test", "tlsa", "dnssec-invalid", "mx.bad.test"),
        ("taname.test", "tlsa", "certificate-host-mismatch", "mx.taname.test"),
    } == rows
    [(policy,)] = a.query("SELECT DISTINCT policy FROM tlsrpt_results WHERE domain = 'good.test'")
    assert policy == world.spki, "the policy-string is the records DANE used (the unusable one left out)"
    [(base,)] = a.query("SELECT DISTINCT mx FROM tlsrpt_results WHERE domain = 'alias.test'")
    assert base == "real.alias.test", "the policy domain of a tlsa policy is the TLSA base domain"
    _, text = http_get(int(a.settings["listen"]["metrics"].rpartition(":")[2]), "/metrics")
    for reason in ("tlsa", "no_starttls", "dnssec", "name"):
        assert sample(text, "relentad_dane_failures_total", f'reason="{reason}"') >= 1
    for result in ("usable", "unusable", "insecure", "failed"):
        assert sample(text, "relentad_dane_lookups_total", f'result="{result}"') >= 1
    log = a.log()
    assert "dane domain=wrong.test tlsa: " in log and "dane domain=bad.test dnssec: " in log

    # wrong.test asks for TLS reports: policy type tlsa, its records, the failure. They go to notls.test, whose MX
    # has no STARTTLS though its TLSA records require it: a report is delivered despite that (RFC 8460 §5.3).
    assert "TLS report for wrong.test queued to tls@notls.test" in a.cli("reports", "send", "--tls").stdout
    raw = wait_for("the TLS report", lambda: [m for _, r, m in world.plain.accepted if r == ["tls@notls.test"]])[0]
    [attachment] = list(email.message_from_bytes(raw, policy=email.policy.default).iter_attachments())
    [policy] = json.loads(gzip.decompress(attachment.get_content()))["policies"]
    assert policy["policy"] == {
        "policy-type": "tlsa",
        "policy-string": [f"2 0 1 {ZEROS}", f"3 1 1 {ZEROS}"],  # sorted: the same RRset is one policy
        "policy-domain": "mx.wrong.test",  # the TLSA base domain (RFC 8460 §1.1); mx-host is for sts only
    }
    assert policy["summary"]["total-successful-session-count"] == 0
    assert {d["result-type"] for d in policy["failure-details"]} == {"tlsa-invalid"}


def test_dane_off_delivers_as_before(make_daemon: MakeDaemon, world: World) -> None:
    a = sender(make_daemon, world, dane=False)
    submit(a, ["notls2@notls.test"], message("notls2@notls.test"))
    wait_for("plain-text delivery", lambda: took(world.plain, "notls2@notls.test"))
    assert took(world.plain, "notls2@notls.test") == [False]


async def test_dane_check_domain_dns_and_doctor(make_daemon: MakeDaemon, world: World) -> None:
    """The CLI needs no running daemon; after three CLI runs the other cases are checked in-process (each CLI run
    costs a Python start)."""
    a = sender(make_daemon, world, start=False)
    good = a.cli("dane", "check", "GOOD.test")
    assert good.stdout.splitlines() == [
        "good.test: MX DNSSEC-secure",
        "mx.good.test: addresses 127.0.0.72 (secure)",
        f"  TLSA 1 1 1 {ZEROS} (PKIX-EE, unusable for SMTP)",
        f"  TLSA {world.spki} (DANE-EE)",
        "  127.0.0.72: OK STARTTLS works and the certificate matches the TLSA records",
    ]
    wrong = a.cli("dane", "check", "wrong.test", check=False)
    assert wrong.returncode == 1 and "127.0.0.72: FAIL tlsa-invalid: " in wrong.stdout
    bad = a.cli("dane", "check", "bad.test", "--json", check=False)
    [host] = json.loads(bad.stdout)["hosts"]
    assert bad.returncode == 1
    assert host["error"].startswith("TLSA lookup of _25._tcp.mx.bad.test failed")
    resolver = make_resolver([world.dns.nameserver], 3.0)

    async def check(domain: str) -> danecheck.DomainCheck:
        return await danecheck.check_domain(resolver, domain, hostname="mx.a.test", time_limit=5.0)

    plain = await check("plain.test")
    assert danecheck.render(plain).startswith("plain.test: MX not DNSSEC-validated: no DANE\n")
    assert not plain.failed and "does not offer STARTTLS" in plain.hosts[0].probes[0].detail
    missing = await check("nowhere.test")
    assert missing.failed and danecheck.render(missing).startswith("nowhere.test: DNS: ")
    pkix = await check("pkixtls.test")
    assert (
        not pkix.failed
        and "  no usable TLSA record: STARTTLS required, the certificate not checked" in danecheck.render(pkix)
    )
    assert (await check("pkix.test")).failed, "unusable records still require STARTTLS, which that host lacks"
    # with [acme] a new key comes at every renewal: a record of today's key (3 1 1) matches, but not for long
    placeholder = dnsrecords.Record("_25._tcp.mx.a.test", "TLSA", None, "", required=False, hint="2 1 1 <...>")
    own_chain = [ssl.PEM_cert_to_DER_cert(world.cert.read_text())]
    assert (await doctor_mod.check_tlsa(resolver, placeholder, own_chain)).status == "ok"
    acme = await doctor_mod.check_tlsa(resolver, placeholder, own_chain, acme=True)
    assert acme.status == "warn" and "new key at the next renewal" in acme.message, acme
    ta = await check("taname.test")
    assert ta.failed and ta.hosts[0].probes[0].detail.startswith("certificate-host-mismatch: ")

    zone = a.cli("domain", "dns", "a.test").stdout
    assert f"_25._tcp.mx.a.test. IN TLSA {world.own}" in zone
    assert "publish the next key's record beside it before changing keys" in zone
    doctor = a.cli("doctor", "a.test", check=False).stdout
    assert "dns TLSA _25._tcp.mx.a.test: matches our certificate" in doctor, doctor

    # a new key, its record not published yet: senders using DANE would hold our mail back
    new_cert, new_key = a.root / "new.pem", a.root / "new.key"
    make_self_signed(new_cert, new_key, ["mx.a.test"])
    a.write_config(tls={"cert": str(new_cert), "key": str(new_key)})
    doctor = a.cli("doctor", "a.test", check=False)
    lines = doctor.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "dns TLSA _25._tcp.mx.a.test" in line)
    assert lines[at].startswith("FAIL") and "do not match our certificate" in lines[at], lines[at]
    new_record = dane.record_for(ssl.PEM_cert_to_DER_cert(new_cert.read_text())).text()
    assert f"_25._tcp.mx.a.test. IN TLSA {new_record}" in lines[at + 1], "the fix: the new key's record"
