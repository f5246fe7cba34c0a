"""Greylisting on the MX (RFC 6647): the first message of an unknown (client network, sender, recipient) triplet
gets a temporary failure at RCPT; a real mail server tries again after a few minutes and is let through from then
on, while much botnet spam never retries.

As postgrey and RFC 6647 §4 do it:
- the client is its network (IPv4 /24, IPv6 /64 by default: a sender's outbound pool retries from a neighbour);
- the sender is normalised, so that mailing lists' and bulk senders' per-message bounce addresses (VERP, SRS,
  BATV) make one triplet, not a new one per message;
- a retry earlier than ``delay`` is deferred again; one within ``retry_window`` passes, and the triplet then passes
  at once for ``lifetime`` after it was last seen; a client network that passed ``clients_after`` triplets passes
  for every sender and recipient (it is a real mail server).
relentad adds what the CRM knows: an envelope sender that is a confirmed contact of the recipient account (someone
its user wrote to) or on its spam allow-list is never delayed. Off by default: it delays every new correspondent's
first message by ``delay`` or more (the sender's retry schedule decides).

Each row carries when it stops mattering (``expires``), so the daily purge needs no settings to drop old ones.
"""

from __future__ import annotations

import ipaddress
import re
import sqlite3
from dataclasses import dataclass
from typing import Literal

from .config import GreylistConfig

Outcome = Literal["deferred", "passed", "known", "client", "exempt", "contact"]
TOUCH_AFTER = 3600.0
"""A passed triplet's or client's ``last_seen`` is written again only after this long (every RCPT a write would
queue a commit behind each recipient of every message)."""
_DIGITS = re.compile(r"[0-9]+")
_SRS = re.compile(r"^srs[01]=[^=]*=[^=]*=", re.IGNORECASE)  # SRS0=HHHH=TT=domain=local: hash and day vary
_BATV = re.compile(r"^(?:prvs|btv1|msprvs1)=[^=]*=", re.IGNORECASE)  # BATV: prvs=tag=local or prvs=local=tag


@dataclass(frozen=True, slots=True)
class Verdict:
    """What greylisting says of one recipient: ``wait`` seconds until a retry passes (deferred only)."""

    outcome: Outcome
    wait: float = 0.0

    @property
    def deferred(self) -> bool:
        return self.outcome == "deferred"


def client_network(ip: str, config: GreylistConfig) -> str:
    """The client's network as the triplet names it (its address alone when it is no IP address)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = config.ipv4_prefix if address.version == 4 else config.ipv6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def sender_key(mail_from: str) -> str:
    """The envelope sender as the triplet names it: lower case, SRS and BATV tags dropped, digit runs as "#"
    (``bounce-1234-5@list.example`` and ``bounce-1299-7@list.example`` are one sender); "<>" for the null sender."""
    if not mail_from:
        return "<>"
    local, at, domain = mail_from.lower().rpartition("@")
    if not at:
        local, domain = domain, ""
    local = _BATV.sub("", _SRS.sub("srs=", local))
    return f"{_DIGITS.sub('#', local)}@{domain}" if at else _DIGITS.sub("#", local)


def exempt(ip: str, config: GreylistConfig) -> bool:
    """Is the client in one of ``exempt_networks`` (checked when the configuration is read)?"""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in config.exempt_networks)


def judge(
    conn: sqlite3.Connection, client: str, sender: str, recipient: str, now: float, config: GreylistConfig
) -> tuple[Verdict, bool]:
    """Read-only: the verdict for the triplet, and whether :func:`record` must write it down (a new or passing
    triplet, or a stale ``last_seen``)."""
    row = conn.execute("SELECT passes, last_seen FROM greylist_clients WHERE client = ?", (client,)).fetchone()
    if row is not None and config.clients_after and row[0] >= config.clients_after:
        return Verdict("client"), now - row[1] > TOUCH_AFTER
    row = conn.execute(
        "SELECT first_seen, passed, last_seen, expires FROM greylist WHERE client = ? AND sender = ? AND recipient = ?",
        (client, sender, recipient),
    ).fetchone()
    if row is None or row[3] < now:  # unknown, or waited past the retry window (or passed too long ago): anew
        return Verdict("deferred", config.delay), True
    first_seen, passed, last_seen = float(row[0]), row[1], float(row[2])
    if passed is not None:
        return Verdict("known"), now - last_seen > TOUCH_AFTER
    if now - first_seen < config.delay:
        return Verdict("deferred", first_seen + config.delay - now), False
    return Verdict("passed"), True


def record(
    conn: sqlite3.Connection, client: str, sender: str, recipient: str, now: float, config: GreylistConfig
) -> Verdict:
    """The write job: judge again (another RCPT may have written since) and record the triplet's new state."""
    verdict, write = judge(conn, client, sender, recipient, now, config)
    if not write:
        return verdict
    if verdict.outcome == "client":
        conn.execute(
            "UPDATE greylist_clients SET last_seen = ?, expires = ? WHERE client = ?",
            (now, now + config.lifetime, client),
        )
    elif verdict.outcome == "deferred":
        conn.execute(
            """INSERT INTO greylist (client, sender, recipient, first_seen, passed, last_seen, expires)
               VALUES (?, ?, ?, ?, NULL, ?, ?)
               ON CONFLICT (client, sender, recipient) DO UPDATE SET
                   first_seen = excluded.first_seen, passed = NULL, last_seen = excluded.last_seen,
                   expires = excluded.expires""",
            (client, sender, recipient, now, now, now + config.retry_window),
        )
    else:  # passed now, or known and seen again: whitelisted for ``lifetime`` from now
        conn.execute(
            """UPDATE greylist SET passed = coalesce(passed, ?), last_seen = ?, expires = ?
               WHERE client = ? AND sender = ? AND recipient = ?""",
            (now, now, now + config.lifetime, client, sender, recipient),
        )
        if verdict.outcome == "passed":
            conn.execute(
                """INSERT INTO greylist_clients (client, passes, last_seen, expires) VALUES (?, 1, ?, ?)
                   ON CONFLICT (client) DO UPDATE SET passes = passes + 1, last_seen = excluded.last_seen,
                       expires = excluded.expires""",
                (client, now, now + config.lifetime),
            )
    return verdict


def prune(conn: sqlite3.Connection, now: float) -> int:
    """Drop the triplets and clients that no longer matter (the daily purge); returns how many rows."""
    gone = conn.execute("DELETE FROM greylist WHERE expires < ?", (now,)).rowcount
    return int(gone + conn.execute("DELETE FROM greylist_clients WHERE expires < ?", (now,)).rowcount)


def counts(conn: sqlite3.Connection, now: float, config: GreylistConfig) -> dict[str, int]:
    """What the tables hold now (``relentad greylist show``): triplets waiting for their retry, triplets let through,
    client networks let through for everyone; rows past their expiry (the daily purge drops them) are not counted."""
    waiting, passed = conn.execute(
        """SELECT coalesce(sum(passed IS NULL), 0), coalesce(sum(passed IS NOT NULL), 0) FROM greylist
           WHERE expires >= ?""",
        (now,),
    ).fetchone()
    clients = conn.execute(
        "SELECT count(*) FROM greylist_clients WHERE expires >= ? AND passes >= ? AND ? > 0",
        (now, config.clients_after, config.clients_after),
    ).fetchone()[0]
    return {"waiting": int(waiting), "passed": int(passed), "clients": int(clients)}
