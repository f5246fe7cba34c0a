"""relentad.spf: RFC 7208 mechanisms, macros and limits, evaluated against dnsmasq-served records."""

from __future__ import annotations

import copy

import pytest

from relentad import spf
from relentad.dns import make_resolver
from tests.support.dnsmasq import Dnsmasq, DnsRecords


async def check(server: Dnsmasq, ip: str, sender: str = "alice@a.test", helo: str = "out.a.test") -> str:
    resolver = make_resolver([server.nameserver], 0.5)
    return (await spf.check(resolver, ip=ip, mail_from=sender, helo=helo)).result


async def serve_and_check(server: Dnsmasq, record: str, ip: str, zone: DnsRecords | None = None) -> str:
    server.replace(copy.deepcopy(zone or DnsRecords()).add_txt("a.test", record))
    return await check(server, ip)


@pytest.mark.parametrize(
    ("record", "ip", "expected"),
    [
        ("v=spf1 a/24 -all", "192.0.2.200", "pass"),
        ("v=spf1 a -all", "192.0.2.200", "fail"),
        ("v=spf1 a//64 -all", "2001:db8::ffff", "pass"),
        ("v=spf1 mx/24 -all", "198.51.100.99", "pass"),
        ("v=spf1 mx -all", "198.51.100.99", "fail"),
        ("v=spf1 ip4:192.0.2.1 -all", "::ffff:192.0.2.1", "pass"),
        ("v=spf1 -ip4:192.0.2.1 +all", "192.0.2.1", "fail"),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db8:1::1", "pass"),
        ("V=SPF1 IP4:192.0.2.1 -ALL", "192.0.2.1", "pass"),
        ("v=spf1 ip4:192.0.2.1", "192.0.2.2", "neutral"),
        ("v=spf1 foo=bar exp=explain.a.test ip4:192.0.2.1 -all", "192.0.2.1", "pass"),
        ("v=spf1  ip4:192.0.2.1   -all ", "192.0.2.1", "pass"),
        ("v=spf1 ip4:192.0.2.1 -all exp=%{d} moo=%{c}%%.%{r}.x_y", "192.0.2.1", "pass"),
    ],
)
async def test_mechanisms(dnsmasq: Dnsmasq, record: str, ip: str, expected: str) -> None:
    zone = (
        DnsRecords()
        .add_a("a.test", "192.0.2.1")
        .add_aaaa("a.test", "2001:db8::1")
        .add_mx("a.test", "mx.a.test", 10)
        .add_a("mx.a.test", "198.51.100.1")
    )
    assert await serve_and_check(dnsmasq, record, ip, zone) == expected


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 ip4:192.0.2.300 -all",
        "v=spf1 ip4:192.0.2.1/33 -all",
        "v=spf1 ip4:2001:db8::1 -all",
        "v=spf1 a:%{c}.a.test -all",
        "v=spf1 include -all",
        "v=spf1 a: -all",
        "v=spf1 mx:/24 -all",
        "v=spf1 ptr: -all",
        "v=spf1 a:a.test/24/ -all",
        "v=spf1 +all ip4:bogus",
        "v=spf1 +all a:%{c}.a.test",
        "v=spf1 +all redirect=%{t}.a.test",
        "v=spf1 ip4:192.0.2.1/024 -all",
        "v=spf1 redirect=x.test redirect=y.test",
        "v=spf1 all:x",
        "v=spf1 a:bad..name -all",
        "v=spf1 a:%x.a.test -all",
        # §4.6: a syntax error anywhere, in a modifier too, and even after a matching term
        "v=spf1 redirect=-all ?all",
        "v=spf1 exp=-all",
        "v=spf1 ip4:192.0.2.1 exp=%{r}.a.test",
        "v=spf1 ip4:192.0.2.1 exp=a.123",
        "v=spf1 ip4:192.0.2.1 foo=%abc",
        # §4.6.1: terms are separated by SP only; a record is visible ASCII
        "v=spf1 ip4:192.0.2.1\tinclude:x.test -all",
        "v=spf1 ip4:192.0.2.1\rptr -all",
        "v=spf1 ip4:192.0.2.1\x7f -all",
        "v=spf1 ip4:192.0.2.1 a:ï»¿garbage.a.test -all",
    ],
)
async def test_syntax_errors_are_permerror(dnsmasq: Dnsmasq, record: str) -> None:
    assert await serve_and_check(dnsmasq, record, "192.0.2.1") == "permerror"


async def test_two_records_are_permerror(dnsmasq: Dnsmasq) -> None:
    dnsmasq.replace(DnsRecords().add_txt("a.test", "v=spf1 +all").add_txt("a.test", "v=spf1 -all"))
    assert await check(dnsmasq, "192.0.2.1") == "permerror"


async def test_macros_in_exists(dnsmasq: Dnsmasq) -> None:
    zone = (
        DnsRecords()
        .add_a("1.2.0.192.in-addr._spf.a.test", "127.0.0.2")
        .add_a("alice.user.a.test", "127.0.0.2")
        .add_a("test.a.out.h", "127.0.0.2")
        .add_a("a.out.r2", "127.0.0.2")
        .add_a("a%2Bb.esc.a.test", "127.0.0.2")
        .add_a("unknown.p.a.test", "127.0.0.2")
    )
    cases = {
        "v=spf1 exists:%{ir}.%{v}._spf.%{d} -all": ("192.0.2.1", "alice@a.test", "pass"),
        "v=spf1 exists:%{ir}.%{v}._spf.%{d2} -all": ("192.0.2.2", "alice@a.test", "fail"),
        "v=spf1 exists:%{l}.user.%{o} -all": ("192.0.2.9", "alice@a.test", "pass"),
        "v=spf1 exists:%{hr}.h -all": ("192.0.2.9", "alice@a.test", "pass"),
        "v=spf1 exists:%{h2r}.r2 -all": ("192.0.2.9", "alice@a.test", "pass"),
        "v=spf1 exists:%{hr2}.h -all": ("192.0.2.9", "alice@a.test", "permerror"),
        "v=spf1 exists:%{L}.esc.a.test -all": ("192.0.2.9", "a+b@a.test", "pass"),
        "v=spf1 exists:%{p}.p.a.test -all": ("192.0.2.9", "alice@a.test", "pass"),
    }
    for record, (ip, sender, expected) in cases.items():
        dnsmasq.replace(copy.deepcopy(zone).add_txt("a.test", record))
        assert await check(dnsmasq, ip, sender, helo="out.a.test") == expected, record


async def test_ip6_macro_uses_nibbles(dnsmasq: Dnsmasq) -> None:
    name = "1.0.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.ip6.a.test"  # 32 nibbles, last first
    zone = DnsRecords().add_a(name, "127.0.0.2")
    assert await serve_and_check(dnsmasq, "v=spf1 exists:%{ir}.%{v}.%{d} -all", "2001:db8::1", zone) == "pass"


async def test_include_results(dnsmasq: Dnsmasq) -> None:
    zone = DnsRecords().add_txt("pass.test", "v=spf1 ip4:192.0.2.1 -all").add_txt("soft.test", "v=spf1 ~all")
    assert await serve_and_check(dnsmasq, "v=spf1 include:pass.test -all", "192.0.2.1", zone) == "pass"
    assert await serve_and_check(dnsmasq, "v=spf1 include:soft.test -all", "192.0.2.1", zone) == "fail"
    assert await serve_and_check(dnsmasq, "v=spf1 include:none.test -all", "192.0.2.1", zone) == "permerror"
    assert await serve_and_check(dnsmasq, "v=spf1 include:a.test -all", "192.0.2.1", zone) == "permerror"


async def test_redirect_to_missing_record_is_permerror(dnsmasq: Dnsmasq) -> None:
    assert await serve_and_check(dnsmasq, "v=spf1 redirect=none.test", "192.0.2.1") == "permerror"


async def test_lookup_limit(dnsmasq: Dnsmasq) -> None:
    zone = DnsRecords()
    for n in range(11):
        zone.add_txt(f"l{n}.test", f"v=spf1 include:l{n + 1}.test -all")
    zone.add_txt("l11.test", "v=spf1 +all")
    assert await serve_and_check(dnsmasq, "v=spf1 include:l2.test -all", "192.0.2.1", zone) == "pass"
    assert await serve_and_check(dnsmasq, "v=spf1 include:l0.test -all", "192.0.2.1", zone) == "permerror"


async def test_void_lookup_limit(dnsmasq: Dnsmasq) -> None:
    two = "v=spf1 a:n1.a.test a:n2.a.test -all"
    three = "v=spf1 a:n1.a.test a:n2.a.test a:n3.a.test -all"
    assert await serve_and_check(dnsmasq, two, "192.0.2.1") == "fail"
    assert await serve_and_check(dnsmasq, three, "192.0.2.1") == "permerror"


async def test_ptr_needs_forward_confirmation(dnsmasq: Dnsmasq) -> None:
    zone = DnsRecords().add_a("mail.a.test", "192.0.2.5").add_ptr("192.0.2.6", "liar.a.test")
    assert await serve_and_check(dnsmasq, "v=spf1 ptr -all", "192.0.2.5", zone) == "pass"
    assert await serve_and_check(dnsmasq, "v=spf1 ptr -all", "192.0.2.6", zone) == "fail"
    assert await serve_and_check(dnsmasq, "v=spf1 ptr:other.test -all", "192.0.2.5", zone) == "fail"


async def test_ptr_skips_a_name_whose_forward_lookup_fails(dnsmasq: Dnsmasq) -> None:
    # §5.5: a DNS error on one name's A lookup skips that name; mail.a.test still validates.
    zone = DnsRecords().add_a("mail.a.test", "192.0.2.5").add_refused("slow1.a.test").add_refused("slow2.a.test")
    for name in ("slow1.a.test", "mail.a.test", "slow2.a.test"):  # a failing name comes first in either order
        zone.add_ptr("192.0.2.5", name)
    assert await serve_and_check(dnsmasq, "v=spf1 ptr -all", "192.0.2.5", zone) == "pass"


async def test_unusable_identities(dnsmasq: Dnsmasq) -> None:
    dnsmasq.replace(DnsRecords().add_txt("a.test", "v=spf1 +all"))
    resolver = make_resolver([dnsmasq.nameserver], 0.5)
    helo_literal = await spf.check(resolver, ip="192.0.2.1", mail_from="<>", helo="[192.0.2.1]")
    assert (helo_literal.result, helo_literal.identity) == ("none", "helo")
    no_dot = await spf.check(resolver, ip="192.0.2.1", mail_from="root@localhost", helo="a.test")
    assert no_dot.result == "none"
    bad_ip = await spf.check(resolver, ip="not-an-ip", mail_from="alice@a.test", helo="a.test")
    assert bad_ip.result == "permerror"
    no_local = await spf.check(resolver, ip="192.0.2.1", mail_from="<@a.test>", helo="x.test")
    assert (no_local.result, no_local.sender) == ("pass", "postmaster@a.test")
