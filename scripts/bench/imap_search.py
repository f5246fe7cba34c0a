#!/usr/bin/env python3
"""IMAP full-text SEARCH: TEXT, BODY and HEADER that match nothing over a mailbox of real corpus messages.

A search that matches nothing is the worst case: every message's text is read (its header fields, the text of
every text part with HTML turned into text, and for TEXT the header of every MIME part and embedded message).
One relentad gets ``--messages`` corpus messages (ham and spam, shuffled; appended over IMAP), then one client
runs the three searches in alternation for ``--rounds`` rounds. Prints, per search, the median wall time and the
daemon's CPU time (user + system from /proc: steadier than wall time on a shared machine), and TEXT's ratio to
BODY in the same run (TEXT reads all BODY reads plus the headers).

    .venv/bin/python scripts/bench/imap_search.py [--messages 2000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from imap_load import USER, Client, cpu_seconds, start_relentad

from tests.support.daemon import PASSWORD

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "spamassassin" / "train"
NEEDLE = b"zqxjv-matches-nothing"
SEARCHES = {
    "TEXT": b"SEARCH TEXT " + NEEDLE,
    "BODY": b"SEARCH BODY " + NEEDLE,
    "HEADER": b"SEARCH HEADER X-Bench " + NEEDLE,
}


def corpus(count: int) -> list[bytes]:
    """`count` corpus messages, ham and spam shuffled, with CRLF line ends as an IMAP client sends them."""
    files = sorted(path for path in CORPUS.glob("*/*/*") if path.is_file())
    random.Random(7).shuffle(files)
    return [path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for path in files[:count]]


async def bench(port: int, pid: int, messages: list[bytes], rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """{search: (wall ms per round, daemon CPU ms per round)}."""
    client = await Client.connect(port)
    await client.command(b'LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))
    for message in messages:
        await client.command(b"APPEND INBOX", message)
    await client.command(b"SELECT INBOX")
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in SEARCHES}
    for round_ in range(rounds + 1):  # the first round warms caches and is not counted
        for name, command in SEARCHES.items():
            cpu, started = cpu_seconds(pid), time.perf_counter()
            lines = await client.command(command)
            wall, used = 1000 * (time.perf_counter() - started), 1000 * (cpu_seconds(pid) - cpu)
            if lines[0].strip() != b"* SEARCH":
                raise RuntimeError(f"{name} matched something: {lines[0][:80]!r}")
            if round_:
                times[name][0].append(wall)
                times[name][1].append(used)
    await client.command(b"LOGOUT")
    await client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    messages = corpus(args.messages)
    with tempfile.TemporaryDirectory(prefix="imap-search-bench-") as tmp:
        daemon = start_relentad(Path(tmp) / "relentad")
        try:
            assert daemon.proc is not None
            times = asyncio.run(bench(daemon.imap_port, daemon.proc.pid, messages, args.rounds))
        finally:
            daemon.stop()
    size = sum(len(message) for message in messages) / len(messages)
    print(f"{len(messages)} messages (mean {size:.0f} B), {args.rounds} rounds; median per search")
    for name, (wall, cpu) in times.items():
        print(
            f"SEARCH {name:6} {statistics.median(wall):8.1f} ms wall, {statistics.median(cpu):8.1f} ms daemon CPU "
            f"(CPU rounds {', '.join(f'{value:.0f}' for value in cpu)})"
        )
    text, body = (statistics.median(times[name][1]) for name in ("TEXT", "BODY"))
    print(f"TEXT / BODY by daemon CPU: {text / body:.2f}")


if __name__ == "__main__":
    main()
