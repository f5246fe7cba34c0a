"""A full mbsync (Debian's isync) sync of an account both ways over IMAPS: everything pulled byte-identical,
then a flag change and a new message made locally appear on the server."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import PASSWORD, Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import client, imap_daemon, message

pytestmark = pytest.mark.skipif(shutil.which("mbsync") is None, reason="mbsync (isync) is not installed")


@pytest.fixture
def relentad(tmp_path: Path, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path / "mx", dns_server.nameserver, plaintext=False)
    yield daemon
    daemon.stop()


def mbsync(config: Path) -> None:
    result = subprocess.run(["mbsync", "-c", str(config), "-a"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def maildir_messages(folder: Path) -> list[bytes]:
    """The messages of a Maildir folder as the server holds them: mbsync stores LF line ends locally and adds
    an X-TUID field to find the messages it copied; both are undone here."""
    out = []
    for sub in ("cur", "new"):
        for path in (folder / sub).iterdir():
            lines = path.read_bytes().split(b"\n")
            out.append(b"\r\n".join(line for line in lines if not line.startswith(b"X-TUID: ")))
    return sorted(out)


def test_mbsync_both_ways(relentad: Daemon, tmp_path: Path) -> None:
    imap = client_tls(relentad)
    sent = [message(f"sync {n}", f"Body {n}\r\n") for n in range(3)]
    for body in sent:
        imap.append("INBOX", None, None, body)
    imap.append("Archive", "(\\Seen)", None, message("archived"))
    imap.logout()
    local = tmp_path / "mail"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f"""IMAPAccount relentad
Host localhost
Port {relentad.imaps_port}
User alice@example.test
Pass "{PASSWORD}"
SSLType IMAPS
CertificateFile {relentad.root / "data" / "tls" / "cert.pem"}
AuthMechs PLAIN

IMAPStore remote
Account relentad

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
Sync All
SyncState *
"""
    )
    mbsync(config)
    assert maildir_messages(local / "INBOX") == sorted(relentad.messages("alice@example.test"))
    assert len(maildir_messages(local / "Archive")) == 1
    assert (local / "Sent").is_dir() and (local / "Junk").is_dir()
    # Flag a message locally (Maildir info ":2,F") and add a new one, then sync again.
    first = sorted((local / "INBOX" / "cur").iterdir()) + sorted((local / "INBOX" / "new").iterdir())
    target = first[0]
    stem = target.name.split(":2,")[0]
    target.rename(local / "INBOX" / "cur" / f"{stem}:2,FS")
    new = message("written locally")
    (local / "INBOX" / "new" / "1700000000.local.host").write_bytes(new)
    mbsync(config)
    on_server = relentad.messages("alice@example.test")
    assert any(b"written locally" in m for m in on_server)
    flags = relentad.query(
        """SELECT m.flags FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
           JOIN accounts a ON a.id = b.account_id WHERE a.email = 'alice@example.test' AND b.name = 'INBOX'"""
    )
    assert sum(1 for r in flags if r["flags"] & 4 and r["flags"] & 1) == 1  # \Flagged and \Seen on one message


def client_tls(daemon: Daemon):  # type: ignore[no-untyped-def]
    import imaplib

    from tests.support.imap import tls_client_context

    conn = imaplib.IMAP4_SSL(daemon.host, daemon.imaps_port, ssl_context=tls_client_context(), timeout=15)
    conn.login("alice@example.test", PASSWORD)
    return conn


_ = client
