"""MTA-STS (RFC 8461) parsing: the _mta-sts TXT record (§3.1), the policy text (§3.2), mx patterns (§4.1)."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace
from typing import Any

import dns.exception
import dns.resolver
import pytest

from relentad.queue import mtasts
from relentad.queue.mtasts import Policy, PolicyError
from relentad.store import migrations

POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([b"v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
        ([b"v=STSv1;id=abc"], "abc"),
        ([b"v=STSv1 ; id=abc ; ext-1=x.y"], "abc"),
        ([b"v=spf1 -all", b"v=STSv1; id=abc"], "abc"),  # other records are discarded
        ([b"v=spf1 -all"], None),
        ([], None),
        ([b"v=STSv10; id=abc"], None),  # not v=STSv1
        ([b"V=STSv1; id=abc"], None),  # case-sensitive
    ],
)
def test_txt_id(records: list[bytes], expected: str | None) -> None:
    assert mtasts.txt_id(records) == expected


@pytest.mark.parametrize(
    "records",
    [
        [b"v=STSv1; id=abc", b"v=STSv1; id=def"],  # not exactly one
        [b"v=STSv1; ext=1"],  # no id
        [b"v=STSv1; id=abc!"],  # id is 1*32 ALPHA / DIGIT
        [b"v=STSv1; id=" + b"a" * 33],
        [b"v=STSv1; id=abc;; x=y"],  # empty field
        [b"v=STSv1; id=abc; x y"],
        [b"v=STSv1; id=\xc3\xa9"],
    ],
)
def test_txt_invalid(records: list[bytes]) -> None:
    with pytest.raises(PolicyError):
        mtasts.txt_id(records)


def test_policy_parsed_lf_or_crlf() -> None:
    expected = ("enforce", ("mail.example.com", "*.example.net"), 604800)
    assert mtasts.parse_policy(POLICY) == expected
    assert mtasts.parse_policy(POLICY.replace("\r\n", "\n")) == expected
    assert mtasts.parse_policy(POLICY.rstrip()) == expected  # no final line end
    assert mtasts.parse_policy("version: STSv1\nmode: none\nmax_age: 0\n") == ("none", (), 0)
    extended = "x-ext: whatever\nversion:STSv1\nmode:   testing  \nmx: MX.Example.COM.\nmax_age: 31557600\n"
    assert mtasts.parse_policy(extended) == ("testing", ("mx.example.com",), 31557600)
    first = "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 60\n"
    assert mtasts.parse_policy(first)[0] == "testing", "of a repeated field the first counts"


@pytest.mark.parametrize(
    "text",
    [
        POLICY.replace("STSv1", "STSv2"),
        POLICY.replace("version: STSv1\r\n", ""),
        POLICY.replace("enforce", "Enforce"),
        POLICY.replace("enforce", "reject"),
        POLICY.replace("604800", "31557601"),  # over a year
        POLICY.replace("604800", "-1"),
        POLICY.replace("604800", "1w"),
        POLICY.replace("max_age: 604800\r\n", ""),
        "version: STSv1\nmode: enforce\nmax_age: 60\n",  # mx required unless mode none
        POLICY.replace("mail.example.com", "mail..example.com"),
        POLICY.replace("mail.example.com", "*.*.example.com"),
        POLICY.replace("mail.example.com", "-mail.example.com"),
        POLICY + "this line has no colon\n",
        "<html><body>not a policy</body></html>",
        "",
    ],
)
def test_policy_invalid(text: str) -> None:
    with pytest.raises(PolicyError):
        mtasts.parse_policy(text)


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.com.", True),
        ("mail.example.com", "mail2.example.com", False),
        ("*.example.com", "mx1.example.com", True),
        ("*.example.com", "example.com", False),  # the wildcard is exactly one label
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "mx1.example.org", False),
        ("*.example.com", ".example.com", False),
    ],
)
def test_mx_matches(pattern: str, host: str, matches: bool) -> None:
    assert mtasts.mx_matches(pattern, host) is matches


def test_policy_allows_and_expires() -> None:
    policy = Policy("example.com", "1", "enforce", ("mail.example.com", "*.example.net"), 60, POLICY, 1000.0)
    assert policy.allows("mail.example.com") and policy.allows("mx.example.net")
    assert not policy.allows("mx.example.com")
    assert policy.expires == 1060.0


class _Resolver:
    """Answers TXT for _mta-sts.c.test from ``txt`` (None: a timeout); every other name is NXDOMAIN."""

    def __init__(self, txt: list[bytes] | None) -> None:
        self.txt = txt

    async def resolve(self, name: str, rdtype: str, **_: object) -> list[object]:
        if name == "_mta-sts.c.test" and rdtype == "TXT":
            if self.txt is None:
                raise dns.exception.Timeout
            return [SimpleNamespace(strings=(value,)) for value in self.txt]
        raise dns.resolver.NXDOMAIN


def _cached(fetched: float) -> Policy:
    return Policy("c.test", "one", "enforce", ("mx.c.test",), 100, POLICY, fetched)


@pytest.mark.parametrize(
    ("txt", "cache_fetched", "paused", "how", "applies"),
    [
        ([], 950.0, (), "no_txt_cached", True),  # the record is gone: the unexpired policy still applies (§5.1)
        ([], 800.0, (), "no_txt", False),  # ... but not an expired one
        (None, 950.0, (), "dns_failed_cached", True),
        ([b"v=STSv1; id=one"], 950.0, (), "cached", True),  # same id: no fetch
        ([b"v=STSv1; id=two"], 950.0, (), "fetch_failed_cached", True),  # new id, mta-sts.c.test has no address
        ([b"v=STSv1; id=two"], None, (), "fetch_failed", False),
        ([b"v=STSv1; id=two"], None, ("two",), "fetch_paused", False),
        ([b"v=STSv1; id=one", b"v=STSv1; id=two"], 950.0, (), "invalid_txt_cached", True),
        # same id, over half its max_age old: fetched again ahead of expiry; a failure keeps it (§5.1, §10.2)
        ([b"v=STSv1; id=one"], 940.0, (), "fetch_failed_cached", True),
        ([b"v=STSv1; id=one"], 940.0, ("one",), "cached", True),  # not again within the pause after a failure
    ],
)
async def test_discover_falls_back_to_an_unexpired_cached_policy(
    txt: list[bytes] | None, cache_fetched: float | None, paused: tuple[str, ...], how: str, applies: bool
) -> None:
    known = _cached(cache_fetched) if cache_fetched is not None else None
    resolver: Any = _Resolver(txt)
    found = await mtasts.discover(
        "c.test", resolver, mtasts.verified_context(None), known, now=1000.0, paused=paused, time_limit=1.0
    )
    assert found.how == how
    assert (found.policy is known) if applies else found.policy is None


async def test_a_policy_in_use_is_refreshed_before_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refetched under the same id once over half its max_age old (at most daily): mail that keeps flowing never
    meets an expired policy, the moment a blocked fetch would leave the domain unprotected (RFC 8461 §10.2)."""

    async def fetch(domain: str, *_: object, **__: object) -> str:
        return POLICY

    monkeypatch.setattr(mtasts, "fetch", fetch)
    resolver: Any = _Resolver([b"v=STSv1; id=one"])
    context = mtasts.verified_context(None)
    found = await mtasts.discover("c.test", resolver, context, _cached(940.0), now=1000.0)
    assert found.how == "fetched" and found.policy is not None
    assert (found.policy.id, found.policy.fetched, found.policy.expires) == ("one", 1000.0, 1000.0 + 604800)
    week = Policy("c.test", "one", "enforce", ("mx.c.test",), 604800, POLICY, 0.0)
    assert (await mtasts.discover("c.test", resolver, context, week, now=86400.0)).how == "cached"
    assert (await mtasts.discover("c.test", resolver, context, week, now=86401.0)).how == "fetched"


def test_cache_keeps_one_policy_per_domain_and_drops_expired_ones() -> None:
    conn = sqlite3.connect(":memory:")
    migrations.apply(conn)
    mtasts.keep(conn, Policy("old.test", "1", "testing", ("mx.old.test",), 10, POLICY, 100.0))
    mtasts.keep(conn, Policy("c.test", "1", "enforce", ("mx.c.test",), 100, POLICY, 105.0))
    assert [p.domain for p in mtasts.cached_all(conn)] == ["c.test", "old.test"]
    newer = Policy("c.test", "2", "none", (), 100, "version: STSv1\nmode: none\nmax_age: 100\n", 150.0)
    mtasts.keep(conn, newer)
    assert mtasts.cached_all(conn) == [newer], "old.test expired at 110 and went"
    assert mtasts.forget(conn, "c.test") and not mtasts.forget(conn, "c.test")
