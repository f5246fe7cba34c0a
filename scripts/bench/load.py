#!/usr/bin/env python3
"""Load: 200 concurrent IMAP sessions and 50 SMTP sessions at once for a minute, with no errors allowed.

IMAP sessions log in (plaintext on loopback), SELECT INBOX and cycle NOOP / UID FETCH / STATUS every 50 ms;
SMTP sessions send small messages back to back on one connection each. Sessions spread over loopback source
addresses 127.0.1.N so the default per-IP limits stay in force. Prints commands, messages, errors, and the
daemon's resident memory (mid-run and peak); checks that every message answered 250 is stored.
Exit status 1 on any error or a stored count that differs from the acknowledged one.

    .venv/bin/python scripts/bench/load.py [--imap 200] [--smtp 50] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support import load
from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq, DnsRecords

USERS = ["alice@example.test", "bob@example.test", "carol@example.test", "dave@example.test"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imap", type=int, default=200)
    parser.add_argument("--smtp", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dns_server = Dnsmasq(DnsRecords(), workdir=Path(tmp) / "dns").start()
        settings: dict[str, dict[str, Any]] = {
            "dns": {"nameservers": [dns_server.nameserver]},
            "auth": {"plaintext_loopback": True},
        }
        daemon = Daemon(Path(tmp) / "mx", imap=True, settings=settings)
        daemon.add_domain("example.test")
        for user in USERS:
            daemon.add_user(user)
        daemon.start()
        assert daemon.proc is not None
        try:
            idle_rss = load.rss_kib(daemon.proc.pid)[0]
            result = asyncio.run(
                load.run(
                    host=daemon.host,
                    imap_port=daemon.imap_port,
                    smtp_port=daemon.smtp_port,
                    users=USERS,
                    password=PASSWORD,
                    imap_sessions=args.imap,
                    smtp_sessions=args.smtp,
                    seconds=args.seconds,
                    pid=daemon.proc.pid,
                )
            )
            stored = sum(len(daemon.messages(user)) for user in USERS)
        finally:
            status = daemon.stop()
            dns_server.close()
    seconds = args.seconds
    print(f"IMAP sessions open at once {result.peak_imap_open}/{args.imap}, commands {result.imap_commands} "
          f"({result.imap_commands / seconds:.0f}/s)")  # fmt: skip
    print(f"SMTP sessions {result.smtp_sessions}/{args.smtp}, messages acked {len(result.smtp_acked)} "
          f"({len(result.smtp_acked) / seconds:.0f}/s), stored {stored}")  # fmt: skip
    print(f"daemon memory: idle {idle_rss / 1024:.1f} MiB, under load {result.rss_kib / 1024:.1f} MiB, "
          f"peak {result.peak_rss_kib / 1024:.1f} MiB; exit status {status}")  # fmt: skip
    print(f"errors: {len(result.errors)}")
    for error in result.errors[:20]:
        print("  ", error)
    return 1 if result.errors or stored != len(result.smtp_acked) or status != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
