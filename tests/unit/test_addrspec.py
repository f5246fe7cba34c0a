from __future__ import annotations

import pytest

from relentad import addrspec
from relentad.addrspec import a_label, base_address, normalize, normalize_domain
from relentad.errors import InvalidInput


def test_normalize_lowercases_and_uses_a_labels() -> None:
    assert normalize("Alice@Example.TEST") == "alice@example.test"
    assert normalize("info@Bücher.example") == "info@xn--bcher-kva.example"
    assert normalize_domain("xn--bcher-kva.example") == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("faß.test", "xn--fa-hia.test"),  # UTS #46 non-transitional: ß stays ß (IDNA 2003: fass.test)
        ("STRASSE.test", "strasse.test"),
        ("Straße.DE", "xn--strae-oqa.de"),
        ("ＦＡß.test", "xn--fa-hia.test"),  # fullwidth letters are their ASCII ones
        ("ＥＸＡＭＰＬＥ.com", "example.com"),
        ("σίσυφος.gr", "xn--kxa6ajbbmh.gr"),  # final ς stays ς
        ("ΣΊΣΥΦΟΣ.gr", "xn--kxa6akbbkh.gr"),  # Σ is σ wherever it stands (UTS #46 has no final-sigma rule)
    ],
)
def test_domains_are_a_labels_by_uts46_non_transitional(given: str, expected: str) -> None:
    """One rule for every domain (administration here, SPF, DMARC and DNSBL through a_label): they used to differ,
    normalize_domain mapping ß to ss (Python's IDNA 2003 codec) while SPF refused it."""
    assert normalize_domain(given) == expected
    assert (a_label(given) or "").lower() == expected  # a_label leaves ASCII labels as they are


@pytest.mark.parametrize(
    "bad", ["a。b.test", "a．b.test", "☃.test", "-ü.test", "ü-.test", "\u0301a.test", "a\u200db.test"]
)
def test_labels_without_an_a_label_are_refused(bad: str) -> None:
    assert a_label(bad) is None
    with pytest.raises(InvalidInput):
        normalize_domain(bad)


@pytest.mark.parametrize(
    "bad",
    ["", "alice", "@example.test", "alice@", "a@example.test.", "a@exa..mple", "a..b@example.test",
     '""@example.test', '"a"b"@example.test', '"tab\there"@example.test',
     "a b@example.test", "a@-bad.test", "a%b@example.test", "a@[127.0.0.1]",
     "x" * 65 + "@example.test"],
)  # fmt: skip
def test_refuses_what_it_cannot_be_exact_about(bad: str) -> None:
    with pytest.raises(InvalidInput):
        normalize(bad)


def test_quoted_local_parts_have_one_canonical_form() -> None:
    """RFC 5321 §4.1.2: qtextSMTP and quoted-pairs; bare when the content is a dot-atom, else re-quoted."""
    assert normalize('"alice"@Example.test') == "alice@example.test"
    assert normalize('"John Doe"@example.test') == '"john doe"@example.test'
    assert normalize('"x@y"@example.test') == '"x@y"@example.test'
    assert normalize('"a\\b"@example.test') == "ab@example.test"  # a quoted-pair stands for its character
    assert normalize('"a\\"b"@example.test') == '"a\\"b"@example.test'
    assert base_address('"a+b c"@example.test') is None


def test_local_parts_are_compared_in_nfc() -> None:
    assert normalize("mu\u0308ller@example.test") == normalize("m\u00fcller@example.test") == "m\u00fcller@example.test"


def test_base_address_of_subaddress() -> None:
    assert base_address("alice+news@example.test") == "alice@example.test"
    assert base_address("alice@example.test") is None
    assert base_address("+tag@example.test") is None


def test_idna_2008_context_rules_refuse_a_stray_joiner_and_a_mixed_direction_label() -> None:
    # The joiner rule (RFC 5892 Appendix A.2) and the Bidi rule (RFC 5893): the idna package, not a category check.
    assert a_label("ü\u200d.example") is None
    assert a_label("\u05d0a.example") is None  # a right-to-left letter then a left-to-right one
    assert a_label("\u05e2\u05d1\u05e8\u05d9\u05ea.example") == "xn--5dbqzzl.example"


def test_a_longer_local_part_only_where_asked_for() -> None:
    """RFC 5321 §4.5.3.1: 64 octets for a local part, but the MX takes longer reverse-paths (SRS senders)."""
    long_local = "SRS0=ABCDEF=JQ=" + "x" * 60
    with pytest.raises(InvalidInput, match="too long"):
        addrspec.split(f"{long_local}@a.test")
    assert addrspec.split(f"{long_local}@a.test", max_local=addrspec.MAX_PATH) == (long_local, "a.test")
    assert addrspec.split_path(f"{long_local}@a.test") == (long_local, "a.test")
    with pytest.raises(InvalidInput, match="path too long"):
        addrspec.split_path("x" * 250 + "@a.test")  # over 254 octets without the angle brackets
