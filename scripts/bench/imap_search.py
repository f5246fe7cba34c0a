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

    .venv/bin/python scripts/bench/imap_search.py [--messages 2000] [--rounds 15] [--only text|sort]
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
    "SEARCH TEXT": b"SEARCH TEXT " + NEEDLE,
    "SEARCH BODY": b"SEARCH BODY " + NEEDLE,
    "SEARCH HEADER": b"SEARCH HEADER X-Bench " + NEEDLE,
}
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
    """`count` corpus messages, ham and spam shuffled, with CRLF line ends as an IMAP client sends them."""
    files = sorted(path for path in root.glob("*/*/*") if path.is_file())
    random.Random(7).shuffle(files)
    return [path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") for path in files[:count]]


def _check(name: str, line: bytes) -> None:
    """Each command answers as expected: a text search finds nothing, the others everything."""
    word = name.split(maxsplit=1)[0].encode()
    ok = line.strip() == b"* SEARCH" if name in SEARCHES else line.startswith(b"* " + word + b" ") and len(line) > 100
    if not ok:
        raise RuntimeError(f"{name} answered {line[:80]!r}")


async def bench(port: int, pid: int, messages: list[bytes], rounds: int, commands: dict[str, bytes]) -> Times:
    """{command: (wall ms per round, daemon CPU ms per round, daemon CPU ms of the uncounted first round)}."""
    client = await Client.connect(port)
    await client.command(b'LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))
    for message in messages:
        await client.command(b"APPEND INBOX", message)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", choices=("text", "sort"), help="only the text searches, or only SORT and THREAD")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the corpus root (ham/ and spam/ below it)")
    args = parser.parse_args()
    commands = {**({} if args.only == "sort" else SEARCHES), **({} if args.only == "text" else ORDERINGS)}
    messages = corpus(args.messages, args.corpus)
    with tempfile.TemporaryDirectory(prefix="imap-search-bench-") as tmp:
        daemon = start_relentad(Path(tmp) / "relentad")
        try:
            assert daemon.proc is not None
            times = asyncio.run(bench(daemon.imap_port, daemon.proc.pid, messages, args.rounds, commands))
        finally:
            daemon.stop()
    size = sum(len(message) for message in messages) / len(messages)
    print(f"{len(messages)} messages (mean {size:.0f} B), {args.rounds} rounds; median per command")
    for name, (wall, cpu, cold) in times.items():
        print(
            f"{name:19} {statistics.median(wall):8.1f} ms wall, {statistics.median(cpu):8.1f} ms daemon CPU, "
            f"cold {cold:6.0f} ms (CPU rounds {', '.join(f'{value:.0f}' for value in cpu)})"
        )
    cpu_of = {name: statistics.median(cpu) for name, (_, cpu, _) in times.items()}
    if "SEARCH TEXT" in cpu_of:
        print(f"TEXT / BODY by daemon CPU: {cpu_of['SEARCH TEXT'] / cpu_of['SEARCH BODY']:.2f}")
    if "SEARCH ALL" in cpu_of:
        base = cpu_of["SEARCH ALL"]
        print(
            "by daemon CPU, / SEARCH ALL: "
            + ", ".join(f"{n} {cpu_of[n] / base:.1f}" for n in ORDERINGS if n != "SEARCH ALL")
        )


if __name__ == "__main__":
    main()
