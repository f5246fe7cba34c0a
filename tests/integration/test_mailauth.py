"""relentad.mailauth against real DNS answers from dnsmasq: SPF, DKIM, DMARC, ARC, header and stripping."""

from __future__ import annotations

import socket

import dkim as dkimpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relentad import mailauth
from relentad.queue import dkim
from tests.support.dnsmasq import Dnsmasq, DnsRecords

AUTHSERV = "mx.relentad.test"
GOOD_IP = "192.0.2.10"
BAD_IP = "198.51.100.7"
TIMEOUT = 0.5


def message(from_addr: str = "Alice <alice@a.test>", body: str = "Hello Bob.\r\n", extra: str = "") -> bytes:
    return (
        f"{extra}From: {from_addr}\r\n"
        "To: bob@b.test\r\n"
        "Subject: quarterly numbers\r\n"
        "Date: Wed, 25 Nov 2026 08:00:00 +0000\r\n"
        "Message-ID: <q3@a.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body}"
    ).encode()


def records(rsa_key: tuple[bytes, str], *, spf: str = "v=spf1 ip4:192.0.2.0/24 -all", dmarc: str = "") -> DnsRecords:
    zone = DnsRecords().add_txt("a.test", spf).add_txt(dkim.record_name("sel", "a.test"), rsa_key[1])
    if dmarc:
        zone.add_txt("_dmarc.a.test", dmarc)
    return zone


async def run(
    dns: Dnsmasq | str,
    raw: bytes,
    *,
    ip: str = GOOD_IP,
    mail_from: str = "alice@a.test",
    helo: str = "out.a.test",
    timeout: float = TIMEOUT,
) -> mailauth.AuthResult:
    nameserver = dns if isinstance(dns, str) else dns.nameserver
    return await mailauth.authenticate(
        raw,
        peer_ip=ip,
        helo=helo,
        mail_from=mail_from,
        authserv_id=AUTHSERV,
        nameservers=[nameserver],
        timeout=timeout,
    )


def signed(raw: bytes, key: bytes, domain: str = "a.test", selector: str = "sel") -> bytes:
    return dkim.sign(raw, domain, selector, key) + raw


# -- SPF ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spf", "ip", "expected"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", GOOD_IP, "pass"),
        ("v=spf1 ip4:192.0.2.0/24 -all", BAD_IP, "fail"),
        ("v=spf1 ip4:192.0.2.0/24 ~all", BAD_IP, "softfail"),
        ("v=spf1 ip4:192.0.2.0/24 ?all", BAD_IP, "neutral"),
        ("v=spf1 ip4:192.0.2.0/24 -bogus:x -all", GOOD_IP, "permerror"),
    ],
)
async def test_spf_results(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str], spf: str, ip: str, expected: str) -> None:
    dnsmasq.replace(records(rsa_key, spf=spf))
    result = await run(dnsmasq, message(), ip=ip)
    assert result.spf.result == expected
    assert result.spf.identity == "mailfrom"
    assert result.spf.domain == "a.test"
    assert f"spf={expected} " in result.header()
    assert "smtp.mailfrom=alice@a.test" in result.header()


async def test_spf_none_without_record(dnsmasq: Dnsmasq) -> None:
    dnsmasq.replace(DnsRecords().add_txt("a.test", "google-site-verification=abc"))
    result = await run(dnsmasq, message())
    assert result.spf.result == "none"


async def test_spf_follows_a_mx_include_and_redirect(dnsmasq: Dnsmasq) -> None:
    zone = (
        DnsRecords()
        .add_txt("a.test", "v=spf1 a:web.a.test mx include:_spf.c.test redirect=_spf.a.test")
        .add_a("web.a.test", "203.0.113.1")
        .add_mx("a.test", "mx.a.test", 10)
        .add_a("mx.a.test", "203.0.113.2")
        .add_txt("_spf.c.test", "v=spf1 ip4:203.0.113.3 -all")
        .add_txt("_spf.a.test", "v=spf1 ip6:2001:db8::/32 ip4:203.0.113.4 -all")
    )
    dnsmasq.replace(zone)
    outcomes = [(await run(dnsmasq, message(), ip=f"203.0.113.{n}")).spf.result for n in (1, 2, 3, 4, 5)]
    assert outcomes == ["pass", "pass", "pass", "pass", "fail"]
    assert (await run(dnsmasq, message(), ip="2001:db8::25")).spf.result == "pass"


async def test_spf_uses_helo_for_the_null_sender(dnsmasq: Dnsmasq) -> None:
    dnsmasq.replace(DnsRecords().add_txt("out.a.test", "v=spf1 ip4:192.0.2.10 -all"))
    result = await run(dnsmasq, message(), mail_from="", helo="out.a.test")
    assert (result.spf.result, result.spf.identity, result.spf.domain) == ("pass", "helo", "out.a.test")
    assert "spf=pass smtp.helo=out.a.test" in result.header()


async def test_spf_checks_an_internationalized_domain_as_a_labels(dnsmasq: Dnsmasq) -> None:
    zone = DnsRecords().add_txt("xn--bcher-kva.test", "v=spf1 ip4:192.0.2.0/24 -all")
    dnsmasq.replace(zone.add_txt("mx.xn--bcher-kva.test", "v=spf1 ip4:192.0.2.0/24 -all"))
    result = await run(dnsmasq, message(), mail_from="info@Bücher.test")
    assert (result.spf.result, result.spf.domain) == ("pass", "xn--bcher-kva.test")
    assert "spf=pass smtp.mailfrom=info@xn--bcher-kva.test;" in result.header()
    result = await run(dnsmasq, message(), mail_from="jörg@bücher.test")  # SMTPUTF8 local part: left out
    assert "spf=pass smtp.mailfrom=@xn--bcher-kva.test;" in result.header()
    result = await run(dnsmasq, message(), mail_from="", helo="mx.bücher.test")
    assert "spf=pass smtp.helo=mx.xn--bcher-kva.test;" in result.header()


async def test_spf_checks_sharp_s_as_itself_never_as_ss(dnsmasq: Dnsmasq) -> None:
    """UTS #46 non-transitional, as everywhere in relentad (addrspec.a_label): faß is xn--fa-hia, while IDNA 2003
    maps it to fass, another domain. A domain without an A-label is not checked and not named in the header."""
    zone = DnsRecords().add_txt("fass.test", "v=spf1 +all")
    dnsmasq.replace(zone.add_txt("xn--fa-hia.test", "v=spf1 ip4:198.51.100.0/24 -all"))
    result = await run(dnsmasq, message(), mail_from="info@FAß.test")
    assert (result.spf.result, result.spf.domain) == ("fail", "xn--fa-hia.test")
    result = await run(dnsmasq, message(), mail_from="info@☃.test")
    assert result.spf.result == "none"
    assert "; spf=none (no checkable domain); dkim=" in result.header()


# -- DKIM --------------------------------------------------------------------------------------------------


async def test_dkim_pass(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key))
    result = await run(dnsmasq, signed(message(), rsa_key[0]))
    assert [(s.result, s.domain, s.selector) for s in result.dkim] == [("pass", "a.test", "sel")]
    assert "dkim=pass header.d=a.test header.s=sel header.a=rsa-sha256" in result.header()


async def test_dkim_fail_on_tampered_body(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key))
    raw = signed(message(), rsa_key[0]).replace(b"Hello Bob.", b"Hello Eve.")
    result = await run(dnsmasq, raw)
    assert [(s.result, s.reason) for s in result.dkim] == [("fail", "body hash mismatch")]
    assert "dkim=fail (body hash mismatch) header.d=a.test" in result.header()


async def test_dkim_every_signature_is_checked(
    dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str], ed25519_key: tuple[bytes, str]
) -> None:
    zone = records(rsa_key).add_txt(dkim.record_name("ed", "a.test"), ed25519_key[1])
    dnsmasq.replace(zone)
    raw = message()
    raw = dkim.sign(raw, "a.test", "sel", rsa_key[0], ed25519_key=ed25519_key[0], ed25519_selector="ed") + raw
    raw = dkim.sign(raw, "a.test", "gone", rsa_key[0]) + raw  # no key published for selector "gone"
    result = await run(dnsmasq, raw)
    assert [(s.selector, s.result, s.algorithm) for s in result.dkim] == [
        ("gone", "permerror", "rsa-sha256"),
        ("ed", "pass", "ed25519-sha256"),
        ("sel", "pass", "rsa-sha256"),
    ]
    assert result.dkim_pass_domains == ("a.test", "a.test")


def signed_with_extra_tag(
    monkeypatch: pytest.MonkeyPatch, raw: bytes, key: bytes, tag: tuple[bytes, bytes], domain: str = "evil.test"
) -> bytes:
    """`raw` signed by `domain` with one more tag (e.g. `D=a.test`) put first in the signed DKIM-Signature."""
    original = dkimpy.DKIM.gen_header

    def gen_header(self: dkimpy.DKIM, fields: list[tuple[bytes, bytes]], *args: object, **kwargs: object) -> bytes:
        return original(self, [tag, *fields], *args, **kwargs)  # type: ignore[no-any-return]

    with monkeypatch.context() as patch:
        patch.setattr(dkimpy.DKIM, "gen_header", gen_header)
        return signed(raw, key, domain)


async def test_dkim_tag_names_are_case_sensitive(
    dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # evil.test signs with its own key; an upper-case D=a.test is an unknown tag, not the signing domain.
    zone = records(rsa_key, dmarc="v=DMARC1; p=reject").add_txt(dkim.record_name("sel", "evil.test"), rsa_key[1])
    dnsmasq.replace(zone)
    raw = signed_with_extra_tag(monkeypatch, message(), rsa_key[0], (b"D", b"a.test"))
    assert raw.startswith(b"DKIM-Signature: D=a.test;")
    result = await run(dnsmasq, raw, ip=BAD_IP)
    assert [(s.result, s.domain) for s in result.dkim] == [("pass", "evil.test")]
    assert "header.d=evil.test" in result.header()
    assert (result.dmarc.result, result.dmarc.disposition) == ("fail", "reject")


async def test_dkim_signature_with_a_repeated_tag_is_permerror(
    dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = records(rsa_key, dmarc="v=DMARC1; p=reject").add_txt(dkim.record_name("sel", "evil.test"), rsa_key[1])
    dnsmasq.replace(zone)
    raw = signed_with_extra_tag(monkeypatch, message(), rsa_key[0], (b"d", b"a.test"))
    result = await run(dnsmasq, raw, ip=BAD_IP)
    assert [(s.result, s.reason) for s in result.dkim] == [("permerror", "duplicate tag")]
    assert result.dmarc.result == "fail"


async def test_unsigned_message_has_dkim_none(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key))
    result = await run(dnsmasq, message())
    assert result.dkim == ()
    assert "; dkim=none;" in result.header()


# -- DMARC -------------------------------------------------------------------------------------------------


async def test_dmarc_pass_through_aligned_dkim(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject"))
    result = await run(dnsmasq, signed(message(), rsa_key[0]), ip=BAD_IP)  # SPF fails, DKIM carries it
    assert result.spf.result == "fail"
    assert result.dmarc.result == "pass"
    assert result.dmarc_policy == "reject"
    assert not result.dmarc_failed
    assert result.dmarc.disposition == "none"
    assert "dmarc=pass (p=reject dis=none) header.from=a.test" in result.header()


async def test_dmarc_pass_through_aligned_spf(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    zone = records(rsa_key, dmarc="v=DMARC1; p=reject").add_txt("bounces.a.test", "v=spf1 ip4:192.0.2.10 -all")
    dnsmasq.replace(zone)
    result = await run(dnsmasq, message(), mail_from="b+1@bounces.a.test")  # relaxed: same org domain
    assert (result.spf.result, result.dmarc.result) == ("pass", "pass")


async def test_dmarc_strict_spf_alignment(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    zone = records(rsa_key, dmarc="v=DMARC1; p=reject; aspf=s").add_txt("bounces.a.test", "v=spf1 ip4:192.0.2.10 -all")
    dnsmasq.replace(zone)
    result = await run(dnsmasq, message(), mail_from="b+1@bounces.a.test")
    assert (result.spf.result, result.dmarc.result) == ("pass", "fail")


async def test_dmarc_fail_with_reject(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject; rua=mailto:dmarc@a.test"))
    tampered = signed(message(), rsa_key[0]).replace(b"Hello Bob.", b"Pay now!!!")
    result = await run(dnsmasq, tampered, ip=BAD_IP)
    assert result.dmarc_failed
    assert (result.dmarc.policy, result.dmarc.disposition) == ("reject", "reject")
    assert "dmarc=fail (p=reject dis=reject) header.from=a.test" in result.header()


async def test_dmarc_fail_with_quarantine(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=quarantine"))
    result = await run(dnsmasq, message(), ip=BAD_IP)
    assert result.dmarc_failed
    assert (result.dmarc_policy, result.dmarc.disposition) == ("quarantine", "quarantine")


async def test_dmarc_subdomain_uses_organisational_record_and_sp(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject; sp=quarantine"))
    result = await run(dnsmasq, message("news@news.a.test"), ip=BAD_IP, mail_from="news@news.a.test")
    assert result.dmarc.result == "fail"
    assert (result.dmarc.from_domain, result.dmarc.record_domain) == ("news.a.test", "a.test")
    assert result.dmarc_policy == "quarantine"


async def test_dmarc_pct_zero_softens_the_disposition(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject; pct=0"))
    result = await run(dnsmasq, message(), ip=BAD_IP)
    assert (result.dmarc.result, result.dmarc.policy, result.dmarc.disposition) == ("fail", "reject", "quarantine")


async def test_dmarc_none_without_record(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key))
    result = await run(dnsmasq, message(), ip=BAD_IP)
    assert (result.dmarc.result, result.dmarc_policy, result.dmarc_failed) == ("none", "none", False)


async def test_dmarc_several_records_end_discovery(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    # Two records at news.a.test: DMARC is not applied, the organisational record is not consulted (§6.6.3).
    zone = records(rsa_key, dmarc="v=DMARC1; p=reject")
    zone.add_txt("_dmarc.news.a.test", "v=DMARC1; p=none").add_txt("_dmarc.news.a.test", "v=DMARC1; p=quarantine")
    dnsmasq.replace(zone)
    result = await run(dnsmasq, message("news@news.a.test"), ip=BAD_IP, mail_from="news@news.a.test")
    dmarc = result.dmarc
    assert (dmarc.result, dmarc.record_domain, dmarc.disposition) == ("permerror", "news.a.test", "none")
    assert "dmarc=permerror (several DMARC records) header.from=news.a.test" in result.header()


@pytest.mark.parametrize(
    ("dmarc", "expected"),
    [
        ("v=DMARC1; p=reject; sp=rejct", ("permerror", "none")),  # not a fallback to p=reject
        ("v=DMARC1; p=reject; sp=rejct; rua=mailto:dmarc@a.test", ("fail", "none")),  # as if p=none
        ("v=DMARC1; p=bogus", ("permerror", "none")),
        ("v=DMARC1; rua=mailto:dmarc@a.test", ("fail", "none")),
        ("v=DMARC1; p=reject; sp=quarantine", ("fail", "quarantine")),
    ],
)
async def test_dmarc_invalid_policy_tags(
    dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str], dmarc: str, expected: tuple[str, str]
) -> None:
    dnsmasq.replace(records(rsa_key, dmarc=dmarc))
    result = await run(dnsmasq, message("news@news.a.test"), ip=BAD_IP, mail_from="news@news.a.test")
    assert (result.dmarc.result, result.dmarc.policy) == expected


async def test_dmarc_checks_every_author_domain(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    # RFC 7489 §6.6.1: a passing a.test does not cover bank.test, which fails under p=reject.
    zone = records(rsa_key, dmarc="v=DMARC1; p=quarantine").add_txt("_dmarc.bank.test", "v=DMARC1; p=reject")
    dnsmasq.replace(zone)
    result = await run(dnsmasq, message("alice@a.test, ceo@bank.test"))
    assert result.spf.result == "pass"
    assert (result.dmarc.result, result.dmarc.from_domain, result.dmarc.disposition) == ("fail", "bank.test", "reject")
    assert "dmarc=fail (p=reject dis=reject) header.from=bank.test" in result.header()


async def test_dmarc_takes_the_strictest_failure(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    zone = records(rsa_key, dmarc="v=DMARC1; p=quarantine").add_txt("_dmarc.bank.test", "v=DMARC1; p=reject")
    dnsmasq.replace(zone)
    for from_addr in ("alice@a.test, ceo@bank.test", "ceo@bank.test, alice@a.test", "x@plain.test, alice@a.test"):
        result = await run(dnsmasq, message(from_addr), ip=BAD_IP)
        assert result.dmarc_failed, from_addr
    assert (await run(dnsmasq, message("ceo@bank.test, alice@a.test"), ip=BAD_IP)).dmarc.disposition == "reject"
    assert (await run(dnsmasq, message("x@plain.test, alice@a.test"), ip=BAD_IP)).dmarc.disposition == "quarantine"


async def test_dmarc_several_from_fields_fail_the_policy(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject"))
    raw = signed(message(extra="From: alice@a.test\r\n"), rsa_key[0])  # aligned SPF and DKIM: passes otherwise
    dmarc = (await run(dnsmasq, raw)).dmarc
    assert (dmarc.result, dmarc.disposition, dmarc.reason) == ("fail", "reject", "several From fields")
    dmarc = (await run(dnsmasq, message("x@plain.test", extra="From: y@other.test\r\n"))).dmarc
    assert (dmarc.result, dmarc.reason) == ("permerror", "several From fields")  # no policy found anywhere


@pytest.mark.parametrize(
    ("from_addr", "reason"),
    [("undisclosed-recipients:;", "no usable From domain"), ("alice@a.test, root@localhost", "unusable From address")],
)
async def test_dmarc_unusable_from(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str], from_addr: str, reason: str) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject"))
    dmarc = (await run(dnsmasq, signed(message(from_addr), rsa_key[0]))).dmarc
    assert (dmarc.result, dmarc.reason, dmarc.disposition) == ("permerror", reason, "none")


async def test_dmarc_unusable_address_does_not_hide_a_failure(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject"))
    result = await run(dnsmasq, message("alice@a.test, root@localhost"), ip=BAD_IP)
    assert (result.dmarc.result, result.dmarc.disposition) == ("fail", "reject")


async def test_dmarc_without_from_is_permerror(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject"))
    raw = message().replace(b"From: Alice <alice@a.test>\r\n", b"")
    result = await run(dnsmasq, raw, ip=BAD_IP)
    assert (result.dmarc.result, result.dmarc.reason) == ("permerror", "no From field")
    assert "dmarc=permerror (no From field);" in result.header()


# -- DNS failures ------------------------------------------------------------------------------------------


async def test_stopped_dns_gives_temperror(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject"))
    raw = signed(message(), rsa_key[0])
    dnsmasq.stop()
    result = await run(dnsmasq, raw, ip=BAD_IP, timeout=0.2)
    assert result.spf.result == "temperror"
    assert [s.result for s in result.dkim] == ["temperror"]
    assert result.dmarc.result == "temperror"
    assert not result.dmarc_failed
    header = result.header()
    assert "spf=temperror" in header
    assert "dkim=temperror" in header
    assert "dmarc=temperror" in header


async def test_unaligned_spf_temperror_does_not_lift_the_policy(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject").add_refused("evil.test"))
    result = await run(dnsmasq, message(), ip=BAD_IP, mail_from="x@evil.test")
    assert result.spf.result == "temperror"
    assert (result.dmarc.result, result.dmarc.disposition) == ("fail", "reject")


async def test_unaligned_dkim_temperror_does_not_lift_the_policy(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject").add_refused("evil.test"))
    result = await run(dnsmasq, signed(message(), rsa_key[0], domain="evil.test"), ip=BAD_IP)
    assert [(s.result, s.domain) for s in result.dkim] == [("temperror", "evil.test")]
    assert (result.dmarc.result, result.dmarc.disposition) == ("fail", "reject")


async def test_aligned_dkim_temperror_is_dmarc_temperror(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject").add_refused("down._domainkey.a.test"))
    result = await run(dnsmasq, signed(message(), rsa_key[0], selector="down"), ip=BAD_IP)
    assert [(s.result, s.domain) for s in result.dkim] == [("temperror", "a.test")]
    assert (result.dmarc.result, result.dmarc.disposition) == ("temperror", "none")


async def test_closed_port_gives_temperror(unused_udp_port: int) -> None:
    result = await run(f"127.0.0.1:{unused_udp_port}", message(), timeout=0.2)
    assert (result.spf.result, result.dmarc.result) == ("temperror", "temperror")


@pytest.fixture
def unused_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- ARC ---------------------------------------------------------------------------------------------------


async def test_arc_none_and_pass(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    zone = records(rsa_key).add_txt(dkim.record_name("arc", "list.test"), rsa_key[1])
    dnsmasq.replace(zone)
    assert (await run(dnsmasq, message())).arc.result == "none"

    forwarded = b"Authentication-Results: list.test; spf=pass smtp.mailfrom=alice@a.test\r\n" + message()
    seal = dkimpy.arc_sign(forwarded, b"arc", b"list.test", rsa_key[0], b"list.test")
    result = await run(dnsmasq, b"".join(seal) + forwarded)
    assert (result.arc.result, result.arc.instances) == ("pass", 1)
    assert result.header().endswith("; arc=pass")


# -- header and stripping ----------------------------------------------------------------------------------


async def test_header_is_one_field_in_rfc8601_order(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject"))
    header = (await run(dnsmasq, signed(message(), rsa_key[0]))).header()
    assert header.startswith(f"Authentication-Results: {AUTHSERV}; spf=pass smtp.mailfrom=alice@a.test; dkim=pass")
    assert "\n" not in header and "\r" not in header
    assert header.index("dkim=") < header.index("dmarc=") < header.index("arc=none")


async def test_hostile_values_cannot_inject_header_syntax(dnsmasq: Dnsmasq) -> None:
    dnsmasq.replace(DnsRecords())
    raw = b'DKIM-Signature: v=1; a=rsa-sha256; d=evil.test;\r\n s=x"(; b=AAAA; bh=AAAA; h=from\r\n' + message()
    header = (await run(dnsmasq, raw, mail_from='"a;b"@a.test')).header()
    assert 'header.s="x\\"("' in header
    assert 'smtp.mailfrom="\\"a;b\\"@a.test"' in header


def test_strip_forged_results_removes_only_ours() -> None:
    raw = (
        b"Received: from x by y; Wed, 25 Nov 2026 08:00:00 +0000\r\n"
        b"Authentication-Results: MX.Relentad.TEST; spf=pass\r\n"
        b"Authentication-Results: (forged) mx.relentad.test 1;\r\n\tdkim=pass header.d=bank.test\r\n"
        b"Authentication-Results: other.test; spf=fail\r\n"
        b'Authentication-Results: "mx.relentad.test"; dmarc=pass\r\n'
        b'Authentication-Results: "mx\\.Relentad\\.test"; arc=pass\r\n'
        b"ARC-Authentication-Results: i=1; mx.relentad.test; spf=pass\r\n" + message()
    )
    stripped = mailauth.strip_forged_results(raw, AUTHSERV)
    assert b"MX.Relentad.TEST" not in stripped
    assert b"forged" not in stripped
    assert b"header.d=bank.test" not in stripped
    assert b'"mx.relentad.test"' not in stripped
    assert b"arc=pass" not in stripped
    assert b"Authentication-Results: other.test; spf=fail\r\n" in stripped
    assert b"ARC-Authentication-Results: i=1; mx.relentad.test; spf=pass\r\n" in stripped
    assert stripped.endswith(message())
    assert mailauth.strip_forged_results(message(), AUTHSERV) == message()


def test_strip_forged_results_ignores_the_body() -> None:
    raw = message(body="Authentication-Results: mx.relentad.test; spf=pass\r\n")
    assert mailauth.strip_forged_results(raw, AUTHSERV) == raw


async def test_forged_results_are_gone_before_our_header(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key, dmarc="v=DMARC1; p=reject"))
    forged = message(extra=f"Authentication-Results: {AUTHSERV}; dmarc=pass header.from=a.test\r\n")
    clean = mailauth.strip_forged_results(forged, AUTHSERV)
    result = await run(dnsmasq, clean, ip=BAD_IP)
    delivered = (result.header() + "\r\n").encode() + clean
    assert delivered.count(b"Authentication-Results:") == 1
    assert result.dmarc_failed


@pytest.mark.parametrize(
    ("domain", "org"),
    [("a.test", "a.test"), ("mail.news.a.test", "a.test"), ("x.example.co.uk", "example.co.uk"), ("co.uk", "co.uk")],
)
def test_organizational_domain(domain: str, org: str) -> None:
    assert mailauth.organizational_domain(domain) == org


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"no colon here\r\n\r\nbody",
        b"DKIM-Signature: garbage\r\nFrom: a@a.test\r\n\r\nx",
        b"DKIM-Signature: v=1; a=rsa-sha256; d=a.test; s=x; h=from; bh=AA==; b=AA==\r\nbroken line\r\n\r\n",
        b"ARC-Seal: i=x\r\nFrom: a@a.test, b@b.test\r\n\r\n",
        b"From: \xff\xfe@\xff.test\r\n\r\n",
    ],
)
async def test_malformed_messages_never_raise(dnsmasq: Dnsmasq, raw: bytes) -> None:
    dnsmasq.replace(DnsRecords().add_txt("a.test", "v=spf1 -all"))
    result = await run(dnsmasq, raw)
    assert result.header().startswith(f"Authentication-Results: {AUTHSERV}; spf=fail")
    assert all(s.result == "permerror" for s in result.dkim)
    assert result.dmarc.result in ("none", "permerror")


async def test_many_signatures_fold_the_header(dnsmasq: Dnsmasq, rsa_key: tuple[bytes, str]) -> None:
    dnsmasq.replace(records(rsa_key))
    raw = message()
    for n in range(10):
        raw = dkim.sign(raw, "a.test", f"unpublished{n}", rsa_key[0]) + raw
    result = await run(dnsmasq, raw)
    assert [s.result for s in result.dkim] == ["permerror"] * 10
    lines = result.header().split("\r\n")
    assert len(lines) == 14  # authserv-id, spf, 10 x dkim, dmarc, arc
    assert lines[0] == f"Authentication-Results: {AUTHSERV};"
    assert all(line.startswith("\t") and len(line) < 200 for line in lines[1:])
    assert result.header(fold=True).count("\r\n\t") == 3 + len(result.dkim)


_OURS = st.sampled_from(
    [
        f"Authentication-Results: {AUTHSERV}; spf=pass\r\n",
        "authentication-results:MX.RELENTAD.TEST;dkim=pass\r\n",
        f"Authentication-Results: (c) {AUTHSERV};\r\n dmarc=pass\r\n",
    ]
)
_THEIRS = st.sampled_from(
    [
        "Authentication-Results: other.test; spf=pass\r\n",
        f"Authentication-Results: {AUTHSERV}.evil.test; spf=pass\r\n",
        f"X-Authentication-Results: {AUTHSERV}; spf=pass\r\n",
        "Subject: hi\r\n",
        "Received: from a\r\n\tby b\r\n",
    ]
)


@given(st.lists(st.tuples(st.booleans(), _OURS, _THEIRS), max_size=8))
def test_strip_forged_results_property(fields: list[tuple[bool, str, str]]) -> None:
    header = "".join(ours if is_ours else theirs for is_ours, ours, theirs in fields)
    kept = "".join(theirs for is_ours, _, theirs in fields if not is_ours)
    body = f"\r\nAuthentication-Results: {AUTHSERV}; spf=pass\r\n"
    assert mailauth.strip_forged_results((header + body).encode(), AUTHSERV) == (kept + body).encode()
