"""Every system call the daemon makes under real traffic is one relentad.service's seccomp filter allows.

systemd kills a service that makes a call outside ``SystemCallFilter=``; a new dependency (uvloop's libuv sets up
io_uring, for one) can bring calls the filter never saw. The daemon runs under strace while SMTP with STARTTLS,
submission with AUTH, IMAP with STARTTLS, a reload and a shutdown go through it; the calls it made are checked
against the filter as ``systemd-analyze syscall-filter`` expands it.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relentad.lifecycle.agefile import Identity
from relentad.spam import storage
from relentad.store import db
from tests.e2e.conftest import MakeDaemon
from tests.e2e.test_backup_offsite import configure
from tests.support.daemon import PASSWORD
from tests.support.dovecot import PASSWORD as DOVECOT_PASSWORD
from tests.support.dovecot import run_dovecot
from tests.support.sshd import run_sshd

UNIT = Path(__file__).resolve().parents[2] / "relentad.service"
CALL = re.compile(r"^\d+ +([a-z0-9_]+)\(", re.MULTILINE)


def strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-f", "-o", os.devnull, "true"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not strace_works(),
    reason="needs systemd-analyze and a working strace (ptrace allowed)",
)


def expand(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a filter group, nested groups included."""
    seen = seen if seen is not None else {group}
    listing = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True)
    calls: set[str] = set()
    for line in listing.stdout.splitlines():
        name = line.strip().split(" ")[0]
        if not name or name.startswith("#") or name == group:
            continue
        if name.startswith("@"):
            if name not in seen:
                seen.add(name)
                calls |= expand(name, seen)
        else:
            calls.add(name)
    return calls


def unit_filter() -> tuple[set[str], set[str]]:
    """(allowed, denied) by the unit's SystemCallFilter= lines (a "~" line denies)."""
    allowed: set[str] = set()
    denied: set[str] = set()
    for line in UNIT.read_text().splitlines():
        if line.startswith("SystemCallFilter="):
            value = line.partition("=")[2]
            target = denied if value.startswith("~") else allowed
            for item in value.lstrip("~").split():
                target |= expand(item) if item.startswith("@") else {item}
    return allowed, denied


def test_the_daemon_makes_only_calls_the_unit_allows(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    trace = tmp_path / "strace.out"
    daemon = make_daemon(imap=True, submission=True, wrapper=["strace", "-f", "-qq", "-o", str(trace)])
    daemon.add_domain("example.test")
    daemon.add_user("alice@example.test")
    daemon.start()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as client:
        client.starttls(context=context)
        client.sendmail("friend@elsewhere.test", ["alice@example.test"], b"Subject: in\r\n\r\nhello\r\n")
    with smtplib.SMTP(daemon.host, daemon.submission_port, timeout=30) as client:
        client.starttls(context=context)
        client.login("alice@example.test", PASSWORD)
        client.sendmail("alice@example.test", ["alice@example.test"], b"From: alice@example.test\r\n\r\nme\r\n")
    imap = imaplib.IMAP4(daemon.host, daemon.imap_port, timeout=30)
    imap.starttls(ssl_context=context)
    imap.login("alice@example.test", PASSWORD)
    imap.select("INBOX")
    imap.fetch("1:*", "(BODY[] FLAGS)")
    imap.store("1", "+FLAGS", "(\\Seen)")
    imap.logout()
    # Signals go to the daemon itself: strace would take them as its own and detach.
    assert daemon.proc is not None
    traced = int(Path(f"/proc/{daemon.proc.pid}/task/{daemon.proc.pid}/children").read_text().split()[0])
    os.kill(traced, signal.SIGHUP)
    time.sleep(0.5)
    os.kill(traced, signal.SIGTERM)
    assert daemon.proc.wait(30) == 0  # strace exits with the daemon's status

    used = set(CALL.findall(trace.read_text()))
    assert {"accept4", "fdatasync"} <= used, "strace saw the connections and the commits"
    assert_the_unit_allows(used)


REBUILD = """
import asyncio, sys
from pathlib import Path
from relentad.spam import rebuild
prepared = asyncio.run(rebuild.prepare_apart(Path(sys.argv[1]), int(sys.argv[2])))
assert len(prepared.keys) == 2, prepared
"""


def test_the_daily_spam_rebuild_and_its_worker_make_only_calls_the_unit_allows(tmp_path: Path) -> None:
    """The daemon's daily rebuild starts a worker process (spam/rebuild_worker.py) from the event loop: both sides
    of that, the spawning and the worker's own calls, must pass the filter too."""
    path = tmp_path / "rebuild.db"
    conn = db.open_database(path)
    conn.execute("INSERT INTO domains (name, created) VALUES ('a.test', 0)")
    conn.execute("INSERT INTO accounts (id, email, domain_id, password_hash, created) VALUES (1, 'u@a.test', 1, '', 0)")
    storage.train_message(conn, 1, storage.digest(b"spam"), {"viagra", "subj:free"}, True, "imap-move")
    storage.train_message(conn, 1, storage.digest(b"ham"), {"agenda", "subj:minutes"}, False, "imap-move")
    conn.commit()
    conn.close()
    trace = tmp_path / "strace.out"
    command = ["strace", "-f", "-qq", "-o", str(trace), sys.executable, "-c", REBUILD, str(path), "1"]
    subprocess.run(command, check=True, cwd=UNIT.parent, timeout=120)
    used = set(CALL.findall(trace.read_text()))
    assert {"execve", "wait4"} <= used or {"execve", "waitid"} <= used, "strace saw the worker start and end"
    assert_the_unit_allows(used)


OFFSITE = """
import sys
from pathlib import Path
from relentad import config
from relentad.lifecycle import backup, offsite
settings = config.load(Path(sys.argv[1]))
offsite.copy(settings, backup.create(settings))
"""


def test_the_off_site_backup_copy_makes_only_calls_the_unit_allows(tmp_path: Path) -> None:
    """The daily snapshot's off-site copy runs OpenSSH's sftp, which runs ssh: their calls must pass the filter
    too (a forbidden one would kill them, and every copy would fail)."""
    path = tmp_path / "relentad.toml"
    subprocess.run([sys.executable, "-m", "relentad", "--config", str(path), "init"], check=True, capture_output=True)
    sshd = run_sshd(tmp_path / "sshd")
    server = next(sshd)
    try:
        configure(
            path,
            recipients=[Identity.generate().recipient],
            offsite=server.url(),
            offsite_identity=str(server.identity),
            offsite_known_hosts=str(server.known_hosts),
        )
        trace = tmp_path / "strace.out"
        command = ["strace", "-f", "-qq", "-o", str(trace), sys.executable, "-c", OFFSITE, str(path)]
        subprocess.run(command, check=True, cwd=UNIT.parent, timeout=120)
    finally:
        sshd.close()
    assert len(list(server.remote.iterdir())) == 1, "the copy was made"
    used = set(CALL.findall(trace.read_text()))
    assert {"execve", "connect"} <= used, "strace saw sftp and ssh start and connect"
    assert_the_unit_allows(used)


def test_the_import_over_imap_makes_only_calls_the_unit_allows(make_daemon: MakeDaemon, tmp_path: Path) -> None:
    """The account page's imports are ``relentad import … imap://…`` processes the daemon starts: TLS to the old
    server, its folders and messages, the store's writes; all must pass the filter."""
    daemon = make_daemon()
    daemon.add_domain("example.test")
    daemon.add_user("alice@example.test")
    dovecots = run_dovecot()
    dovecot = next(dovecots)
    try:
        old = dovecot.client()
        old.append("INBOX", "(\\Seen)", None, b"From: a@b.test\r\nSubject: old\r\n\r\nold mail\r\n")
        old.logout()
        trace = tmp_path / "strace.out"
        command = [
            "strace", "-f", "-qq", "-o", str(trace), sys.executable, "-m", "relentad", "--config",
            str(daemon.config_path), "import", "alice@example.test", dovecot.url(), "--cafile", str(dovecot.ca),
            "--password-stdin",
        ]  # fmt: skip
        done = subprocess.run(command, input=DOVECOT_PASSWORD + "\n", capture_output=True, text=True, timeout=120)
    finally:
        dovecots.close()
    assert done.returncode == 0 and "imported 1 message(s)" in done.stdout, done.stderr
    used = set(CALL.findall(trace.read_text()))
    assert {"connect", "fdatasync"} <= used, "strace saw the connection and the commit"
    assert_the_unit_allows(used)


def assert_the_unit_allows(used: set[str]) -> None:
    allowed, denied = unit_filter()
    if os.geteuid() == 0:
        used.discard("fchown")  # SQLite gives -wal/-shm files the database's owner when root; the service is not
    assert used - allowed == set(), "calls outside SystemCallFilter=@system-service"
    assert used & denied == set(), "calls the unit denies"
