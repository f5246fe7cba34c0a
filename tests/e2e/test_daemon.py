"""The daemon's lifecycle: durability across kill -9, graceful SIGTERM, SIGHUP reload, bad configuration."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiosmtplib
import pytest

from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_submission import submit


def numbered(i: int) -> bytes:
    return (
        f"From: load@elsewhere.test\r\nTo: alice@example.test\r\nSubject: n{i}\r\n"
        f"Message-ID: <durable-{i}@elsewhere.test>\r\n\r\n" + "body line\r\n" * 40
    ).encode()


async def test_every_message_answered_250_survives_kill_9_exactly_once(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"limits": {"connections_per_ip": 100}})).start()
    acked: list[int] = []

    async def sender(first: int, count: int) -> None:
        client = aiosmtplib.SMTP(hostname=daemon.host, port=daemon.smtp_port, start_tls=False, timeout=30)
        await client.connect()
        for i in range(first, first + count):
            errors, _ = await client.sendmail("load@elsewhere.test", ["alice@example.test"], numbered(i))
            assert errors == {}
            acked.append(i)
        client.close()

    await asyncio.gather(*(sender(k * 40, 40) for k in range(10)))
    daemon.kill()  # right after the last 250: no graceful shutdown, no checkpoint
    assert len(acked) == 400
    daemon.start()
    rows = daemon.query(
        "SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id JOIN mailboxes x ON x.id = m.mailbox_id "
        "WHERE x.name = 'INBOX'"
    )
    stored = sorted(int(bytes(r["data"]).split(b"Subject: n")[1].split(b"\r\n")[0]) for r in rows)
    assert stored == sorted(acked), "every acknowledged message is there, none twice"
    assert daemon.query("PRAGMA integrity_check")[0][0] == "ok"


def test_sigterm_lets_the_transaction_in_flight_finish_and_exits_0(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon()).start()
    client = smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10)
    client.ehlo("client.test")
    client.mail("friend@elsewhere.test")
    client.rcpt("alice@example.test")
    idle = socket.create_connection((daemon.host, daemon.smtp_port), timeout=10)
    assert idle.recv(100).startswith(b"220")
    daemon.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert idle.recv(100).startswith(b"421 4.3.2"), "idle connections are told and closed"
    assert client.data(numbered(1))[0] == 250, "the open transaction still completes"
    assert client.mail("friend@elsewhere.test")[0] == 421, "but no new one starts"
    assert daemon.proc is not None
    assert daemon.proc.wait(10) == 0
    daemon.proc = None
    assert len(daemon.messages("alice@example.test")) == 1


def mid_data(client: smtplib.SMTP, sender: str) -> None:
    """Leave ``client`` inside DATA, the message half sent (a slow sender)."""
    client.mail(sender)
    assert client.rcpt("alice@example.test")[0] == 250
    assert client.docmd("DATA")[0] == 354
    client.send(b"Subject: slow\r\n\r\nthe first half\r\n")


def test_shutdown_grace_bounds_the_whole_shutdown_not_each_listener(make_daemon: MakeDaemon) -> None:
    """Slow transactions on the MX and on submission share one ``shutdown_grace``: waited for one after the other,
    the shutdown took twice as long (and with more listeners busy, past systemd's TimeoutStopSec, then SIGKILL)."""
    grace = 3.0
    daemon = provision(make_daemon(settings={"limits": {"shutdown_grace": grace}}, submission=True)).start()
    mx = smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=20)
    mx.ehlo("client.test")
    mid_data(mx, "friend@elsewhere.test")
    submission = submit(daemon)
    mid_data(submission, "alice@example.test")
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.proc is not None and daemon.proc.wait(20) == 0
    daemon.proc = None
    took = time.monotonic() - started
    assert grace - 0.5 < took < grace + 1.5, f"shutdown took {took:.1f}s with shutdown_grace {grace}s"
    mx.close()
    submission.close()


def test_sighup_reloads_limits_without_dropping_connections(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon(settings={"limits": {"message_size": 20_000}})).start()
    before = smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10)
    before.ehlo("old.test")
    assert before.esmtp_features["size"] == "20000"
    daemon.write_config(limits={"message_size": 30_000})
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "configuration reloaded" not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as after:
        after.ehlo("new.test")
        assert after.esmtp_features["size"] == "30000"
    assert before.sendmail("friend@elsewhere.test", ["alice@example.test"], numbered(2)) == {}
    before.quit()


def test_sighup_with_a_broken_config_keeps_running(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon()).start()
    daemon.config_path.write_text("[limits]\nmessage_size = 'huge'\n")
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload refused" not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "reload refused: [limits] message_size: not a size: 'huge'" in daemon.log()
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=10) as client:
        assert client.noop()[0] == 250


def test_bad_config_makes_serve_and_check_print_one_line_per_problem(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    daemon.config_path.write_text(
        '[limits]\nmessage_size = "10XB"\nmax_recipients = "many"\n[listen]\nsmtp = "nowhere"\n[bogus]\nx = 1\n'
    )
    for command in (["config", "check"], ["serve"]):
        result = subprocess.run(
            [sys.executable, "-m", "relentad", "--config", str(daemon.config_path), *command],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert lines == [
            "config: unknown section [bogus]",
            "config: [listen] smtp: not a host:port address: 'nowhere'",
            "config: [limits] message_size: not a size: '10XB' (write e.g. 500KB, 60MB, 5GB or 2GiB)",
            "config: [limits] max_recipients: expected int, got 'many'",
        ], result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_port_in_use_is_a_one_line_error(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon())
    with socket.socket() as blocker:
        blocker.bind((daemon.host, daemon.smtp_port))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "relentad", "--config", str(daemon.config_path), "serve"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "address already in use" in (result.stderr + result.stdout).lower()


def test_systemd_notify_ready_watchdog_and_stopping(
    make_daemon: MakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Type=notify without libsystemd: READY=1 once listening, WATCHDOG=1 pings at half WATCHDOG_USEC, STOPPING=1."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "200000")
        daemon = provision(make_daemon()).start()
        received: list[str] = []
        while sum("WATCHDOG=1" in m for m in received) < 2:
            received.append(notify.recv(1000).decode())
        assert received[0].startswith("READY=1")
        daemon.signal(signal.SIGTERM)
        while "STOPPING=1" not in received[-1]:
            received.append(notify.recv(1000).decode())
        assert daemon.proc is not None and daemon.proc.wait(20) == 0
        daemon.proc = None


def test_the_test_daemon_picks_new_ports_when_one_was_taken_meanwhile(make_daemon: MakeDaemon) -> None:
    """Another process on the machine may bind a port free_port handed out before the daemon does; the suite's
    daemons then start on new ports instead of failing a whole module (seen while other test runs shared the box)."""
    daemon = make_daemon(imap=True)
    taken = daemon.imap_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((daemon.host, taken))
        squatter.listen()
        daemon.start()
        try:
            assert daemon.imap_port != taken
            with socket.create_connection((daemon.host, daemon.imap_port), timeout=5) as conn:
                assert conn.recv(100).startswith(b"* OK")
            assert "address already in use" in daemon.log()
        finally:
            daemon.stop()


def test_sigterm_does_not_wait_for_a_client_that_leaves_a_sasl_challenge_unanswered(make_daemon: MakeDaemon) -> None:
    """A client asked for its SASL answer is waiting on the daemon's question, as one in IMAP IDLE is: SIGTERM tells
    it goodbye at once (IMAP, POP3, ManageSieve) instead of waiting ``shutdown_grace`` for a command in flight."""
    settings = {"limits": {"shutdown_grace": 60.0}, "auth": {"plaintext_loopback": True}}
    daemon = make_daemon(settings=settings, imap=True, pop3=True, managesieve=True, tls=False)
    provision(daemon).start()
    asked = []
    for port, command, challenge in (
        (daemon.imap_port, b"a AUTHENTICATE PLAIN\r\n", b"+"),
        (daemon.pop3_port, b"AUTH PLAIN\r\n", b"+ "),
        (daemon.managesieve_port, b'AUTHENTICATE "PLAIN"\r\n', b'""'),
    ):
        sock = socket.create_connection((daemon.host, port), timeout=15)
        reader = sock.makefile("rb")
        while not (line := reader.readline()).startswith((b"* OK", b"+OK", b"OK")):  # the greeting
            assert line
        sock.sendall(command)
        assert reader.readline().startswith(challenge)
        asked.append((sock, reader))
    assert daemon.stop(timeout=20) == 0, "the daemon waited for the unanswered challenges"
    goodbyes = [reader.readline() for _, reader in asked]
    assert goodbyes == [
        b"* BYE server shutting down\r\n",
        b"-ERR [SYS/TEMP] server shutting down; nothing was deleted\r\n",
        b'BYE (TRYLATER) "server shutting down"\r\n',
    ]
    for sock, reader in asked:
        reader.close()
        sock.close()
