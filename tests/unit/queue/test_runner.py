"""The queue runner's scheduling: which due (message, domain) pairs start, on a real database, deliveries held."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relentad import config as config_mod
from relentad.events import Bus
from relentad.pipeline import Pipeline
from relentad.queue import deliver, queue, runner
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


async def started_domains(store: Store, monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any]) -> list[str]:
    """The domains whose delivery one scheduling step starts; every delivery hangs (an MX that never answers)."""
    started: list[str] = []

    async def hanging_attempt(*, domain: str, **kwargs: Any) -> dict[str, deliver.Outcome]:
        started.append(domain)
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    monkeypatch.setattr(deliver, "attempt", hanging_attempt)
    config = config_mod.from_dict({"server": {"hostname": "a.test"}, "queue": settings})
    worker = runner.QueueRunner(store, Pipeline(store, Bus(), config), lambda: config)
    worker._start_due(config)
    await asyncio.sleep(0.05)
    await worker.stop(grace=0)
    return started


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
