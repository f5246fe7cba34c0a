"""The RFC5322.From domains DMARC judges: the fast path for plain addresses agrees with email.utils."""

from __future__ import annotations

import email.utils

import pytest

from relentad import mailauth

FROM_VALUES = [
    "alice@a.test", " Alice <alice@a.test>", "Alice Example <alice@News.A.test> ", "<alice@a.test>",
    '"Example, Alice" <alice@a.test>', "=?utf-8?q?J=C3=BCrgen?= <j@b.test>", "John Q. Public <jqp@c.test>",
    "alice@a.test, bob@b.test", "Alice <alice@a.test>, Bob <bob@a.test>", "alice(comment)@a.test",
    "Alice <alice@a.test> (work)", "undisclosed-recipients:;", "Group: a@a.test, b@a.test;", "no address",
    "<>", "alice@a.test.", "Alice <@route.test:alice@a.test>", "a@b@c.test", "<alice@bücher.test>",
    "Ålice <alice@a.test>", "alice@localhost", "Alice<alice@a.test>", "\tAlice\t<alice@a.test>",
]  # fmt: skip


def slow_domain(value: str) -> str | None:
    """What _from_domain computed before the fast path: email.utils.getaddresses and the same checks."""
    addresses = [a for _, a in email.utils.getaddresses([value]) if a]
    domains = {a.rpartition("@")[2].strip().lower().rstrip(".") for a in addresses}
    if len(domains) != 1:
        return None
    try:
        domain = domains.pop().encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return domain if "." in domain else None


@pytest.mark.parametrize("value", FROM_VALUES)
def test_from_domain_fast_path_agrees_with_email_utils(value: str) -> None:
    raw = f"From: {value}\r\nTo: x@y.test\r\n\r\nbody\r\n".encode()
    assert mailauth.from_domain(raw) == slow_domain(value)


def test_two_from_fields_mean_no_domain() -> None:
    assert mailauth.from_domain(b"From: a@a.test\r\nFrom: b@b.test\r\n\r\n") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("From: ceo@bank.test\r\n", mailauth.Authors(("bank.test",), 1)),
        ("From: ceo@bank.test, x@evil.test\r\n", mailauth.Authors(("bank.test", "evil.test"), 1)),
        ("From: ceo@bank.test\r\nFrom: x@evil.test\r\n", mailauth.Authors(("bank.test", "evil.test"), 2)),
        ("From: A <a@a.test>, B <b@A.test.>\r\n", mailauth.Authors(("a.test",), 1)),
        ("From: ceo@bank.test, root@localhost\r\n", mailauth.Authors(("bank.test",), 1, unusable=True)),
        ("From: undisclosed-recipients:;\r\n", mailauth.Authors((), 1, unusable=True)),
        ("To: x@y.test\r\n", mailauth.Authors((), 0)),
        ("From: info@Bücher.test\r\n", mailauth.Authors(("xn--bcher-kva.test",), 1)),
        ("From: info@faß.test\r\n", mailauth.Authors(("xn--fa-hia.test",), 1)),  # UTS #46: not IDNA 2003's fass
        ("From: info@☃.test\r\n", mailauth.Authors((), 1, unusable=True)),  # a symbol: no A-label
    ],
)
def test_every_author_domain_is_found(header: str, expected: mailauth.Authors) -> None:
    assert mailauth.authors(f"{header}Subject: hi\r\n\r\nbody\r\n".encode()) == expected
