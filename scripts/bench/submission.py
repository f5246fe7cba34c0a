#!/usr/bin/env python3
"""Submission throughput with DKIM signing against the same without DKIM, in one run, through to a sink.

One relentad (its own process, production settings) hosts two domains: ``signed.test`` with an RSA-2048 DKIM
key and ``plain.test`` without one. Its queue relays everything to a null aiosmtpd server (the smarthost, its
own process) that accepts and discards. C concurrent clients (aiosmtplib) each open one STARTTLS session,
authenticate once and submit about-4 KB messages one after another, to one remote recipient each. Rounds
alternate between a signed.test user and a plain.test user. For each round two rates are measured:

- submission: messages answered 250 per second (each one committed to the queue and the Sent folder first);
- end to end: messages per second until the queue is empty again (all relayed to the sink).

Prints the median rate of each kind and the ratios DKIM / no DKIM.

    .venv/bin/python scripts/bench/submission.py [--messages 500] [--sessions 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import start_null_smtp

from tests.support.daemon import PASSWORD, Daemon, free_port, wait_for_port


def make_message(sender: str, i: int) -> bytes:
    body = "".join(
        f"Line {n} of a typical business message, with some words to fill it out nicely.\r\n" for n in range(48)
    )
    return (
        f"From: Bench <{sender}>\r\nTo: Someone <someone@elsewhere.test>\r\nSubject: benchmark message {i}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def submit_all(daemon: Daemon, sender: str, messages: int, sessions: int) -> tuple[float, int]:
    """(seconds, acknowledged) for ``messages`` submissions over ``sessions`` concurrent sessions."""
    todo = list(range(messages))
    acked = 0

    async def session() -> None:
        nonlocal acked
        client = aiosmtplib.SMTP(
            hostname=daemon.host, port=daemon.submission_port, start_tls=True, tls_context=tls_context(), timeout=60
        )
        async with client:
            await client.login(sender, PASSWORD)
            while todo:
                i = todo.pop()
                errors, _ = await client.sendmail(sender, ["someone@elsewhere.test"], make_message(sender, i))
                acked += not errors

    started = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(sessions)))
    return time.perf_counter() - started, acked


def queue_empty(daemon: Daemon) -> bool:
    return int(daemon.query("SELECT count(*) AS n FROM queue_messages")[0]["n"]) == 0


def run_round(daemon: Daemon, sender: str, messages: int, sessions: int) -> tuple[float, float]:
    """(submission rate, end-to-end rate) of one round."""
    started = time.perf_counter()
    seconds, acked = asyncio.run(submit_all(daemon, sender, messages, sessions))
    while not queue_empty(daemon):
        time.sleep(0.01)
    total = time.perf_counter() - started
    if acked != messages:
        raise SystemExit(f"only {acked} of {messages} messages were accepted")
    return acked / seconds, acked / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median rate of each counts")
    args = parser.parse_args()

    sink_port = free_port()
    sink = start_null_smtp(sink_port, "sink.test")
    with tempfile.TemporaryDirectory() as tmp:
        settings: dict[str, dict[str, Any]] = {
            "limits": {"connections_per_ip": 1000},
            "dns": {"nameservers": ["127.0.0.1:9"], "timeout": 0.5},  # never used: everything goes to the sink
            "queue": {
                "smarthost": f"127.0.0.1:{sink_port}",
                "smarthost_tls": "none",
                "concurrency": 20,
                "per_destination": 20,
            },
        }
        daemon = Daemon(Path(tmp) / "relentad", submission=True, settings=settings)
        for domain in ("signed.test", "plain.test"):
            daemon.add_domain(domain)
            daemon.add_user(f"bench@{domain}")
        daemon.cli("dkim", "generate", "signed.test")
        daemon.start()
        try:
            wait_for_port("127.0.0.1", sink_port)
            for sender in ("bench@signed.test", "bench@plain.test"):  # warm-up
                run_round(daemon, sender, 100, args.sessions)
            rates: dict[str, list[tuple[float, float]]] = {"signed": [], "plain": []}
            for _ in range(args.rounds):  # alternate, so load from elsewhere on the machine hits both alike
                for kind in ("signed", "plain"):
                    rates[kind].append(run_round(daemon, f"bench@{kind}.test", args.messages, args.sessions))
            daemon.stop()
            signed_rows = daemon.query(
                "SELECT count(*) AS n FROM messages m JOIN blobs b ON b.id = m.blob_id "
                "WHERE substr(b.data, 1, 15) = CAST('DKIM-Signature:' AS BLOB)"
            )
        finally:
            daemon.stop()
            sink.terminate()
            sink.wait()
    size = len(make_message("bench@signed.test", 0))
    print(
        f"messages: {args.rounds} rounds x {args.messages} of ~{size} bytes per kind, {args.sessions} concurrent "
        "STARTTLS+AUTH sessions, one remote recipient each, relayed to a null aiosmtpd smarthost"
    )
    medians: dict[str, tuple[float, float]] = {}
    for kind, label in (("signed", "with DKIM (rsa-2048)"), ("plain", "without DKIM")):
        submit_rate = statistics.median(r[0] for r in rates[kind])
        e2e_rate = statistics.median(r[1] for r in rates[kind])
        medians[kind] = (submit_rate, e2e_rate)
        rounds = ", ".join(f"{r[0]:.0f}/{r[1]:.0f}" for r in rates[kind])
        print(f"{label:22} submission {submit_rate:7.0f} msgs/s, end to end {e2e_rate:7.0f} msgs/s  ({rounds})")
    print(f"ratio DKIM/no DKIM:    submission {medians['signed'][0] / medians['plain'][0]:7.2f}, "
          f"end to end {medians['signed'][1] / medians['plain'][1]:7.2f}")  # fmt: skip
    print(f"Sent copies carrying a DKIM signature: {signed_rows[0]['n']}")


if __name__ == "__main__":
    main()
