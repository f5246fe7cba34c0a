"""Hosted domains, accounts and aliases, and how an envelope recipient resolves to accounts.

Every function takes a connection and runs inside the caller's transaction: the CLI calls them within
``db.transaction()``, the daemon within ``store.write()``. Addresses are stored normalised
(:func:`relentad.addrspec.normalize`), so lookups are exact matches on indexed columns.

Recipient resolution order (:func:`resolve_recipient`): the account itself, an alias, then the same two for the
subaddress base (``user+tag@`` → ``user@``), then the domain's catch-all (``@domain``), then for postmaster@ (and
the bare ``Postmaster``, RFC 5321 §4.5.1) the account ``[server] postmaster`` names. A terminated account
receives nothing.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import Enum

from .. import addrspec
from ..errors import AlreadyExists, InvalidInput, NotFound
from . import mailboxes


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    domain: str
    display_name: str
    quota_bytes: int
    daily_send: int
    state: str
    created: float
    app_passwords_only: bool = False

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Account:
        return cls(
            id=row["id"],
            email=row["email"],
            domain=row["domain"],
            display_name=row["display_name"],
            quota_bytes=row["quota_bytes"],
            daily_send=row["daily_send"],
            state=row["state"],
            created=row["created"],
            app_passwords_only=bool(row["app_passwords_only"]),
        )


class RecipientKind(Enum):
    """What a recipient address turned out to be; the SMTP layer maps each to its reply."""

    LOCAL = "local"  # resolved to one or more active accounts
    UNKNOWN_USER = "unknown_user"  # hosted domain, no such user: 550 5.1.1
    NOT_HOSTED = "not_hosted"  # someone else's domain: relay (needs AUTH) or 554 5.7.1


@dataclass(frozen=True)
class Resolution:
    kind: RecipientKind
    account_ids: tuple[int, ...] = ()
    forwards: tuple[str, ...] = ()  # addresses elsewhere an alias forwards to (LOCAL, with or without accounts)


# -- domains ----------------------------------------------------------------------------------------------


def add_domain(conn: sqlite3.Connection, name: str) -> str:
    domain = addrspec.normalize_domain(name)
    try:
        conn.execute("INSERT INTO domains (name, created) VALUES (?, ?)", (domain, time.time()))
    except sqlite3.IntegrityError:
        raise AlreadyExists(f"domain {domain} already exists") from None
    return domain


def list_domains(conn: sqlite3.Connection) -> list[dict[str, object]]:
    rows = conn.execute(
        """SELECT d.name, d.created,
                  (SELECT count(*) FROM accounts a WHERE a.domain_id = d.id AND a.state = 'active') AS accounts,
                  (SELECT count(*) FROM aliases x WHERE x.address LIKE '%@' || d.name)
                  + (SELECT count(*) FROM alias_forwards f WHERE f.address LIKE '%@' || d.name) AS aliases
           FROM domains d ORDER BY d.name"""
    )
    return [dict(row) for row in rows]


def remove_domain(conn: sqlite3.Connection, name: str) -> None:
    domain = addrspec.normalize_domain(name)
    row = conn.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
    if row is None:
        raise NotFound(f"no such domain: {domain}")
    active = conn.execute(
        "SELECT count(*) FROM accounts WHERE domain_id = ? AND state != 'terminated'", (row["id"],)
    ).fetchone()[0]
    terminated = [
        str(r["email"])
        for r in conn.execute(
            "SELECT email FROM accounts WHERE domain_id = ? AND state = 'terminated' ORDER BY email", (row["id"],)
        )
    ]
    if active or terminated:
        left = []
        if active:
            left.append(f"{active} account(s); terminate them first")
        if terminated:
            named = ", ".join(terminated[:5]) + (", …" if len(terminated) > 5 else "")
            left.append(
                f"{len(terminated)} terminated account(s) not purged yet ({named}); purge each now with "
                "relentad user terminate --yes --now ADDRESS, or wait for [retention] deleted_days"
            )
        raise InvalidInput(f"domain {domain} still has " + " and ".join(left))
    conn.execute("DELETE FROM aliases WHERE address LIKE '%@' || ?", (domain,))
    conn.execute("DELETE FROM alias_forwards WHERE address LIKE '%@' || ?", (domain,))
    conn.execute("DELETE FROM domains WHERE id = ?", (row["id"],))


def domain_id(conn: sqlite3.Connection, domain: str) -> int | None:
    row = conn.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
    return None if row is None else int(row["id"])


# -- accounts ---------------------------------------------------------------------------------------------

_ACCOUNT_SELECT = """
    SELECT a.id, a.email, d.name AS domain, a.display_name, a.quota_bytes, a.daily_send, a.state, a.created,
           a.app_passwords_only
    FROM accounts a JOIN domains d ON d.id = a.domain_id
"""


def add_account(
    conn: sqlite3.Connection,
    email: str,
    password_hash: str,
    *,
    quota_bytes: int,
    daily_send: int,
    display_name: str = "",
) -> Account:
    """Create an account with its standard mailboxes; its domain must be hosted."""
    address = addrspec.normalize(email)
    local, _, domain = address.rpartition("@")
    if addrspec.is_quoted(local):
        raise InvalidInput(f"{address}: an account's name is a plain local part, not a quoted string")
    if addrspec.SUBADDRESS_SEPARATOR in local:
        raise InvalidInput(f"{address}: '+' is reserved for subaddresses (user+tag@domain)")
    did = domain_id(conn, domain)
    if did is None:
        raise NotFound(f"domain {domain} is not hosted here (relentad domain add {domain})")
    if conn.execute(
        "SELECT 1 FROM aliases WHERE address = ?1 UNION ALL SELECT 1 FROM alias_forwards WHERE address = ?1", (address,)
    ).fetchone():
        raise AlreadyExists(f"{address} is already an alias")
    try:
        cursor = conn.execute(
            """INSERT INTO accounts (email, domain_id, password_hash, display_name, quota_bytes, daily_send,
                                     created) VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (address, did, password_hash, display_name, quota_bytes, daily_send, time.time()),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists(f"account {address} already exists") from None
    account_id = int(cursor.lastrowid or 0)
    mailboxes.create_defaults(conn, account_id)
    return get_account(conn, address)


def get_account(conn: sqlite3.Connection, email: str) -> Account:
    address = addrspec.normalize(email)
    row = conn.execute(_ACCOUNT_SELECT + " WHERE a.email = ?", (address,)).fetchone()
    if row is None:
        raise NotFound(f"no such account: {address}")
    return Account.from_row(row)


def refuse_terminated(account: Account) -> Account:
    """``account``, unless it is terminated: nothing more may be written into an account waiting to be purged."""
    if account.state == "terminated":
        raise InvalidInput(
            f"account {account.email} is terminated (its data waits to be purged; relentad user terminate --yes "
            f"--now {account.email} purges it at once)"
        )
    return account


def active_account(conn: sqlite3.Connection, email: str) -> Account:
    """:func:`get_account`, refusing a terminated account."""
    return refuse_terminated(get_account(conn, email))


def is_active(conn: sqlite3.Connection, account_id: int) -> bool:
    """The account still exists and is not terminated: a session opened before ``user terminate`` may go on."""
    row = conn.execute("SELECT 1 FROM accounts WHERE id = ? AND state = 'active'", (account_id,)).fetchone()
    return row is not None


def account_by_id(conn: sqlite3.Connection, account_id: int) -> Account:
    row = conn.execute(_ACCOUNT_SELECT + " WHERE a.id = ?", (account_id,)).fetchone()
    if row is None:
        raise NotFound(f"no such account id: {account_id}")
    return Account.from_row(row)


def list_accounts(conn: sqlite3.Connection, domain: str | None = None) -> list[Account]:
    if domain is None:
        rows = conn.execute(_ACCOUNT_SELECT + " ORDER BY d.name, a.email")
    else:
        rows = conn.execute(
            _ACCOUNT_SELECT + " WHERE d.name = ? ORDER BY a.email", (addrspec.normalize_domain(domain),)
        )
    return [Account.from_row(row) for row in rows]


def password_hash(conn: sqlite3.Connection, email: str) -> str | None:
    """The stored hash of an active account, None when there is no such active account."""
    row = conn.execute(
        "SELECT password_hash FROM accounts WHERE email = ? AND state = 'active'", (email.lower(),)
    ).fetchone()
    return None if row is None else str(row["password_hash"])


def set_password(conn: sqlite3.Connection, email: str, password_hash: str) -> None:
    account = active_account(conn, email)
    conn.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account.id))


def account_stats(conn: sqlite3.Connection, account_id: int) -> dict[str, int]:
    """Message count and bytes the account's mailboxes hold."""
    row = conn.execute(
        """SELECT count(*) AS messages, coalesce(sum(m.size), 0) AS bytes
           FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.account_id = ?""",
        (account_id,),
    ).fetchone()
    return {"messages": int(row["messages"]), "bytes": int(row["bytes"])}


# -- aliases ----------------------------------------------------------------------------------------------


def _alias_address(address: str) -> str:
    """Normalise an alias address; ``@domain`` is a catch-all."""
    if address.strip().startswith("@"):
        return "@" + addrspec.normalize_domain(address.strip()[1:])
    alias = addrspec.normalize(address)
    if addrspec.is_quoted(alias):
        raise InvalidInput(f"{alias}: an alias is a plain local part, not a quoted string")
    return alias


def add_alias(conn: sqlite3.Connection, address: str, target: str) -> str:
    """Route ``address`` (or ``@domain``) to ``target``: an account here, or an address elsewhere (forwarding,
    relentad/forwarding.py); several targets make a group alias. A target at a hosted domain must be an account:
    naming another alias could make a cycle, so the accounts it reaches are named instead."""
    alias = _alias_address(address)
    local, _, domain = alias.rpartition("@")
    if addrspec.SUBADDRESS_SEPARATOR in local:
        raise InvalidInput(f"{alias}: '+' is reserved for subaddresses (user+tag@domain always reaches user@domain)")
    if domain_id(conn, domain) is None:
        raise NotFound(f"domain {domain} is not hosted here (relentad domain add {domain})")
    if conn.execute("SELECT 1 FROM accounts WHERE email = ?", (alias,)).fetchone():
        raise AlreadyExists(f"{alias} is an account; an alias cannot shadow it")
    external = _external_target(conn, alias, target)
    if external is not None:
        try:
            conn.execute(
                "INSERT INTO alias_forwards (address, target, created) VALUES (?, ?, ?)", (alias, external, time.time())
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"alias {alias} → {external} already exists") from None
        return alias
    account = active_account(conn, target)
    try:
        conn.execute(
            "INSERT INTO aliases (address, account_id, created) VALUES (?, ?, ?)", (alias, account.id, time.time())
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists(f"alias {alias} → {account.email} already exists") from None
    return alias


def _external_target(conn: sqlite3.Connection, alias: str, target: str) -> str | None:
    """``target`` normalised when it is an address at a domain not hosted here (forwarded to), else None (an
    account here). A hosted address that is no account is refused: an alias of an alias could loop here."""
    address = addrspec.normalize(target)
    domain = address.rpartition("@")[2]
    if domain_id(conn, domain) is not None:
        if not conn.execute("SELECT 1 FROM accounts WHERE email = ?", (address,)).fetchone():
            routed = ", ".join(_alias_targets(conn, address))
            if not routed:
                raise NotFound(f"no such account: {address}")
            raise InvalidInput(
                f"{address} is not an account here (it reaches {routed}); an alias's targets are accounts or "
                "addresses elsewhere, so that aliases never route to each other in a cycle"
            )
        return None
    if alias.startswith("@"):
        raise InvalidInput(f"{alias}: a catch-all is not forwarded elsewhere (it would forward every made-up address)")
    return address


def _alias_targets(conn: sqlite3.Connection, address: str) -> list[str]:
    rows = conn.execute(
        """SELECT a.email FROM aliases x JOIN accounts a ON a.id = x.account_id WHERE x.address = ?1
           UNION ALL SELECT target FROM alias_forwards WHERE address = ?1""",
        (address,),
    )
    return [str(r[0]) for r in rows]


def list_aliases(conn: sqlite3.Connection) -> list[dict[str, object]]:
    """Every route: address, target, and whether the target is elsewhere (``external``: forwarded)."""
    rows = conn.execute(
        """SELECT x.address, a.email AS target, 0 AS external FROM aliases x JOIN accounts a ON a.id = x.account_id
           UNION ALL SELECT address, target, 1 FROM alias_forwards
           ORDER BY 1, 3, 2"""
    )
    return [{"address": row["address"], "target": row["target"], "external": bool(row["external"])} for row in rows]


def remove_alias(conn: sqlite3.Connection, address: str, target: str | None = None) -> int:
    """Remove an alias (only its route to ``target`` when given); returns how many routes went."""
    alias = _alias_address(address)
    if target is None:
        count = conn.execute("DELETE FROM aliases WHERE address = ?", (alias,)).rowcount
        count += conn.execute("DELETE FROM alias_forwards WHERE address = ?", (alias,)).rowcount
    else:
        wanted = addrspec.normalize(target)
        count = conn.execute("DELETE FROM alias_forwards WHERE address = ? AND target = ?", (alias, wanted)).rowcount
        if not count:
            account = get_account(conn, target)
            cursor = conn.execute("DELETE FROM aliases WHERE address = ? AND account_id = ?", (alias, account.id))
            count = cursor.rowcount
    if count == 0:
        raise NotFound(f"no such alias: {alias}")
    return count


# -- recipients -------------------------------------------------------------------------------------------


def _active_targets(conn: sqlite3.Connection, address: str) -> tuple[tuple[int, ...], tuple[str, ...]] | None:
    """(account ids, addresses elsewhere) ``address`` reaches as an account or alias; ((), ()) for an account that
    is not active; None when it is neither (an alias whose accounts are all gone too)."""
    row = conn.execute("SELECT id, state FROM accounts WHERE email = ?", (address,)).fetchone()
    if row is not None:
        return ((int(row["id"]),) if row["state"] == "active" else ()), ()
    rows = conn.execute(
        """SELECT a.id FROM aliases x JOIN accounts a ON a.id = x.account_id
           WHERE x.address = ? AND a.state = 'active' ORDER BY a.id""",
        (address,),
    ).fetchall()
    found = conn.execute("SELECT target FROM alias_forwards WHERE address = ? ORDER BY target", (address,))
    forwards = tuple(str(r[0]) for r in found)
    if rows or forwards:
        return tuple(int(r["id"]) for r in rows), forwards
    return None


POSTMASTER = "postmaster"


def is_postmaster(address: str) -> bool:
    """``address`` is postmaster@ some domain or the bare ``Postmaster`` (any case)."""
    local, _, _domain = address.strip().rpartition("@")
    return (local or address.strip()).lower() == POSTMASTER


def postmaster_account(conn: sqlite3.Connection, postmaster: str) -> int | None:
    """The id of the active account ``postmaster`` (``[server] postmaster``) names; None when it names none."""
    try:
        address = addrspec.normalize(postmaster)
    except InvalidInput:
        return None
    row = conn.execute("SELECT id FROM accounts WHERE email = ? AND state = 'active'", (address,)).fetchone()
    return None if row is None else int(row["id"])


def resolve_recipient(conn: sqlite3.Connection, address: str, postmaster: str = "") -> Resolution:
    """What ``address`` (as given in RCPT TO) means here; never raises for bad syntax (→ NOT_HOSTED).

    ``postmaster`` (``[server] postmaster``) is the account postmaster@ reaches where the domain has no postmaster
    of its own: RFC 5321 §4.5.1 says it MUST be accepted; unset, it is an unknown user as any other.
    """
    if address.strip().lower() == POSTMASTER:
        return _to_postmaster(conn, postmaster)
    try:
        normalized = addrspec.normalize(address)
    except InvalidInput:
        return Resolution(RecipientKind.NOT_HOSTED)
    domain = normalized.rpartition("@")[2]
    if domain_id(conn, domain) is None:
        return Resolution(RecipientKind.NOT_HOSTED)
    candidates = [normalized]
    base = addrspec.base_address(normalized)
    if base is not None:
        candidates.append(base)
    for candidate in candidates:
        found = _active_targets(conn, candidate)
        if found is not None:
            targets, forwards = found
            if targets or forwards:
                return Resolution(RecipientKind.LOCAL, targets, forwards)
            return Resolution(RecipientKind.UNKNOWN_USER)
    catch_all = _active_targets(conn, "@" + domain)
    if catch_all is not None and catch_all[0]:
        return Resolution(RecipientKind.LOCAL, catch_all[0])
    if is_postmaster(normalized):
        return _to_postmaster(conn, postmaster)
    return Resolution(RecipientKind.UNKNOWN_USER)


def _to_postmaster(conn: sqlite3.Connection, postmaster: str) -> Resolution:
    account_id = postmaster_account(conn, postmaster) if postmaster else None
    if account_id is None:
        return Resolution(RecipientKind.UNKNOWN_USER)
    return Resolution(RecipientKind.LOCAL, (account_id,))
