"""Backups (issue 7): consistent online snapshots of the database, compressed, verified, rotated; restore.

Invariants:
- A snapshot is taken with SQLite's online backup API in one step (``pages=-1``): it copies the database as of
  one read transaction, so it is consistent while the daemon keeps writing (WAL readers never block the writer),
  and holds every transaction committed before it began — every message already answered ``250``.
- A snapshot is verified twice before it counts: the copy passes ``PRAGMA integrity_check``, and the gzip file,
  decompressed again, does too. It is written under a temporary name and renamed, so a listed file is complete.
- With ``[backup] recipients`` the verified gzip file is then encrypted to them in the age format
  (:mod:`relentad.lifecycle.agefile`; ``.db.gz.age``), still under the temporary name: the plaintext is what was
  verified, and no unencrypted snapshot is ever renamed into the folder. Restore decrypts with ``--identity``
  while it decompresses (one pass, no plaintext gzip file); a wrong key or a tampered or truncated file is refused.
- One snapshot at a time per folder (an exclusive ``flock`` on ``<backup dir>/.lock``: the daemon's daily one and
  ``backup create`` wait for each other). Under that lock the temporary folders (``.tmp-*``) a killed run left are
  removed first: they hold a plaintext copy of the database, encrypted backups or not. Restore does the same with
  its own (``<data_dir>/.restore-*``, a decrypted older database) under the daemon's lock.
- Names sort by time: ``relentad-YYYYmmddTHHMMSSffffffZ.db.gz`` (UTC), ``.db.gz.age`` when encrypted. Rotation
  keeps the newest snapshot of each of the last ``keep_daily`` days and of each of the last ``keep_weekly`` ISO
  weeks, and nothing else — except the snapshot just taken, which is never removed.
- With ``[backup] offsite`` each new snapshot is copied off-site after it is verified
  (:mod:`relentad.lifecycle.offsite`); a failed copy is logged and counted, and never fails the snapshot.
- Restore only into a stopped server: the daemon holds an exclusive ``flock`` on ``<data_dir>/relentad.lock``
  while it runs (:func:`hold_daemon_lock`); restore refuses when it cannot take that lock. The live database is
  replaced only by a file that is valid gzip (for .gz), passes ``integrity_check``, is a relentad database (has
  ``_migrations`` and ``accounts``) and lists no migration this version does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gzip
import logging
import os
import shutil
import sqlite3
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO

from .. import daily
from ..config import Config
from ..errors import RelentadError
from ..imap import searchindex
from ..store import migrations
from . import agefile

log = logging.getLogger("relentad.backup")

PREFIX, SUFFIX, AGE_SUFFIX = "relentad-", ".db.gz", ".db.gz.age"
STAMP = "%Y%m%dT%H%M%S%fZ"
LOCK_NAME = "relentad.lock"
FOLDER_LOCK, TEMP_PREFIX, RESTORE_PREFIX = ".lock", ".tmp-", ".restore-"


class BackupError(RelentadError):
    """A snapshot that cannot be made, verified or restored."""


@dataclass(frozen=True)
class Snapshot:
    path: Path
    taken: datetime
    size: int


def backup_dir(config: Config) -> Path:
    return config.resolve(config.backup.dir) if config.backup.dir else config.data_dir / "backups"


def _check(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        result = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
    if result != ["ok"]:
        raise BackupError(f"{path.name}: integrity_check failed: {'; '.join(result[:3])}")


def _decompress(source: Path, target: Path, identities: list[agefile.Identity] | None = None) -> None:
    """Gunzip ``source`` into ``target``; an age file is decrypted with ``identities`` on the way (one pass)."""
    try:
        with source.open("rb") as raw, target.open("wb") as dst:
            plain: IO[bytes] = raw
            if identities is not None:
                plain = agefile.Decryptor(raw, identities)  # type: ignore[assignment]
            with gzip.GzipFile(fileobj=plain, mode="rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    except agefile.AgeError as exc:
        raise BackupError(f"{source}: {exc}") from None
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise BackupError(f"{source}: not a valid gzip backup") from None


def _check_schema(path: Path, source: Path) -> None:
    """Refuse a database that is not relentad's, or that a newer relentad made (migrations this one lacks)."""
    conn = sqlite3.connect(path)
    try:
        tables = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"_migrations", "accounts"} <= tables:
            raise BackupError(f"{source}: not a relentad database (no _migrations or accounts table)")
        names = {str(row[0]) for row in conn.execute("SELECT name FROM _migrations")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{source}: not a relentad database ({exc})") from None
    finally:
        conn.close()
    unknown = sorted(names - {name for name, _ in migrations.MIGRATIONS})
    if unknown:
        raise BackupError(
            f"{source}: made by a newer relentad (unknown migration(s) {', '.join(unknown)}); upgrade relentad first"
        )


def create(config: Config, now: datetime | None = None) -> Snapshot:
    """Take, verify, compress and store a snapshot of the running (or stopped) database; then rotate."""
    database = config.database_path
    if not database.exists():
        raise BackupError(f"no database at {database}")
    folder = backup_dir(config)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # the daemon runs with UMask=0077, the CLI may not
    recipients = [agefile.parse_recipient(r) for r in config.backup.recipients]  # checked at load: cannot fail
    with _only_snapshot(folder):
        return _create(config, folder, recipients, now or datetime.now(UTC))


@contextlib.contextmanager
def _only_snapshot(folder: Path) -> Iterator[None]:
    """Hold the folder's snapshot lock; remove what a run that was killed left behind (its temporary folder)."""
    with (folder / FOLDER_LOCK).open("ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file closes
        _remove_leftovers(folder, TEMP_PREFIX, ("snapshot.db", "verify.db"))
        yield


def _remove_leftovers(folder: Path, prefix: str, files: tuple[str, ...]) -> None:
    """Remove the temporary folders (``prefix*``) that a snapshot or restore left when it was killed: a plaintext
    database, maybe holding mail purged since. Only those holding nothing but ``files*`` (``[backup] dir`` may be
    a folder other programs use too); the caller holds the lock that keeps another run from making one."""
    for stale in folder.glob(f"{prefix}*"):
        if stale.is_dir() and not stale.is_symlink() and all(n.startswith(files) for n in os.listdir(stale)):
            log.warning("backup: removing %s, left by a run that did not finish", stale)
            shutil.rmtree(stale, ignore_errors=True)


def _create(config: Config, folder: Path, recipients: list[bytes], taken: datetime) -> Snapshot:
    target = folder / f"{PREFIX}{taken.strftime(STAMP)}{AGE_SUFFIX if recipients else SUFFIX}"
    with tempfile.TemporaryDirectory(dir=folder, prefix=TEMP_PREFIX) as tmp:
        copy = Path(tmp) / "snapshot.db"
        source = sqlite3.connect(config.database_path, timeout=30)
        destination = sqlite3.connect(copy)
        try:
            source.backup(destination, pages=-1)
            _without_search_index(destination)
        finally:
            destination.close()
            source.close()
        _check(copy)
        partial = Path(tmp) / "snapshot.db.gz"
        with copy.open("rb") as src, gzip.open(partial, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        again = Path(tmp) / "verify.db"
        _decompress(partial, again)
        _check(again)
        if recipients:
            sealed = Path(tmp) / "snapshot.db.gz.age"
            agefile.encrypt_file(partial, sealed, recipients)
            partial = sealed
        partial.chmod(0o600)  # every customer's mail: readable by the server's user only, whatever the umask
        os.replace(partial, target)
    rotate(config, taken, taken=target)
    return Snapshot(target, taken, target.stat().st_size)


def _without_search_index(copy: sqlite3.Connection) -> None:
    """Empty SEARCH's full-text index in the copy (its pages zeroed: they compress to nothing): it is rebuilt from
    the mail in the background after a restore, and would add about two thirds to a compressed snapshot."""
    if not copy.execute("SELECT 1 FROM sqlite_master WHERE name = 'search_index_state'").fetchone():
        return
    if searchindex.state(copy)[0]:
        copy.execute("PRAGMA secure_delete = ON")
        with copy:
            searchindex.reset(copy)


def list_snapshots(config: Config) -> list[Snapshot]:
    """The stored snapshots, newest first."""
    folder = backup_dir(config)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob(f"{PREFIX}*"):
        taken = taken_at(path.name)
        if taken is not None:
            found.append(Snapshot(path, taken, path.stat().st_size))
    return sorted(found, key=lambda s: s.taken, reverse=True)


def taken_at(name: str) -> datetime | None:
    """When the snapshot named ``name`` was taken; None for a name that is not one of ours."""
    if not name.startswith(PREFIX):
        return None
    for suffix in (AGE_SUFFIX, SUFFIX):
        if name.endswith(suffix):
            try:
                return datetime.strptime(name[len(PREFIX) : -len(suffix)], STAMP).replace(tzinfo=UTC)
            except ValueError:
                return None
    return None


def keep(snapshots: list[Snapshot], keep_daily: int, keep_weekly: int, now: datetime) -> set[Path]:
    """Which snapshots rotation keeps: the newest of each of the last N days and of each of the last M weeks."""
    kept: set[Path] = set()
    days: set[date] = set()
    weeks: set[date] = set()
    today = now.date()
    this_monday = today - timedelta(days=today.weekday())
    for snapshot in sorted(snapshots, key=lambda s: s.taken, reverse=True):
        day = snapshot.taken.date()
        week = day - timedelta(days=day.weekday())
        if (today - day).days < keep_daily and day not in days:
            days.add(day)
            kept.add(snapshot.path)
        if (this_monday - week).days // 7 < keep_weekly and week not in weeks:
            weeks.add(week)
            kept.add(snapshot.path)
    return kept


def rotate(config: Config, now: datetime, taken: Path | None = None) -> list[Path]:
    """Delete the snapshots rotation does not keep (never ``taken``, the one just made); returns them."""
    snapshots = list_snapshots(config)
    kept = keep(snapshots, config.backup.keep_daily, config.backup.keep_weekly, now)
    if taken is not None:
        kept.add(taken)
    removed = [s.path for s in snapshots if s.path not in kept]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def hold_daemon_lock(data_dir: Path) -> IO[bytes]:
    """Take the daemon's exclusive lock (kept until the returned file is closed); raises when already held."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / LOCK_NAME).open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise BackupError(f"another relentad holds {data_dir / LOCK_NAME}") from None
    return handle


def restore(config: Config, source: Path, identity: Path | None = None) -> None:
    """Replace the database with the snapshot ``source`` (.db.gz.age with ``identity``, .db.gz or a plain .db);
    the server must be stopped."""
    if not source.is_file():
        raise BackupError(f"no backup file {source}")
    try:
        encrypted = agefile.is_age(source)
        if encrypted and identity is None:
            raise BackupError(f"{source} is encrypted (age): give the key file with --identity")
        identities = agefile.read_identities(identity) if encrypted and identity else None
    except agefile.AgeError as exc:
        raise BackupError(str(exc)) from None
    try:
        lock = hold_daemon_lock(config.data_dir)
    except BackupError:
        raise BackupError("relentad is running: stop it before restoring a backup") from None
    try:
        database = config.database_path
        _remove_leftovers(config.data_dir, RESTORE_PREFIX, ("relentad.db",))
        with tempfile.TemporaryDirectory(dir=config.data_dir, prefix=RESTORE_PREFIX) as tmp:
            staged = Path(tmp) / "relentad.db"
            if encrypted or source.name.endswith(".gz"):
                _decompress(source, staged, identities)
            else:
                shutil.copyfile(source, staged)
            try:
                _check(staged)
            except sqlite3.DatabaseError as exc:
                raise BackupError(f"{source}: not a SQLite database ({exc})") from None
            _check_schema(staged, source)
            for suffix in ("-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            os.replace(staged, database)
    finally:
        lock.close()


async def copy_offsite(config: Config, snapshot: Snapshot) -> None:
    """The off-site copy of a new snapshot, in a worker thread (sftp runs with a deadline): logged and counted,
    never raised — the local snapshot stands either way."""
    from .. import metrics
    from . import offsite

    try:
        removed = await asyncio.to_thread(offsite.copy, config, snapshot)
    except asyncio.CancelledError:  # the daemon stops: its worker thread must not wait for sftp
        offsite.stop_running()
        raise
    except (BackupError, OSError) as exc:  # OSError: the state file or the snapshot itself, in one line too
        metrics.BACKUP_OFFSITE.labels("failed").inc()
        log.warning("backup: off-site copy of %s failed: %s", snapshot.path.name, exc)
        return
    metrics.BACKUP_OFFSITE.labels("copied").inc()
    log.info("backup: %s copied off-site; %d old copy(ies) removed there", snapshot.path.name, len(removed))


async def run_daily(settings: Callable[[], Config], interval: float = daily.DAY) -> None:
    """The daemon's daily snapshot (when ``[backup] daily``), in a worker thread, until cancelled."""

    async def snapshot_now() -> None:
        config = settings()
        if config.backup.daily:
            snapshot = await asyncio.to_thread(create, config)
            log.info("backup: %s (%d octets) written and verified", snapshot.path, snapshot.size)
            if config.backup.offsite:
                await copy_offsite(config, snapshot)

    await daily.every_day(snapshot_now, what="backup", log=log, first_delay=300.0, interval=interval)
