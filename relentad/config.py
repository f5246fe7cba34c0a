"""Configuration: frozen dataclasses, each field documented where it is defined, loaded from TOML.

Invariants:
- Every setting has a default that is safe for production; ``relentad init --dev`` writes overrides for a laptop.
- ``config/relentad.toml`` is generated from the field metadata here (:func:`example_toml`) and a test fails when
  the two drift, so the documented example can never lie.
- Loading collects *all* problems and raises one :class:`ConfigError` listing them, one line each, so an admin
  fixes a file in one go.
- Paths in the file are relative to the folder holding the file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import ssl
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import addrspec
from .attachments import BLOCKED as BLOCKED_ATTACHMENTS
from .errors import InvalidInput
from .store import flags
from .units import format_duration, format_size, parse_duration, parse_size

CONFIG_ENV = "RELENTAD_CONFIG"
DEFAULT_CONFIG = "relentad.toml"


class ConfigError(Exception):
    """A configuration file that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def setting(default: Any, doc: str, kind: str = "plain") -> Any:
    """A dataclass field with its documentation.

    ``kind`` is ``plain``, ``size``, ``duration``, ``durations`` (a list) or ``address``.
    """
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"doc": doc, "kind": kind})
    return field(default=default, metadata={"doc": doc, "kind": kind})


@dataclass(frozen=True)
class ServerConfig:
    """Identity of this server and where it keeps its data."""

    hostname: str = setting(
        "localhost",
        "Fully qualified name of this host: used in the SMTP banner, EHLO, Received headers and as the "
        "authserv-id of Authentication-Results. Must match the MX record and the reverse DNS of the IP.",
    )
    data_dir: str = setting(
        "data",
        "Folder for the database, keys and certificates (relative to this file's folder).",
    )
    log_level: str = setting("info", "Log level: debug, info, warning or error.")
    postmaster: str = setting(
        "",
        "The account (an existing user's address) that gets mail for postmaster@ of every hosted domain without a "
        "postmaster user or alias of its own, and for the bare RCPT TO:<Postmaster> (RFC 5321 §4.5.1 requires "
        "both). Empty: such mail is refused with 550 5.1.1, and relentad doctor warns.",
    )
    event_loop: str = setting(
        "uvloop",
        "Event loop: uvloop (libuv; about 7 % more inbound mail per CPU second, see the README's benchmarks) or "
        "asyncio (the standard library's). uvloop falls back to asyncio where it is not installed. Read at start only.",
    )


@dataclass(frozen=True)
class ListenConfig:
    """Listening addresses, ``host:port`` each; ``*:port`` means every address (IPv4 and IPv6), "" turns it off."""

    smtp: str = setting("*:25", "SMTP for mail from the world (what the MX record points at).", "address")
    submission: str = setting("*:587", "Mail submission with STARTTLS and AUTH (RFC 6409).", "address")
    submissions: str = setting(
        "*:465", "Mail submission over implicit TLS (RFC 8314; not started without [tls] or [acme]).", "address"
    )
    imap: str = setting("*:143", "IMAP with STARTTLS.", "address")
    imaps: str = setting("*:993", "IMAP over implicit TLS (not started without [tls] or [acme]).", "address")
    managesieve: str = setting(
        "*:4190", "ManageSieve (RFC 5804) with STARTTLS: users manage their own Sieve filtering scripts.", "address"
    )
    pop3: str = setting("*:110", "POP3 with STLS: the INBOX for clients that download and delete.", "address")
    pop3s: str = setting("*:995", "POP3 over implicit TLS (not started without [tls] or [acme]).", "address")
    metrics: str = setting("", "Prometheus metrics and /healthz (keep it on loopback).", "address")
    https: str = setting(
        "*:443",
        "HTTPS for what `relentad domain dns` points at: the MTA-STS policy on mta-sts.DOMAIN, mail client set-up "
        "on autoconfig.DOMAIN (Thunderbird) and autodiscover.DOMAIN (Outlook); also the CardDAV address books and "
        "the account pages ([web] account_page), and ACME's tls-alpn-01 challenges. Not started without [tls] or "
        "[acme]; the certificate must cover those names. "
        '"" when another web server has the port (see the README).',
        "address",
    )
    http: str = setting(
        "",
        'Plain HTTP, e.g. "*:80": mail client set-up only (Thunderbird also asks http://autoconfig.DOMAIN), '
        "never the MTA-STS policy; and ACME's http-01 challenges. Off by default: certbot --standalone renewals "
        "need port 80.",
        "address",
    )


@dataclass(frozen=True)
class TLSConfig:
    """Certificate and key in PEM (a Let's Encrypt fullchain.pem/privkey.pem pair works as is)."""

    cert: str = setting("", "Certificate chain file; empty means no TLS (STARTTLS not offered).")
    key: str = setting("", "Private key file for the certificate.")
    reload_interval: float = setting(
        60.0,
        "How often the daemon looks (one stat of each file) whether the certificate or key changed on disk, as "
        "after a certbot/ACME renewal, and loads the new pair for new connections on every TLS listener. A pair "
        "that does not load (half-written, key not matching) is logged and the old one stays. 0 turns the check "
        "off (SIGHUP still reloads).",
        "duration",
    )


@dataclass(frozen=True)
class ACMEConfig:
    """Certificates from an ACME CA (RFC 8555), e.g. Let's Encrypt, obtained and renewed by the daemon itself,
    instead of [tls] cert and key files. The CA checks each name over [listen] http (port 80, http-01) or
    [listen] https (port 443, tls-alpn-01): both must be reachable from the Internet under every name."""

    enabled: bool = setting(
        False,
        "Get and renew the certificate by ACME (leave [tls] cert and key empty). Turning it on agrees to the CA's "
        "terms of service (Let's Encrypt: its Subscriber Agreement).",
    )
    directory: str = setting(
        "https://acme-v02.api.letsencrypt.org/directory",
        "The CA's ACME directory URL. Let's Encrypt's staging CA (for trials; its certificates are not trusted): "
        "https://acme-staging-v02.api.letsencrypt.org/directory",
    )
    email: str = setting("", "Contact address given to the CA (expiry notices, policy changes); empty: none.")
    names: list[str] = setting(
        [],
        "Names the certificate covers. Empty: [server] hostname and, with [listen] https on, the mta-sts., "
        "autoconfig. and autodiscover. names of every hosted domain (what `relentad domain dns` publishes). Each "
        "name must resolve to this server.",
    )
    challenges: list[str] = setting(
        ["tls-alpn-01", "http-01"],
        'Challenge types to answer, in order of preference: "tls-alpn-01" (RFC 8737, on [listen] https) and '
        '"http-01" (on [listen] http). A type whose listener is off is skipped.',
    )
    ca_file: str = setting(
        "", "PEM CA certificates to verify the ACME server's HTTPS with, for a private CA; empty: the system's."
    )
    key_type: str = setting("ec256", 'The certificate\'s key: "ec256" (ECDSA P-256) or "rsa2048"/"rsa3072"/"rsa4096".')
    renew_remaining: float = setting(
        0.33, "Renew when this share of the certificate's lifetime is left (0.33: day 60 of a 90-day certificate)."
    )


@dataclass(frozen=True)
class LimitsConfig:
    """Limits that protect the server from careless and hostile clients."""

    message_size: int = setting(
        50_000_000, "Largest message accepted (advertised as SIZE in EHLO; 552 5.3.4 above).", "size"
    )
    max_recipients: int = setting(100, "Recipients per message; more get 452 4.5.3 (RFC 5321 §4.5.3.1.8).")
    line_length: int = setting(
        10_000,
        "Longest line in a message, CRLF included; longer gets 500 5.5.2. RFC 5321 says 1000 but real "
        "senders exceed it, so the default is lenient.",
    )
    command_timeout: float = setting(300.0, "Idle time allowed between SMTP commands (RFC 5321 §4.5.3.2).", "duration")
    data_timeout: float = setting(600.0, "Time allowed to transfer one message after DATA.", "duration")
    connections_per_ip: int = setting(50, "Simultaneous SMTP connections from one IP address.")
    max_connections: int = setting(1000, "Simultaneous SMTP connections in all.")
    shutdown_grace: float = setting(
        30.0, "On SIGTERM, how long in-flight transactions may take before the daemon exits.", "duration"
    )


@dataclass(frozen=True)
class DNSConfig:
    """Resolver used for MX, SPF, DKIM and DMARC lookups."""

    nameservers: list[str] = setting(
        [],
        "Resolvers as host:port; empty means the system resolver (/etc/resolv.conf). DANE ([queue] dane) trusts "
        "their DNSSEC validation: use a validating resolver on this machine (unbound on 127.0.0.1:53).",
    )
    timeout: float = setting(5.0, "Time allowed for one DNS lookup.", "duration")


@dataclass(frozen=True)
class MailAuthConfig:
    """Checks of who really sent inbound mail: SPF, DKIM, DMARC and ARC (one Authentication-Results header)."""

    verify: bool = setting(True, "Check SPF, DKIM, DMARC and ARC on mail from the world and record the results.")
    dmarc_reject: bool = setting(
        True,
        "Refuse mail that fails DMARC for a domain publishing p=reject (550 5.7.1 at DATA); when false such "
        "mail is filed into Junk instead. Failures under p=quarantine always go to Junk.",
    )


@dataclass(frozen=True)
class DNSBLConfig:
    """DNS blocklists (RFC 5782): the IP address of each client of the MX, the domains its messages link to."""

    zones: list[str] = setting(
        [],
        'Blocklist zones asked about each connecting IP address, e.g. ["zen.spamhaus.org"]; empty = none. Mind '
        "each list's terms of use: many refuse queries that come through public resolvers.",
    )
    domain_zones: list[str] = setting(
        [],
        'Domain blocklist zones (e.g. ["dbl.spamhaus.org"]) asked about the registrable domains of the links in '
        "each message from the world; a listed one files the message into Junk. Empty = none.",
    )
    action: str = setting(
        "reject",
        '"reject": a listed client\'s recipients get 550 5.7.1 naming the list (mail to postmaster@ is still '
        'accepted, so that a listed sender can reach a person); "junk": its mail is accepted and filed into Junk.',
    )


@dataclass(frozen=True)
class AttachmentsConfig:
    """Attachments that can run programs, in mail from the world (README: How mail is received)."""

    action: str = setting(
        "refuse",
        '"refuse": a message with a blocked attachment is refused at DATA (554 5.7.0 naming the file), as Gmail and '
        'Microsoft 365 do; "junk": it is accepted and filed into Junk; "off": attachments are not looked at.',
    )
    blocked: list[str] = setting(
        list(BLOCKED_ATTACHMENTS),
        "File extensions refused (without the dot): Gmail's published list by default. Judged by each part's file "
        "name, the names inside ZIP archives, and a Windows program by its first bytes whatever its name.",
    )
    look_inside_archives: bool = setting(
        True, "Look at the names inside ZIP attachments (and ZIPs within them), encrypted ones included."
    )


@dataclass(frozen=True)
class GreylistConfig:
    """Greylisting on the MX (RFC 6647): an unknown client network, sender and recipient wait for a retry."""

    enabled: bool = setting(
        False,
        "Greylist mail from the world. Off by default: it delays every new correspondent's first message by the "
        "delay or more (the sending server's retry schedule decides), and stops much botnet spam that never retries.",
    )
    delay: float = setting(300.0, "How long an unknown triplet must wait before its retry is accepted.", "duration")
    retry_window: float = setting(
        2 * 86_400.0, "A triplet not retried within this long after its first attempt starts over.", "duration"
    )
    lifetime: float = setting(
        35 * 86_400.0,
        "A triplet (or client network) that passed is let through at once until it has not been seen for this long.",
        "duration",
    )
    clients_after: int = setting(
        5, "A client network that passed this many triplets passes for every sender and recipient; 0 = never."
    )
    ipv4_prefix: int = setting(
        24, "The client network of an IPv4 address (its outbound pool retries from a neighbour)."
    )
    ipv6_prefix: int = setting(64, "The client network of an IPv6 address.")
    exempt_networks: list[str] = setting(
        ["127.0.0.0/8", "::1/128"], 'Client networks never greylisted, e.g. a partner\'s relay: ["192.0.2.0/24"].'
    )


@dataclass(frozen=True)
class AuthConfig:
    """Logins (SMTP AUTH, IMAP LOGIN): throttling of failures, the credential cache, plaintext on loopback."""

    plaintext_loopback: bool = setting(
        False,
        "Offer AUTH without TLS to clients connecting from a loopback address (development and tests only; "
        "elsewhere AUTH always needs TLS).",
    )
    failures_per_ip: int = setting(
        10, "Failed logins from one IP address within failure_window before its attempts get 454 4.7.0."
    )
    failures_per_account: int = setting(
        10, "Failed logins to one account within failure_window before its attempts get 454 4.7.0."
    )
    failure_window: float = setting(900.0, "How long a failed login counts against its IP and account.", "duration")
    cache_ttl: float = setting(
        300.0,
        "How long a verified password is remembered in memory (keyed HMAC, never the password) so clients "
        "that log in often skip argon2; 0 turns the cache off. Failures are never cached.",
        "duration",
    )


@dataclass(frozen=True)
class SubmissionConfig:
    """Mail that users send through 587/465."""

    sent_folder: str = setting(
        "Sent", 'Folder that gets a copy (flagged \\Seen) of each submitted message; "" for none.'
    )
    hide_client_ip: bool = setting(
        True, "Leave the client's IP address out of the Received header added to submitted mail."
    )
    send_as: list[str] = setting(
        [],
        'Extra From addresses accounts may use, as "account=address" (e.g. "alice@a.test=ceo@a.test"); '
        '"account=@domain" allows every address of that domain.',
    )


@dataclass(frozen=True)
class QueueConfig:
    """The outbound queue: delivery to the recipients' MX hosts (or a smarthost), retries and bounces."""

    retry_schedule: list[float] = setting(
        [450.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 57600.0],
        "Waits between delivery attempts after a temporary failure (4xx or no connection); the last one "
        "repeats until lifetime is over.",
        "durations",
    )
    lifetime: float = setting(
        432_000.0, "How long a message is retried before it bounces with a DSN to its sender.", "duration"
    )
    delay_notice: float = setting(
        14_400.0, "Tell the sender (once) that a message is still undelivered after this long; 0 = never.", "duration"
    )
    concurrency: int = setting(20, "Deliveries in progress at once.")
    per_destination: int = setting(2, "Deliveries in progress at once to one destination domain (or the smarthost).")
    scan_interval: float = setting(
        30.0, "How often the queue is re-read for work that another process changed (relentad queue retry).", "duration"
    )
    timeout: float = setting(
        120.0,
        "Time allowed for connecting and for each SMTP command of a delivery; the reply after the message data gets "
        "at least 10 minutes (RFC 5321 §4.5.3.2.6).",
        "duration",
    )
    smarthost: str = setting(
        "", 'Send everything through this relay, "host:port", instead of the recipients\' MX hosts.', "address"
    )
    smarthost_user: str = setting("", "User name for AUTH at the smarthost; empty for none.")
    smarthost_password_file: str = setting("", "File whose first line is the smarthost password.")
    smarthost_tls: str = setting(
        "starttls", 'TLS to the smarthost: "starttls" (required), "tls" (implicit, port 465) or "none".'
    )
    smarthost_tls_verify: bool = setting(True, "Verify the smarthost's certificate (turn off only for tests).")
    mta_sts: bool = setting(
        True,
        "Honour recipient domains' MTA-STS policies (RFC 8461) when delivering to MX hosts: with mode enforce only "
        "the policy's MX hosts, over STARTTLS with a verified certificate, else the recipient stays queued. Not "
        "applied through a smarthost.",
    )
    dane: bool = setting(
        True,
        "DANE (RFC 7672) when delivering to MX hosts: a host whose DNSSEC-validated TLSA records apply gets the "
        "message only over STARTTLS with a certificate matching them, else the recipient stays queued. Trusts the "
        "AD bit of [dns] nameservers, which must be a local validating resolver (unbound, knot-resolver); without "
        "validation nothing is secure and nothing changes. Not applied through a smarthost.",
    )
    ca_file: str = setting(
        "",
        "PEM file of extra CA certificates to trust, besides the system's, wherever outbound TLS is verified "
        "(MTA-STS policy and MX hosts, the smarthost): for a private CA.",
    )


@dataclass(frozen=True)
class QuotaConfig:
    """Defaults for new accounts; 0 means unlimited."""

    disk: int = setting(5_000_000_000, "Disk quota of a new account.", "size")
    messages: int = setting(
        0,
        "Most messages a new account may hold in its mailboxes (IMAP QUOTA resource MESSAGE); beyond it mail is "
        "refused like over the disk quota (452 4.2.2 / 552 5.2.2, NO [OVERQUOTA]). 0 = unlimited.",
    )
    daily_send: int = setting(1000, "Recipients a new account may send to per day.")
    hourly_send: int = setting(
        0, "Recipients a new account may send to per hour (UTC clock hour); more get 450 4.7.1. 0 = unlimited."
    )
    notices_from: str = setting(
        "",
        'Sender of system notices: the "mailbox almost full" warning (at 90 %) and `relentad announce`; '
        "empty = postmaster@<server hostname>.",
    )


@dataclass(frozen=True)
class BackupConfig:
    """Online database snapshots (relentad backup create / list / restore)."""

    dir: str = setting(
        "", "Folder for the compressed snapshots (relative to this file's folder); empty = <data_dir>/backups."
    )
    daily: bool = setting(True, "Let the daemon take a snapshot once a day.")
    keep_daily: int = setting(7, "Newest snapshot of each of the last N days to keep.")
    keep_weekly: int = setting(4, "Newest snapshot of each of the last N ISO weeks to keep (beyond the daily ones).")
    recipients: list[str] = setting(
        [],
        "age public keys (age1..., from `relentad backup keygen` or age-keygen) the snapshots are encrypted to "
        "(age-encryption.org/v1: any of them decrypts, with `age -d -i KEYFILE` or `relentad backup restore "
        "--identity`). Keep the identities (secret keys) off this server. Empty: snapshots are not encrypted.",
    )
    offsite: str = setting(
        "",
        "Copy each new snapshot to sftp://user@host:port/path (/~/path: relative to the login folder) with "
        "OpenSSH's sftp, and rotate the copies there as here. Needs recipients: unencrypted mail never leaves the "
        "machine. Empty: no off-site copy.",
    )
    offsite_identity: str = setting("", "SSH private key file (no passphrase) that logs in to offsite.")
    offsite_known_hosts: str = setting(
        "", "known_hosts file holding the offsite server's host key (checked strictly; nothing else is trusted)."
    )
    offsite_timeout: float = setting(
        3600.0, "Longest one sftp run may take (an upload, a listing, a rotation); then it is stopped.", "duration"
    )


@dataclass(frozen=True)
class RetentionConfig:
    """How long deleted data is kept before it is purged for good."""

    deleted_days: int = setting(90, "Days expunged mail and terminated accounts are kept before purging.")
    junk_days: int = setting(
        30,
        "Days a message stays in a Junk folder (\\Junk) after it was filed or moved there; the daily purge then "
        "expunges it, into the deleted_days retention like any expunge. 0 = keep Junk mail until the user deletes it.",
    )
    trash_days: int = setting(
        30,
        "Days a message stays in a Trash folder (\\Trash) after it was moved there (its RFC 8514 SAVEDATE, not its "
        "date); the daily purge then expunges it, into the deleted_days retention like any expunge. 0 = keep Trash "
        "mail until the user empties it.",
    )
    activity_days: int = setting(
        365,
        "Days login history and send counters are kept per row (relentad activity); older days are rolled up into "
        "one summary per account and month (totals are kept) and their rows deleted. 0 = keep every row forever.",
    )
    reports_days: int = setting(
        400, "Days received DMARC and TLS reports are kept, counted from the end of the period they cover. 0 = forever."
    )
    archive: bool = setting(
        False,
        "Keep a copy of every message the accounts receive and send (through submission) in the archive, which "
        "users cannot see or change, for archive_days (relentad archive search|export|verify; README: The archive). "
        "For businesses that must keep their correspondence; it overrides deleted_days for those copies.",
    )
    archive_days: int = setting(
        3650, "Days archived messages are kept (10 years by default); the daily purge removes older ones."
    )


@dataclass(frozen=True)
class ReportsConfig:
    """DMARC aggregate (RFC 7489 §7.2) and TLS-RPT (RFC 8460) reports received about hosted domains."""

    addresses: list[str] = setting(
        ["postmaster"],
        "Recipients whose mail is read for reports (the rua= addresses the domains publish): a local part "
        "(postmaster = postmaster@ of every hosted domain) or a full address; user+tag@ counts as user@. Reports are "
        "read only from mail that passes DMARC (or aligned SPF or DKIM when the reporter publishes no DMARC record), "
        "and recorded only for hosted domains; the message is delivered as usual either way. Empty: none is read.",
    )
    max_size: int = setting(
        20_000_000,
        "Largest report read, uncompressed: decompression stops there (a zip or gzip bomb costs no more) and the "
        "report is recorded as not read.",
        "size",
    )


@dataclass(frozen=True)
class DMARCConfig:
    """DMARC aggregate reports sent about the mail this server receives (RFC 7489 §7.2). Off by default: a report
    tells each domain with rua= which addresses sent mail in its name to this server, how much and with what
    results, so it reveals to third parties who writes to your users and when."""

    send_reports: bool = setting(
        False,
        "Send a daily aggregate report to the rua= mailto: addresses of each domain whose DMARC record asks for one "
        "(not about hosted domains); a destination outside the domain's organisation only when it agrees by DNS "
        "(RFC 7489 §7.1). While on, each inbound DMARC evaluation is recorded until it is reported.",
    )
    reporter: str = setting(
        "",
        "The address reports come from (From and MAIL FROM; DKIM-signed with its domain's key), TLS reports "
        "([tlsrpt]) too. Required with send_reports and with [tlsrpt] send_reports.",
    )
    org_name: str = setting(
        "", "The reporting organisation, the reports' <org_name>; empty = [server] hostname (always the Submitter)."
    )


@dataclass(frozen=True)
class TLSRPTConfig:
    """SMTP TLS reports sent about this server's outbound deliveries (RFC 8460). Off by default: a report tells each
    recipient domain that publishes a _smtp._tls TXT record how many TLS sessions to its MX hosts succeeded and
    failed, from which of our addresses, and so how much mail this server sends there."""

    send_reports: bool = setting(
        False,
        "Send a daily TLS report to the rua= mailto: addresses of each recipient domain whose _smtp._tls TXT record "
        "asks for one (not about hosted domains; https: destinations are not used). While on, each TLS session with "
        "a domain's MX host (MX mode, not through a smarthost) is recorded until it is reported. The reports come "
        "from [dmarc] reporter, named [dmarc] org_name.",
    )


@dataclass(frozen=True)
class IMAPConfig:
    """IMAP server behaviour; the listeners are [listen] imap and imaps, plaintext logins [auth] plaintext_loopback."""

    line_length: int = setting(
        65_536, "Longest IMAP command in octets, all its lines together, literals excluded; longer ends in BYE."
    )
    max_bad_commands: int = setting(10, "Consecutive BAD replies after which the server says BYE and closes.")
    autologout: float = setting(
        1800.0, "Time a logged-in client may stay silent (IDLE included); RFC 9051 §5.4 asks for 30m.", "duration"
    )
    login_timeout: float = setting(60.0, "Time a client has to log in after connecting.", "duration")
    connections_per_ip: int = setting(
        50, "Simultaneous IMAP connections from one IP address; more are told BYE at once (phones open several)."
    )
    max_connections: int = setting(1000, "Simultaneous IMAP connections in all (143 and 993); more are told BYE.")
    commands_per_second: int = setting(
        1000,
        "Commands one IMAP connection may send per second (bursts of twice that); faster ones wait. 0 = no limit.",
    )
    search_index: bool = setting(
        False,
        "Keep a full-text index so SEARCH TEXT/BODY/HEADER read only the messages that may match (up to 100 x "
        "faster over 20,000 messages), for 30-40 % more disk than the mail and about 6 % more CPU per delivered "
        "message, spent in the background (README: SEARCH text, Benchmarks).",
    )


@dataclass(frozen=True)
class WebConfig:
    """The web listeners ([listen] https and http): MTA-STS policy, mail client set-up, the account pages."""

    connections_per_ip: int = setting(
        20, "Simultaneous HTTP(S) connections from one IP address; more are closed at once."
    )
    max_connections: int = setting(500, "Simultaneous HTTP(S) connections in all (both listeners).")
    account_page: bool = setting(
        True,
        "Serve https://<host>/account/ on [listen] https: users see their usage, logins and activity, change "
        "their password and download their data (README: Your account in the browser).",
    )
    user_forwarding: bool = setting(
        True,
        "Let users forward their mail to an address elsewhere from the account page. Off: the page says the "
        "administrator turned it off, and forwards set up there stop (aliases and Sieve redirects are unaffected).",
    )
    user_import: bool = setting(
        True,
        "Let users bring their mail over from another server over IMAP on the account page (/account/import), "
        "as `relentad import EMAIL imaps://...` does: they know their old password, the administrator seldom does.",
    )
    import_private_hosts: bool = setting(
        False,
        "Let the account page's import connect to old servers at loopback, private or link-local addresses. Off: "
        "only addresses on the internet, so that users cannot make this server reach into its own network.",
    )


@dataclass(frozen=True)
class ManageSieveConfig:
    """The ManageSieve server (RFC 5804) on [listen] managesieve: users' own Sieve scripts, run after the admin's
    rules; plaintext logins as [auth] plaintext_loopback says."""

    max_scripts: int = setting(
        20, "Scripts one account may store (one of them active); more get NO (QUOTA/MAXSCRIPTS)."
    )
    login_timeout: float = setting(60.0, "Time a client has to log in after connecting.", "duration")
    idle_timeout: float = setting(
        1800.0, "Time a logged-in client may stay silent between commands before it is told BYE.", "duration"
    )
    connections_per_ip: int = setting(10, "Simultaneous ManageSieve connections from one IP address; more get BYE.")
    max_connections: int = setting(200, "Simultaneous ManageSieve connections in all; more get BYE.")


@dataclass(frozen=True)
class Pop3Config:
    """The POP3 server (RFC 1939) on [listen] pop3 and pop3s: the account's INBOX only, as it was at login;
    deleted messages are expunged at QUIT; plaintext logins as [auth] plaintext_loopback says."""

    login_timeout: float = setting(60.0, "Time a client has to log in after connecting.", "duration")
    idle_timeout: float = setting(
        600.0,
        "Time a logged-in client may stay silent between commands before the connection closes (nothing is "
        "deleted then); RFC 1939 asks at least 10 minutes.",
        "duration",
    )
    connections_per_ip: int = setting(10, "Simultaneous POP3 connections from one IP address; more get -ERR.")
    max_connections: int = setting(200, "Simultaneous POP3 connections in all (110 and 995); more get -ERR.")


@dataclass(frozen=True)
class CRMConfig:
    """The CRM sorter: contacts, companies, threads and filing rules for every message received or sent."""

    enabled: bool = setting(
        True,
        "File every delivered and sent message against its contacts and thread and run the accounts' rules; "
        "off, mail is stored unsorted (nothing is lost, the CRM just does not see it).",
    )
    unassigned_keyword: str = setting(
        "$Unassigned",
        "IMAP keyword given to received mail whose author is a person who is not a confirmed contact yet, for "
        'review (relentad contacts unassigned); "" sets none.',
    )
    imap_folders: bool = setting(
        True,
        "Show the read-only IMAP virtual folders Contacts/<Name> and Companies/<Name>: every message with a "
        "confirmed contact, or with a company's contacts, across the account's folders; and Follow-up (sent mail "
        "nobody answered within followup_days).",
    )
    followup_days: int = setting(
        3,
        "Days after which a thread whose newest message is one the account sent to a person, and that nobody "
        "answered, is due for a follow-up (relentad crm followups, the IMAP folder Follow-up); 0-365, per "
        "account with relentad crm followup-days.",
    )
    followup_window: int = setting(
        90,
        "Days a follow-up stays due before it is dropped as stale (0: for ever; 0-3650): old threads where you "
        "wrote last, from mail filed before this release or imported, stay out.",
    )


@dataclass(frozen=True)
class SpamConfig:
    """The spam filter (relentad/spam/): verdict thresholds, filing, learning and the size of the token tables."""

    enabled: bool = setting(True, "Score every received message and file spam into Junk.")
    junk_digest: bool = setting(
        False,
        "Once a day, each user whose Junk got mail since the last digest finds a message in their inbox listing it "
        "(date, sender, subject, score), so that misfiled mail is seen without opening Junk.",
    )
    ham_below: float = setting(0.2, "Scores below this are ham (0-1).")
    spam_above: float = setting(
        0.79,
        "Scores above this are spam and go to Junk with the $Junk keyword; between the two is unsure (0-1). It is "
        "the cut-off of a model that has learned confident_after messages: a smaller model's is raised, a larger "
        "one's lowered (see there).",
    )
    unsure_keyword: str = setting(
        "$Unsure", 'IMAP keyword given to mail scored unsure (it stays in INBOX); "" sets none.'
    )
    min_trained: int = setting(
        200,
        "Messages of each class an account's model (its own plus the global one) must have learned before its "
        "verdicts file mail; until then every message is scored, stamped verdict=untrained and left in INBOX. "
        "0 = judge from the first message learned.",
    )
    confident_after: int = setting(
        2000,
        "Messages (spam and ham) a model (the account's own plus the global one) must have learned for spam_above "
        "to apply as set, counted as at most four times its smaller class; a smaller model's cut-off is 0.15 "
        "higher for each halving of that, at most 0.99, since its high scores are less sure, and a larger one's "
        "0.15 lower for each doubling, down to spam_above_min (measured: README, The spam filter). 0 = always "
        "spam_above.",
    )
    spam_above_min: float = setting(
        0.7,
        "The lowest spam cut-off a model larger than confident_after is given (0-1; measured on the corpus: README, "
        "The spam filter). Set it to spam_above or higher to never lower the cut-off.",
    )
    list_mail_shift: float = setting(
        1.0,
        "How far (in log-odds) the spam cut-off is lowered for mail that came through a discussion list (it has a "
        "List-Post, X-BeenThere, Mailing-List or X-Mailing-List field): 1.0 makes 0.7 0.46 and 0.79 0.58. The "
        "list's own header fields are strong ham clues on everything it forwards, spam posted to it included "
        "(measured: README, The spam filter). Only for a model of confident_after messages or more. 0 = the same "
        "cut-off for all mail.",
    )
    learn: bool = setting(
        True,
        "Learn from users: moving or copying mail into Junk (or setting $Junk) trains spam; moving it out of Junk "
        "other than to Trash (or clearing $Junk, setting $NotJunk) trains ham.",
    )
    learn_replies: bool = setting(
        True,
        "With learn on: a reply sent through submission trains the received message it answers (In-Reply-To) as "
        "ham, unless that message is in Junk or Trash or was already judged. Needs [crm] enabled (its thread index).",
    )
    rebuild_daily: bool = setting(
        True,
        "With learn on and no global model: once a day, rebuild the model of each account that learned something "
        "since from all its recorded lessons, the way spam train builds one (train-on-error in eight orders), instead "
        "of one lesson at a time: it misses less than half as much spam (README, The spam filter). relentad spam "
        "rebuild does it on demand, for any account.",
    )
    max_tokens: int = setting(
        200000, "Token rows kept per account (and for the global model); the least recently used are pruned."
    )
    max_age_days: int = setting(
        365, "Tokens not seen in training or scoring for this many days are pruned. 0 = keep regardless of age."
    )


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``path`` is the file it came from (None for defaults)."""

    server: ServerConfig = field(default_factory=ServerConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    acme: ACMEConfig = field(default_factory=ACMEConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    dns: DNSConfig = field(default_factory=DNSConfig)
    mailauth: MailAuthConfig = field(default_factory=MailAuthConfig)
    dnsbl: DNSBLConfig = field(default_factory=DNSBLConfig)
    greylist: GreylistConfig = field(default_factory=GreylistConfig)
    attachments: AttachmentsConfig = field(default_factory=AttachmentsConfig)
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    imap: IMAPConfig = field(default_factory=IMAPConfig)
    web: WebConfig = field(default_factory=WebConfig)
    managesieve: ManageSieveConfig = field(default_factory=ManageSieveConfig)
    pop3: Pop3Config = field(default_factory=Pop3Config)
    crm: CRMConfig = field(default_factory=CRMConfig)
    spam: SpamConfig = field(default_factory=SpamConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    dmarc: DMARCConfig = field(default_factory=DMARCConfig)
    tlsrpt: TLSRPTConfig = field(default_factory=TLSRPTConfig)
    path: Path | None = None
    listen_defaults: tuple[str, ...] = ()
    """The ``[listen]`` settings on by their default because the file does not name them: a release that adds a
    listener opens its port on upgrade, since an installed file is never rewritten; the daemon and ``doctor`` say so."""

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the file are relative to."""
        return self.path.parent if self.path else Path.cwd()

    def resolve(self, value: str) -> Path:
        """``value`` as an absolute path, relative to the config file's folder."""
        return (self.base_dir / value).resolve()

    @property
    def data_dir(self) -> Path:
        return self.resolve(self.server.data_dir)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "relentad.db"

    @property
    def tls_enabled(self) -> bool:
        """A certificate is configured: [tls] files, or one that ACME gets (it may not exist yet)."""
        return bool(self.tls.cert and self.tls.key) or self.acme.enabled

    @property
    def acme_dir(self) -> Path:
        """Where ACME keeps its account key, the certificate and its state (see relentad.acme.store)."""
        return self.data_dir / "acme"

    def cert_files(self) -> tuple[Path, Path]:
        """The certificate chain and key files the TLS listeners load: [tls] cert and key, or ACME's."""
        if self.acme.enabled:
            return self.acme_dir / "cert.pem", self.acme_dir / "key.pem"
        return self.resolve(self.tls.cert), self.resolve(self.tls.key)


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "listen": ListenConfig,
    "tls": TLSConfig,
    "acme": ACMEConfig,
    "limits": LimitsConfig,
    "dns": DNSConfig,
    "mailauth": MailAuthConfig,
    "dnsbl": DNSBLConfig,
    "greylist": GreylistConfig,
    "attachments": AttachmentsConfig,
    "quota": QuotaConfig,
    "retention": RetentionConfig,
    "backup": BackupConfig,
    "auth": AuthConfig,
    "submission": SubmissionConfig,
    "queue": QueueConfig,
    "imap": IMAPConfig,
    "web": WebConfig,
    "managesieve": ManageSieveConfig,
    "pop3": Pop3Config,
    "crm": CRMConfig,
    "spam": SpamConfig,
    "reports": ReportsConfig,
    "dmarc": DMARCConfig,
    "tlsrpt": TLSRPTConfig,
}


def parse_address(text: str) -> tuple[str | None, int] | None:
    """``host:port`` → (host, port), ``*:port`` → (None, port) for every address, "" → None (listener off)."""
    text = text.strip()
    if not text:
        return None
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"not a host:port address: {text!r}")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"missing host in {text!r} (use *:{port_text} for every address)")
    return (None if host == "*" else host), int(port_text)


def _convert(kind: str, value: Any, default: Any) -> Any:
    """One setting from TOML to its Python value; ValueError with a user-facing message when it does not fit."""
    if kind == "size":
        return parse_size(value)
    if kind == "duration":
        return parse_duration(value)
    if kind == "durations":
        if not isinstance(value, list) or not value:
            raise ValueError(f'expected a non-empty list of durations like ["5m", "1h"], got {value!r}')
        return [parse_duration(v) for v in value]
    if kind == "address":
        if not isinstance(value, str):
            raise ValueError(f'expected a "host:port" string, got {value!r}')
        parse_address(value)
        return value
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {value!r}")
        return value
    if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
        raise ValueError(f"expected {expected.__name__}, got {value!r}")
    if expected in (int, float):  # every number setting is a count, size, duration, day count or 0-1 score
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {value!r}")
        if value < 0:
            raise ValueError(f"must not be negative, got {value!r}")
    return value


def from_dict(data: dict[str, Any], path: Path | None = None) -> Config:
    """A Config from parsed TOML; raises ConfigError naming every unknown key and bad value."""
    problems: list[str] = []
    sections: dict[str, Any] = {}
    for name in data:
        if name not in SECTIONS:
            problems.append(f"unknown section [{name}]")
    for name, cls in SECTIONS.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            problems.append(f"[{name}] must be a table")
            continue
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            fdef = known.get(key)
            if fdef is None:
                problems.append(f"[{name}] unknown key {key!r}")
                continue
            default = fdef.default if fdef.default is not dataclasses.MISSING else []
            try:
                values[key] = _convert(fdef.metadata.get("kind", "plain"), value, default)
            except ValueError as exc:
                problems.append(f"[{name}] {key}: {exc}")
        sections[name] = cls(**values)
    if problems:
        raise ConfigError(problems)
    named = data.get("listen", {})
    defaulted = tuple(f.name for f in dataclasses.fields(ListenConfig) if f.name not in named and f.default)
    config = Config(**sections, path=path, listen_defaults=defaulted)
    problems = check(config)
    if problems:
        raise ConfigError(problems)
    return config


def check(config: Config) -> list[str]:
    """Problems that need the whole configuration to see (files that must exist, values that must agree)."""
    problems = []
    if bool(config.tls.cert) != bool(config.tls.key):
        problems.append("[tls] cert and key must be set together")
    for name in ("cert", "key"):
        value = getattr(config.tls, name)
        if value and not config.resolve(value).is_file():
            problems.append(f"[tls] {name}: no such file {config.resolve(value)}")
    problems += _acme_problems(config)
    if config.limits.message_size <= 0:
        problems.append("[limits] message_size must be positive")
    if config.limits.line_length < 1000:
        problems.append("[limits] line_length must be at least 1000 (RFC 5321 §4.5.3.1.6)")
    for name, value in (
        ("[limits] max_recipients", config.limits.max_recipients),
        ("[limits] connections_per_ip", config.limits.connections_per_ip),
        ("[limits] max_connections", config.limits.max_connections),
        ("[imap] connections_per_ip", config.imap.connections_per_ip),
        ("[imap] max_connections", config.imap.max_connections),
        ("[web] connections_per_ip", config.web.connections_per_ip),
        ("[web] max_connections", config.web.max_connections),
        ("[managesieve] max_scripts", config.managesieve.max_scripts),
        ("[managesieve] connections_per_ip", config.managesieve.connections_per_ip),
        ("[managesieve] max_connections", config.managesieve.max_connections),
        ("[pop3] connections_per_ip", config.pop3.connections_per_ip),
        ("[pop3] max_connections", config.pop3.max_connections),
    ):
        if value < 1:
            problems.append(f"{name} must be at least 1")
    for name, seconds in (
        ("[imap] login_timeout", config.imap.login_timeout),
        ("[imap] autologout", config.imap.autologout),
        ("[managesieve] login_timeout", config.managesieve.login_timeout),
        ("[managesieve] idle_timeout", config.managesieve.idle_timeout),
        ("[pop3] login_timeout", config.pop3.login_timeout),
    ):
        if seconds <= 0:  # a deadline of now: every client would be told goodbye before its first command
            problems.append(f"{name} must be positive")
    if config.pop3.idle_timeout < 600:
        problems.append("[pop3] idle_timeout must be at least 10m (RFC 1939 §3)")
    problems += _listen_clashes(config.listen)
    if config.queue.smarthost_tls not in ("starttls", "tls", "none"):
        problems.append('[queue] smarthost_tls must be "starttls", "tls" or "none"')
    if config.queue.concurrency < 1 or config.queue.per_destination < 1:
        problems.append("[queue] concurrency and per_destination must be at least 1")
    password_file = config.queue.smarthost_password_file
    if password_file and not config.resolve(password_file).is_file():
        problems.append(f"[queue] smarthost_password_file: no such file {config.resolve(password_file)}")
    if config.queue.ca_file:
        problems += _ca_file_problems(config.resolve(config.queue.ca_file))
    for entry in config.submission.send_as:
        if entry.count("=") != 1 or "@" not in entry:
            problems.append(f'[submission] send_as: {entry!r} is not "account=address"')
    for name, keyword in (
        ("[crm] unassigned_keyword", config.crm.unassigned_keyword),
        ("[spam] unsure_keyword", config.spam.unsure_keyword),
    ):
        if keyword and not flags.is_keyword(keyword):
            problems.append(f"{name} must be an IMAP keyword (an atom, not a \\system flag)")
    if not 0 <= config.crm.followup_days <= 365:
        problems.append("[crm] followup_days must lie between 0 and 365")
    if not 0 <= config.crm.followup_window <= 3650:
        problems.append("[crm] followup_window must lie between 0 and 3650")
    if not 0 <= config.spam.ham_below <= config.spam.spam_above <= 1:
        problems.append("[spam] thresholds must satisfy 0 <= ham_below <= spam_above <= 1")
    if not 0 < config.greylist.ipv4_prefix <= 32 or not 0 < config.greylist.ipv6_prefix <= 128:
        problems.append("[greylist] ipv4_prefix must be 1-32 and ipv6_prefix 1-128")
    for net in config.greylist.exempt_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            problems.append(f"[greylist] exempt_networks: {net!r} is not an IP network like 192.0.2.0/24")
    if config.dnsbl.action not in ("reject", "junk"):
        problems.append('[dnsbl] action must be "reject" or "junk"')
    if config.retention.archive_days < 1:
        problems.append("[retention] archive_days must be at least 1")
    if config.attachments.action not in ("refuse", "junk", "off"):
        problems.append('[attachments] action must be "refuse", "junk" or "off"')
    for ext in config.attachments.blocked:
        if not ext or ext.startswith(".") or any(c.isspace() or c in "/\\" for c in ext):
            problems.append(f'[attachments] blocked: {ext!r} is not a file extension like "exe" (no dot)')
    for zone in [*config.dnsbl.zones, *config.dnsbl.domain_zones]:
        if not zone.strip(".") or any(c.isspace() for c in zone) or ".." in zone:
            problems.append(f"[dnsbl] zones: {zone!r} is not a DNS zone name")
    if config.backup.keep_daily == 0 and config.backup.keep_weekly == 0:
        problems.append("[backup] keep_daily and keep_weekly cannot both be 0 (no snapshot would be kept)")
    problems += _backup_problems(config)
    if not config.spam.ham_below <= config.spam.spam_above_min <= 1:
        problems.append("[spam] spam_above_min must lie between ham_below and 1")
    if not 0 <= config.spam.list_mail_shift <= 5:
        problems.append("[spam] list_mail_shift must lie between 0 and 5")
    if config.spam.max_tokens < 1000:  # negative numbers never get here (_convert refuses every one)
        problems.append("[spam] max_tokens must be at least 1000")
    if config.reports.max_size <= 0:
        problems.append("[reports] max_size must be positive")
    for entry in config.reports.addresses:
        if not report_address_ok(entry):
            problems.append(f"[reports] addresses: {entry!r} is not a local part or an address")
    if config.dmarc.send_reports and not config.dmarc.reporter:
        problems.append("[dmarc] reporter must be set when send_reports is on")
    if config.tlsrpt.send_reports and not config.dmarc.reporter:
        problems.append("[dmarc] reporter must be set when [tlsrpt] send_reports is on (TLS reports come from it)")
    if config.dmarc.reporter and ("@" not in config.dmarc.reporter or not report_address_ok(config.dmarc.reporter)):
        problems.append(f"[dmarc] reporter: {config.dmarc.reporter!r} is not an email address")
    hostname_problem = check_hostname(config.server.hostname)
    if hostname_problem:
        problems.append(f"[server] hostname: {hostname_problem}")
    if config.server.log_level.lower() not in ("debug", "info", "warning", "error"):
        problems.append("[server] log_level must be debug, info, warning or error")
    if config.server.event_loop not in ("uvloop", "asyncio"):
        problems.append("[server] event_loop must be uvloop or asyncio")
    return problems


def _backup_problems(config: Config) -> list[str]:
    """Age recipients that parse, and an off-site destination only with encryption and its two key files."""
    settings = config.backup
    problems = []
    if settings.recipients:
        from .lifecycle import agefile  # cryptography: only for a configuration that encrypts

        for recipient in settings.recipients:
            try:
                agefile.parse_recipient(recipient)
            except agefile.AgeError as exc:
                problems.append(f"[backup] recipients: {exc}")
    if not settings.offsite:
        return problems
    from .lifecycle import offsite

    try:
        offsite.parse_url(settings.offsite)
    except ValueError as exc:
        problems.append(f"[backup] offsite: {exc}")
    if not settings.recipients:
        problems.append("[backup] offsite needs recipients: snapshots leave the machine only encrypted")
    for name in ("offsite_identity", "offsite_known_hosts"):
        value = getattr(settings, name)
        if not value:
            problems.append(f"[backup] {name} must be set with offsite")
        elif not config.resolve(value).is_file():
            problems.append(f"[backup] {name}: no such file {config.resolve(value)}")
    if settings.offsite_timeout <= 0:
        problems.append("[backup] offsite_timeout must be positive")
    return problems


def _listen_clashes(listen: ListenConfig) -> list[str]:
    """Two listeners on one port and overlapping addresses: the second could not bind, and the daemon would stop or
    go on without it, naming no setting."""
    problems = []
    bound: dict[int, list[tuple[str, str | None]]] = {}
    for setting_field in dataclasses.fields(listen):
        address = parse_address(getattr(listen, setting_field.name))
        if address is None:
            continue
        host, port = address
        for other, other_host in bound.get(port, []):
            if _overlap(host, other_host):
                problems.append(f"[listen] {other} and {setting_field.name} both use port {port}")
        bound.setdefault(port, []).append((setting_field.name, host))
    return problems


def _overlap(a: str | None, b: str | None) -> bool:
    """Whether listeners on hosts ``a`` and ``b`` (None: every address) share an address: the same host, or either
    on every address (``*``, or 0.0.0.0 / :: of the other's family; asyncio binds IPv6 only for ::)."""
    if a is None or b is None or a == b:
        return True
    try:
        ip_a, ip_b = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    return ip_a.version == ip_b.version and (ip_a.is_unspecified or ip_b.is_unspecified or ip_a == ip_b)


def _ca_file_problems(path: Path, section: str = "[queue]") -> list[str]:
    if not path.is_file():
        return [f"{section} ca_file: no such file {path}"]
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        return [f"{section} ca_file: {path} holds no usable PEM CA certificate ({exc})"]
    return []


ACME_CHALLENGES = ("tls-alpn-01", "http-01")
ACME_KEY_TYPES = ("ec256", "rsa2048", "rsa3072", "rsa4096")


def _acme_problems(config: Config) -> list[str]:
    acme = config.acme
    problems = []
    if acme.ca_file:
        problems += _ca_file_problems(config.resolve(acme.ca_file), "[acme]")
    if not acme.directory.startswith("https://"):
        problems.append(f"[acme] directory: not an https:// URL: {acme.directory!r}")
    if acme.email and ("@" not in acme.email or not report_address_ok(acme.email)):
        problems.append(f"[acme] email: {acme.email!r} is not an email address")
    for challenge in acme.challenges:
        if challenge not in ACME_CHALLENGES:
            problems.append(f"[acme] challenges: {challenge!r} is not one of {', '.join(ACME_CHALLENGES)}")
    if not acme.challenges:
        problems.append("[acme] challenges: name at least one")
    if acme.key_type not in ACME_KEY_TYPES:
        problems.append(f"[acme] key_type must be one of {', '.join(ACME_KEY_TYPES)}")
    if not 0.05 <= acme.renew_remaining <= 0.9:
        problems.append("[acme] renew_remaining must lie between 0.05 and 0.9")
    for name in acme.names:
        reason = check_hostname(name.removeprefix("*."))
        if reason or name.startswith("*."):  # a wildcard needs dns-01, which relentad does not answer
            problems.append(f"[acme] names: {name!r}: {reason or 'wildcards need dns-01, which is not supported'}")
    if acme.enabled:
        if config.tls.cert or config.tls.key:
            problems.append("[acme] enabled and [tls] cert/key exclude each other: ACME writes its own certificate")
        usable = {"tls-alpn-01": bool(config.listen.https), "http-01": bool(config.listen.http)}
        if not any(usable.get(c) for c in acme.challenges):
            problems.append(
                "[acme] enabled needs [listen] https (tls-alpn-01) or [listen] http (http-01) for its challenges"
            )
    return problems


def report_address_ok(entry: str) -> bool:
    """``entry`` of ``[reports] addresses`` is a local part (``postmaster``) or an address (``dmarc@example.org``)."""
    try:
        addrspec.normalize(entry if "@" in entry else f"{entry}@example.org")
    except InvalidInput:
        return False
    return "+" not in entry.partition("@")[0] and not entry.startswith("@")


def check_hostname(hostname: str) -> str | None:
    """Why ``hostname`` cannot be this server's name (it goes into the banner, EHLO and the MX record), or None."""
    try:
        ascii_name = addrspec.normalize_domain(hostname)
    except InvalidInput:
        return f"not a domain name: {hostname!r}"
    if hostname != hostname.strip():
        return f"not a domain name: {hostname!r}"
    if not hostname.isascii():
        return f"write {hostname!r} as its A-label {ascii_name!r}"
    return None


def config_path(explicit: str | None = None) -> Path:
    """The config file to use: the explicit one, else $RELENTAD_CONFIG, else ./relentad.toml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).absolute()


def load(path: Path) -> Config:
    """Read and validate ``path``; ConfigError (one line per problem) when it is missing or wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (run `relentad init` first)"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: not UTF-8 text (line {line}, byte {exc.start})"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    return from_dict(data, path=path)


def _toml_value(kind: str, value: Any) -> str:
    if kind == "size":
        return f'"{format_size(value)}"'
    if kind == "duration":
        return f'"{format_duration(parse_duration(value))}"'
    if kind == "durations":
        return "[" + ", ".join(f'"{format_duration(parse_duration(v))}"' for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value("plain", v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def example_toml(overrides: dict[str, dict[str, Any]] | None = None) -> str:
    """The documented configuration file: every setting with its doc; ``overrides`` replace defaults."""
    overrides = overrides or {}
    lines = [
        "# relentad configuration. Every setting is shown with its default and what it does.",
        "# Sizes: 500KB, 60MB, 5GB (powers of 1000) or KiB/MiB/GiB; durations: 30s, 5m, 4h, 5d.",
        "# Generated from relentad/config.py (`relentad config example`); a test keeps them in step.",
    ]
    for name, cls in SECTIONS.items():
        lines += ["", f"[{name}]"]
        if cls.__doc__:  # a docstring of several lines stays one comment (an uncommented line breaks the TOML)
            lines.append("# " + " ".join(cls.__doc__.split()))
        defaults = cls()
        for fdef in dataclasses.fields(cls):
            value = overrides.get(name, {}).get(fdef.name, getattr(defaults, fdef.name))
            lines += [f"# {line}" for line in textwrap.wrap(fdef.metadata["doc"], 108)]
            lines.append(f"{fdef.name} = {_toml_value(fdef.metadata.get('kind', 'plain'), value)}")
    return "\n".join(lines) + "\n"
