#!/usr/bin/env python3
"""What the daily spam rebuild costs the mail flowing meanwhile: deliveries on the event loop while an account's model
is rebuilt with its orders in a thread (as before session 14) or in a child process (``rebuild.prepare_apart``, now),
against the same deliveries with no rebuild (the baseline), in one run.

Usage: .venv/bin/python scripts/bench/rebuild_lag.py [--lessons 1000] [--sessions 10] [--corpus DIR]

A real ``Store`` (WAL, the writer thread, group commit) in a temporary folder holds one account that learned
``--lessons`` corpus messages one at a time (``storage.train_message``, as the daemon learns). ``--sessions``
delivery loops then run on the event loop, each delivery what the daemon's costs boil down to: tokenizing a corpus
message on the loop (CPU) and one durable write job (the store's writer). A probe sleeps 5 ms at a time and records
how late it wakes (the loop's lag). Each mode measures while its rebuild runs (the baseline for as long as the thread
mode's rebuild took) and prints deliveries/s, delivery latency p50/p99, loop lag p99/max and the swap's write job,
with ratios against the baseline.

Invariants: the corpus is only read; everything else lives in a temporary folder removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from spam_eval import DEFAULT_CORPUS

from relentad.config import SpamConfig
from relentad.spam import rebuild, rebuild_worker, storage
from relentad.spam.tokenize import tokenize
from relentad.store import db
from relentad.store.db import Store

ACCOUNT = 1
PROBE_SECONDS = 0.005


@dataclass
class Window:
    """What the deliveries and the probe saw during one measured window."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    swap_seconds: float = 0.0

    def line(self, name: str, base: Window | None) -> str:
        rate = len(self.latencies) / self.seconds if self.seconds else 0.0
        p50, p99 = percentile(self.latencies, 50), percentile(self.latencies, 99)
        lag99, lag_max = percentile(self.lags, 99), max(self.lags, default=0.0)
        text = (
            f"{name:<22} {rate:7.0f} deliveries/s  latency p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  "
            f"loop lag p99 {lag99 * 1000:6.1f} ms  max {lag_max * 1000:6.1f} ms"
        )
        if self.swap_seconds:
            text += f"  swap write job {self.swap_seconds:.2f} s"
        if base is not None and base.latencies and self.latencies:
            base_rate = len(base.latencies) / base.seconds
            text += f"\n{'':<22} ratio to baseline: rate {rate / base_rate:.2f}, p99 latency "
            text += f"{p99 / max(percentile(base.latencies, 99), 1e-9):.1f}x"
        return text


def percentile(values: list[float], pct: int) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, len(ordered) * pct // 100)]


def corpus_files(corpus: Path, count: int, seed: int = 20261126) -> list[Path]:
    files = [path for path in sorted(corpus.rglob("*")) if path.is_file() and not path.name.startswith(".")]
    random.Random(seed).shuffle(files)
    return files[:count]


def teach(path: Path, files: list[Path]) -> None:
    """The account's lessons, one at a time as the daemon learns them (spam by the corpus folder name)."""
    conn = db.open_database(path)
    try:
        for file in files:
            raw = file.read_bytes()
            spam = "/spam/" in str(file)
            storage.train_message(conn, ACCOUNT, storage.digest(raw), tokenize(raw), spam, "imap-move")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, body BLOB)")
        conn.commit()
    finally:
        conn.close()


def insert_row(conn: sqlite3.Connection, body: bytes) -> None:
    """One delivery's write: a row the size of the message."""
    conn.execute("INSERT INTO bench_rows (body) VALUES (?)", (body,))


async def measure(store: Store, mail: list[bytes], sessions: int, work: Awaitable[float] | float) -> Window:
    """Deliveries and the probe while ``work`` runs (an awaitable giving the swap's seconds), or for that many
    seconds."""
    window = Window()
    stop = asyncio.Event()

    async def deliver(offset: int) -> None:
        n = offset
        while not stop.is_set():
            raw = mail[n % len(mail)]
            n += sessions
            started = time.perf_counter()
            tokenize(raw)
            await store.write(functools.partial(insert_row, body=raw))
            window.latencies.append(time.perf_counter() - started)

    async def probe() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(PROBE_SECONDS)
            window.lags.append(max(0.0, time.perf_counter() - started - PROBE_SECONDS))

    tasks = [asyncio.create_task(deliver(i)) for i in range(sessions)] + [asyncio.create_task(probe())]
    started = time.perf_counter()
    if isinstance(work, float):
        await asyncio.sleep(work)
    else:
        window.swap_seconds = await work
    window.seconds = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    return window


async def rebuild_with(store: Store, prepare: Callable[[], Awaitable[rebuild.Prepared]]) -> float:
    """One rebuild of the account: ``prepare``, then the swap as the daemon's write job; returns the job's seconds."""
    prepared = await prepare()
    spam = SpamConfig()

    def timed_swap(conn: sqlite3.Connection) -> float:
        started = time.perf_counter()
        result = rebuild.swap(conn, prepared, spam)
        assert result is not None, "a lesson came meanwhile"
        return time.perf_counter() - started

    return await store.write(timed_swap)


async def run(path: Path, mail: list[bytes], sessions: int) -> None:
    store = Store(path)
    store.start(asyncio.get_running_loop())
    try:
        await measure(store, mail, sessions, 1.0)  # warm-up: caches, the writer, the pair tables
        thread = await measure(
            store,
            mail,
            sessions,
            rebuild_with(store, lambda: asyncio.to_thread(rebuild_worker.prepare_at, path, ACCOUNT)),
        )
        base = await measure(store, mail, sessions, thread.seconds)
        in_process = functools.partial(rebuild.prepare_apart, path, ACCOUNT)
        apart = await measure(store, mail, sessions, rebuild_with(store, in_process))
    finally:
        store.close()
    print(f"{sessions} delivery loops; a rebuild took {thread.seconds:.1f} s in a thread, {apart.seconds:.1f} s apart")
    print(base.line("no rebuild (baseline)", None))
    print(thread.line("rebuild in a thread", base))
    print(apart.line("rebuild in a process", base))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    files = corpus_files(args.corpus, args.lessons)
    if not files:
        sys.exit(f"rebuild_lag: no corpus files under {args.corpus}")
    mail = [file.read_bytes() for file in corpus_files(args.corpus, 200, seed=7)]
    with tempfile.TemporaryDirectory(prefix="relentad-bench-") as tmp:
        path = Path(tmp) / "bench.db"
        started = time.perf_counter()
        teach(path, files)
        print(f"{len(files)} lessons learned one at a time in {time.perf_counter() - started:.1f} s")
        asyncio.run(run(path, mail, args.sessions))


if __name__ == "__main__":
    main()
