"""Encrypted and off-site backups: snapshots encrypted to ``[backup] recipients`` decrypt with Debian's ``age``
and a file ``age -r`` made restores with ``backup restore --identity`` (interop both ways); a wrong key, a tampered
or truncated file gets one line; each new snapshot is copied to a real sshd on loopback over sftp (temporary
name, then renamed) and rotated there like here; a failed copy is one line, recorded, and doctor warns."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from relentad import config as config_mod
from relentad import doctor, metrics
from relentad.cli import main
from relentad.lifecycle import backup, offsite
from tests.e2e.test_cli import fails, ok
from tests.support.sshd import Sshd, run_sshd

AGE = "/usr/bin/age"  # Debian's age (scripts/test installs it); the test fails, never skips, without it


def invoke(config: Path, *args: str) -> str:
    """The CLI in this process (as the installed command, faster than a subprocess)."""
    result = CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def refused(config: Path, *args: str) -> str:
    """The CLI in this process, failing: exit status 1 and one line on stderr (no traceback)."""
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exit_code == 1 and isinstance(result.exception, (SystemExit, type(None))), result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def configure(path: Path, **backup_settings: object) -> None:
    """Set ``[backup]`` keys in the generated configuration file (each key's default line is replaced)."""
    text = path.read_text()
    for key, value in backup_settings.items():
        rendered = json.dumps(value)  # a TOML string or list of strings looks the same
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {rendered}".replace("\\", "\\\\"), text, count=1)
        assert count == 1, key
    path.write_text(text)


@pytest.fixture
def server(tmp_path: Path) -> Path:
    path = tmp_path / "relentad.toml"
    ok(path, "init", "--hostname", "mx.example.test")  # the installed command once (the others in this process)
    invoke(path, "domain", "add", "example.test")
    return path


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    """A key made by ``relentad backup keygen`` (its file and recipient)."""
    keyfile = tmp_path / "offline" / "backup-key.txt"
    keyfile.parent.mkdir()
    result = CliRunner().invoke(main, ["backup", "keygen", str(keyfile)])
    assert result.exit_code == 0, result.output
    [recipient] = re.findall(r"Public key: (age1\w+)", result.output)
    assert "OFF this server" in result.output
    return keyfile, recipient


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    yield from run_sshd(tmp_path / "sshd")


def domains_in(database: Path) -> list[str]:
    conn = sqlite3.connect(database)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [str(row[0]) for row in conn.execute("SELECT name FROM domains")]
    finally:
        conn.close()


def test_keygen_writes_a_private_identity_the_age_tool_reads(key: tuple[Path, str], tmp_path: Path) -> None:
    keyfile, recipient = key
    assert keyfile.stat().st_mode & 0o777 == 0o600
    lines = keyfile.read_text().splitlines()
    assert lines[1] == f"# public key: {recipient}" and lines[2].startswith("AGE-SECRET-KEY-1")
    assert subprocess.run(["age-keygen", "-y", str(keyfile)], capture_output=True, text=True).stdout.strip() == (
        recipient
    )
    again = CliRunner().invoke(main, ["backup", "keygen", str(keyfile)])
    assert again.exit_code == 1 and "File exists" in again.output, "an existing key is never overwritten"


def test_encrypted_snapshot_interoperates_with_age_both_ways(
    server: Path, key: tuple[Path, str], tmp_path: Path
) -> None:
    keyfile, recipient = key
    made = Path(invoke(server, "backup", "create").split("\t")[0])  # before recipients: unencrypted, as before
    plain = tmp_path / made.name  # (the next snapshot of the day rotates it away)
    shutil.copyfile(made, plain)
    configure(server, recipients=[recipient])
    out = invoke(server, "backup", "create")
    sealed = Path(out.split("\t")[0])
    assert sealed.name.endswith(".db.gz.age") and out.strip().endswith("verified, encrypted")
    assert sealed.read_bytes().startswith(b"age-encryption.org/v1\n-> X25519 ")
    listed = [line.split("\t")[0] for line in invoke(server, "backup", "list").splitlines()]
    assert listed == [str(sealed)], "the newest of the day, encrypted or not"

    # our file, the standard tool: age -d -i key.txt FILE | gunzip > relentad.db
    decrypted = subprocess.run([AGE, "-d", "-i", str(keyfile), str(sealed)], capture_output=True, check=True).stdout
    (tmp_path / "by-age.db").write_bytes(gzip.decompress(decrypted))
    assert domains_in(tmp_path / "by-age.db") == ["example.test"]

    # the standard tool's file, our restore
    theirs = tmp_path / "theirs.db.gz.age"
    subprocess.run([AGE, "-r", recipient, "-o", str(theirs), str(plain)], check=True)
    invoke(server, "domain", "add", "later.example.test")
    assert "restored" in ok(server, "backup", "restore", "--yes", str(theirs), "--identity", str(keyfile))
    assert domains_in(config_mod.load(server).database_path) == ["example.test"]

    # refused, one line each, and the live database untouched
    other = tmp_path / "other-key.txt"
    subprocess.run(["age-keygen", "-o", str(other)], capture_output=True, check=True)
    assert "give the key file with --identity" in fails(server, "backup", "restore", "--yes", str(sealed))
    assert "no identity matches" in refused(server, "backup", "restore", "--yes", str(sealed), "--identity", str(other))
    data = sealed.read_bytes()
    for name, broken, says in (
        ("payload", data[:-100] + bytes([data[-100] ^ 1]) + data[-99:], "does not authenticate"),
        ("truncated", data[: len(data) - 20], "does not authenticate"),
        ("header", data.replace(b"\n---", b"\n-> grease\n\n---", 1), "MAC"),  # a stanza added: MAC fails
    ):
        bad = tmp_path / f"{name}.db.gz.age"
        bad.write_bytes(broken)
        assert says in refused(server, "backup", "restore", "--yes", str(bad), "--identity", str(keyfile)), name
    armored = tmp_path / "armored.db.gz.age"
    subprocess.run([AGE, "-a", "-r", recipient, "-o", str(armored), str(plain)], check=True)
    assert "ASCII-armored" in refused(server, "backup", "restore", "--yes", str(armored), "--identity", str(keyfile))
    assert domains_in(config_mod.load(server).database_path) == ["example.test"]
    assert "restored" in invoke(server, "backup", "restore", "--yes", str(sealed), "--identity", str(keyfile))
    assert domains_in(config_mod.load(server).database_path) == ["example.test"]


def test_config_refuses_offsite_without_encryption_and_bad_keys(server: Path, key: tuple[Path, str]) -> None:
    keyfile, recipient = key
    configure(server, offsite="sftp://backup@127.0.0.1:2222/srv/b", offsite_identity=str(keyfile))
    configure(server, offsite_known_hosts=str(keyfile))
    line = refused(server, "config", "check")
    assert "[backup] offsite needs recipients: snapshots leave the machine only encrypted" in line
    configure(server, recipients=[recipient.upper()])
    assert "is not an age X25519 recipient" in refused(server, "config", "check")
    configure(server, recipients=[recipient[:-1] + ("q" if recipient[-1] != "q" else "p")])
    assert "checksum" in refused(server, "config", "check")
    configure(server, recipients=[recipient], offsite="ftp://backup@example.org/x")
    assert "is not an sftp://user@host:port/path URL" in refused(server, "config", "check")
    configure(server, offsite="sftp://127.0.0.1/x")
    assert "name the user" in refused(server, "config", "check")
    configure(server, offsite="sftp://backup@127.0.0.1/srv/b", offsite_known_hosts="missing_known_hosts")
    assert "offsite_known_hosts: no such file" in refused(server, "config", "check")


def test_offsite_copy_rotation_and_failure_over_real_sshd(
    server: Path, key: tuple[Path, str], sshd: Sshd, tmp_path: Path
) -> None:
    keyfile, recipient = key
    configure(
        server,
        recipients=[recipient],
        offsite=sshd.url(),
        offsite_identity=str(sshd.identity),
        offsite_known_hosts=str(sshd.known_hosts),
        keep_daily=2,
        keep_weekly=1,
    )
    config = config_mod.load(server)
    assert doctor.check_offsite(config)[0].status == "warn", "no copy yet"

    # a stale temporary name of ours (an upload cut off earlier) and a file of someone else's
    stale = sshd.remote / ".tmp-relentad-20200101T000000000000Z.db.gz.age"
    stale.write_bytes(b"half")
    (sshd.remote / "notes.txt").write_text("not ours\n")

    out = invoke(server, "backup", "create")
    sealed = Path(out.split("\t")[0])
    assert f"copied to {sshd.url()}" in out
    copy = sshd.remote / sealed.name
    assert copy.read_bytes() == sealed.read_bytes()
    assert sorted(p.name for p in sshd.remote.iterdir()) == sorted([sealed.name, "notes.txt"])
    listed = invoke(server, "backup", "list", "--offsite", "--json")
    assert [entry["name"] for entry in json.loads(listed)] == [sealed.name]
    assert [f.size for f in offsite.list_remote(config)] == [sealed.stat().st_size]
    assert doctor.check_offsite(config)[0].status == "ok"
    decrypted = subprocess.run([AGE, "-d", "-i", str(keyfile), str(copy)], capture_output=True, check=True).stdout
    (tmp_path / "copy.db").write_bytes(gzip.decompress(decrypted))
    assert domains_in(tmp_path / "copy.db") == ["example.test"]

    # rotation there as here: 2 days and 1 week; older copies go, the one just made and other files stay
    now = datetime.now(UTC)
    previous: list[str] = []
    for days in (20, 10, 1):
        snapshot = backup.create(config, now=now - timedelta(days=days))
        assert offsite.copy(config, snapshot, now=now) == previous
        previous = [snapshot.path.name]
    remote = {p.name for p in sshd.remote.iterdir()}
    assert remote == {"notes.txt", sealed.name, snapshot.path.name}, "today's, yesterday's; older ones went"

    # the daemon's daily copy: in a worker thread, counted
    copied = metrics.BACKUP_OFFSITE.labels("copied")._value.get()
    asyncio.run(backup.copy_offsite(config, backup.create(config)))
    assert metrics.BACKUP_OFFSITE.labels("copied")._value.get() == copied + 1

    # a host key that is not the known one: one line, recorded, the local snapshot kept, doctor warns
    shutil.copyfile(sshd.folder / "other_host_key.pub", tmp_path / "wrong.pub")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} " + " ".join((tmp_path / "wrong.pub").read_text().split()[:2]) + "\n")
    configure(server, offsite_known_hosts=str(wrong))
    line = fails(server, "backup", "create")
    assert line.startswith(f"Error: {sshd.url()}: ") and "verification failed" in line
    broken = config_mod.load(server)
    assert backup.list_snapshots(broken)[0].path.name not in {p.name for p in sshd.remote.iterdir()}
    state = offsite.read_state(broken)
    assert "verification failed" in str(state["last_error"])
    late = doctor.check_offsite(broken, now=float(state["last_success"]) + 3 * 86400)  # type: ignore[arg-type]
    assert late[0].status == "warn" and "days old; last error" in late[0].message

    # and its failure is logged and counted, never raised
    before = metrics.BACKUP_OFFSITE.labels("failed")._value.get()
    asyncio.run(backup.copy_offsite(broken, backup.list_snapshots(broken)[0]))
    assert metrics.BACKUP_OFFSITE.labels("failed")._value.get() == before + 1


def test_a_server_that_never_answers_costs_offsite_timeout_and_one_line(server: Path, key: tuple[Path, str]) -> None:
    """A TCP peer that accepts and says nothing (no SSH banner): sftp is stopped at ``offsite_timeout``."""
    keyfile, recipient = key
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        configure(
            server,
            recipients=[recipient],
            offsite=f"sftp://backup@127.0.0.1:{port}/b",
            offsite_identity=str(keyfile),  # never read: no server ever asks
            offsite_known_hosts=str(keyfile),
            offsite_timeout="1s",
        )
        line = refused(server, "backup", "create")
    assert line == f"Error: sftp://backup@127.0.0.1:{port}/b: sftp did not finish within 1 s"


def test_offsite_refuses_an_unencrypted_file(server: Path, key: tuple[Path, str]) -> None:
    """Belt and braces beside the configuration check: copy() itself never sends a plaintext snapshot."""
    keyfile, recipient = key
    configure(
        server,
        recipients=[recipient],
        offsite="sftp://backup@127.0.0.1:9/b",  # never reached
        offsite_identity=str(keyfile),
        offsite_known_hosts=str(keyfile),
    )
    config = config_mod.load(server)
    plain = backup.create(dataclasses.replace(config, backup=dataclasses.replace(config.backup, recipients=[])))
    with pytest.raises(offsite.OffsiteError, match="not encrypted"):
        offsite.copy(config, plain)
    assert "not encrypted" in str(offsite.read_state(config)["last_error"])


def test_key_files_whose_names_hold_spaces_and_percent_signs(
    server: Path, key: tuple[Path, str], sshd: Sshd, tmp_path: Path
) -> None:
    """ssh reads ``-o`` values as configuration lines: a space split the known_hosts path into two files (the copy
    failed with "Host key verification failed." against the right key) and ``%d`` was expanded as a token."""
    recipient = key[1]
    folder = tmp_path / "ssh keys %d"
    folder.mkdir()
    shutil.copyfile(sshd.known_hosts, folder / "known hosts")
    shutil.copyfile(sshd.identity, folder / "client key")
    (folder / "client key").chmod(0o600)
    configure(
        server,
        recipients=[recipient],
        offsite=sshd.url(),
        offsite_identity=str(folder / "client key"),
        offsite_known_hosts=str(folder / "known hosts"),
    )
    out = invoke(server, "backup", "create")
    assert f"copied to {sshd.url()}" in out
    assert [p.name for p in sshd.remote.iterdir()] == [Path(out.split("\t")[0]).name]


def until_closed(connection: socket.socket) -> bytes:
    """What the peer reads until ssh closes the connection; TimeoutError when it stays open 20 s (ssh's own
    timeouts, ConnectTimeout=30 and the keepalives' 60 s, come later)."""
    connection.settimeout(20)
    received = b""
    while chunk := connection.recv(4096):
        received += chunk
    return received


def test_the_daemon_stopping_ends_an_off_site_copy_under_way(server: Path, key: tuple[Path, str]) -> None:
    """The daemon cancels its daily job when it stops; the sftp run went on in the worker thread, and the event
    loop's close waited for that thread (up to offsite_timeout; systemd SIGKILLs after TimeoutStopSec). Now the
    cancellation ends sftp and its ssh: the peer sees the connection close (before, ConnectTimeout did, at 30 s)."""
    recipient = key[1]
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        configure(
            server,
            recipients=[recipient],
            offsite=f"sftp://backup@127.0.0.1:{port}/b",
            offsite_identity=str(key[0]),
            offsite_known_hosts=str(key[0]),
            offsite_timeout="45s",  # what bounded the wait before (the default is an hour)
        )
        config = config_mod.load(server)
        snapshot = backup.create(config)
        silent.settimeout(60)  # a guard against a hang, not a measurement

        async def stop_during_copy() -> None:
            copying = asyncio.ensure_future(backup.copy_offsite(config, snapshot))
            connection, _ = await asyncio.to_thread(silent.accept)  # ssh has connected: the copy is under way
            copying.cancel()
            with pytest.raises(asyncio.CancelledError):
                await copying
            with connection:  # to the end of the stream (maybe after ssh's banner)
                await asyncio.to_thread(until_closed, connection)

        asyncio.run(stop_during_copy())
    assert "stopped (the daemon is shutting down)" in str(offsite.read_state(config)["last_error"])


def test_ctrl_c_of_backup_create_ends_its_sftp(server: Path, key: tuple[Path, str]) -> None:
    """sftp runs in a session of its own (so its deadline ends it with its ssh), which the terminal's SIGINT does
    not reach: Ctrl-C ended ``backup create`` and left sftp connected (uploading, with no deadline any more). The
    peer sends an SSH banner and then nothing, so only a kill ends the connection (no ssh timeout applies)."""
    with socket.socket() as peer:
        peer.bind(("127.0.0.1", 0))
        peer.listen()
        peer.settimeout(60)  # a guard against a hang, not a measurement
        configure(
            server,
            recipients=[key[1]],
            offsite=f"sftp://backup@127.0.0.1:{peer.getsockname()[1]}/b",
            offsite_identity=str(key[0]),
            offsite_known_hosts=str(key[0]),
        )
        command = [sys.executable, "-m", "relentad", "--config", str(server), "backup", "create"]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as cli:
            connection, _ = peer.accept()  # sftp's ssh is connected: the snapshot is made, the copy under way
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.2p1 silent\r\n")
                cli.send_signal(signal.SIGINT)
                cli.communicate(timeout=60)
                until_closed(connection)
    assert cli.returncode != 0


def test_listing_a_destination_that_does_not_exist_changes_nothing(
    server: Path, key: tuple[Path, str], sshd: Sshd
) -> None:
    """``backup list --offsite`` made the folder it was asked to list (the copy's mkdir): a look changed the server."""
    missing = sshd.remote / "not-yet"
    configure(
        server,
        recipients=[key[1]],
        offsite=sshd.url(missing),
        offsite_identity=str(sshd.identity),
        offsite_known_hosts=str(sshd.known_hosts),
    )
    assert "No such file" in refused(server, "backup", "list", "--offsite")
    assert not missing.exists()
