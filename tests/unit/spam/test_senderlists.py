"""Per-account sender lists (spam/senderlists.py) and how the spam verdict uses them."""

from __future__ import annotations

import functools
import sqlite3

import pytest

from relentad.config import SpamConfig
from relentad.errors import InvalidInput
from relentad.spam import senderlists, storage, verdicts

SPAMMY = frozenset({"viagra", "cheap", "winner"})
HAMMY = frozenset({"meeting", "agenda", "tuesday"})


@pytest.fixture
def trained(conn: sqlite3.Connection) -> sqlite3.Connection:
    """The database of ``conn`` with a global model of 20 spam and 20 ham."""
    items = [(storage.digest(b"s%d" % i), SPAMMY | {f"s{i}"}, True) for i in range(20)]
    items += [(storage.digest(b"h%d" % i), HAMMY | {f"h{i}"}, False) for i in range(20)]
    storage.train_corpus(conn, storage.GLOBAL, items)
    return conn


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("News@Shop.Example", "news@shop.example"),
        ("@Shop.Example", "@shop.example"),
        ("shop.example", "@shop.example"),
        (" @bücher.example ", "@xn--bcher-kva.example"),
    ],
)
def test_patterns_are_normalised(text: str, pattern: str) -> None:
    assert senderlists.normalize_pattern(text) == pattern


@pytest.mark.parametrize("text", ["@", "a@", "@bad..example", "two words@x.example", ""])
def test_bad_patterns_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        senderlists.normalize_pattern(text)


def test_the_most_specific_pattern_wins(conn: sqlite3.Connection) -> None:
    senderlists.put(conn, 1, "@shop.example", "block")
    senderlists.put(conn, 1, "@news.shop.example", "allow")
    senderlists.put(conn, 1, "boss@news.shop.example", "block")
    decide = functools.partial(senderlists.decision, conn, 1)
    assert decide("anyone@shop.example") == "block"
    assert decide("x@deals.shop.example") == "block"  # subdomains are covered
    assert decide("letter@news.shop.example") == "allow"
    assert decide("boss@news.shop.example") == "block"
    assert decide("x@othershop.example") is None  # a suffix of the name is not a subdomain
    assert decide("") is None
    senderlists.put(conn, 2, senderlists.normalize_pattern("@bücher.example"), "block")
    assert senderlists.decision(conn, 2, "info@bücher.example") == "block"  # U-labels meet the A-label pattern
    assert senderlists.decision(conn, 2, "anyone@shop.example") is None  # another account's list
    senderlists.put(conn, 1, "@shop.example", "allow")  # listing again replaces
    assert decide("anyone@shop.example") == "allow"
    assert senderlists.remove(conn, 1, "@shop.example") and not senderlists.remove(conn, 1, "@shop.example")
    assert [(e.pattern, e.action) for e in senderlists.entries(conn, 1)] == [
        ("@news.shop.example", "allow"),
        ("boss@news.shop.example", "block"),
    ]


def test_blocked_senders_go_to_junk_whatever_the_score_and_allowed_ones_stay(trained: sqlite3.Connection) -> None:
    conn = trained
    senderlists.put(conn, 1, "@spam.example", "block")
    senderlists.put(conn, 1, "news@shop.example", "allow")
    judge = functools.partial(verdicts.judge, conn, 1, spam=SpamConfig(min_trained=20, confident_after=0))
    blocked = judge(tokens=HAMMY, sender="x@spam.example")
    assert blocked.verdict == "ham" and blocked.to_junk
    assert blocked.reason().startswith("spam-blocked-sender score=")
    assert b"X-Spam-Status: Yes, verdict=ham, blocked-sender, score=" in blocked.header()
    assert judge(tokens=HAMMY, sender="x@spam.example", sender_trusted=False).to_junk  # DMARC aside
    untrained = verdicts.judge(conn, 1, HAMMY, SpamConfig(min_trained=1000), sender="x@spam.example")
    assert untrained.verdict == "untrained" and untrained.to_junk
    allowed = judge(tokens=SPAMMY, sender="news@shop.example")
    assert allowed.verdict == "spam" and not allowed.to_junk
    assert allowed.reason().startswith("spam-allowlisted-sender score=")
    assert judge(tokens=SPAMMY, sender="news@shop.example", sender_trusted=False).to_junk  # a forged From
    assert judge(tokens=SPAMMY, sender="other@shop.example").to_junk


def test_an_accounts_lists_go_with_it(conn: sqlite3.Connection) -> None:
    senderlists.put(conn, 2, "@spam.example", "block")
    conn.execute("DELETE FROM accounts WHERE id = 2")
    assert conn.execute("SELECT count(*) FROM spam_senders").fetchone()[0] == 0
