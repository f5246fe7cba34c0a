#!/usr/bin/env python3
"""IMAP full-text SEARCH (TEXT, BODY and HEADER that match nothing), SORT and THREAD over a mailbox of real
corpus messages.

A search that matches nothing is the worst case: every message's text is read (its header fields, the text of
every text part with HTML turned into text, and for TEXT the header of every MIME part and embedded message).
SORT and THREAD over the whole mailbox read every message's header keys (the stored structure, cached per
message content after the first, uncounted, round; that round's time is printed as "cold").
One relentad gets ``--messages`` corpus messages (ham and spam, shuffled; appended over IMAP), then one client
runs the commands in alternation for ``--rounds`` rounds. Prints, per command, the median wall time and the
daemon's CPU time (user + system from /proc: steadier than wall time on a shared machine), TEXT's ratio to BODY
in the same run (TEXT reads all BODY reads plus the headers), and each SORT's and THREAD's ratio to SEARCH ALL
(the same messages found, without ordering them); those are sent 10 times a round, and the times are per command.

With ``--index both`` (the default) the text searches run first with the full-text index (``[imap] search_index``;
once the background job has indexed every message, whose time and index size are printed) and then on the same
data with the daemon restarted without it, and the scan's time is divided by the index's.

    .venv/bin/python scripts/bench/imap_search.py [--messages 2000] [--rounds 15] [--only text|sort]
        [--index both|on|off]
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

from tests.support.daemon import PASSWORD, Daemon

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "spamassassin" / "train"
NEEDLE = b"zqxjv-matches-nothing"
SEARCHES = {
    "SEARCH TEXT": b"SEARCH TEXT " + NEEDLE,
    "SEARCH BODY": b"SEARCH BODY " + NEEDLE,
    "SEARCH HEADER": b"SEARCH HEADER X-Bench " + NEEDLE,
    "SEARCH TEXT money": b"SEARCH TEXT money",
    "SEARCH BODY click here": b'SEARCH BODY "click here"',
}
FINDS = ("SEARCH TEXT money", "SEARCH BODY click here")
"""Searches that match part of the mailbox (a common word in spam): the index narrows less, every candidate is read."""
ORDERINGS = {
    "SEARCH ALL": b"SEARCH ALL",
    "SORT ARRIVAL": b"SORT (ARRIVAL) UTF-8 ALL",
    "SORT DATE": b"SORT (DATE) UTF-8 ALL",
    "SORT SUBJECT": b"SORT (SUBJECT) UTF-8 ALL",
    "SORT REV FROM DATE": b"SORT (REVERSE FROM DATE) UTF-8 ALL",
    "SORT DISPLAYFROM": b"SORT (DISPLAYFROM) UTF-8 ALL",
    "THREAD REFERENCES": b"THREAD REFERENCES UTF-8 ALL",
    "THREAD ORDEREDSUBJ": b"THREAD ORDEREDSUBJECT UTF-8 ALL",
}
REPEAT = 10
"""SORT and THREAD rounds send each command this many times (one each is below the 10 ms CPU clock tick)."""
Times = dict[str, tuple[list[float], list[float], float]]


def corpus(count: int, root: Path) -> list[bytes]:
    """`count` corpus messages, ham and spam shuffled, with CRLF line ends as an IMAP client sends them. Past the
    corpus's size (about 3,000) it repeats, each further copy with an `X-Copy: n` header in front (a new blob)."""
    files = sorted(path for path in root.glob("*/*/*") if path.is_file())
    random.Random(7).shuffle(files)
    base = [path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for path in files]
    return [
        (b"X-Copy: %d\r\n" % (i // len(base)) if i >= len(base) else b"") + base[i % len(base)] for i in range(count)
    ]


def _check(name: str, line: bytes) -> None:
    """Each command answers as expected: a text search finds nothing, the others everything."""
    word = name.split(maxsplit=1)[0].encode()
    if name in FINDS:
        ok = line.startswith(b"* SEARCH ")
    elif name in SEARCHES:
        ok = line.strip() == b"* SEARCH"
    else:
        ok = line.startswith(b"* " + word + b" ") and len(line) > 100
    if not ok:
        raise RuntimeError(f"{name} answered {line[:80]!r}")


async def fill(port: int, messages: list[bytes]) -> None:
    client = await Client.connect(port)
    await client.command(b'LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))
    for message in messages:
        await client.command(b"APPEND INBOX", message)
    await client.command(b"LOGOUT")
    await client.close()


async def bench(port: int, pid: int, rounds: int, commands: dict[str, bytes]) -> Times:
    """{command: (wall ms per round, daemon CPU ms per round, daemon CPU ms of the uncounted first round)}."""
    client = await Client.connect(port)
    await client.command(b'LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))
    await client.command(b"SELECT INBOX")
    times: Times = {name: ([], [], 0.0) for name in commands}
    for round_ in range(rounds + 1):  # the first round warms caches and is not counted
        for name, command in commands.items():
            repeat = 1 if name in SEARCHES or not round_ else REPEAT
            cpu, started = cpu_seconds(pid), time.perf_counter()
            for _ in range(repeat):
                lines = await client.command(command)
            wall = 1000 * (time.perf_counter() - started) / repeat
            used = 1000 * (cpu_seconds(pid) - cpu) / repeat
            _check(name, lines[0])
            if round_:
                times[name][0].append(wall)
                times[name][1].append(used)
            else:
                times[name] = ([], [], used)
    await client.command(b"LOGOUT")
    await client.close()
    return times


def index_state(daemon: Daemon) -> tuple[bool, int, int]:
    """(every blob indexed, index bytes, raw mail bytes)."""
    row = daemon.query(
        "SELECT (SELECT watermark FROM search_index_state) >= (SELECT coalesce(max(id), 0) FROM blobs) AS done,"
        " (SELECT coalesce(sum(length(block)), 0) FROM search_head_data)"
        " + (SELECT coalesce(sum(length(block)), 0) FROM search_body_data) AS size,"
        " (SELECT sum(size) FROM blobs) AS raw"
    )[0]
    return bool(row["done"]), int(row["size"]), int(row["raw"] or 0)


def switch_index(daemon: Daemon, on: bool) -> None:
    """Restart the daemon with ``[imap] search_index`` on or off (same data)."""
    daemon.stop()
    extra = dict(daemon._extra)
    extra["imap"] = {**extra.get("imap", {}), "search_index": on}
    daemon.write_config(**extra)
    daemon.start()


def measure(daemon: Daemon, rounds: int, commands: dict[str, bytes]) -> Times:
    assert daemon.proc is not None
    return asyncio.run(bench(daemon.imap_port, daemon.proc.pid, rounds, commands))


def report(label: str, times: Times) -> dict[str, float]:
    print(label)
    for name, (wall, cpu, cold) in times.items():
        print(
            f"  {name:21} {statistics.median(wall):8.1f} ms wall, {statistics.median(cpu):8.1f} ms daemon CPU, "
            f"cold {cold:6.0f} ms (CPU rounds {', '.join(f'{value:.0f}' for value in cpu)})"
        )
    return {name: statistics.median(wall) for name, (wall, _, _) in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", choices=("text", "sort"), help="only the text searches, or only SORT and THREAD")
    parser.add_argument(
        "--index",
        choices=("both", "on", "off"),
        default="both",
        help="[imap] search_index: text searches with the full-text index, then the same daemon restarted without",
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the corpus root (ham/ and spam/ below it)")
    args = parser.parse_args()
    commands = {**({} if args.only == "sort" else SEARCHES), **({} if args.only == "text" else ORDERINGS)}
    messages = corpus(args.messages, args.corpus)
    runs: list[tuple[str, bool]] = []
    if args.index in ("both", "on"):
        runs.append(("with the search index", True))
    if args.index in ("both", "off"):
        runs.append(("without the search index (scan)", False))
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="imap-search-bench-") as tmp:
        daemon = start_relentad(Path(tmp) / "relentad")
        try:
            assert daemon.proc is not None
            started = time.perf_counter()
            asyncio.run(fill(daemon.imap_port, messages))
            print(f"APPEND of {len(messages)} messages: {time.perf_counter() - started:.1f} s")
            for label, on in runs:
                switch_index(daemon, on)
                if on:
                    started = time.perf_counter()
                    while not (state := index_state(daemon))[0]:
                        time.sleep(0.1)
                    _, size, raw = state
                    print(
                        f"search index: complete {time.perf_counter() - started:.1f} s after the last APPEND; "
                        f"{size / 2**20:.1f} MiB = {100 * size / raw:.0f} % of the raw mail ({raw / 2**20:.1f} MiB)"
                    )
                results[label] = report(label, measure(daemon, args.rounds, commands))
        finally:
            daemon.stop()
    mean = sum(len(message) for message in messages) / len(messages)
    print(f"{len(messages)} messages (mean {mean:.0f} B), {args.rounds} rounds; median per command")
    if len(results) == 2:
        indexed, scanned = results.values()
        print(
            "scan / index by wall time: "
            + ", ".join(
                f"{name} {scanned[name] / max(indexed[name], 0.01):.1f} x" for name in SEARCHES if name in indexed
            )
        )


if __name__ == "__main__":
    main()
