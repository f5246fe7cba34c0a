"""The queue runner's scheduling: which due (message, domain) pairs start, on a real database, deliveries held."""

from __future__ import annotations

import asyncio
import email
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relentad import config as config_mod
from relentad.config import Config
from relentad.events import Bus
from relentad.pipeline import Pipeline
from relentad.queue import deliver, queue, runner
from relentad.smtp import dsnparams
from relentad.store import db
from relentad.store.db import Store
from tests.support.store import database_with


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    database_with(tmp_path / "q.db", "alice@a.test").close()
    opened = Store(tmp_path / "q.db")
    opened.start(asyncio.get_running_loop())
    yield opened
    opened.close()


def enqueue(store: Store, recipients: list[str], now: float) -> None:
    conn = db.open_database(store.path)
    with db.transaction(conn):
        for index, recipient in enumerate(recipients):
            queue.enqueue(
                conn,
                account_id=1,
                mail_from="alice@a.test",
                data=b"From: alice@a.test\r\n\r\nhi\r\n",
                recipients=[recipient],
                transaction_id=f"t{index}",
                now=now + index * 0.01,
            )
    conn.close()


def enqueue_one(store: Store, recipients: list[str], **params: Any) -> sqlite3.Connection:
    """One message of alice's to ``recipients`` (``params``: enqueue's ``now``, ``dsn``, ``notify``); the
    connection, left open to look at what the runner then files."""
    conn = db.open_database(store.path)
    with db.transaction(conn):
        queue.enqueue(
            conn,
            account_id=1,
            mail_from="alice@a.test",
            data=b"From: alice@a.test\r\nSubject: s\r\n\r\nhi\r\n",
            recipients=recipients,
            transaction_id="t",
            **params,
        )
    return conn


def queue_runner(
    store: Store, settings: dict[str, Any], hostname: str = "mx.a.test"
) -> tuple[Config, runner.QueueRunner]:
    """A runner on ``store`` with ``[queue]`` ``settings``, and its configuration. No MTA-STS unless asked: its
    lookup would ask the system's resolver (no ``[dns] nameservers`` here) before each delivery starts."""
    config = config_mod.from_dict({"server": {"hostname": hostname}, "queue": {"mta_sts": False, **settings}})
    return config, runner.QueueRunner(store, Pipeline(store, Bus(), config), lambda: config)


async def started_domains(store: Store, monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any]) -> list[str]:
    """The domains whose delivery one scheduling step starts; every delivery hangs (an MX that never answers)."""
    started: list[str] = []

    async def hanging_attempt(*, domain: str, **kwargs: Any) -> dict[str, deliver.Outcome]:
        started.append(domain)
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    monkeypatch.setattr(deliver, "attempt", hanging_attempt)
    config, worker = queue_runner(store, settings, hostname="a.test")
    worker._start_due(config)
    await asyncio.sleep(0.05)
    await worker.stop(grace=0)
    return started


async def test_stop_ends_the_runner_when_a_wake_and_the_cancel_come_together(store: Store) -> None:
    """A delivery finishing as the daemon stops sets the wake event in the same step as the cancel; Python 3.11's
    wait_for then swallowed the cancel and the runner went on delivering until SIGKILL (seen under load)."""
    _, worker = queue_runner(store, {"scan_interval": "1h"})
    worker.start()
    await asyncio.sleep(0.05)  # the runner waits for its wake event
    worker.wake()
    stopping = asyncio.ensure_future(worker.stop(grace=0))
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert done, "the runner's loop went on after stop()"
    assert worker._main is not None and worker._main.done()


async def test_a_slow_domain_with_many_due_messages_does_not_starve_the_others(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older due work for a destination at its per_destination limit must not hide every other domain."""
    enqueue(store, [f"u{i}@slow.test" for i in range(100)], time.time() - 100)
    enqueue(store, ["bob@fast.test"], time.time() - 1)
    started = await started_domains(store, monkeypatch, {"concurrency": 20, "per_destination": 2})
    assert sorted(started) == ["fast.test", "slow.test", "slow.test"]


async def test_a_smarthost_is_one_destination(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    enqueue(store, [f"u{i}@slow.test" for i in range(50)] + ["bob@fast.test"], time.time() - 100)
    settings = {"concurrency": 20, "per_destination": 2, "smarthost": "127.0.0.1:2525"}
    assert len(await started_domains(store, monkeypatch, settings)) == 2


async def test_notify_decides_which_reports_the_sender_gets(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 3461 §4.1: without NOTIFY, failures and delays; NEVER, nothing; SUCCESS, "relayed" only where the next
    hop did not take DSN (one that did reports itself); a delay notice only for recipients that asked for DELAY."""
    notify = {
        "plain@x.test": dsnparams.RcptParams(),
        "never@x.test": dsnparams.RcptParams(frozenset({"NEVER"})),
        "relayed@x.test": dsnparams.RcptParams(frozenset({"SUCCESS"}), "rfc822;R@x.test"),
        "passed@x.test": dsnparams.RcptParams(frozenset({"SUCCESS"})),
        "late@x.test": dsnparams.RcptParams(frozenset({"FAILURE"})),
    }
    outcomes = {
        "plain@x.test": deliver.Outcome("failed", "550 5.1.1 no", "mx.x.test", True),
        "never@x.test": deliver.Outcome("failed", "550 5.1.1 no", "mx.x.test", True),
        "relayed@x.test": deliver.Outcome("delivered", "250 2.0.0 ok", "mx.x.test", True),
        "passed@x.test": deliver.Outcome("delivered", "250 2.0.0 ok", "mx.x.test", True, dsn_passed=True),
        "late@x.test": deliver.Outcome("deferred", "451 4.3.0 later", "mx.x.test", True),
    }
    conn = enqueue_one(
        store, list(notify), now=time.time() - 3600, dsn=dsnparams.MailParams("FULL", "env"), notify=notify
    )

    async def answering(**kwargs: Any) -> dict[str, deliver.Outcome]:
        return outcomes

    monkeypatch.setattr(deliver, "attempt", answering)
    config, worker = queue_runner(store, {"delay_notice": "1s"})
    work = store.read(lambda c: queue.load(c, 1, "x.test", time.time()))
    assert work is not None and work.dsn == dsnparams.MailParams("FULL", "env")
    await worker._deliver(work, config, "x.test")
    rows = conn.execute("""SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id ORDER BY m.uid""").fetchall()
    reports = [email.message_from_bytes(bytes(r[0])) for r in rows]
    conn.close()
    summary = []
    for report in reports:
        [_, status, returned] = report.get_payload()  # type: ignore[misc]
        blocks = status.get_payload()
        assert blocks[0]["Original-Envelope-Id"] == "env"
        summary.append(
            (
                returned.get_content_type(),
                [(b["Final-Recipient"], b["Action"], b["Original-Recipient"]) for b in blocks[1:]],
            )
        )
    assert summary == [
        ("message/rfc822", [("rfc822; plain@x.test", "failed", None)]),
        ("text/rfc822-headers", [("rfc822; relayed@x.test", "relayed", "rfc822; R@x.test")]),
    ], "no delay notice: late@ left DELAY out; none for never@ or passed@"
    # no notice went out, so the message is not marked notified: another recipient's delay may still be reported
    assert store.read(lambda c: c.execute("SELECT delay_notified FROM queue_messages").fetchone()[0]) == 0


async def test_every_report_of_an_attempt_commits_with_its_results(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bounce and a "relayed" report of one attempt go in the transaction that records the results: a process
    dying after that commit cannot lose the second (it was written after, on its own)."""
    notify = {"gone@x.test": dsnparams.RcptParams(), "ok@x.test": dsnparams.RcptParams(frozenset({"SUCCESS"}))}
    outcomes = {
        "gone@x.test": deliver.Outcome("failed", "550 5.1.1 no", "mx.x.test", True),
        "ok@x.test": deliver.Outcome("delivered", "250 2.0.0 ok", "mx.x.test", True),
    }
    conn = enqueue_one(store, list(notify), notify=notify)

    async def answering(**kwargs: Any) -> dict[str, deliver.Outcome]:
        return outcomes

    writes = 0
    write = store.write

    async def dies_after_one_commit(job: Any) -> Any:
        nonlocal writes
        writes += 1
        if writes > 1:
            raise RuntimeError("the process died")
        return await write(job)

    monkeypatch.setattr(deliver, "attempt", answering)
    monkeypatch.setattr(store, "write", dies_after_one_commit)
    config, worker = queue_runner(store, {})
    work = store.read(lambda c: queue.load(c, 1, "x.test", time.time()))
    assert work is not None
    await worker._deliver(work, config, "x.test")
    rows = conn.execute("SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id ORDER BY m.uid").fetchall()
    subjects = [email.message_from_bytes(bytes(r[0]))["Subject"] for r in rows]
    left = conn.execute("SELECT count(*) FROM queue_messages").fetchone()[0]
    conn.close()
    assert subjects == ["Undelivered Mail Returned to Sender", "Relayed Mail Delivery Report"]
    assert left == 0, "recorded with them: never tried again"


async def test_one_delay_notice_when_two_domains_of_a_message_are_tried_together(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempts at x.test and y.test of one message run side by side, each loaded before the other recorded:
    the sender still gets one delay notice (the attempt that sets the flag sends it)."""
    conn = enqueue_one(store, ["bob@x.test", "carol@y.test"], now=time.time() - 3600)

    async def deferring(*, recipients: list[str], **kwargs: Any) -> dict[str, deliver.Outcome]:
        return {r: deliver.Outcome("deferred", "451 4.3.0 later", "mx.test", True) for r in recipients}

    monkeypatch.setattr(deliver, "attempt", deferring)
    config, worker = queue_runner(store, {"delay_notice": "1s"})
    works = [store.read(lambda c, d=domain: queue.load(c, 1, d, time.time())) for domain in ("x.test", "y.test")]
    await asyncio.gather(*(worker._deliver(w, config, w.domain) for w in works if w is not None))
    notices = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    conn.close()
    assert notices == 1


async def test_a_recipient_without_delay_leaves_the_delay_notice_to_the_others(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """x.test's recipient asked for FAILURE only and y.test's for the default: x.test's delayed attempt sends no
    notice and must not mark the message notified, or y.test's later delay would go unreported."""
    notify = {"bob@x.test": dsnparams.RcptParams(frozenset({"FAILURE"})), "carol@y.test": dsnparams.RcptParams()}
    conn = enqueue_one(store, list(notify), now=time.time() - 3600, notify=notify)

    async def deferring(*, recipients: list[str], **kwargs: Any) -> dict[str, deliver.Outcome]:
        return {r: deliver.Outcome("deferred", "451 4.3.0 later", "mx.test", True) for r in recipients}

    monkeypatch.setattr(deliver, "attempt", deferring)
    config, worker = queue_runner(store, {"delay_notice": "1s"})
    notices = []
    for domain in ("x.test", "y.test"):
        work = store.read(lambda c, d=domain: queue.load(c, 1, d, time.time()))
        assert work is not None
        await worker._deliver(work, config, domain)
        notices.append(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    report = email.message_from_bytes(
        bytes(conn.execute("SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id").fetchone()[0])
    )
    conn.close()
    assert notices == [0, 1]
    blocks = report.get_payload()[1].get_payload()  # type: ignore[index, union-attr]
    assert [(b["Final-Recipient"], b["Action"]) for b in blocks[1:]] == [("rfc822; carol@y.test", "delayed")]
