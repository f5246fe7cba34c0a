"""Faults the daemon must survive: a full disk, SIGKILL in the middle of SMTP load. Short forms of
scripts/bench/chaos.py; every acknowledged message must be stored, once."""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import smtplib
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import MakeDaemon, provision
from tests.support import load
from tests.support.daemon import PASSWORD

FILLER = "filler.bin"


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only); skips the test where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Write a file until the filesystem is full. Unbuffered: a buffered file keeps the part of its last chunk the
    disk did not take and raises ENOSPC again when it is closed (which happened once the database's size left a
    free space that is no multiple of the chunk)."""
    with (folder / FILLER).open("wb", buffering=0) as file:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                file.write(chunk)


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def body(tag: str, size: int = 0) -> bytes:
    line = b"x" * 76 + b"\r\n"
    return f"Subject: {tag}\r\n\r\n{tag}\r\n".encode() + line * (size // len(line))


def test_disk_full_answers_452_and_no_then_resumes(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "full" / "data") as data:
        daemon = provision(make_daemon("full", imap=True)).start()
        with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as client:
            for n in range(5):
                client.sendmail("a@elsewhere.test", ["alice@example.test"], body(f"before {n}"))
        before = daemon.messages("alice@example.test")
        assert len(before) == 5

        fill(data)
        big = body("while full", 1_500_000)  # more than the WAL's reusable space: the write must grow a file
        with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("a@elsewhere.test", ["alice@example.test"], big)
            assert refused.value.smtp_code == 452 and refused.value.smtp_error.startswith(b"4.3.1")
        imap = imaplib.IMAP4_SSL(daemon.host, daemon.imaps_port, ssl_context=tls_context())
        imap.login("bob@example.test", PASSWORD)
        status, detail = imap.append("INBOX", None, None, big)
        assert status == "NO", detail
        assert daemon.proc is not None and daemon.proc.poll() is None

        (data / FILLER).unlink()
        status, detail = imap.append("INBOX", None, None, body("after, imap"))
        assert status == "OK", detail
        imap.logout()
        with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as client:
            assert client.sendmail("a@elsewhere.test", ["alice@example.test"], body("after", 1_500_000)) == {}
        after = daemon.messages("alice@example.test")
        assert after[:5] == before and len(after) == 6
        assert daemon.query("PRAGMA integrity_check")[0][0] == "ok"
        daemon.stop()


def test_sigkill_under_smtp_load_loses_nothing_acknowledged(make_daemon: MakeDaemon) -> None:
    """10 sessions send; the daemon is SIGKILLed mid-stream twice and restarted; each 250 is stored once."""
    daemon = provision(make_daemon()).start()
    acked: list[str] = []
    lock = threading.Lock()

    def sender(worker: int, rounds: int) -> None:
        for n in range(rounds):
            tag = f"w{worker}-r{rounds}-n{n}"
            try:
                with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
                    client.sendmail("a@elsewhere.test", ["alice@example.test"], body(tag))
            except (OSError, smtplib.SMTPException):
                continue  # not acknowledged: the sender would retry; nothing to check
            with lock:
                acked.append(tag)

    for rounds in (15, 16):
        threads = [threading.Thread(target=sender, args=(w, rounds)) for w in range(10)]
        for thread in threads:
            thread.start()
        while True:  # kill once some mail got through, while the senders are still at it
            with lock:
                if len(acked) >= 20 * (rounds - 14):
                    break
            threads[0].join(0.01)
        daemon.kill()
        for thread in threads:
            thread.join()
        daemon.start()
    stored = [m.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[0].decode() for m in daemon.messages("alice@example.test")]
    lost = set(acked) - set(stored)
    duplicated = {tag for tag in stored if stored.count(tag) > 1}
    assert acked and not lost and not duplicated, (len(acked), len(stored), lost, duplicated)
    assert daemon.query("PRAGMA integrity_check")[0][0] == "ok"


# -- load --------------------------------------------------------------------------------------------------


async def test_200_imap_and_50_smtp_sessions_at_once(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(imap=True, settings={"auth": {"plaintext_loopback": True}})).start()
    assert daemon.proc is not None
    users = ["alice@example.test", "bob@example.test", "carol@example.test"]
    result = await load.run(
        host=daemon.host,
        imap_port=daemon.imap_port,
        smtp_port=daemon.smtp_port,
        users=users,
        password=PASSWORD,
        imap_sessions=200,
        smtp_sessions=50,
        seconds=4.0,
        pid=daemon.proc.pid,
    )
    print(f"load: {result.imap_commands} IMAP commands, {len(result.smtp_acked)} messages, rss {result.rss_kib} KiB")
    assert result.errors == []
    assert result.peak_imap_open == 200 and result.smtp_sessions == 50
    assert result.smtp_acked
    stored = sum(len(daemon.messages(user)) for user in users)
    assert stored == len(result.smtp_acked)
    assert daemon.stop() == 0
