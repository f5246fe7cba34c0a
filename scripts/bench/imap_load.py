#!/usr/bin/env python3
"""IMAP load: relentad against a throwaway Dovecot (when Debian's dovecot-imapd is installed), in one run.

Both servers get the same mailbox (a few hundred real messages from ../shared/corpus, appended over IMAP) and the
same load: C concurrent clients for T seconds running a realistic cycle — SELECT, UID FETCH 1:* (FLAGS), ENVELOPE +
BODYSTRUCTURE, BODY.PEEK[HEADER], BODY.PEEK[], STORE flags, SEARCH UNSEEN, SEARCH SUBJECT, APPEND + EXPUNGE, NOOP —
once staying logged in and once with a LOGIN/LOGOUT per cycle. The load generator is a lean raw-socket client,
the same for both. Prints commands/s for each, the ratio relentad / Dovecot, each server's CPU time per command
(user + system from /proc; Dovecot's whole process tree, reaped children included: steadier than rates on a shared
machine), and relentad's resident memory with 100 idle logged-in sessions.

    .venv/bin/python scripts/bench/imap_load.py [--clients 10] [--seconds 10] [--messages 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.daemon import PASSWORD, Daemon, free_port, wait_for_port

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "spamassassin" / "train" / "ham"
USER = "demo@example.test"
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class Client:
    """Just enough IMAP: send a command, read to its tagged reply (literals included)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.counter = reader, writer, 0

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        await reader.readline()
        return cls(reader, writer)

    async def command(self, text: bytes, literal: bytes | None = None) -> list[bytes]:
        self.counter += 1
        tag = b"t%d" % self.counter
        if literal is None:
            self.writer.write(tag + b" " + text + b"\r\n")
        else:
            self.writer.write(tag + b" " + text + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        lines = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            match = _LITERAL.search(line)
            if match:
                line += await self.reader.readexactly(int(match.group(1)))
                continue_line = await self.reader.readline()
                line += continue_line
            lines.append(line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text[:40]!r}: {line!r}")
                return lines

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def corpus(count: int) -> list[bytes]:
    files = sorted(path for folder in sorted(CORPUS.iterdir()) for path in sorted(folder.iterdir()))
    random.Random(7).shuffle(files)
    out = []
    for path in files[:count]:
        data = path.read_bytes()
        out.append(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return out


async def fill(port: int, messages: list[bytes]) -> None:
    for _ in range(50):  # Dovecot's auth process may still be starting
        client = await Client.connect(port)
        try:
            await client.command(b'LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))
            break
        except (RuntimeError, ConnectionError):
            await client.close()
            await asyncio.sleep(0.1)
    for message in messages:
        await client.command(b"APPEND INBOX", message)
    await client.command(b"LOGOUT")


async def cycle(client: Client, rng: random.Random, exists: int) -> int:
    """One round of a mail client's work; returns the number of commands sent."""
    await client.command(b"SELECT INBOX")
    await client.command(b"UID FETCH 1:* (FLAGS)")
    for _ in range(3):
        await client.command(b"FETCH %d (ENVELOPE BODYSTRUCTURE RFC822.SIZE)" % rng.randint(1, exists))
    await client.command(b"FETCH %d BODY.PEEK[HEADER]" % rng.randint(1, exists))
    for _ in range(2):
        await client.command(b"FETCH %d BODY.PEEK[]" % rng.randint(1, exists))
    n = rng.randint(1, exists)
    await client.command(b"STORE %d +FLAGS (\\Seen)" % n)
    await client.command(b"STORE %d -FLAGS (\\Seen)" % n)
    await client.command(b"SEARCH UNSEEN")
    await client.command(b"SEARCH SUBJECT %s" % rng.choice([b"linux", b"perl", b"meeting", b"zzzz"]))
    await client.command(b"APPEND Drafts (\\Deleted)", b"Subject: draft\r\n\r\nbench draft\r\n")
    await client.command(b"NOOP")
    await client.command(b"CLOSE")
    return 14


async def load(port: int, clients: int, seconds: float, exists: int, login_each: bool, pid: int) -> tuple[float, float]:
    """(commands/s, server CPU milliseconds per command)."""
    cpu_before = cpu_seconds(pid)
    deadline = time.monotonic() + seconds
    counts = [0] * clients

    async def one(index: int) -> None:
        rng = random.Random(index)
        client = None
        while time.monotonic() < deadline:
            if client is None:
                client = await Client.connect(port)
                await client.command(b'LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))
                counts[index] += 1
            counts[index] += await cycle(client, rng, exists)
            if login_each:
                await client.command(b"LOGOUT")
                counts[index] += 1
                await client.close()
                client = None
        if client is not None:
            await client.command(b"LOGOUT")
            await client.close()

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(clients)))
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.2)  # Dovecot's last imap processes exit and are reaped
    return sum(counts) / elapsed, 1000 * (cpu_seconds(pid) - cpu_before) / max(1, sum(counts))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants, reaped ones included (Dovecot forks per session)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        found = stats.get(current)
        if found is not None:
            total += sum(int(value) for value in found[11:15])  # utime, stime, cutime, cstime
        todo.extend(children.get(current, []))
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def idle_memory(port: int, pid: int, sessions: int = 100) -> tuple[int, int]:
    before = rss_kib(pid)
    clients = []
    for _ in range(sessions):
        client = await Client.connect(port)
        await client.command(b'LOGIN "%s" "%s"' % (USER.encode(), PASSWORD.encode()))
        await client.command(b"SELECT INBOX")
        clients.append(client)
    await asyncio.sleep(0.5)
    after = rss_kib(pid)
    for client in clients:
        await client.command(b"LOGOUT")
        await client.close()
    return before, after


def start_relentad(root: Path) -> Daemon:
    daemon = Daemon(
        root,
        imap=True,
        settings={
            "auth": {"plaintext_loopback": True},
            "mailauth": {"verify": False},
            "imap": {"connections_per_ip": 1000},
        },
    )
    daemon.add_domain("example.test")
    daemon.add_user(USER)
    return daemon.start()


def start_dovecot(root: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("dovecot")
    if binary is None:
        return None
    port = free_port()
    (root / "home").mkdir(parents=True)
    os.chmod(root.parent, 0o755)  # the auth and mail processes run as the dovecot user
    os.chmod(root, 0o755)
    shutil.chown(root / "home", "dovecot", "dovecot")
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    config = root / "dovecot.conf"
    config.write_text(
        textwrap.dedent(
            f"""
            base_dir = {root}/run
            state_dir = {root}/state
            log_path = {root}/dovecot.log
            protocols = imap
            listen = 127.0.0.1
            ssl = no
            disable_plaintext_auth = no
            auth_mechanisms = plain
            mail_location = maildir:{root}/home/%u/Maildir
            mail_uid = dovecot
            mail_gid = dovecot
            first_valid_uid = 1
            passdb {{
              driver = passwd-file
              args = {root}/passwd
            }}
            userdb {{
              driver = static
              args = uid=dovecot gid=dovecot home={root}/home/%u
            }}
            namespace inbox {{
              inbox = yes
              mailbox Drafts {{
                auto = create
                special_use = \\Drafts
              }}
            }}
            service imap-login {{
              inet_listener imap {{
                address = 127.0.0.1
                port = {port}
              }}
              inet_listener imaps {{
                port = 0
              }}
            }}
            """
        )
    )
    proc = subprocess.Popen([binary, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", port, proc=proc)
    return proc, port


Result = tuple[tuple[float, float], tuple[float, float]]


async def bench(port: int, pid: int, messages: list[bytes], clients: int, seconds: float) -> Result:
    """((commands/s, CPU ms/command) staying logged in, the same with a login per cycle)."""
    await fill(port, messages)
    stay = await load(port, clients, seconds, len(messages), login_each=False, pid=pid)
    each = await load(port, clients, seconds, len(messages), login_each=True, pid=pid)
    return stay, each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    messages = corpus(args.messages)
    with tempfile.TemporaryDirectory(prefix="imap-bench-") as tmp:
        root = Path(tmp)
        daemon = start_relentad(root / "relentad")
        try:
            assert daemon.proc is not None
            ours = asyncio.run(bench(daemon.imap_port, daemon.proc.pid, messages, args.clients, args.seconds))
            memory = asyncio.run(idle_memory(daemon.imap_port, daemon.proc.pid))
        finally:
            daemon.stop()
        started = start_dovecot(root / "dovecot")
        theirs = None
        if started is not None:
            proc, port = started
            try:
                theirs = asyncio.run(bench(port, proc.pid, messages, args.clients, args.seconds))
            finally:
                proc.terminate()
                proc.wait(10)
    print(f"{len(messages)} messages, {args.clients} clients, {args.seconds:g}s per mode")
    for name, result in (("relentad", ours), ("dovecot", theirs)):
        if result is not None:
            (stay, stay_cpu), (each, each_cpu) = result
            print(
                f"{name + ':':9} {stay:8.0f} commands/s staying logged in ({stay_cpu:.3f} ms CPU per command), "
                f"{each:8.0f} with a login per cycle ({each_cpu:.3f} ms CPU per command)"
            )
    if theirs is not None:
        ratios = f"{ours[0][0] / theirs[0][0]:.2f} staying logged in, {ours[1][0] / theirs[1][0]:.2f} per cycle"
        print(f"ratio relentad/dovecot: {ratios}")
        cpu = f"{ours[0][1] / theirs[0][1]:.2f} staying logged in, {ours[1][1] / theirs[1][1]:.2f} per cycle"
        print(f"CPU per command relentad/dovecot: {cpu}")
    else:
        print("dovecot not installed (apt-get install dovecot-imapd): no comparison")
    before, after = memory[0] / 1024, memory[1] / 1024
    print(f"relentad resident memory: {before:.1f} MiB before, {after:.1f} MiB with 100 idle sessions")


if __name__ == "__main__":
    main()
