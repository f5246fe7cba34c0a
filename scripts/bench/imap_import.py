#!/usr/bin/env python3
"""Import from another server over IMAP, against the file import of the same messages as the baseline.

A real Dovecot on loopback (tests/support/dovecot.py) holds ``--messages`` corpus messages in its INBOX (appended
over IMAP before the clock starts), and the same messages sit in a Maildir. Each round imports both into fresh
accounts of one running relentad with the real CLI, one after the other: ``relentad import EMAIL Maildir`` (the
baseline) and ``relentad import EMAIL imap://…`` (listing, summaries, the bytes fetched a batch at a time, the
same store and CRM steps). Prints, per kind, the median wall time, messages/s and the CLI process's CPU time
(user + system of the child: steadier than wall time on a shared machine), and the IMAP import's ratio to the
Maildir import's in the same run.

    .venv/bin/python scripts/bench/imap_import.py [--messages 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from imap_search import CORPUS, corpus

from tests.support.daemon import Daemon
from tests.support.dovecot import LOGIN, PASSWORD, Dovecot, run_dovecot


def fill(dovecot: Dovecot, messages: list[bytes], maildir: Path) -> None:
    client = dovecot.client()
    for raw in messages:
        client.append("INBOX", "(\\Seen)", None, raw)
    client.logout()
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for n, raw in enumerate(messages):
        (maildir / "cur" / f"{1_700_000_000 + n}.{n}.bench:2,S").write_bytes(raw)


def timed(daemon: Daemon, *args: str, stdin: str | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the CLI process) of one ``relentad`` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = daemon.cli(*args, input=stdin, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"relentad {' '.join(args)} failed: {result.stderr.strip()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not os.path.exists("/usr/sbin/dovecot"):
        print("dovecot is not installed (apt-get install dovecot-imapd): nothing to measure", file=sys.stderr)
        return 1
    messages = corpus(args.messages, CORPUS)
    size = sum(len(m) for m in messages)
    with tempfile.TemporaryDirectory(prefix="relentad-bench-import-") as tmp:
        root = Path(tmp)
        dovecots = run_dovecot()
        dovecot = next(dovecots)
        try:
            fill(dovecot, messages, root / "Maildir")
            daemon = Daemon(root / "relentad", settings={"mailauth": {"verify": False}})
            daemon.add_domain("example.test")
            for n in range(args.rounds):
                daemon.add_user(f"file{n}@example.test")
                daemon.add_user(f"imap{n}@example.test")
            daemon.start()
            times: dict[str, list[tuple[float, float]]] = {"Maildir": [], "IMAP": []}
            try:
                for n in range(args.rounds):
                    times["Maildir"].append(timed(daemon, "import", f"file{n}@example.test", str(root / "Maildir")))
                    times["IMAP"].append(
                        timed(
                            daemon,
                            "import",
                            f"imap{n}@example.test",
                            dovecot.url(login=LOGIN),
                            "--cafile",
                            str(dovecot.ca),
                            "--password-stdin",
                            stdin=PASSWORD + "\n",
                        )
                    )
            finally:
                daemon.stop()
        finally:
            dovecots.close()
    print(f"{args.messages} corpus messages ({size / 1e6:.1f} MB), {args.rounds} rounds, medians")
    medians = {}
    for kind, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        medians[kind] = (wall, cpu)
        print(f"  {kind:8} wall {wall:6.2f} s  {args.messages / wall:7.0f} msg/s  CLI CPU {cpu:6.2f} s")
    (file_wall, file_cpu), (imap_wall, imap_cpu) = medians["Maildir"], medians["IMAP"]
    print(f"  IMAP / Maildir: wall {imap_wall / file_wall:.2f}, CLI CPU {imap_cpu / file_cpu:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
