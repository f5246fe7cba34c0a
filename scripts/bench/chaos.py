#!/usr/bin/env python3
"""Chaos: SMTP load from 10 sessions while the daemon is SIGKILLed at random moments and restarted.

Every message carries a unique tag in its Subject and first body line. A sender records a tag only when the
server answered ``250`` after DATA; a refused or broken transaction is simply not acknowledged (a real sender
would retry). At the end the database is read and compared with the acknowledged set:

    acked       messages answered 250
    stored      distinct tags in the store
    lost        acked but not stored          (must be 0: 250 is sent only after the commit)
    duplicated  tags stored more than once     (must be 0 here: no sender retries a 250)

and ``PRAGMA integrity_check`` must say ok. Exit status 1 when anything is lost, duplicated or damaged.

``--queue`` does the same for the outbound queue: the 10 sessions submit on 587 (AUTH, plaintext on loopback) to a
remote recipient, the daemon relays everything to a recording smarthost on loopback, and after the kills the queue
is left to drain; "stored" is then what the smarthost received. There a duplicate is possible by design (the
daemon was killed after the smarthost's 250 but before it committed the result: at-least-once, as every MTA),
so only ``lost`` fails the run.

All traffic is to loopback; DNS goes to a private dnsmasq (never the machine's resolver).

    .venv/bin/python scripts/bench/chaos.py [--queue] [--kills 5] [--sessions 10] [--seconds 30] [--seed N]
"""

from __future__ import annotations

import argparse
import collections
import random
import smtplib
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.daemon import PASSWORD, Daemon, free_port, wait_for_port
from tests.support.dnsmasq import Dnsmasq, DnsRecords

USERS = ["alice@example.test", "bob@example.test"]
REMOTE = "someone@elsewhere.test"

# A smarthost that accepts everything and appends each message's tag (its Subject) to a file, one per line.
RECORDER = textwrap.dedent(
    """
    import asyncio, sys
    from aiosmtpd.smtp import SMTP

    out = open(sys.argv[2], "a", buffering=1)

    class Record:
        async def handle_DATA(self, server, session, envelope):
            for line in envelope.original_content.split(b"\\r\\n"):
                if line.startswith(b"Subject: "):
                    out.write(line[9:].decode() + "\\n")
                    break
            return "250 OK"

    async def main(port):
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Record(), hostname="smarthost.test"), "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main(int(sys.argv[1])))
    """
)


def message(tag: str, sender: str = "load@elsewhere.test") -> bytes:
    filler = "".join(f"line {n} of a message that is long enough to span a few pages\r\n" for n in range(30))
    return f"From: <{sender}>\r\nTo: <{REMOTE}>\r\nSubject: {tag}\r\n\r\n{tag}\r\n{filler}".encode()


class Senders:
    """``sessions`` threads sending over persistent SMTP connections, reconnecting after a failure."""

    def __init__(self, daemon: Daemon, sessions: int, *, submit: bool = False) -> None:
        self.daemon = daemon
        self.submit = submit  # 587 with AUTH to a remote recipient, instead of the MX to local users
        self.sessions = sessions
        self.acked: list[str] = []
        self.refused = 0
        self.failures: collections.Counter[str] = collections.Counter()  # what went wrong, for the report
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(sessions)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _connect(self) -> smtplib.SMTP:
        if not self.submit:
            return smtplib.SMTP(self.daemon.host, self.daemon.smtp_port, timeout=10)
        client = smtplib.SMTP(self.daemon.host, self.daemon.submission_port, timeout=30)
        client.login(USERS[0], PASSWORD)
        return client

    def _run(self, worker: int) -> None:
        n = 0
        client: smtplib.SMTP | None = None
        while not self.stop.is_set():
            tag = f"w{worker}-n{n}"
            n += 1
            try:
                if client is None:
                    client = self._connect()
                if self.submit:
                    client.sendmail(USERS[0], [REMOTE], message(tag, sender=USERS[0]))
                else:
                    client.sendmail("load@elsewhere.test", [USERS[n % len(USERS)]], message(tag))
            except (OSError, smtplib.SMTPException) as exc:
                with self.lock:
                    self.refused += 1
                    self.failures[f"{exc.__class__.__name__}: {str(exc)[:80]}"] += 1
                if client is not None:
                    try:
                        client.close()
                    except OSError:
                        pass
                client = None
                time.sleep(0.05)  # the daemon is restarting
                continue
            with self.lock:
                self.acked.append(tag)
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


def stored_tags(daemon: Daemon) -> list[str]:
    tags = []
    for user in USERS:
        for raw in daemon.messages(user):
            tags.append(raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[0].decode())
    return tags


def kill_at_random(daemon: Daemon, senders: Senders, kills: int, seconds: float, rng: random.Random) -> None:
    """SIGKILL and restart the daemon ``kills`` times, each at a random moment of its slice of ``seconds``."""
    started = time.monotonic()
    slice_length = seconds / (kills + 1)
    for k in range(kills):
        moment = started + slice_length * k + rng.uniform(0.3, 1.0) * slice_length
        time.sleep(max(0.0, moment - time.monotonic()))
        daemon.kill()
        print(f"kill {k + 1}/{kills} at {time.monotonic() - started:.1f}s, acked so far {len(senders.acked)}")
        daemon.start()
    time.sleep(max(0.0, started + seconds - time.monotonic()))


def drain(daemon: Daemon, limit: float = 120.0) -> int:
    """Wait until the outbound queue is empty (at most ``limit`` seconds); what is left in it."""
    deadline = time.monotonic() + limit
    while True:
        left = int(daemon.query("SELECT count(*) FROM queue_recipients WHERE state = 'queued'")[0][0])
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queue", action="store_true", help="the outbound queue instead of inbound delivery")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0, help="time under load (bounded)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    left = 0
    with tempfile.TemporaryDirectory() as tmp:
        dns_server = Dnsmasq(DnsRecords(), workdir=Path(tmp) / "dns").start()
        settings: dict[str, dict[str, object]] = {"dns": {"nameservers": [dns_server.nameserver]}}
        recorder = None
        received_file = Path(tmp) / "received.txt"
        if args.queue:
            port = free_port()
            recorder = subprocess.Popen([sys.executable, "-c", RECORDER, str(port), str(received_file)])
            wait_for_port("127.0.0.1", port)
            settings["queue"] = {
                "smarthost": f"127.0.0.1:{port}",
                "smarthost_tls": "none",
                "retry_schedule": ["1s"],
                "scan_interval": "1s",
                "concurrency": 20,
                "per_destination": 10,
            }
            settings["auth"] = {"plaintext_loopback": True}
        daemon = Daemon(Path(tmp) / "mx", tls=False, submission=args.queue, settings=settings)
        daemon.add_domain("example.test")
        for user in USERS:
            daemon.add_user(user)
        daemon.start()
        senders = Senders(daemon, args.sessions, submit=args.queue)
        senders.start()
        try:
            kill_at_random(daemon, senders, args.kills, args.seconds, rng)
        finally:
            senders.join()
        try:
            if args.queue:
                left = drain(daemon)
                tags = received_file.read_text().splitlines() if received_file.exists() else []
            else:
                tags = stored_tags(daemon)
        finally:
            daemon.stop()
            if recorder is not None:
                recorder.terminate()
                recorder.wait()
        integrity = daemon.query("PRAGMA integrity_check")[0][0]
        dns_server.close()
    acked = set(senders.acked)
    stored = set(tags)
    lost = acked - stored
    duplicated = {tag for tag, count in collections.Counter(tags).items() if count > 1}
    what = "delivered to the smarthost" if args.queue else "stored"
    print(
        f"acked {len(acked)}, {what} {len(stored)}, lost {len(lost)}, duplicated {len(duplicated)}; "
        f"refused or broken transactions {senders.refused}; still queued {left}; integrity {integrity}"
    )
    for failure, count in senders.failures.most_common(3):
        print(f"  {count} x {failure}")
    if lost:
        print("lost:", sorted(lost)[:20])
    if duplicated:
        print("duplicated:", sorted(duplicated)[:20])
    return 1 if lost or (duplicated and not args.queue) or integrity != "ok" else 0


if __name__ == "__main__":
    sys.exit(main())
