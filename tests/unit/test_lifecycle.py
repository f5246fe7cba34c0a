"""Pure parts of quotas and the lifecycle: send-limit arithmetic, the 90 % warning state, mboxrd quoting, purge."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from relentad import quota
from relentad.lifecycle import retention, transfer
from relentad.store import accounts, db, messages
from relentad.store.mailboxes import find


def usage(**kwargs: int) -> quota.Usage:
    values = {"account_id": 1, "bytes": 0, "messages": 0, "limit": 0}
    values |= {"daily_send": 0, "hourly_send": 0, "sent_today": 0, "sent_this_hour": 0}
    values.update(kwargs)
    return quota.Usage(**values)


def test_send_refusal_at_exact_counts() -> None:
    assert quota.send_refusal(usage(hourly_send=3, sent_this_hour=2), pending=0) is None
    assert quota.send_refusal(usage(hourly_send=3, sent_this_hour=2), pending=1) == "hour"
    assert quota.send_refusal(usage(daily_send=5, sent_today=4), pending=0) is None
    assert quota.send_refusal(usage(daily_send=5, sent_today=5), pending=0) == "day"
    assert quota.send_refusal(usage(sent_today=10**6), pending=10) is None, "0 = unlimited"


def test_full_and_fits() -> None:
    assert usage(bytes=100, limit=100).full and not usage(bytes=99, limit=100).full
    assert usage(bytes=90, limit=100).fits(10) and not usage(bytes=90, limit=100).fits(11)
    assert usage(bytes=10**9).fits(10**9), "0 = unlimited"


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: a\r\n\r\nbody\r\n",
        b"Subject: b\r\n\r\nFrom here\r\n>From there\r\n>>From everywhere\r\n",
        b"Subject: c\r\n\r\nno final newline",
        b"Subject: d\n\nbare\n\n\n",
        b"Subject: e\r\n\r\n\r\nFrom \r\n",
    ],
)
def test_mboxrd_round_trip(raw: bytes) -> None:
    data = transfer.mbox_entry(raw, 1_700_000_000) + transfer.mbox_entry(b"Subject: next\r\n\r\nx\r\n", 0)
    [(first, date), (second, _)] = list(transfer.read_mbox(data))
    assert first == raw and second == b"Subject: next\r\n\r\nx\r\n" and date == 1_700_000_000


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    connection = db.open_database(tmp_path / "t.db")
    with db.transaction(connection):
        accounts.add_domain(connection, "example.test")
        accounts.add_account(connection, "a@example.test", "x", quota_bytes=1000, daily_send=0)
    return connection


def _deliver(conn: sqlite3.Connection, raw: bytes) -> None:
    inbox = find(conn, 1, "INBOX")
    assert inbox is not None
    blob = messages.store_blob(conn, raw)
    messages.append(conn, inbox, blob, prefix=b"", size=len(raw), internaldate=time.time())


def test_warning_once_per_crossing(conn: sqlite3.Connection) -> None:
    with db.transaction(conn):
        _deliver(conn, b"x" * 850)
        assert quota.claim_warning(conn, 1) is None
        assert not quota.warning_state_stale(conn, 1)
        _deliver(conn, b"y" * 60)  # 910 of 1000 octets
        assert quota.warning_state_stale(conn, 1)
        warned = quota.claim_warning(conn, 1)
        assert warned is not None and round(warned.percent) == 91
        assert quota.claim_warning(conn, 1) is None and not quota.warning_state_stale(conn, 1), "once"
        conn.execute("UPDATE accounts SET quota_bytes = 10000 WHERE id = 1")  # below 90 % again: re-armed
        assert quota.warning_state_stale(conn, 1) and quota.claim_warning(conn, 1) is None
        conn.execute("UPDATE accounts SET quota_bytes = 1000 WHERE id = 1")
        assert quota.claim_warning(conn, 1) is not None, "passing 90 % again warns again"


def test_terminate_then_purge_removes_account_and_blobs(conn: sqlite3.Connection) -> None:
    with db.transaction(conn):
        _deliver(conn, b"Subject: s\r\n\r\nbody\r\n")
        assert retention.terminate(conn, 1, now=1000.0) == 1
    with db.transaction(conn):
        assert retention.purge(conn, 90, now=1000.0 + 89 * 86400).accounts == 0
        result = retention.purge(conn, 90, now=1000.0 + 91 * 86400)
    assert (result.expunged, result.accounts, result.blobs) == (1, 1, 1)
    assert conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0
