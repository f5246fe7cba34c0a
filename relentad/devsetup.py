"""``relentad init``: write a configuration, make the data folder and the database, and for ``--dev`` a demo.

The dev setup is what ``scripts/run`` uses: loopback only, unprivileged ports, a self-signed certificate, the
domain ``example.test`` and the user ``demo@example.test`` with a generated password, kept in
``<data>/demo-password`` (mode 600) so a second run can show it again. Invariant: an existing configuration is
never overwritten.
"""

from __future__ import annotations

import socket
import sqlite3
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import clientconfig, tls
from . import config as config_mod
from .auth import passwords
from .errors import AlreadyExists, InvalidInput
from .store import accounts, db

DEV_DOMAIN = "example.test"
DEV_USER = f"demo@{DEV_DOMAIN}"
DEV_LISTEN = {
    "smtp": "127.0.0.1:2525",
    "submission": "127.0.0.1:2587",
    "submissions": "127.0.0.1:2465",
    "imap": "127.0.0.1:2143",
    "imaps": "127.0.0.1:2993",
    "managesieve": "127.0.0.1:24190",
    "pop3": "127.0.0.1:2110",
    "pop3s": "127.0.0.1:2995",
    "metrics": "127.0.0.1:2909",
    "https": "127.0.0.1:2443",
    "http": "127.0.0.1:2080",
}
# What the self-signed certificate names: the host, and the web names `relentad domain dns` points at for the demo
# domain (so `curl --resolve` checks a name it covers)
DEV_WEB_NAMES = clientconfig.web_names(DEV_DOMAIN)  # clientconfig, not dnsrecords: no dkimpy at CLI start-up
PASSWORD_FILE = "demo-password"  # noqa: S105 - a file name, not a password


@dataclass
class InitResult:
    config: config_mod.Config
    created_config: bool
    password: str | None = None
    messages: list[str] = field(default_factory=list)


def initialise(config_path: Path, *, dev: bool, hostname: str | None = None, data_dir: str | None = None) -> InitResult:
    """Create what is missing; with ``dev`` also the demo domain and user. Safe to run again with ``dev``."""
    created = False
    if config_path.exists():
        if not dev:
            raise AlreadyExists(f"{config_path} exists; edit it, or remove it to start over")
    else:
        name = hostname or ("localhost" if dev else socket.getfqdn())
        problem = config_mod.check_hostname(name)
        if problem:
            raise InvalidInput(
                f"--hostname: {problem}" if hostname else f"this machine's name: {problem} (give --hostname)"
            )
        overrides: dict[str, dict[str, object]] = {"server": {"hostname": name}}
        if data_dir:
            overrides["server"]["data_dir"] = data_dir
        if dev:
            overrides["server"]["postmaster"] = DEV_USER  # the user it creates below
            overrides["listen"] = dict(DEV_LISTEN)
            overrides["tls"] = {"cert": "data/tls/cert.pem", "key": "data/tls/key.pem"}
        else:
            overrides["listen"] = {"submissions": "", "imaps": "", "pop3s": ""}
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(config_mod.example_toml(overrides), encoding="utf-8")
        created = True
    config = _load_creating_tls(config_path, dev)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    conn = db.open_database(config.database_path)
    result = InitResult(config, created)
    result.messages.append(f"{'wrote' if created else 'using'} {config_path}")
    result.messages.append(f"database {config.database_path}")
    try:
        if dev:
            result.password = _ensure_demo(conn, config)
            result.messages += connection_help(config, result.password)
    finally:
        conn.close()
    return result


def connection_help(config: config_mod.Config, password: str) -> list[str]:
    """What to tell someone who just started the dev server: where to connect and a first message to send."""
    smtp = config.listen.smtp
    return [
        "",
        f"  domain    {DEV_DOMAIN}",
        f"  user      {DEV_USER}",
        f"  password  {password}",
        f"  SMTP (MX) {smtp}   (STARTTLS with a self-signed certificate)" if config.tls_enabled else f"  SMTP {smtp}",
        *_imap_help(config),
        "",
        "  send a first message:",
        f"    swaks --server {smtp} --from friend@elsewhere.test --to {DEV_USER}",
        *(
            ["  and read it over IMAP:", f"    curl -k 'imaps://{config.listen.imaps}/INBOX;UID=1' -u {DEV_USER}"]
            if config.listen.imaps and config.tls_enabled
            else []
        ),
        *(
            ["  or download it over POP3:", f"    curl -k 'pop3s://{config.listen.pop3s}/1' -u {DEV_USER}"]
            if config.listen.pop3s and config.tls_enabled
            else []
        ),
        *_web_help(config),
        f"  the spam filter files mail once its model has learned {config.spam.min_trained} ham and "
        f"{config.spam.min_trained} spam ([spam] min_trained):",
        f"    relentad --config {config.path or 'relentad.toml'} spam train --global --ham DIR --spam DIR",
        "",
    ]


def _imap_help(config: config_mod.Config) -> list[str]:
    """Where a mail client sends from and reads the demo mailbox (user = the full address, password as above)."""
    lines = []
    if config.listen.submission:
        lines.append(f"  Submit    {config.listen.submission}   (STARTTLS, AUTH with the user and password: sending)")
    if config.listen.submissions and config.tls_enabled:
        lines.append(f"  Submits   {config.listen.submissions}   (implicit TLS)")
    if config.listen.imap:
        lines.append(f"  IMAP      {config.listen.imap}   (STARTTLS; plain LOGIN refused before TLS)")
    if config.listen.imaps and config.tls_enabled:
        lines.append(f"  IMAPS     {config.listen.imaps}   (implicit TLS)")
    if config.listen.managesieve:
        lines.append(f"  Sieve     {config.listen.managesieve}   (ManageSieve, STARTTLS: the user's own filters)")
    if config.listen.pop3:
        lines.append(f"  POP3      {config.listen.pop3}   (STLS; the INBOX only, plain USER/PASS refused before TLS)")
    if config.listen.pop3s and config.tls_enabled:
        lines.append(f"  POP3S     {config.listen.pop3s}   (implicit TLS)")
    return lines


def _web_help(config: config_mod.Config) -> list[str]:
    """How to fetch what mail clients and MTA-STS senders fetch from the web listener."""
    address = config_mod.parse_address(config.listen.https) if config.tls_enabled else None
    if address is None:
        return []
    ip = address[0] or "127.0.0.1"
    name = f"autoconfig.{DEV_DOMAIN}"
    lines = [
        "  mail client set-up (Thunderbird autoconfig) over HTTPS:",
        f"    curl -k --resolve {name}:{address[1]}:{ip} https://{name}:{address[1]}/mail/config-v1.1.xml",
    ]
    if config.web.account_page:
        # By name: the pages answer only for the host name and hosted domains (an IP address as Host is 404).
        host = config.server.hostname.rstrip(".")
        lines += [
            "  the user's own account page (disk use, logins, password, export) in a browser:",
            f"    https://{host}:{address[1]}/account/",
        ]
    return [
        *lines,
        "  the CRM's contacts as an address book (CardDAV; DAVx5, iOS, Thunderbird):",
        f"    https://{ip}:{address[1]}/.well-known/carddav",
    ]


def _load_creating_tls(config_path: Path, dev: bool) -> config_mod.Config:
    """Load the config; in dev mode make the self-signed pair it names if it is missing."""
    data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    tls_section = data.get("tls", {})
    if dev and tls_section.get("cert") and tls_section.get("key"):
        cert = (config_path.parent / tls_section["cert"]).resolve()
        key = (config_path.parent / tls_section["key"]).resolve()
        if not cert.exists() or not key.exists():
            hostname = data.get("server", {}).get("hostname", "localhost")
            tls.make_self_signed(cert, key, [hostname, "localhost", DEV_DOMAIN, *DEV_WEB_NAMES])
    return config_mod.load(config_path)


def _ensure_demo(conn: sqlite3.Connection, config: config_mod.Config) -> str:
    """The demo account's password, creating domain and account the first time."""
    password_file = config.data_dir / PASSWORD_FILE
    with db.transaction(conn):
        if accounts.domain_id(conn, DEV_DOMAIN) is None:
            accounts.add_domain(conn, DEV_DOMAIN)
        existing = conn.execute("SELECT 1 FROM accounts WHERE email = ?", (DEV_USER,)).fetchone()
        if existing is not None and password_file.exists():
            return password_file.read_text(encoding="utf-8").strip()
        password = passwords.generate_password()
        hashed = passwords.hash_password(password)
        if existing is None:
            accounts.add_account(
                conn, DEV_USER, hashed, quota_bytes=config.quota.disk, daily_send=config.quota.daily_send
            )
        else:
            accounts.set_password(conn, DEV_USER, hashed)
    password_file.touch(mode=0o600)
    password_file.write_text(password + "\n", encoding="utf-8")
    return password
