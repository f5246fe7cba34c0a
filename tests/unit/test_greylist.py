"""Greylisting (relentad.greylist): the triplet's parts, the state machine over a real migrated database, pruning,
and the configuration's checks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad import config as config_mod
from relentad import greylist
from relentad.config import GreylistConfig
from relentad.store import db

CONFIG = GreylistConfig(enabled=True, delay=300.0, retry_window=3600.0, lifetime=86_400.0, clients_after=2)
T0 = 1_800_000_000.0


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = db.open_database(tmp_path / "g.db")
    yield connection
    connection.close()


def attempt(conn: sqlite3.Connection, when: float, client: str = "192.0.2.0/24", sender: str = "a@x.test") -> str:
    """One RCPT as the MX makes it: a read, then the write job only when the read asks for one."""
    verdict, write = greylist.judge(conn, client, sender, "alice@a.test", when, CONFIG)
    if write:
        with db.transaction(conn):
            verdict = greylist.record(conn, client, sender, "alice@a.test", when, CONFIG)
    return verdict.outcome if not verdict.deferred else f"deferred {verdict.wait:.0f}"


@pytest.mark.parametrize(
    ("mail_from", "key"),
    [
        ("", "<>"),
        ("Alice@Example.COM", "alice@example.com"),
        ("bounce-1234-77@lists.example", "bounce-#-#@lists.example"),  # VERP: one sender per list
        ("SRS0=HHH1=T2=d.example=dave@fwd.example", "srs=d.example=dave@fwd.example"),  # hash and day vary
        ("prvs=1a2b3c4d=bob@b.example", "bob@b.example"),  # BATV
        ("postmaster", "postmaster"),
    ],
)
def test_sender_key(mail_from: str, key: str) -> None:
    assert greylist.sender_key(mail_from) == key


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("192.0.2.77", "192.0.2.0/24"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.9", "192.0.2.0/24"),  # an IPv4 client on a dual-stack socket
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_client_network(ip: str, network: str) -> None:
    assert greylist.client_network(ip, CONFIG) == network


def test_exempt_networks() -> None:
    config = GreylistConfig()
    assert greylist.exempt("127.0.0.1", config) and greylist.exempt("::1", config)
    assert not greylist.exempt("192.0.2.1", config) and not greylist.exempt("garbage", config)


def test_a_triplet_waits_its_delay_then_passes_until_its_lifetime(conn: sqlite3.Connection) -> None:
    assert attempt(conn, T0) == "deferred 300"
    assert attempt(conn, T0 + 100) == "deferred 200", "an early retry waits the rest, and does not restart the clock"
    assert attempt(conn, T0 + 301) == "passed"
    assert attempt(conn, T0 + 302) == "known"
    assert attempt(conn, T0 + 302, sender="b@x.test") == "deferred 300", "another sender is another triplet"
    assert attempt(conn, T0 + 302 + 86_000) == "known", "seen within its lifetime"
    assert attempt(conn, T0 + 302 + 86_000 + 86_401) == "deferred 300", "not seen for its lifetime: anew"


def test_a_retry_after_the_window_starts_over(conn: sqlite3.Connection) -> None:
    assert attempt(conn, T0) == "deferred 300"
    assert attempt(conn, T0 + 3601) == "deferred 300"
    assert attempt(conn, T0 + 3601 + 301) == "passed"


def test_a_client_that_passed_enough_passes_for_everyone(conn: sqlite3.Connection) -> None:
    for sender in ("a@x.test", "b@x.test"):
        attempt(conn, T0, sender=sender)
        assert attempt(conn, T0 + 400, sender=sender) == "passed"
    assert attempt(conn, T0 + 500, sender="new@y.test") == "client"
    assert attempt(conn, T0 + 500, client="198.51.100.0/24") == "deferred 300", "only that network"


def test_reads_alone_while_nothing_changes(conn: sqlite3.Connection) -> None:
    """The MX asks for a write (a commit) only for new, passing or stale triplets, not for each early retry."""
    attempt(conn, T0)
    assert greylist.judge(conn, "192.0.2.0/24", "a@x.test", "alice@a.test", T0 + 10, CONFIG)[1] is False
    attempt(conn, T0 + 301)
    assert greylist.judge(conn, "192.0.2.0/24", "a@x.test", "alice@a.test", T0 + 400, CONFIG)[1] is False
    assert greylist.judge(conn, "192.0.2.0/24", "a@x.test", "alice@a.test", T0 + 301 + 3601, CONFIG)[1] is True


def test_prune_drops_what_no_longer_matters(conn: sqlite3.Connection) -> None:
    attempt(conn, T0, sender="waiting@x.test")
    attempt(conn, T0, sender="passed@x.test")
    attempt(conn, T0 + 301, sender="passed@x.test")
    with db.transaction(conn):
        assert greylist.prune(conn, T0 + 3700) == 1, "the one never retried, past its window"
    with db.transaction(conn):
        assert greylist.prune(conn, T0 + 301 + 86_401) == 2, "the passed triplet and its client, past their lifetime"
    assert conn.execute("SELECT count(*) FROM greylist").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        (
            {"exempt_networks": ["10.0.0.0/8", "nonsense"]},
            "[greylist] exempt_networks: 'nonsense' is not an IP network",
        ),
        ({"ipv4_prefix": 33}, "[greylist] ipv4_prefix must be 1-32"),
        ({"delay": "soon"}, "[greylist] delay"),
    ],
)
def test_configuration_is_checked(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(config_mod.ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        config_mod.from_dict({"greylist": settings})


def test_counts_say_what_is_held(conn: sqlite3.Connection) -> None:
    attempt(conn, T0, sender="waiting@x.test")
    for sender in ("a@x.test", "b@x.test"):
        attempt(conn, T0, sender=sender)
        attempt(conn, T0 + 301, sender=sender)
    assert greylist.counts(conn, T0 + 302, CONFIG) == {"waiting": 1, "passed": 2, "clients": 1}
    assert greylist.counts(conn, T0 + 3700, CONFIG)["waiting"] == 0, "past its window: as good as gone"
