"""Backups (issue 7): a snapshot taken while 10 clients send mail restores to a database that passes
integrity_check and holds every message answered 250 before the backup began; restore refuses a running server;
rotation keeps the newest snapshot per day and per week."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import smtplib
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from relentad import config as config_mod
from relentad.cli import main
from relentad.config import BackupConfig
from relentad.crm import userscripts
from relentad.imap import indexer, searchindex
from relentad.lifecycle import backup, retention
from relentad.lifecycle.backup import Snapshot, keep
from relentad.store import db, messages
from relentad.store.mailboxes import find
from tests.e2e.conftest import MakeDaemon, provision
from tests.e2e.test_cli import fails, ok
from tests.e2e.test_quota import cli
from tests.support.daemon import Daemon
from tests.support.imap import message
from tests.support.store import database_with, use_every_feature


def sender(daemon: Daemon, index: int, stop: threading.Event, answered: list[tuple[float, str]]) -> None:
    """Send to alice until told to stop; record (when 250 arrived, Message-ID) of each accepted message."""
    with smtplib.SMTP(daemon.host, daemon.smtp_port, timeout=30) as smtp:
        smtp.ehlo("sender.elsewhere.test")
        count = 0
        while not stop.is_set():
            subject = f"client{index} n{count}"
            raw = message(subject, "z" * 2000 + "\r\n")
            smtp.sendmail("friend@elsewhere.test", ["alice@example.test"], raw)
            answered.append((time.time(), subject.replace(" ", ".")))
            count += 1


def test_backup_during_traffic_restores_everything_answered_before(make_daemon: MakeDaemon) -> None:
    daemon = provision(make_daemon()).start()
    stop = threading.Event()
    answered: list[tuple[float, str]] = []
    threads = [threading.Thread(target=sender, args=(daemon, i, stop, answered)) for i in range(10)]
    for thread in threads:
        thread.start()
    try:
        while len(answered) < 30:
            time.sleep(0.05)
        began = time.time()
        out = cli(daemon, "backup", "create")
        while len(answered) < 60:  # mail keeps flowing after the snapshot
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    path = Path(out.split("\t")[0])
    assert path.exists() and out.strip().endswith("verified")
    assert [line.split("\t")[0] for line in cli(daemon, "backup", "list").splitlines()] == [str(path)]

    refused = CliRunner().invoke(main, ["--config", str(daemon.config_path), "backup", "restore", str(path), "--yes"])
    assert refused.exit_code == 1 and "running" in refused.output

    daemon.stop()
    assert "restored" in cli(daemon, "backup", "restore", str(path), "--yes")
    conn = sqlite3.connect(daemon.db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {bytes(row[0]) for row in conn.execute("SELECT data FROM blobs")}
    finally:
        conn.close()
    before = [mid for when, mid in answered if when < began]
    assert len(before) >= 30
    missing = [mid for mid in before if not any(f"Message-ID: <{mid}@".encode() in data for data in stored)]
    assert missing == []
    assert len(stored) < len(answered), "messages answered after the snapshot began are not all in it"
    daemon.start()  # the restored database serves again
    assert daemon.query("SELECT count(*) AS n FROM messages")[0]["n"] == len(stored)


def test_rotation_keeps_newest_per_day_and_week() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    snapshots = [Snapshot(Path(f"s{h}"), now - timedelta(hours=h), 1) for h in range(0, 24 * 40, 6)]
    kept = keep(snapshots, keep_daily=3, keep_weekly=2, now=now)
    newest_per_day = {s.taken.date(): s.path for s in sorted(snapshots, key=lambda s: s.taken)}
    days = sorted(newest_per_day)[-3:]
    assert {newest_per_day[d] for d in days} <= kept
    # 3 days + the newest of last week (this week's newest is today's)
    assert len(kept) == 4


def test_the_snapshot_just_taken_survives_a_rotation_that_keeps_nothing(tmp_path: Path) -> None:
    """``config check`` refuses keep_daily = keep_weekly = 0; should such settings reach ``create`` anyway (a
    Config built in code), rotation still never deletes the snapshot it was called for."""
    path = tmp_path / "relentad.toml"
    ok(path, "init", "--hostname", "mx.example.test")
    loaded = config_mod.load(path)
    nothing = dataclasses.replace(loaded, backup=BackupConfig(keep_daily=0, keep_weekly=0))
    first = backup.create(nothing)
    assert first.path.is_file()
    second = backup.create(nothing)
    assert second.path.is_file() and not first.path.exists()
    assert [s.path for s in backup.list_snapshots(nothing)] == [second.path]


def test_restore_refuses_files_that_are_not_a_relentad_backup(tmp_path: Path) -> None:
    path = tmp_path / "relentad.toml"
    ok(path, "init", "--hostname", "mx.example.test")
    ok(path, "domain", "add", "example.test")
    live = config_mod.load(path).database_path

    notes = tmp_path / "notes.db"
    with sqlite3.connect(notes) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    assert "not a relentad database" in fails(path, "backup", "restore", "--yes", str(notes))

    newer = tmp_path / "newer.db"
    shutil.copyfile(live, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("INSERT INTO _migrations (name, applied) VALUES ('999_from_the_future', 0)")
    conn.close()
    line = fails(path, "backup", "restore", "--yes", str(newer))
    assert "made by a newer relentad" in line and "999_from_the_future" in line

    text = tmp_path / "text.db"
    text.write_text("not a database at all\n" * 100)
    assert "not a SQLite database" in fails(path, "backup", "restore", "--yes", str(text))

    corrupt = tmp_path / "corrupt.db.gz"
    corrupt.write_bytes(b"this is no gzip data")
    assert fails(path, "backup", "restore", "--yes", str(corrupt)) == f"Error: {corrupt}: not a valid gzip backup"

    snapshot = Path(ok(path, "backup", "create").split("\t")[0])
    truncated = tmp_path / "truncated.db.gz"
    truncated.write_bytes(snapshot.read_bytes()[: snapshot.stat().st_size // 2])
    assert fails(path, "backup", "restore", "--yes", str(truncated)) == f"Error: {truncated}: not a valid gzip backup"

    assert json.loads(ok(path, "domain", "list", "--json"))[0]["name"] == "example.test"
    assert "restored" in ok(path, "backup", "restore", "--yes", str(snapshot))
    assert json.loads(ok(path, "domain", "list", "--json"))[0]["name"] == "example.test"


def _every_table(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        tables = [  # a virtual table's rows are its shadow tables' (the search index's cannot be listed)
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY 1"
            )
        ]
        found = {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr) for table in tables}
    conn.close()
    return found


def test_a_restore_brings_back_every_table_of_every_feature(tmp_path: Path) -> None:
    """Sieve scripts, vacation tracking, grants, CardDAV sync state, follow-ups, reports, MTA-STS policies, TLS
    sessions… — a snapshot is the whole database, so a restore after the account's purge gives back every row."""
    path = tmp_path / "relentad.toml"
    ok(path, "init", "--hostname", "mx.example.test")
    loaded = config_mod.load(path)
    conn = database_with(loaded.database_path, "a@example.test", "b@example.test")
    now = time.time()
    with db.transaction(conn):
        use_every_feature(conn, 1, 2, now)
        userscripts.put(conn, 1, "mine", "keep;\r\n", max_scripts=10, max_size=10_000)
        report = conn.execute(
            "INSERT INTO reports (kind, org, report_id, domain, begin, end, received) VALUES ('dmarc', 'o', 'r',"
            " 'example.test', ?, ?, ?)",
            (now, now, now),
        ).lastrowid
        conn.execute(
            "INSERT INTO dmarc_records (report_id, source_ip, count, disposition, dkim, spf, header_from,"
            " envelope_from) VALUES (?, '192.0.2.9', 1, 'none', 'pass', 'pass', 'example.test', 'example.test')",
            (report,),
        )
        conn.execute(
            "INSERT INTO mta_sts_policies (domain, policy_id, policy, mode, mx, max_age, fetched, expires)"
            " VALUES ('far.test', 'id1', 'version: STSv1', 'enforce', 'mx.far.test', 86400, ?, ?)",
            (now, now + 86400),
        )
        conn.execute(
            "INSERT INTO tlsrpt_results (at, domain, policy_type, result) VALUES (?, 'far.test', 'sts', 'success')",
            (now,),
        )
        retention.terminate(conn, 2, now=now)
    conn.close()
    before = _every_table(loaded.database_path)
    for table in ("sieve_scripts", "sieve_vacation", "carddav_sync", "crm_followup_settings", "reports"):
        assert before[table], table
    snapshot = backup.create(loaded)
    conn = db.connect(loaded.database_path)
    with db.transaction(conn):
        retention.purge_account(conn, 2)
        retention.terminate(conn, 1)
        retention.purge_account(conn, 1)
        conn.execute("DELETE FROM reports")
    conn.close()
    assert _every_table(loaded.database_path) != before
    backup.restore(loaded, snapshot.path)
    assert _every_table(loaded.database_path) == before


def test_a_snapshot_killed_half_way_leaves_no_plaintext_copy_for_good(tmp_path: Path) -> None:
    """SIGKILL during ``backup create`` (reproduced against a 60 MB database) left ``.tmp-*/snapshot.db`` and
    ``snapshot.db.gz`` in the backup folder, unencrypted with ``[backup] recipients`` set, and nothing ever removed
    them; the next snapshot does, under the folder's lock (a snapshot still running holds it)."""
    path = tmp_path / "relentad.toml"
    ok(path, "init", "--hostname", "mx.example.test")
    loaded = config_mod.load(path)
    folder = backup.backup_dir(loaded)
    left = folder / ".tmp-k1ll3d"  # what the killed run left: its temporary folder, as tempfile names it
    left.mkdir(parents=True)
    shutil.copyfile(loaded.database_path, left / "snapshot.db")
    (left / "snapshot.db.gz").write_bytes(b"half")
    other = folder / ".tmp-of-another-program"  # [backup] dir may be a folder other programs use as well
    other.mkdir()
    (other / "theirs.txt").write_text("not ours\n")
    made = backup.create(loaded)
    assert sorted(p.name for p in folder.iterdir()) == sorted([made.path.name, ".lock", other.name])
    assert (other / "theirs.txt").is_file()


def test_a_restore_killed_half_way_leaves_no_old_database_for_good(tmp_path: Path) -> None:
    """A restore stages the decompressed (decrypted) backup in ``<data_dir>/.restore-*``; killed there, the folder
    stayed for good: an older database, maybe with mail purged since. The next restore removes it."""
    path = tmp_path / "relentad.toml"
    ok(path, "init", "--hostname", "mx.example.test")
    loaded = config_mod.load(path)
    snapshot = backup.create(loaded)
    left = loaded.data_dir / ".restore-k1ll3d"
    left.mkdir()
    shutil.copyfile(loaded.database_path, left / "relentad.db")
    backup.restore(loaded, snapshot.path)
    assert not left.exists()


def test_a_snapshot_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """``backup create`` from an admin's shell (umask 022) wrote the mail of every account world-readable (0644 in a
    0755 folder): the daemon's unit sets UMask=0077, the CLI has no such setting. Now 0600 in a 0700 folder."""
    path = tmp_path / "relentad.toml"
    ok(path, "init", "--hostname", "mx.example.test")
    loaded = config_mod.load(path)
    elsewhere = dataclasses.replace(loaded, backup=BackupConfig(dir=str(tmp_path / "srv" / "backups")))
    previous = os.umask(0o022)
    try:
        made = backup.create(elsewhere)
    finally:
        os.umask(previous)
    assert made.path.parent == tmp_path / "srv" / "backups"
    assert (made.path.stat().st_mode & 0o777, made.path.parent.stat().st_mode & 0o777) == (0o600, 0o700)


def test_a_snapshot_leaves_the_search_index_out_and_a_restore_rebuilds_it(tmp_path: Path) -> None:
    """The full-text index is rebuilt from the mail (and would add about two thirds to a compressed snapshot): the
    copy has it empty, its pages zeroed, the watermark at 0; the live database keeps it."""
    path = tmp_path / "relentad.toml"
    ok(path, "init", "--hostname", "mx.example.test")
    loaded = config_mod.load(path)
    conn = database_with(loaded.database_path, "a@example.test")
    with db.transaction(conn):
        blob = messages.store_blob(conn, message("quarterly", "zebra-stripes report\r\n"))
        inbox = find(conn, 1, "INBOX")
        assert inbox is not None
        messages.append(conn, inbox, blob, prefix=b"", size=100, internaldate=time.time())
    assert indexer.step(conn, conn) == 1
    conn.close()
    snapshot = backup.create(loaded)
    assert "indexed 1 of 1" in ok(path, "search-index", "status")
    backup.restore(loaded, snapshot.path)
    conn = db.connect(loaded.database_path)
    assert searchindex.state(conn)[0] == 0 and searchindex.size(conn) < 100
    hits = "SELECT rowid FROM search_body WHERE search_body MATCH '\"zeb\"'"
    assert conn.execute(hits).fetchall() == []
    assert indexer.step(conn, conn) == 1 and [row[0] for row in conn.execute(hits)] == [blob]
    conn.close()
    assert "indexed 1 of 1" in ok(path, "search-index", "status")
