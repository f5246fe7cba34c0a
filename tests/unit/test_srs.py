"""SRS addresses (relentad/srs.py): what forwarding writes and what the MX accepts back."""

from __future__ import annotations

from pathlib import Path

import pytest

from relentad import srs
from relentad.errors import InvalidInput
from relentad.store import db

SECRET = b"k" * 32
DAY = 86400.0
NOW = 20_000 * DAY + 3600


def local(address: str) -> str:
    return address.rpartition("@")[0]


def test_srs0_round_trip_case_insensitively() -> None:
    rewritten = srs.forward("Alice.Smith+tag@Example.ORG", "a.test", SECRET, NOW)
    assert rewritten.startswith("SRS0=") and rewritten.endswith("=Example.ORG=Alice.Smith+tag@a.test")
    assert srs.reverse(local(rewritten), [SECRET], NOW) == "Alice.Smith+tag@Example.ORG"
    assert srs.reverse(local(rewritten).lower(), [SECRET], NOW) == "alice.smith+tag@example.org"
    assert srs.reverse(local(rewritten).upper(), [SECRET], NOW) == "ALICE.SMITH+TAG@EXAMPLE.ORG"


def test_null_sender_stays_null() -> None:
    assert srs.forward("", "a.test", SECRET, NOW) == ""


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda text: text.replace("=alice", "=mallory"), "hash"),
        (lambda text: "SRS0=AAAAAA" + text[11:], "hash"),
        (lambda text: "SRS0=x", "malformed"),
        (lambda text: "SRS2=" + text[5:], "not an SRS"),
    ],
)
def test_forged_addresses_are_refused(mangle: object, why: str) -> None:
    rewritten = local(srs.forward("alice@example.org", "a.test", SECRET, NOW))
    assert callable(mangle)
    with pytest.raises(InvalidInput, match=why):
        srs.reverse(mangle(rewritten), [SECRET], NOW)


def test_another_secret_does_not_verify_but_an_older_one_of_ours_does() -> None:
    rewritten = local(srs.forward("alice@example.org", "a.test", SECRET, NOW))
    with pytest.raises(InvalidInput, match="hash"):
        srs.reverse(rewritten, [b"other" * 8], NOW)
    assert srs.reverse(rewritten, [b"newer" * 8, SECRET], NOW) == "alice@example.org"


def test_timestamp_window_is_21_days() -> None:
    rewritten = local(srs.forward("alice@example.org", "a.test", SECRET, NOW))
    assert srs.reverse(rewritten, [SECRET], NOW + 21 * DAY) == "alice@example.org"
    with pytest.raises(InvalidInput, match="expired"):
        srs.reverse(rewritten, [SECRET], NOW + 22 * DAY)
    with pytest.raises(InvalidInput, match="expired"):
        srs.reverse(rewritten, [SECRET], NOW - 2 * DAY), "from the future"


def test_srs1_for_an_address_another_forwarder_rewrote() -> None:
    first = srs.forward("alice@example.org", "fwd.example", b"theirs" * 6, NOW)
    ours = srs.forward(first, "a.test", SECRET, NOW)
    assert ours.startswith("SRS1=") and "=fwd.example==" in ours and ours.endswith("@a.test")
    assert srs.reverse(local(ours), [SECRET], NOW) == first, "back through the first forwarder"
    again = srs.forward(ours, "b.test", b"third" * 7, NOW)
    assert again.startswith("SRS1=") and "=fwd.example==" in again, "the first forwarder stays"
    assert srs.reverse(local(again), [b"third" * 7], NOW) == first


def test_rotation_keeps_an_old_secret_for_the_srs_window_and_revoke_drops_it_at_once(tmp_path: Path) -> None:
    conn = db.open_database(tmp_path / "s.db")
    [first] = srs.secrets_of(conn)
    day = 86400.0
    assert srs.rotate(conn, now=1000 * day) == 0
    second, old = srs.secrets_of(conn)
    assert old == first and second != first, "the new one signs, the old one still verifies"
    address = srs.forward("dave@d.test", "a.test", first, now=999 * day)
    assert srs.reverse(address.rpartition("@")[0], srs.secrets_of(conn), now=1005 * day) == "dave@d.test"
    assert srs.rotate(conn, now=1010 * day) == 0, "superseded 10 days ago: kept"
    assert srs.rotate(conn, now=1030 * day) == 1, "superseded 30 days ago: no address of it is valid any more"
    assert first not in srs.secrets_of(conn) and len(srs.secrets_of(conn)) == 3
    assert srs.rotate(conn, revoke=True, now=1031 * day) == 3
    assert len(srs.secrets_of(conn)) == 1


def test_the_day_wraps_every_1024_days() -> None:
    """Two base32 characters of days: an address made on day 1023 of a cycle is 6 days old on day 5 of the next."""
    made = (1024 * 19 + 1023) * DAY
    rewritten = srs.forward("dave@d.test", "a.test", SECRET, made).rpartition("@")[0]
    assert srs.reverse(rewritten, [SECRET], made + 6 * DAY) == "dave@d.test"
    with pytest.raises(InvalidInput, match="expired"):
        srs.reverse(rewritten, [SECRET], made + 22 * DAY)


def test_an_unverified_senders_address_is_told_apart_and_refused() -> None:
    """Its hash is made under another tag: the same sender gets another address, one whose bounces go nowhere."""
    verified = srs.forward("dave@d.test", "a.test", SECRET, NOW)
    unverified = srs.forward("dave@d.test", "a.test", SECRET, NOW, verified=False)
    assert unverified != verified and unverified.split("=")[2:] == verified.split("=")[2:]
    with pytest.raises(srs.Unverified, match="not verified"):
        srs.reverse(unverified.rpartition("@")[0], [SECRET], NOW)
    chained = srs.forward(verified.replace("@a.test", "@fwd.example"), "b.test", SECRET, NOW, verified=False)
    with pytest.raises(srs.Unverified):
        srs.reverse(chained.rpartition("@")[0], [SECRET], NOW)
    assert srs.reverse(verified.rpartition("@")[0], [SECRET], NOW) == "dave@d.test", "as before"


def test_the_hash_does_not_run_domain_and_local_part_together() -> None:
    """Whoever owns evil.co gets an address for mvictim@evil.co forwarded: it must not sign victim@evil.com too."""
    mine = srs.forward("mvictim@evil.co", "a.test", SECRET, NOW).rpartition("@")[0]
    shifted = mine.replace("=evil.co=mvictim", "=evil.com=victim")
    assert shifted != mine
    with pytest.raises(InvalidInput, match="does not verify"):
        srs.reverse(shifted, [SECRET], NOW)
