"""The socket targets of fuzz.py: fuzzed SMTP and IMAP sessions against a real daemon on loopback.

The daemon runs as in production (its own process, its own dnsmasq, TLS); sessions come from
tests/support/wirefuzz.py, the generator the short e2e tests use. After every session the daemon must still run;
every so often a well-behaved client must be served, and the log must show no traceback. On failure the seed
and the offending session are printed (and saved under ``crashes``), so ``--seed N`` replays the run.
"""

from __future__ import annotations

import collections
import imaplib
import random
import smtplib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq, DnsRecords
from tests.support.wirefuzz import ImapWire, imap_command, smtp_exchange, smtp_session, special_imap_commands

USERS = ("alice", "bob", "carol")


def _start(root: Path, nameserver: str) -> Daemon:
    auth = {"failures_per_ip": 10**9, "failures_per_account": 10**9, "plaintext_loopback": True}
    settings: dict[str, dict[str, Any]] = {
        "dns": {"nameservers": [nameserver]},
        "auth": auth,
        "mailauth": {"verify": False},
    }
    daemon = Daemon(root, submission=True, imap=True, settings=settings)
    daemon.add_domain("example.test")
    for user in USERS:
        daemon.add_user(f"{user}@example.test")
    return daemon.start()


def _healthy(daemon: Daemon) -> str | None:
    """What is wrong with the daemon now, or None."""
    if daemon.proc is None or daemon.proc.poll() is not None:
        return "the daemon exited"
    if "Traceback" in daemon.log():
        return "a traceback in the daemon's log"
    try:
        with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
            if client.noop()[0] != 250:
                return "SMTP NOOP failed"
        imap = imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=10)
        imap.login("bob@example.test", PASSWORD)
        ok = imap.select("INBOX")[0] == "OK"
        imap.logout()
    except (OSError, imaplib.IMAP4.error) as exc:
        return f"a well-behaved client was not served: {exc!r}"
    return None if ok else "IMAP SELECT failed"


def _imap_round(daemon: Daemon, rng: random.Random, stats: collections.Counter[str]) -> list[bytes]:
    """One session of up to 12 commands, logged in half the time; returns the commands sent."""
    wire = ImapWire(daemon.host, daemon.imap_port)
    sent: list[bytes] = []
    try:
        if rng.random() < 0.5:
            wire.run([b'LOGIN alice@example.test "' + PASSWORD.encode() + b'"\r\n'])
            wire.run([b"SELECT INBOX\r\n"])
        commands = [imap_command(rng) for _ in range(rng.randint(1, 12))]
        if rng.random() < 0.1:
            commands.insert(0, rng.choice(special_imap_commands()))
        for segments in commands:
            sent.append(b"".join(segments))
            outcome = wire.run(segments)
            if outcome.closed:
                stats["BYE"] += 1
                break
            last = outcome.replies[-1].split(b" ", 2)
            stats[last[1].decode("ascii", "replace") if len(last) > 1 else "?"] += 1
    finally:
        wire.close()
    return sent


def run(target: str, seconds: float, seed: int, crashes: Path) -> int:
    rng = random.Random(seed)
    stats: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="relentad-fuzz-") as tmp:
        dns_server = Dnsmasq(DnsRecords(), workdir=Path(tmp) / "dns").start()
        daemon = _start(Path(tmp) / "mx", dns_server.nameserver)
        deadline = time.monotonic() + seconds
        sessions = 0
        last: list[bytes] = []
        try:
            while time.monotonic() < deadline:
                sessions += 1
                try:
                    if target == "smtp":
                        last = smtp_session(rng)
                        port = daemon.smtp_port if sessions % 2 else daemon.submission_port
                        smtp_exchange(daemon.host, port, last)
                        stats["sessions"] += 1
                    else:
                        last = _imap_round(daemon, rng, stats)
                except (AssertionError, TimeoutError, OSError) as exc:
                    problem: str | None = f"{type(exc).__name__}: {exc}"
                else:
                    problem = _healthy(daemon) if sessions % 50 == 0 else None
                if problem is not None:
                    crashes.mkdir(parents=True, exist_ok=True)
                    path = crashes / f"session-{seed}-{sessions}"
                    path.write_bytes(b"\n".join(last))
                    print(f"{target}: {problem}\n  after session {sessions} (seed {seed}), saved to {path}")
                    print(daemon.log()[-4000:])
                    return 1
                if sessions % 500 == 0:
                    print(f"{target}: {sessions} sessions, {dict(stats)}", flush=True)
            problem = _healthy(daemon)
            if problem is not None:
                print(f"{target}: {problem} at the end (seed {seed})")
                return 1
        finally:
            daemon.stop()
            dns_server.close()
    print(f"{target}: {sessions} sessions in {seconds:g}s, no failure (seed {seed}); outcomes {dict(stats)}")
    return 0


if __name__ == "__main__":
    sys.exit("run scripts/fuzz/fuzz.py smtp|imap-wire")
