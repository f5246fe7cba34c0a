"""The queue's SQL (enqueue, due, results, counters), DSN building and reply parsing, on a real SQLite file."""

from __future__ import annotations

import email
from pathlib import Path

import pytest

from relentad import quota
from relentad.errors import NotFound
from relentad.queue import deliver, dsn, queue
from relentad.store import db
from tests.support.store import database_with


@pytest.fixture
def conn(tmp_path: Path):  # type: ignore[no-untyped-def]
    connection = database_with(tmp_path / "q.db", "alice@a.test")
    yield connection
    connection.close()


def test_enqueue_due_record_finish(conn) -> None:  # type: ignore[no-untyped-def]
    with db.transaction(conn):
        mid = queue.enqueue(
            conn,
            account_id=1,
            mail_from="alice@a.test",
            data=b"raw",
            recipients=["x@B.test", "y@b.test", "z@c.test"],
            transaction_id="t1",
            now=100.0,
        )
    assert queue.due(conn, 100.0) == [(mid, "b.test"), (mid, "c.test")] or queue.due(conn, 100.0) == [
        (mid, "c.test"),
        (mid, "b.test"),
    ]
    work = queue.load(conn, mid, "b.test", 100.0)
    assert work is not None and [r.address for r in work.recipients] == ["x@B.test", "y@b.test"]
    with db.transaction(conn):
        queue.record(conn, work.recipients[0].id, queue.DELIVERED, "250 ok", 101.0)
        queue.record(conn, work.recipients[1].id, queue.QUEUED, "451 later", 101.0, next_attempt=500.0)
        queue.record(conn, work.recipients[0].id, queue.FAILED, "550 no", 102.0)  # a result is never undone
        assert not queue.finish(conn, mid)
    states = {r["address"]: r["state"] for r in queue.list_queue(conn)[0]["recipients"]}
    assert states == {"x@B.test": "delivered", "y@b.test": "queued", "z@c.test": "queued"}
    assert queue.load(conn, mid, "b.test", 200.0) is None, "not due before next_attempt"
    assert queue.next_due(conn) == 100.0
    with db.transaction(conn):
        assert queue.retry_now(conn, mid, now=150.0) == 2
    assert queue.load(conn, mid, "b.test", 150.0) is not None
    with db.transaction(conn):
        for row in conn.execute("SELECT id FROM queue_recipients WHERE state = 'queued'").fetchall():
            queue.record(conn, row[0], queue.FAILED, "550 no", 160.0)
        assert queue.finish(conn, mid)
    assert queue.list_queue(conn) == []
    assert conn.execute("SELECT count(*) FROM queue_recipients").fetchone()[0] == 0
    with db.transaction(conn), pytest.raises(NotFound):
        queue.delete(conn, mid)


def test_send_counters(conn) -> None:  # type: ignore[no-untyped-def]
    with db.transaction(conn):
        queue.count_sent(conn, 1, 3, now=7200.0 + 10)
        queue.count_sent(conn, 1, 2, now=7200.0 + 20)
        queue.count_sent(conn, 1, 1, now=3 * 3600.0 + 5)
    assert quota.sent_count(conn, 1, "hour", now=7200.0 + 30) == 5
    assert quota.sent_count(conn, 1, "day", now=7200.0 + 30) == 6


def test_retry_delay_repeats_the_last_step() -> None:
    schedule = [450.0, 900.0, 1800.0]
    assert [queue.retry_delay(schedule, n) for n in (1, 2, 3, 4, 9)] == [450.0, 900.0, 1800.0, 1800.0, 1800.0]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("550 5.1.1 No such user", "5.1.1"), ("451 4.3.0 later", "4.3.0"), ("550 no code", "5.0.0"), ("junk", "5.0.0")],
)
def test_enhanced_status(reply: str, expected: str) -> None:
    assert deliver.enhanced_status(reply, "5.0.0") == expected


def test_dsn_is_a_delivery_status_report() -> None:
    original = b"From: alice@a.test\r\nSubject: hello\r\n\r\nsecret body\r\n"
    raw = dsn.build(
        action="failed",
        hostname="mx.a.test",
        sender="alice@a.test",
        recipients=[dsn.RecipientStatus("x@b.test", "451 4.4.1 no\r\nInjected: yes", "mx.b.test", 10.0)],
        original=original,
        arrival=5.0,
    )
    parsed = email.message_from_bytes(raw)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed["Injected"] is None
    _human, status, headers = parsed.get_payload()  # type: ignore[misc]
    blocks = [str(b) for b in status.get_payload()]
    assert "Reporting-MTA: dns; mx.a.test" in blocks[0]
    assert "Status: 5.4.1" in blocks[1], "a temporary failure that outlived the queue is reported as permanent"
    assert "Remote-MTA: dns; mx.b.test" in blocks[1]
    assert b"secret body" not in raw
    assert "Subject: hello" in str(headers.get_payload())


def test_dsn_dates_are_rfc_5322_utc() -> None:
    """Date and the report's dates (RFC 3464 §2.2.5, §2.3.7, §2.3.8) as every Date relentad writes (trace.date):
    ``+0000``. They used to be ``-0000`` ("no information about the local zone", RFC 5322 §3.3)."""
    raw = dsn.build(
        action="delayed",
        hostname="mx.a.test",
        sender="alice@a.test",
        recipients=[dsn.RecipientStatus("x@b.test", "451 4.4.1 no", "mx.b.test", 1_700_000_060.0)],
        original=b"From: alice@a.test\r\nSubject: hello\r\n\r\nbody\r\n",
        arrival=1_700_000_000.0,
        retry_until=1_700_400_000.0,
        now=1_700_000_120.0,
    )
    text = raw.decode()
    for field, when in (
        ("Date", "Tue, 14 Nov 2023 22:15:20"),
        ("Arrival-Date", "Tue, 14 Nov 2023 22:13:20"),
        ("Last-Attempt-Date", "Tue, 14 Nov 2023 22:14:20"),
        ("Will-Retry-Until", "Sun, 19 Nov 2023 13:20:00"),
    ):
        assert f"\r\n{field}: {when} +0000\r\n" in text, field
    assert "-0000" not in text and "GMT" not in text


def test_dsn_diagnostic_code_is_smtp_only_for_what_the_remote_server_said() -> None:
    """RFC 3464 §2.3.6: our own texts (timeouts, DNS) are no SMTP reply of the remote MTA."""
    raw = dsn.build(
        action="failed",
        hostname="mx.a.test",
        sender="alice@a.test",
        recipients=[
            dsn.RecipientStatus("x@b.test", "550 5.1.1 No such user", "mx.b.test", 10.0, from_remote=True),
            dsn.RecipientStatus("y@c.test", "451 4.4.1 mx.c.test[192.0.2.1]: SMTPTimeoutError", "", 10.0),
        ],
        original=b"From: alice@a.test\r\nSubject: hello\r\n\r\nbody\r\n",
        arrival=5.0,
    )
    _human, status, _headers = email.message_from_bytes(raw).get_payload()  # type: ignore[misc]
    remote, local = (str(b) for b in status.get_payload()[1:])
    assert "Diagnostic-Code: smtp; 550 5.1.1 No such user" in remote
    assert "Diagnostic-Code: X-Relentad; 451 4.4.1 mx.c.test[192.0.2.1]: SMTPTimeoutError" in local
    assert "smtp;" not in local and "Status: 5.4.1" in local and "Action: failed" in local


def test_due_leaves_out_busy_domains_and_pairs_in_flight(conn) -> None:  # type: ignore[no-untyped-def]
    with db.transaction(conn):
        first = queue.enqueue(
            conn, account_id=1, mail_from="a@a.test", data=b"x", recipients=["x@b.test"], transaction_id="1", now=1.0
        )
        second = queue.enqueue(
            conn,
            account_id=1,
            mail_from="a@a.test",
            data=b"x",
            recipients=["y@b.test", "z@c.test"],
            transaction_id="2",
            now=2.0,
        )
    assert sorted(queue.due(conn, 10.0)) == [(first, "b.test"), (second, "b.test"), (second, "c.test")]
    assert queue.due(conn, 10.0, skip_domains=["b.test"]) == [(second, "c.test")]
    assert queue.due(conn, 10.0, skip=[(first, "b.test"), (second, "c.test")]) == [(second, "b.test")]
