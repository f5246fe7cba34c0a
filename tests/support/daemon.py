"""Start the real ``relentad serve`` in a subprocess on loopback with a fresh data folder, for e2e tests.

The daemon under test is the installed code run exactly as an admin runs it; tests talk to it with real
clients and inspect its SQLite database directly (read-only, WAL allows it while the daemon runs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

from relentad import config as config_mod
from relentad.store import accounts, db
from relentad.tls import make_self_signed
from tests.support import ports

PASSWORD = "correct horse battery"
_HASH_CACHE: dict[str, str] = {}


_HANDED_OUT: set[tuple[str, int]] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, never the same one twice in this process (the kernel may hand a port that
    was just probed and closed out again, and two listeners of one daemon must not get the same port), and never
    one another test worker may pick (``ports.ours``)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if (host, port) not in _HANDED_OUT and ports.ours(port):
            _HANDED_OUT.add((host, port))
            return port


def wait_for_port(host: str, port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port}")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy (no timing assertion: only a generous deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# The test accounts' hashes are argon2id with the smallest cost argon2-cffi allows. The daemon verifies any argon2
# hash by the parameters written in it, so every login still runs the real check, at about a millisecond instead
# of the 0.2 s of CPU the production parameters take (hundreds of logins in the suite). Hashes the daemon or the CLI
# make (users added with `relentad user add`, app passwords, the unknown-login stand-in) keep the real cost.
_CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def password_hash(password: str = PASSWORD) -> str:
    """A test account's hash of ``password``, made once per password (see ``_CHEAP_HASHER``)."""
    if password not in _HASH_CACHE:
        _HASH_CACHE[password] = _CHEAP_HASHER.hash(password)
    return _HASH_CACHE[password]


@dataclass
class Daemon:
    """A relentad instance: its folder, ports and process."""

    root: Path
    host: str = "127.0.0.1"
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    tls: bool = True
    smtp_port: int = 0
    submission: bool = False  # also listen on 587-style (STARTTLS) and 465-style (implicit TLS) ports
    submission_port: int = 0
    submissions_port: int = 0
    imap: bool = False  # also listen on 143-style (STARTTLS) and 993-style (implicit TLS) IMAP ports
    imap_port: int = 0
    imaps_port: int = 0
    web: bool = False  # also listen on 443-style (HTTPS) and 80-style (HTTP) ports
    https_port: int = 0
    http_port: int = 0
    managesieve: bool = False  # also listen for ManageSieve (STARTTLS)
    managesieve_port: int = 0
    pop3: bool = False  # also listen for POP3 (STLS) and POP3S (implicit TLS)
    pop3_port: int = 0
    pop3s_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    wrapper: list[str] = field(default_factory=list)  # a command the daemon runs under (strace ...)
    log_path: Path = field(init=False)
    _picked: list[str] = field(init=False, default_factory=list)  # the *_port fields free_port chose
    _extra: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)  # write_config's last extras

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / "daemon.log"
        wanted = {
            "smtp": True,
            "submission": self.submission,
            "submissions": self.submission and self.tls,
            "imap": self.imap,
            "imaps": self.imap and self.tls,
            "https": self.web and self.tls,
            "http": self.web and self.tls,
            "managesieve": self.managesieve,
            "pop3": self.pop3,
            "pop3s": self.pop3 and self.tls,
        }
        self._picked = [f"{name}_port" for name, on in wanted.items() if on and not getattr(self, f"{name}_port")]
        self._pick_ports()
        self.write_config()

    def _pick_ports(self) -> None:
        for name in self._picked:
            setattr(self, name, free_port(self.host))

    @property
    def config_path(self) -> Path:
        return self.root / "relentad.toml"

    @property
    def db_path(self) -> Path:
        return self.root / "data" / "relentad.db"

    def write_config(self, **extra: dict[str, Any]) -> None:
        """(Re)write the config file from the defaults, this daemon's ports and the test's settings."""
        self._extra = extra
        overrides: dict[str, dict[str, Any]] = {
            "server": {"hostname": "mx.example.test"},
            "listen": {
                "smtp": f"{self.host}:{self.smtp_port}",
                "submission": "",
                "submissions": "",
                "imap": "",
                "imaps": "",
                "managesieve": "",
                "pop3": "",
                "pop3s": "",
                "metrics": "",
                "https": "",
                "http": "",
            },
            "limits": {"shutdown_grace": 5.0},
        }
        for name in ("submission", "submissions", "imap", "imaps", "https", "http", "managesieve", "pop3", "pop3s"):
            port = getattr(self, f"{name}_port")
            if port:
                overrides["listen"][name] = f"{self.host}:{port}"
        if self.tls:
            cert, key = self.root / "data" / "tls" / "cert.pem", self.root / "data" / "tls" / "key.pem"
            if not cert.exists():
                make_self_signed(cert, key, ["mx.example.test", "localhost"])
            overrides["tls"] = {"cert": str(cert), "key": str(key)}
        for section in (self.settings, extra):
            for name, values in section.items():
                overrides.setdefault(name, {}).update(values)
        self.config_path.write_text(config_mod.example_toml(overrides), encoding="utf-8")

    # -- accounts -------------------------------------------------------------------------------------------

    def add_domain(self, name: str) -> None:
        conn = db.open_database(self.db_path)
        with db.transaction(conn):
            accounts.add_domain(conn, name)
        conn.close()

    def add_user(self, email: str, password: str = PASSWORD, **kwargs: Any) -> int:
        conn = db.open_database(self.db_path)
        with db.transaction(conn):
            kwargs.setdefault("quota_bytes", 0)
            kwargs.setdefault("daily_send", 0)
            account = accounts.add_account(conn, email, password_hash(password), **kwargs)
        conn.close()
        return account.id

    def add_alias(self, address: str, target: str) -> None:
        conn = db.open_database(self.db_path)
        with db.transaction(conn):
            accounts.add_alias(conn, address, target)
        conn.close()

    # -- process --------------------------------------------------------------------------------------------

    def cli(
        self, *args: str, input: str | None = None, check: bool = True, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``relentad --config <this> ARGS`` as an admin would (``config``: another file instead, beside this
        one so that its relative paths name the same store)."""
        return subprocess.run(
            [sys.executable, "-m", "relentad", "--config", str(config or self.config_path), *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def start(self) -> Daemon:
        """Start ``relentad serve`` and wait for its ports. A port free_port picked may be taken by another process
        before the daemon binds it (other test runs on the machine): then new ports are picked, at most twice."""
        for attempt in range(3):
            try:
                return self._start()
            except RuntimeError as exc:
                if attempt == 2 or not self._picked or "address already in use" not in str(exc):
                    raise
                self._pick_ports()
                self.write_config(**self._extra)
        raise AssertionError("unreachable")

    def _start(self) -> Daemon:
        db.open_database(self.db_path).close()
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", "relentad", "--config", str(self.config_path), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        try:
            wait_for_port(self.host, self.smtp_port, proc=self.proc)
            ports = (
                self.submission_port,
                self.submissions_port,
                self.imap_port,
                self.imaps_port,
                self.managesieve_port,
                self.pop3_port,
                self.pop3s_port,
            )
            for port in (*ports, self.https_port, self.http_port):
                if port:
                    wait_for_port(self.host, port, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"daemon did not start:\n{self.log()}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Send ``sig`` and wait for the exit status (SIGKILL after ``timeout``)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: the crash the durability tests simulate."""
        self.stop(signal.SIGKILL)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- inspection -----------------------------------------------------------------------------------------

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        conn = db.connect(self.db_path, readonly=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def messages(self, email: str, mailbox: str = "INBOX") -> list[bytes]:
        """The messages of a mailbox as a client would see them (trace prefix + raw), in UID order."""
        rows = self.query(
            """SELECT m.prefix, b.data FROM messages m
               JOIN blobs b ON b.id = m.blob_id
               JOIN mailboxes x ON x.id = m.mailbox_id
               JOIN accounts a ON a.id = x.account_id
               WHERE a.email = ? AND x.name = ? ORDER BY m.uid""",
            email,
            mailbox,
        )
        return [bytes(r["prefix"]) + bytes(r["data"]) for r in rows]

    def raw_blobs(self, email: str, mailbox: str = "INBOX") -> list[bytes]:
        """The stored bytes exactly as received (without this copy's trace headers)."""
        rows = self.query(
            """SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id
               JOIN mailboxes x ON x.id = m.mailbox_id JOIN accounts a ON a.id = x.account_id
               WHERE a.email = ? AND x.name = ? ORDER BY m.uid""",
            email,
            mailbox,
        )
        return [bytes(r["data"]) for r in rows]


def greeted(daemon: Daemon) -> socket.socket:
    """A connection that got 220, retrying while the start-up probe's slot is still being released."""
    deadline = time.monotonic() + 5
    while True:
        sock = socket.create_connection((daemon.host, daemon.smtp_port), timeout=10)
        if sock.makefile("rb").readline().startswith(b"220"):
            return sock
        sock.close()
        assert time.monotonic() < deadline, "no 220 within 5 s"
        time.sleep(0.1)
