"""``python -m relentad.spam.rebuild_worker DATABASE SCOPE``: prepare one account's rebuild in a process of its own and
write the pickled ``rebuild.Prepared`` to stdout, for the daemon's daily rebuild (``rebuild.prepare_apart``).

Why a process and not a thread: the orders are seconds of pure-Python CPU, and a thread running them holds the GIL
the event loop and the store's writer need between their I/O calls (scripts/bench/rebuild_lag.py measures both).
The parent reads only what it started itself, so pickle is safe here. It does not lower its own priority:
``relentad.service`` denies ``setpriority`` (``SystemCallFilter=~@resources``); the kernel shares the CPU between
the two processes fairly, which the GIL does not (tests/e2e/test_service_syscalls.py checks the worker's calls).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from ..store import db
from . import rebuild


def prepare_at(path: Path, scope: int) -> rebuild.Prepared:
    """``rebuild.prepare`` on a read-only connection of its own, in this process."""
    conn = db.connect(path, readonly=True)
    try:
        return rebuild.prepare(conn, scope, workers=1)
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    prepared = prepare_at(Path(argv[0]), int(argv[1]))
    sys.stdout.buffer.write(pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
