"""Import from another server over IMAP: ``relentad import EMAIL imaps://LOGIN@HOST``.

The move to relentad in one command, run before the MX records change and again after: every folder of the old
mailbox comes over with its flags and internal dates, into the account's own special folders where the old
server marks them (RFC 6154 ``\\Sent``, ``\\Junk`` …, or their usual names), and is filed in the CRM as any
import is (:func:`relentad.lifecycle.transfer.import_batch`: APPEND semantics, quota, contacts, threads; no
rules, no spam check).

Running it again copies only what is new. Each folder's UIDVALIDITY and the highest UID copied are kept per
account and source (``imap_imports``, migration 041), written in the transaction that stores the messages, so an
import that stops (a dropped connection, a full quota, Ctrl-C) goes on where it stopped. When the old server
renumbers a folder (a new UIDVALIDITY), the folder is read again from the start, and a message whose exact bytes
are already in its target folder is not stored twice: that rule holds for every message, so the import is
idempotent whatever the state says.

Messages go in internal-date order across folders, as :func:`relentad.lifecycle.transfer.date_order` has it for
files, so the CRM's threads and first/last contact come out as if the mail had been delivered live; the bytes are
fetched a batch at a time (at most :data:`transfer.BATCH` messages or :data:`BATCH_BYTES`), never the whole
mailbox at once.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..crm import folders
from ..errors import InvalidInput
from ..store import acl, imapwrite, mailboxes
from . import transfer
from .imapsource import RemoteFolder, Source, SourceError, Summary

BATCH_BYTES = 32 * 1024 * 1024
"""Bytes of message data fetched and written per transaction (a larger message is a batch of its own)."""

ROLES = ("\\sent", "\\drafts", "\\junk", "\\trash", "\\archive")
ROLE_NAMES: dict[str, frozenset[str]] = {
    "\\sent": mailboxes.SENT_NAMES,
    "\\drafts": mailboxes.DRAFTS_NAMES,
    "\\junk": frozenset({"junk", "spam", "junk e-mail", "junk email", "bulk mail"}),
    "\\trash": frozenset({"trash", "deleted items", "deleted messages", "bin"}),
    "\\archive": frozenset({"archive", "archives"}),
}
"""Names a server without special-use attributes gives its special folders (Outlook's, Apple's, Gmail's …)."""

SKIPPED = {
    "\\all": "a view of every message (Gmail's All Mail): its mail is in the other folders",
    "\\flagged": "a view of the flagged messages: they are in the other folders",
    "\\important": "a view of the messages marked important: they are in the other folders",
}
"""RFC 6154 / RFC 8457 virtual folders: copying them would store each message twice."""

RELENTAD_VIEWS = (folders.CONTACTS, folders.COMPANIES, folders.FOLLOW_UP)
"""Another relentad's CRM folders: views of the mail in its real folders, as \\All is."""


@dataclass
class Plan:
    """One folder of the old server: where its mail goes, or why it does not."""

    remote: RemoteFolder
    target: str | None
    skipped: str = ""  # why nothing is copied (excluded, a view, unreadable)
    uidvalidity: int = 0
    after_uid: int = 0  # already copied up to here
    pending: list[Summary] = field(default_factory=list)

    @property
    def pending_bytes(self) -> int:
        return sum(s.size for s in self.pending)


@dataclass
class Outcome:
    plans: list[Plan]
    imported: int = 0
    already_there: int = 0
    failed: list[str] = field(default_factory=list)  # folders that could not be read, with the reason

    @property
    def pending(self) -> int:
        return sum(len(p.pending) for p in self.plans)


def _level_name(remote: RemoteFolder) -> str:
    levels = list(remote.levels)
    if levels[0].upper() == mailboxes.INBOX:
        levels[0] = mailboxes.INBOX
    return mailboxes.DELIMITER.join(levels)


def _below(name: str, delimiter: str, exclude: Iterable[str]) -> bool:
    return any(name == e or (delimiter and name.startswith(e + delimiter)) for e in exclude)


def _role_by_name(remote: RemoteFolder, attributed: set[str]) -> str | None:
    """The special role a folder's name gives it, for a top-level folder (or one directly under INBOX, where
    Courier-style servers keep everything) and only for roles no folder on the server claims by attribute."""
    levels = remote.levels
    if len(levels) > 2 or (len(levels) == 2 and levels[0].upper() != mailboxes.INBOX):
        return None
    last = levels[-1].strip().lower()
    return next((r for r in ROLES if r not in attributed and last in ROLE_NAMES[r]), None)


def plan_folders(
    remote: list[RemoteFolder], own_special: dict[str, str], exclude: Iterable[str], views: Iterable[str] = ()
) -> list[Plan]:
    """Where each of the old server's folders goes: its INBOX to INBOX, its special folders to the account's
    (``own_special``: lower-cased attribute → the account's mailbox), views (``views``: names of the server's
    virtual folders, with what is below them) and excluded folders nowhere, every other folder to the same name
    (levels joined with ``/``). A name this server cannot hold is refused before anything is copied."""
    exclude = [e.rstrip("/") for e in exclude if e.rstrip("/")]
    attributed = {a for folder in remote for a in folder.attributes if a in ROLES}
    plans: list[Plan] = []
    refused: list[str] = []
    for folder in remote:
        if folder.attributes & {"\\noselect", "\\nonexistent"}:
            continue  # a level that holds no messages; its children are listed on their own
        name = _level_name(folder)
        if _below(name, mailboxes.DELIMITER, exclude) or _below(folder.name, folder.delimiter, exclude):
            plans.append(Plan(folder, None, "excluded"))
            continue
        view = next((SKIPPED[a] for a in sorted(folder.attributes) if a in SKIPPED), None)
        if view is None and _below(name, mailboxes.DELIMITER, views):
            view = "a CRM view of the mail in the other folders"
        if view:
            plans.append(Plan(folder, None, view))
            continue
        role = next((a for a in ROLES if a in folder.attributes), None) or _role_by_name(folder, attributed)
        target = own_special.get(role or "") or name
        if target != mailboxes.INBOX:
            try:
                imapwrite.check_name(target)
                if acl.in_namespace(target):
                    raise InvalidInput("it is in the shared namespace (Shared/<address>/...)")
            except InvalidInput as exc:
                refused.append(f"{folder.name} ({exc})")
                continue
        plans.append(Plan(folder, target))
    if refused:
        raise InvalidInput(
            f"folder {refused[0]} cannot be stored here: leave it out with --exclude (nothing was imported)"
        )
    return plans


def own_special_folders(conn: sqlite3.Connection, account_id: int) -> dict[str, str]:
    rows = conn.execute(
        "SELECT lower(special_use), name FROM mailboxes WHERE account_id = ? AND special_use IS NOT NULL "
        "AND NOT noselect ORDER BY id",
        (account_id,),
    )
    found: dict[str, str] = {}
    for role, name in rows:
        found.setdefault(str(role), str(name))
    return found


def import_state(conn: sqlite3.Connection, account_id: int, source: str) -> dict[str, tuple[int, int]]:
    """Remote folder → (UIDVALIDITY, highest UID copied) of earlier imports from ``source``."""
    rows = conn.execute(
        "SELECT folder, uidvalidity, last_uid FROM imap_imports WHERE account_id = ? AND source = ?",
        (account_id, source),
    )
    return {str(f): (int(v), int(u)) for f, v, u in rows}


def survey(source: Source, plans: list[Plan], state: dict[str, tuple[int, int]], outcome: Outcome) -> None:
    """Open each folder to copy and list what is new there; a folder the server will not open is reported and
    left out, the others go on."""
    for plan in plans:
        if plan.target is None:
            continue
        try:
            plan.uidvalidity = source.examine(plan.remote.name)
            known = state.get(plan.remote.name)
            plan.after_uid = known[1] if known is not None and known[0] == plan.uidvalidity else 0
            plan.pending = source.summaries(plan.after_uid)
        except SourceError as exc:
            if exc.broken:
                raise
            plan.skipped, plan.target = f"could not be read: {exc}", None
            outcome.failed.append(f"{plan.remote.name}: {exc}")


def _date_ordered(plans: list[Plan]) -> Iterator[tuple[Plan, Summary]]:
    """Every pending message, folders interleaved by internal date, each folder's UID order kept (so that the
    copied messages of a folder are always a prefix of its pending ones: the state's "highest UID" is exact)."""
    streams = [
        [(s.internaldate, index, n, plan, s) for n, s in enumerate(plan.pending)] for index, plan in enumerate(plans)
    ]
    for _, _, _, plan, summary in heapq.merge(*streams, key=lambda e: (e[0], e[1], e[2])):
        yield plan, summary


def _batches(plans: list[Plan]) -> Iterator[list[tuple[Plan, Summary]]]:
    batch: list[tuple[Plan, Summary]] = []
    size = 0
    for entry in _date_ordered(plans):
        if batch and (len(batch) >= transfer.BATCH or size + entry[1].size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry[1].size
    if batch:
        yield batch


def _fetch(source: Source, batch: list[tuple[Plan, Summary]]) -> list[bytes]:
    """The batch's bytes, in its order (``b""`` for a message expunged on the old server meanwhile)."""
    by_folder: dict[str, list[int]] = {}
    plan_of: dict[str, Plan] = {}
    for plan, summary in batch:
        by_folder.setdefault(plan.remote.name, []).append(summary.uid)
        plan_of[plan.remote.name] = plan
    data: dict[tuple[str, int], bytes] = {}
    for name, uids in by_folder.items():
        if source.examine(name) != plan_of[name].uidvalidity:
            raise SourceError(f"{source.url.host} renumbered folder {name} during the import: run it again")
        for uid, raw in source.bodies(uids).items():
            data[name, uid] = raw
    return [data.get((plan.remote.name, summary.uid), b"") for plan, summary in batch]


def _already_in(conn: sqlite3.Connection, account_id: int, folder: str, digest: bytes) -> bool:
    """Whether the target folder holds a copy with exactly these bytes and no trace prefix (imported or APPENDed
    before; a delivered copy carries this server's trace fields, so it is never the same)."""
    mailbox_id = mailboxes.find(conn, account_id, folder)
    if mailbox_id is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM blobs b JOIN messages m ON m.blob_id = b.id WHERE b.sha256 = ? AND m.mailbox_id = ? "
        "AND m.prefix = x'' LIMIT 1",
        (digest, mailbox_id),
    ).fetchone()
    return row is not None


def _write_batch(
    conn: sqlite3.Connection,
    *,
    account_id: int,
    source_key: str,
    batch: list[tuple[Plan, Summary]],
    raws: list[bytes],
    crm: bool,
    sent_folder: str,
    counts: dict[str, int],
) -> int:
    """One transaction: store the batch (skipping copies already there), then move each folder's mark to the
    highest UID stored. Returns how many entries are done (fewer at the first that does not fit the quota); their
    kinds are set in ``counts`` (set, not added: a job may run again)."""
    items: list[transfer.Item] = []
    kinds: list[str] = []  # per entry: "imported", "already_there" or "" (expunged on the old server)
    in_batch: set[tuple[str, bytes]] = set()
    for (plan, summary), fetched in zip(batch, raws, strict=True):
        assert plan.target is not None
        kind = "imported" if fetched else ""
        digest = hashlib.sha256(fetched).digest()
        if fetched and ((plan.target, digest) in in_batch or _already_in(conn, account_id, plan.target, digest)):
            kind = "already_there"
        in_batch.add((plan.target, digest))
        kinds.append(kind)
        raw = fetched if kind == "imported" else b""
        items.append(transfer.Item(plan.target, raw, summary.flags, summary.internaldate, summary.zone))
    done = transfer.import_batch(conn, account_id, items, crm=crm, sent_folder=sent_folder)
    marks: dict[str, tuple[int, int]] = {}
    for plan, summary in batch[:done]:
        marks[plan.remote.name] = (plan.uidvalidity, summary.uid)
    now = time.time()
    for folder, (uidvalidity, uid) in marks.items():
        conn.execute(
            """INSERT INTO imap_imports (account_id, source, folder, uidvalidity, last_uid, updated)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (account_id, source, folder) DO UPDATE SET
                 uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, updated = excluded.updated""",
            (account_id, source_key, folder, uidvalidity, uid, now),
        )
    done_kinds = kinds[:done]
    counts.update(imported=done_kinds.count("imported"), already_there=done_kinds.count("already_there"))
    return done


def make_folders(conn: sqlite3.Connection, *, account_id: int, plans: list[Plan]) -> int:
    """Create the target folders that do not exist yet; returns how many were made."""
    made = 0
    for target in dict.fromkeys(p.target for p in plans if p.target is not None):
        if mailboxes.find(conn, account_id, target) is None:
            imapwrite.create_mailbox(conn, account_id, target)
            made += 1
    return made


def copy_all(
    source: Source,
    write: Callable[[Callable[[sqlite3.Connection], int]], int],
    account_id: int,
    outcome: Outcome,
    progress: Callable[[int], None] = lambda n: None,
    *,
    crm: bool = True,
    sent_folder: str = "Sent",
) -> None:
    """Make every target folder (an empty folder of the old server too: its structure comes over), then copy every
    pending message of ``outcome.plans``, a batch per transaction. Raises QuotaExceeded (saying how many were
    copied) at the first message that does not fit; the batches before it are kept."""
    write(functools.partial(make_folders, account_id=account_id, plans=outcome.plans))
    total = outcome.pending
    for batch in _batches(outcome.plans):
        try:
            raws = _fetch(source, batch)
        except SourceError as exc:
            raise SourceError(
                f"{exc}; imported {outcome.imported} of {total} message(s) before that: the same command goes on "
                "from there",
                broken=exc.broken,
            ) from None
        counts = {"imported": 0, "already_there": 0}
        job = functools.partial(
            _write_batch,
            account_id=account_id,
            source_key=source.url.key,
            batch=batch,
            raws=raws,
            crm=crm,
            sent_folder=sent_folder,
            counts=counts,
        )
        done = write(job)
        outcome.imported += counts["imported"]
        outcome.already_there += counts["already_there"]
        progress(done)
        if done < len(batch):
            raise imapwrite.QuotaExceeded(
                f"the account's quota (storage or number of messages) would be exceeded: imported "
                f"{outcome.imported} of {total} message(s), stopped at the next one (once there is room, the same "
                "command goes on from there)"
            )
