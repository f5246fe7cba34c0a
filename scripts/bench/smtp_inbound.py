#!/usr/bin/env python3
"""SMTP inbound throughput: relentad's real delivery path against a null aiosmtpd handler, in one run.

Both servers run in their own process on loopback; the load generator (a lean raw-socket SMTP client, the same
for both) sends N messages of about 4 KB over C concurrent sessions, one new connection per message, as MX
traffic arrives. Prints messages/s for each and the ratio relentad / null. Afterwards it checks that every
message relentad answered 250 is in its database (durable: WAL, synchronous=FULL, group commit).

    .venv/bin/python scripts/bench/smtp_inbound.py [--messages 1000] [--rounds 9] [--sessions 10]
        [--event-loop uvloop|asyncio] [--null-event-loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import start_null_smtp

from tests.support.daemon import Daemon, free_port, wait_for_port
from tests.support.dnsmasq import Dnsmasq, DnsRecords

FOUNDATION = "relentad, SMTP + store only"
WARM_UP = 200  # messages sent to each server before the measured rounds
SPAM_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "spamassassin" / "train"


def make_message(i: int, senders: int = 0) -> bytes:
    """Message ``i``; from sender ``i`` (a new correspondent every time), or one of ``senders`` when given."""
    who = i % senders if senders else i
    body = "".join(f"Line {n} of a typical business message, with some words to fill it out nicely.\r\n"
                   for n in range(48))  # fmt: skip
    return (
        f"From: Sender {who} <sender{who}@elsewhere.test>\r\nTo: Demo <demo@example.test>\r\n"
        f"Subject: benchmark message {i}\r\nMessage-ID: <bench-{i}@elsewhere.test>\r\n"
        "Date: Wed, 25 Nov 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): less sensitive to other load than wall-clock rates."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_one(port: int, message: bytes) -> bool:
    """One SMTP transaction on a new connection; True when DATA was answered 250."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:

        async def reply() -> bytes:
            while True:
                line = await reader.readline()
                if line[3:4] != b"-":
                    return line

        await reply()
        for command in (b"EHLO bench.test", b"MAIL FROM:<bench@elsewhere.test>", b"RCPT TO:<demo@example.test>",
                        b"DATA"):  # fmt: skip
            writer.write(command + b"\r\n")
            await reply()
        writer.write(message + b".\r\nQUIT\r\n")
        result = await reply()
        await reply()
        return result.startswith(b"250")
    finally:
        writer.close()


async def load(port: int, messages: int, sessions: int, senders: int = 0) -> tuple[float, int]:
    """(seconds, acknowledged) for sending ``messages`` over ``sessions`` concurrent workers."""
    bodies = [make_message(i, senders) for i in range(messages)]
    queue = list(range(messages))
    acked = 0

    async def worker() -> None:
        nonlocal acked
        while queue:
            i = queue.pop()
            if await send_one(port, bodies[i]):
                acked += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sessions)))
    return time.perf_counter() - started, acked


def start_relentad(workdir: Path, nameserver: str, args: argparse.Namespace, *, crm: bool) -> Daemon:
    """A relentad daemon with production settings (log level info: one line per transaction), only the per-IP
    limit raised, and the steps the flags ask for."""
    settings: dict[str, dict[str, Any]] = {
        "limits": {"connections_per_ip": 1000},
        "dns": {"nameservers": [nameserver]},
        "crm": {"enabled": crm},
        "mailauth": {"verify": args.mailauth == "on"},
        "spam": {"enabled": args.spam == "on"},
        "server": {"event_loop": args.event_loop},
        "imap": {"search_index": getattr(args, "search_index", "off") == "on"},
    }
    daemon = Daemon(workdir, tls=False, settings=settings)
    daemon.add_domain("example.test")
    daemon.add_user("demo@example.test")
    if args.spam == "on" and SPAM_CORPUS.is_dir():  # a real global model, so every token lookup is real work
        for ham in ("hard-ham-1", "easy-ham-2"):  # 837 ham, 250 spam: past [spam] min_trained, so verdicts file mail
            daemon.cli("spam", "train", "--global", "--ham", str(SPAM_CORPUS / "ham" / ham),
                       "--spam", str(SPAM_CORPUS / "spam" / "spam-1"))  # fmt: skip
    return daemon.start()


def wait_indexed(daemon: Daemon) -> None:
    """Until the daemon's search index has every blob (it indexes in the background, after the 250)."""
    while True:
        row = daemon.query(
            "SELECT (SELECT watermark FROM search_index_state) >= (SELECT coalesce(max(id), 0) FROM blobs) AS done"
        )
        if row[0]["done"]:
            return
        time.sleep(0.02)


@dataclass
class Target:
    """One server under load: its rates per round and the CPU its process spent on the measured messages."""

    name: str
    port: int
    pid: int
    rates: list[float] = field(default_factory=list)
    acked: int = 0
    cpu: float = 0.0
    settle: Callable[[], None] | None = None
    """Waits for the server's background work on the round's mail (the search index), so its CPU counts."""

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu_per_message(self) -> float:
        return self.cpu / max(self.acked, 1)

    def run(self, messages: int, sessions: int, senders: int) -> None:
        before = cpu_seconds(self.pid)
        seconds, acked = asyncio.run(load(self.port, messages, sessions, senders))
        if self.settle is not None:
            self.settle()
        self.cpu += cpu_seconds(self.pid) - before
        self.rates.append(acked / seconds)
        self.acked += acked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument(
        "--rounds", type=int, default=9, help="alternating rounds; the median rate of each counts (nine outvote drift)"
    )
    parser.add_argument("--crm", choices=["on", "off"], default="on", help="[crm] enabled (the sorter step)")
    parser.add_argument(
        "--sorter-baseline",
        action="store_true",
        help="also run a second relentad with [crm] off in the same rounds and print the sorter's cost (issue 6)",
    )
    parser.add_argument("--spam", choices=["on", "off"], default="on", help="[spam] enabled (the classify step)")
    parser.add_argument(
        "--senders",
        type=int,
        default=0,
        help="distinct senders (0: a new one per message, the CRM's worst case: a new contact and thread each)",
    )
    parser.add_argument(
        "--mailauth", choices=["on", "off"], default="on", help="[mailauth] verify (SPF, DKIM, DMARC and ARC checks)"
    )
    parser.add_argument(
        "--search-index", choices=["on", "off"], default="off", help="[imap] search_index (default off, as the server)"
    )
    parser.add_argument(
        "--event-loop", choices=["uvloop", "asyncio"], default="uvloop", help="relentad's [server] event_loop"
    )
    parser.add_argument(
        "--null-event-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the null handler's event loop (default: stock aiosmtpd on asyncio, the baseline issue 2 names)",
    )
    parser.add_argument(
        "--no-foundation",
        action="store_true",
        help="don't also run a relentad with mail authentication, spam and CRM off (issue 2's SMTP + store path)",
    )
    args = parser.parse_args()

    bare = args.mailauth == args.spam == args.crm == "off"
    null_port = free_port()
    null = start_null_smtp(null_port, event_loop=args.null_event_loop)
    daemons: list[tuple[str, Daemon]] = []
    with tempfile.TemporaryDirectory() as tmp:
        # The sender's domain publishes SPF and DMARC, so every message is really checked (answers cached per TTL).
        records = DnsRecords().add_txt("elsewhere.test", "v=spf1 ip4:127.0.0.1 -all")
        records.add_txt("_dmarc.elsewhere.test", "v=DMARC1; p=reject")
        dns_server = Dnsmasq(records, workdir=Path(tmp) / "dns", ttl=300).start()
        try:
            ours = start_relentad(Path(tmp) / "mx", dns_server.nameserver, args, crm=args.crm == "on")
            daemons.append(("relentad inbound", ours))
            if args.sorter_baseline:
                nocrm = start_relentad(Path(tmp) / "mx-nocrm", dns_server.nameserver, args, crm=False)
                daemons.append(("relentad, sorter off", nocrm))
            if not bare and not args.no_foundation:
                plain = argparse.Namespace(mailauth="off", spam="off", event_loop=args.event_loop)
                bare_daemon = start_relentad(Path(tmp) / "mx-bare", dns_server.nameserver, plain, crm=False)
                daemons.append((FOUNDATION, bare_daemon))
            wait_for_port("127.0.0.1", null_port)
            targets = [Target("null aiosmtpd handler", null_port, null.pid)]
            for name, daemon in daemons:
                assert daemon.proc is not None
                settle = functools.partial(wait_indexed, daemon) if args.search_index == "on" else None
                targets.append(Target(name, daemon.smtp_port, daemon.proc.pid, settle=settle))
            for target in targets:  # warm-up
                asyncio.run(load(target.port, WARM_UP, args.sessions))
            for _ in range(args.rounds):  # alternate, so load from elsewhere on the machine hits all alike
                for target in targets:
                    target.run(args.messages, args.sessions, args.senders)
            acked = targets[1].acked + WARM_UP  # relentad's database holds the warm-up messages too
            ours.stop()
            stored = ours.query("SELECT count(*) AS n FROM messages")[0]["n"]
        finally:
            for _, daemon in daemons:
                daemon.stop()
            dns_server.close()
            null.terminate()
            null.wait()
    null_target, measured = targets[0], targets[1]
    by_name = {target.name: target for target in targets}
    size = len(make_message(0))
    print(f"messages: {args.rounds} rounds x {args.messages} of {size} bytes, {args.sessions} concurrent sessions, "
          "new connection each; median rate per server")  # fmt: skip
    for target in targets:
        rounds = ", ".join(f"{r:.0f}" for r in target.rates)
        print(f"{target.name + ':':33s} {target.rate:6.0f} msgs/s  (rounds: {rounds})")
    print(f"{'ratio relentad/null:':33s} {measured.rate / null_target.rate:6.2f}")
    described = {
        "crm sorter": args.crm,
        "spam classifier": args.spam,
        "mail authentication": args.mailauth,
        "senders": args.senders or "a new one per message",
        "event loops": f"relentad {args.event_loop}, null handler {args.null_event_loop}",
    }
    for label, value in described.items():
        print(f"{label + ':':33s} {value}")
    for target in targets[1:]:
        label = target.name + " CPU/message:"
        print(f"{label:45s} {target.cpu_per_message * 1000:5.2f} ms  (user+system time, measured rounds)")
    ratio = null_target.cpu_per_message / measured.cpu_per_message
    print(f"{'null CPU/message:':45s} {null_target.cpu_per_message * 1000:5.2f} ms  (CPU ratio null/relentad: "
          f"{ratio:.2f}, steadier than rates on a shared machine)")  # fmt: skip
    foundation = by_name.get(FOUNDATION, measured if bare else None)
    if foundation is not None:
        print(
            f"issue 2's path (SMTP + store) / null: {foundation.rate / null_target.rate:.2f} by median rate, "
            f"{null_target.cpu_per_message / foundation.cpu_per_message:.2f} by CPU (target 0.8)"
        )
    if args.sorter_baseline:
        off = by_name["relentad, sorter off"]
        pairs = ", ".join(f"{on / without:.2f}" for on, without in zip(measured.rates, off.rates, strict=True))
        print(
            f"sorter on/off:         {measured.rate / off.rate:8.2f} by median rate (per round: {pairs}); CPU "
            f"{off.cpu_per_message / measured.cpu_per_message:.2f}; the sorter costs "
            f"{(measured.cpu_per_message - off.cpu_per_message) * 1000:.2f} ms of CPU per message"
        )
    print(f"durability: acked {acked}, stored {stored}, lost {max(acked - stored, 0)}")


if __name__ == "__main__":
    main()
