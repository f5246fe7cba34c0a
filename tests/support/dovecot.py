"""A real Dovecot IMAP server on loopback: the "old provider" that ``relentad import EMAIL imaps://…`` moves mail
from. Its own configuration, a passwd-file user, Maildir storage, a certificate from a test CA, and the namespace
many hosted servers still have (Courier's ``INBOX.`` prefix with ``.`` as the delimiter), with Sent and Junk
marked special-use (RFC 6154).

Dovecot's login processes refuse to run as root, so as root (CI) they run as the package's ``dovenull`` and its
internal processes as ``dovecot``, and the mail belongs to ``dovecot``; as any other user (a developer's machine)
everything runs as that user. Nothing is skipped: without dovecot the fixture fails (scripts/test installs
dovecot-imapd).
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from tests.support import processes
from tests.support.daemon import free_port, wait_for_port
from tests.support.pki import TestCA

DOVECOT = "/usr/sbin/dovecot"
HOST = "127.0.0.1"
LOGIN, PASSWORD = "old@example.org", "correct horse battery"


@dataclass
class Dovecot:
    port: int  # IMAP with STARTTLS
    imaps_port: int
    ca: Path  # the CA its certificate is issued by (relentad's --cafile)
    folder: Path

    def url(self, *, implicit_tls: bool = False, login: str = LOGIN) -> str:
        if implicit_tls:
            return f"imaps://{login}@{HOST}:{self.imaps_port}"
        return f"imap://{login}@{HOST}:{self.port}"

    def client(self) -> imaplib.IMAP4:
        """A logged-in imaplib client (STARTTLS, the CA trusted), to fill the old mailbox and look at it."""
        client = imaplib.IMAP4(HOST, self.port, timeout=30)
        client.starttls(ssl.create_default_context(cafile=str(self.ca)))
        client.login(LOGIN, PASSWORD)
        return client


def _users() -> tuple[str, str, str, int, int]:
    """(login user, internal user, internal group, mail uid, mail gid) for who runs the tests."""
    if os.geteuid() == 0:
        owner = pwd.getpwnam("dovecot")
        return "dovenull", "dovecot", grp.getgrgid(owner.pw_gid).gr_name, owner.pw_uid, owner.pw_gid
    me = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(os.getegid()).gr_name
    return me.pw_name, me.pw_name, group, me.pw_uid, os.getegid()


def run_dovecot(tokeninfo: str = "") -> Generator[Dovecot, None, None]:
    """Start Dovecot in a folder of its own; yields it, stops it and removes the folder afterwards. Not under
    pytest's tmp_path: that is private to the user running the tests, and the mail user must reach its mail."""
    if not os.path.exists(DOVECOT):
        raise RuntimeError(f"{DOVECOT} is missing: install dovecot-imapd (scripts/test does)")
    folder = Path(tempfile.mkdtemp(prefix="relentad-dovecot-"))
    folder.chmod(0o755)
    try:
        yield from _run(folder, tokeninfo)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(folder: Path, tokeninfo: str) -> Generator[Dovecot, None, None]:
    ca = TestCA(folder / "ca")
    cert, key = ca.issue("localhost", ips=(HOST,))
    login_user, internal_user, internal_group, uid, gid = _users()
    mail = folder / "mail"
    mail.mkdir()
    os.chown(mail, uid, gid)
    port, imaps_port = free_port(HOST), free_port(HOST)
    (folder / "users").write_text(f"{LOGIN}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{mail / LOGIN}\n")
    config = folder / "dovecot.conf"
    config.write_text(
        f"""base_dir = {folder / "run"}
state_dir = {folder / "state"}
instance_name = relentad-test-{port}
listen = {HOST}
protocols = imap
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 0
log_path = {folder / "dovecot.log"}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain login{" xoauth2 oauthbearer" if tokeninfo else ""}
disable_plaintext_auth = yes
{_oauth2(folder, tokeninfo)}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder / "users"}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {folder / "users"}
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = .
  prefix = INBOX.
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {HOST}
    port = {port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
"""
    )
    out = (folder / "dovecot.out").open("wb")
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(HOST, port, proc=proc)
            wait_for_port(HOST, imaps_port, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            logs = (folder / "dovecot.out").read_text() + _read(folder / "dovecot.log")
            raise RuntimeError(f"dovecot did not start: {logs}") from exc
        yield Dovecot(port, imaps_port, ca.pem, folder)
    finally:
        processes.stop(proc, timeout=10)
        out.close()


def _oauth2(folder: Path, tokeninfo: str) -> str:
    """With ``tokeninfo`` (an OAuth 2.0 token-info URL ending in ``access_token=``), a passdb that takes bearer
    tokens (XOAUTH2, OAUTHBEARER) and asks that URL whose they are, as Dovecot does before Gmail or Microsoft."""
    if not tokeninfo:
        return ""
    settings = folder / "oauth2.conf.ext"
    settings.write_text(f"tokeninfo_url = {tokeninfo}\nusername_attribute = email\n")
    return f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {settings}\n}}\n"


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
