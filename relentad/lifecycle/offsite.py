"""Off-site copies of the encrypted snapshots over SFTP (``[backup] offsite``), with OpenSSH's ``sftp`` client.

Why a subprocess: OpenSSH is on every server, its host key checking and key handling are the ones admins know,
and a child process with a deadline can neither block the daemon's event loop nor leave a thread hanging.

Invariants:
- Only encrypted snapshots leave the machine: the configuration refuses ``offsite`` without ``recipients``, and
  :func:`copy` refuses a file that is not an age file.
- Never a prompt: batch mode (``-b -``), ``BatchMode=yes`` (no password or passphrase questions),
  ``StrictHostKeyChecking=yes`` against ``offsite_known_hosts`` only (``-F /dev/null``: no ssh_config, no global
  known_hosts), ``ConnectTimeout``, keepalives, and a deadline on the whole run (``offsite_timeout``). At the
  deadline, when the daemon stops (:func:`stop_running`) and on Ctrl-C, sftp is killed with its ssh (one process
  group of their own).
- A copy is uploaded under ``.tmp-<name>`` and renamed, so a half upload never looks like a snapshot; a stale
  temporary name of ours left by an earlier failure is removed by the next rotation.
- Remote rotation applies the local rule (:func:`relentad.lifecycle.backup.keep`) to the remote listing and
  removes only names of ours (``relentad-<stamp>.db.gz[.age]`` and their temporary names), never the copy just made.
- Every attempt is recorded in ``<backup dir>/.offsite.json`` (last success, last failure and its one-line
  reason), which ``relentad doctor`` reads: older than :data:`STALE_AFTER`, it warns.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..atomicfile import write_atomic
from ..config import Config
from . import agefile, backup

STATE_NAME = ".offsite.json"
STALE_AFTER = 2 * 86400.0
CONNECT_TIMEOUT = 30
TEMP_PREFIX = ".tmp-"
SAFE_PATH = re.compile(r"[A-Za-z0-9._~/+-]*")


class OffsiteError(backup.BackupError):
    """An off-site copy, listing or rotation that failed (one line: what sftp said)."""


@dataclass(frozen=True)
class Destination:
    user: str
    host: str
    port: int
    path: str  # as sftp takes it: absolute, or relative to the login directory ("" = the login directory)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = self.path if self.path.startswith("/") else f"/~/{self.path}"
        return f"sftp://{self.user}@{host}:{self.port}{where}"


def parse_url(url: str) -> Destination:
    """``sftp://user@host[:port]/path`` (``/~/path``: relative to the login directory); ValueError saying why."""
    parts = urlsplit(url.strip())
    if parts.scheme != "sftp" or not parts.hostname:
        raise ValueError(f"{url!r} is not an sftp://user@host:port/path URL")
    if not parts.username or parts.password is not None:
        raise ValueError(f"{url!r}: name the user (sftp://user@host/...) and no password (the key logs in)")
    try:
        port = parts.port or 22
    except ValueError:
        raise ValueError(f"{url!r}: bad port") from None
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: no query or fragment")
    path = unquote(parts.path)
    if path.startswith("/~/") or path == "/~":
        path = path[3:]
    if not SAFE_PATH.fullmatch(path) or ".." in path.split("/"):
        raise ValueError(f"{url!r}: the path may hold only letters, digits and . _ ~ / + - (and no ..)")
    if not re.fullmatch(r"[A-Za-z0-9._:-]+", parts.hostname):  # it reaches ssh's option parser (HostName=…)
        raise ValueError(f"{url!r}: unusual host name {parts.hostname!r}")
    user = unquote(parts.username)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", user):
        raise ValueError(f"{url!r}: unusual user name {user!r}")
    return Destination(user, parts.hostname, port, path.rstrip("/") or ("/" if path.startswith("/") else ""))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_running: set[subprocess.Popen[bytes]] = set()  # the sftp runs under way (worker threads of the daemon, the CLI)
_stopped: set[subprocess.Popen[bytes]] = set()  # those :func:`stop_running` ended


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # sftp and the ssh it started: its own process group


def stop_running() -> None:
    """End the sftp runs under way: the daemon stops, and the worker thread waiting for one would hold up its exit
    (up to ``offsite_timeout``; systemd kills the daemon after ``TimeoutStopSec``)."""
    for proc in list(_running):
        _stopped.add(proc)
        _kill(proc)


def _ssh_file(path: Path) -> str:
    """A file name as a value of ssh's ``-o``: ssh splits the value at spaces (UserKnownHostsFile takes several
    files) and expands ``%`` tokens in file names, so it is double-quoted and a ``%`` doubled."""
    return _quote(str(path).replace("%", "%%"))


def _sftp(config: Config, commands: list[str], cwd: Path | None = None) -> str:
    """Run sftp in batch mode with ``commands``; its output, or OffsiteError with its last complaint."""
    settings = config.backup
    target = parse_url(settings.offsite)
    argv = [
        "sftp",
        "-b",
        "-",
        "-F",
        "/dev/null",
        "-P",
        str(target.port),
    ]
    for option in (
        f"IdentityFile={_ssh_file(config.resolve(settings.offsite_identity))}",
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={_ssh_file(config.resolve(settings.offsite_known_hosts))}",
        "GlobalKnownHostsFile=/dev/null",
        "UpdateHostKeys=no",
        "IdentitiesOnly=yes",
        f"ConnectTimeout={CONNECT_TIMEOUT}",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=4",
        f"HostName={target.host}",
        f"User={target.user}",
        "LogLevel=ERROR",
    ):
        argv += ["-o", option]
    argv.append("relentad-offsite")  # a name for this destination; HostName and User above say where it is
    script = "".join(line + "\n" for line in commands).encode()
    try:  # its own process group: at the deadline sftp and the ssh it started go together
        proc = subprocess.Popen(  # noqa: S603 (a fixed argv; the configuration's values are options, not a shell)
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise OffsiteError(f"cannot run sftp: {exc.strerror or exc}") from None
    _running.add(proc)
    try:
        stdout, stderr = proc.communicate(script, timeout=settings.offsite_timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        raise OffsiteError(f"{target}: sftp did not finish within {settings.offsite_timeout:g} s") from None
    except BaseException:  # Ctrl-C of `backup create`: the terminal's SIGINT never reaches sftp's own session
        _kill(proc)
        proc.wait()
        raise
    finally:
        _running.discard(proc)
    if proc in _stopped:
        _stopped.discard(proc)
        raise OffsiteError(f"{target}: stopped (the daemon is shutting down)")
    if proc.returncode != 0:
        said = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
        # the last thing said but sftp's closing "Connection closed" and ssh's @@@ banner: the cause, in one line
        causes = [
            line for line in said if line and not line.startswith("@") and not line.startswith("Connection closed")
        ]
        reason = causes[-1] if causes else f"sftp exited with status {proc.returncode}"
        raise OffsiteError(f"{target}: {reason}")
    return stdout.decode(errors="replace")


def _enter(destination: Destination, make: bool = True) -> list[str]:
    """Batch lines that make the destination folder (its last level, if missing; only to copy into it) and change
    into it."""
    if not destination.path:
        return []
    return ([f"-mkdir {_quote(destination.path)}"] if make else []) + [f"cd {_quote(destination.path)}"]


@dataclass(frozen=True)
class RemoteFile:
    name: str
    taken: datetime | None  # None: a temporary name of ours (an upload that never finished)
    size: int


def _parse_listing(output: str) -> list[RemoteFile]:
    """Our names in sftp's ``ls -la`` output (the echoed ``sftp>`` command lines and other names are skipped)."""
    found = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 9 or line.startswith("sftp>") or not fields[4].isdigit():
            continue
        name = fields[-1].rsplit("/", 1)[-1]
        bare = name[len(TEMP_PREFIX) :] if name.startswith(TEMP_PREFIX) else name
        taken = backup.taken_at(bare)
        if taken is not None:
            found.append(RemoteFile(name, None if bare != name else taken, int(fields[4])))
    return sorted(found, key=lambda f: f.name, reverse=True)


def list_remote(config: Config) -> list[RemoteFile]:
    """The snapshots at the off-site destination, newest first (temporary names of ours included)."""
    destination = parse_url(config.backup.offsite)
    return _parse_listing(_sftp(config, [*_enter(destination, make=False), "ls -la"]))


def copy(config: Config, snapshot: backup.Snapshot, now: datetime | None = None) -> list[str]:
    """Upload ``snapshot`` (to a temporary name, then renamed), then rotate the destination as the local folder;
    returns the remote names removed. Records the outcome for ``doctor``; raises OffsiteError on failure."""
    try:
        if not agefile.is_age(snapshot.path):
            raise OffsiteError(f"{snapshot.path.name} is not encrypted: refusing to copy it off-site")
        destination = parse_url(config.backup.offsite)
        name, temporary = snapshot.path.name, TEMP_PREFIX + snapshot.path.name
        upload = [f"put {_quote(name)} {_quote(temporary)}", f"rename {_quote(temporary)} {_quote(name)}", "ls -la"]
        listing = _sftp(config, [*_enter(destination), *upload], cwd=snapshot.path.parent)
        remote = _parse_listing(listing)
        dated = [backup.Snapshot(Path(f.name), f.taken, f.size) for f in remote if f.taken is not None]
        kept = backup.keep(dated, config.backup.keep_daily, config.backup.keep_weekly, now or snapshot.taken)
        kept.add(Path(name))
        removed = [f.name for f in remote if Path(f.name) not in kept]
        if removed:
            _sftp(config, [*_enter(destination), *(f"rm {_quote(n)}" for n in removed)])
    except OffsiteError as exc:
        _record(config, failure=str(exc))
        raise
    _record(config, success=name)
    return removed


def _state_path(config: Config) -> Path:
    return backup.backup_dir(config) / STATE_NAME


def _record(config: Config, success: str | None = None, failure: str | None = None) -> None:
    state = read_state(config)
    if success is not None:
        state.update(last_success=time.time(), last_file=success)
    if failure is not None:
        state.update(last_failure=time.time(), last_error=failure)
    write_atomic(_state_path(config), json.dumps(state).encode("utf-8"), 0o600)


def read_state(config: Config) -> dict[str, object]:
    """What the last off-site attempts left: last_success (Unix time), last_file, last_failure, last_error."""
    try:
        state = json.loads(_state_path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def staleness(config: Config, now: float | None = None) -> str | None:
    """Why the off-site copies are out of date (for ``doctor``), or None when the last one is recent enough."""
    if not config.backup.offsite:
        return None
    now = time.time() if now is None else now
    state = read_state(config)
    last = state.get("last_success")
    error = state.get("last_error")
    failed_after = isinstance(state.get("last_failure"), (int, float)) and (
        not isinstance(last, (int, float)) or float(state["last_failure"]) > float(last)  # type: ignore[arg-type]
    )
    reason = f"; last error: {error}" if failed_after and error else ""
    if not isinstance(last, (int, float)):
        return f"no off-site copy made yet{reason}"
    if now - last > STALE_AFTER:
        return f"the last off-site copy is {(now - last) / 86400:.1f} days old{reason}"
    return None
