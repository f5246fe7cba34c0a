"""The Junk digest's text (relentad.spam.digest.build)."""

from __future__ import annotations

from relentad.message import parse
from relentad.spam import digest


def test_the_digest_lists_at_most_a_hundred_and_counts_the_rest() -> None:
    items = [digest.Item(1_800_000_000.0 + i, f"s{i}@x.test", f"Subject {i}", "0.9900") for i in range(105)]
    raw = digest.build("a@b.test", items, sender="postmaster@mx.test", hostname="mx.test", now=1_800_000_200.0)
    parsed = parse(raw)
    assert parsed.subject == "Junk: 105 message(s) filed since the last digest"
    text = raw.decode()
    assert "s0@x.test: Subject 0 (0.9900)" in text and "s99@x.test" in text and "s100@x.test" not in text
    assert "… and 5 more." in text


def test_missing_parts_read_plainly() -> None:
    raw = digest.build("a@b.test", [digest.Item(0.0, "", "", "")], sender="p@m.test", hostname="m.test", now=0.0)
    assert "(no sender): (no subject)" in raw.decode()
