#!/usr/bin/env python3
"""CRM at scale: an account with 100,000 messages and 10,000 contacts, then `contacts show` and `contacts list`.

Builds the account from the SpamAssassin corpus (../shared/corpus/spamassassin/train): each stored message is a
corpus message whose From/To/Cc/Message-ID/References are rewritten so that senders vary over N contacts on a
mix of company and freemail domains, about a fifth are replies in earlier threads and a fifth are mail the
account sent (filed into Sent, counted "out"). Messages go through the real store and sorter code
(``messages.store_blob``/``append``, ``crm.sorter.file_message``) in batches of one transaction each — the bulk
path, without SMTP. Bodies are cut to 2 KB to keep the database small; the CRM only reads headers.

Then it times, on a fresh read connection: ``views.show`` (what `relentad contacts show` runs; target < 100 ms)
for random contacts, ``views.list_contacts`` for the whole account, and one real `relentad contacts show`
process (which adds Python start-up to the query).

    .venv/bin/python scripts/bench/crm_scale.py [--messages 100000] [--contacts 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from relentad import config as config_mod
from relentad import message
from relentad.crm import participants, sorter, views
from relentad.store import accounts, db, mailboxes, messages

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "spamassassin" / "train"
ACCOUNT = "owner@example.test"
DROP = {b"from", b"to", b"cc", b"bcc", b"message-id", b"in-reply-to", b"references", b"reply-to", b"sender"}
FREEMAIL = ["gmail.com", "yahoo.com", "outlook.com", "gmx.de", "web.de", "icloud.com"]
FIRST = ["Anna", "Ben", "Chloé", "David", "Eva", "Frank", "Greta", "Hans", "Ines", "Jürgen", "Kim", "Lea", "Marc"]
LAST = ["Meyer", "Smith", "Dubois", "Rossi", "García", "Novak", "Jensen", "Schmidt", "Brown", "Müller", "Kowalski"]


def corpus(limit: int) -> list[tuple[bytes, bytes]]:
    """(header without the rewritten fields, body cut to 2 KB) of corpus messages."""
    out = []
    for path in sorted(CORPUS.glob("*/*/*"))[:limit]:
        raw = path.read_bytes().replace(b"\r\n", b"\n")
        head, _, body = raw.partition(b"\n\n")
        kept, skipping = [], False
        for line in head.split(b"\n"):
            if line[:1] in (b" ", b"\t"):
                if not skipping:
                    kept.append(line)
                continue
            skipping = line.split(b":", 1)[0].strip().lower() in DROP
            if not skipping and not line.startswith(b"From "):
                kept.append(line)
        out.append((b"\r\n".join(kept), body[:2048].replace(b"\n", b"\r\n")))
    return out


def contact_address(k: int) -> tuple[str, str]:
    name = f"{FIRST[k % len(FIRST)]} {LAST[(k // len(FIRST)) % len(LAST)]} {k}"
    domain = FREEMAIL[k % len(FREEMAIL)] if k % 4 == 0 else f"company{k % 1500}.example"
    return name, f"person{k}@{domain}"


def build(path: Path, count: int, contacts: int, seed: int = 6) -> int:
    rng = random.Random(seed)
    conn = db.open_database(path)
    with db.transaction(conn):
        accounts.add_domain(conn, "example.test")
        account_id = accounts.add_account(conn, ACCOUNT, "x", quota_bytes=0, daily_send=0).id
    inbox = mailboxes.find(conn, account_id, "INBOX")
    sent = mailboxes.find(conn, account_id, "Sent")
    assert inbox is not None and sent is not None
    own = frozenset({ACCOUNT})
    sources = corpus(3000)
    started = time.perf_counter()
    batch = 1000
    for start in range(0, count, batch):
        with db.transaction(conn):
            for i in range(start, min(start + batch, count)):
                k = i % contacts if i < contacts else rng.randrange(contacts)
                name, address = contact_address(k)
                outgoing = i % 5 == 1
                head, body = sources[i % len(sources)]
                lines = [
                    f"Message-ID: <m{i}@bench.example>",
                    f"From: {ACCOUNT}" if outgoing else f'From: "{name}" <{address}>',
                    f'To: "{name}" <{address}>' if outgoing else f"To: {ACCOUNT}",
                ]
                if i % 7 == 0:
                    other = contact_address(rng.randrange(contacts))
                    lines.append(f'Cc: "{other[0]}" <{other[1]}>')
                if i % 5 == 2 and i > 10:
                    parent = rng.randrange(max(0, i - 500), i)
                    lines.append(f"In-Reply-To: <m{parent}@bench.example>")
                raw = ("\r\n".join(lines) + "\r\n").encode() + head + b"\r\n\r\n" + body
                parsed = message.parse(raw)
                blob_id = messages.store_blob(conn, raw, parsed.to_json())
                messages.append(
                    conn, sent if outgoing else inbox, blob_id, prefix=b"", size=len(raw), internaldate=1.6e9 + i * 60
                )
                direction = participants.OUT if outgoing else participants.IN
                plan = sorter.AccountPlan(
                    account_id,
                    direction,
                    participants.participants(parsed, own, direction),
                    (parsed.subject or "").strip(),
                    participants.sender(parsed),
                )
                sorter.file_message(conn, plan, parsed, blob_id, 1.6e9 + i * 60)
        done = min(start + batch, count)
        if done % 10_000 == 0:
            rate = done / (time.perf_counter() - started)
            print(f"  built {done} messages ({rate:.0f}/s)", flush=True)
    conn.close()
    return account_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200, help="contacts timed with `show`")
    parser.add_argument("--keep", type=Path, help="build in (and keep) this folder instead of a temporary one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        (root / "relentad.toml").write_text(config_mod.example_toml({"server": {"data_dir": "data"}}))
        path = root / "data" / "relentad.db"
        started = time.perf_counter()
        print(f"building {args.messages} messages over {args.contacts} contacts in {path}")
        account_id = build(path, args.messages, args.contacts)
        built = time.perf_counter() - started
        conn = db.connect(path)
        counts = conn.execute(
            """SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM crm_contacts),
                      (SELECT count(*) FROM crm_threads), (SELECT count(*) FROM crm_companies)"""
        ).fetchone()
        print(f"built in {built:.0f} s: {counts[0]} messages, {counts[1]} contacts, {counts[2]} threads, "
              f"{counts[3]} companies; database {path.stat().st_size / 1e6:.0f} MB")  # fmt: skip

        ids = [r[0] for r in conn.execute("SELECT id FROM crm_contacts WHERE account_id = ?", (account_id,))]
        rng = random.Random(1)
        sample = rng.sample(ids, min(args.samples, len(ids)))
        busiest = conn.execute(
            "SELECT id FROM crm_contacts WHERE account_id = ? ORDER BY count_in + count_out DESC LIMIT 1",
            (account_id,),
        ).fetchone()[0]
        timings = []
        for contact_id in [busiest, *sample]:
            t0 = time.perf_counter()
            views.show(conn, contact_id)
            timings.append((time.perf_counter() - t0) * 1000)
        timings.sort()
        print(f"contacts show (query, {len(timings)} contacts): median {statistics.median(timings):.2f} ms, "
              f"p95 {timings[int(len(timings) * 0.95) - 1]:.2f} ms, max {timings[-1]:.2f} ms "
              "(target < 100 ms)")  # fmt: skip
        list_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            listed = views.list_contacts(conn, account_id)
            list_times.append((time.perf_counter() - t0) * 1000)
        print(f"contacts list (query, {len(listed)} contacts): median {statistics.median(list_times):.0f} ms")
        conn.close()

        contact_ref = f"#{busiest}"
        cli = [sys.executable, "-m", "relentad", "--config", str(root / "relentad.toml")]
        for label, command in (
            ("contacts show", [*cli, "contacts", "show", ACCOUNT, contact_ref]),
            ("contacts show --json", [*cli, "contacts", "show", ACCOUNT, contact_ref, "--json"]),
            ("contacts list --json", [*cli, "contacts", "list", ACCOUNT, "--json"]),
            ("python start-up (relentad --help)", [*cli, "--help"]),
        ):
            t0 = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            print(f"{label:36s} whole process: {(time.perf_counter() - t0) * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
