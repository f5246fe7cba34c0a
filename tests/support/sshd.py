"""A real OpenSSH server on loopback for the off-site backup tests: ``/usr/sbin/sshd -D`` with its own config,
a generated host key and an authorized_keys file, logging in the user running the tests (root in CI).

Nothing is skipped: without sshd or ssh-keygen the fixture fails loudly (scripts/test installs openssh-server).
As root, sshd insists on its privilege separation folder (/run/sshd, made by the service unit, which a container
never starts); it is made here when missing.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from tests.support import processes
from tests.support.daemon import free_port, wait_for_port

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"


@dataclass
class Sshd:
    port: int
    user: str
    folder: Path
    identity: Path  # the client's private key (its public half is authorized)
    known_hosts: Path  # the server's host key, as [127.0.0.1]:port
    remote: Path  # an empty folder to copy to

    def url(self, path: Path | None = None) -> str:
        return f"sftp://{self.user}@{HOST}:{self.port}{path or self.remote}"


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def run_sshd(folder: Path) -> Generator[Sshd, None, None]:
    """Start sshd in ``folder``; yields it, stops it afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key", "other_host_key"):
        _keygen(folder / name)
    (folder / "authorized_keys").write_bytes((folder / "client_key.pub").read_bytes())
    port = free_port(HOST)
    host_key = (folder / "host_key.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[{HOST}]:{port} {host_key[0]} {host_key[1]}\n")
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress {HOST}\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile none\nUsePAM no\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = (folder / "sshd.log").open("wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(HOST, port, proc=proc)  # type: ignore[arg-type]
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"sshd did not start: {(folder / 'sshd.log').read_text()}") from exc
        remote = folder / "remote"
        remote.mkdir()
        yield Sshd(port, getpass.getuser(), folder, folder / "client_key", folder / "known_hosts", remote)
    finally:
        processes.stop(proc, timeout=10)
        log.close()
