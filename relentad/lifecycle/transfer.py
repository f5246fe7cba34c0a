"""Export and import of one account (issue 7), so a user can leave, or arrive from another server.

Export writes, under PATH: ``mail/<folder>.mbox`` per mailbox (levels joined by ``.``, a ``.`` in a name
written ``%2E``; mboxrd: a ``From `` line carrying the internal date, body lines matching ``>*From `` get one
more ``>``, one ``\\n`` after each message), ``flags.json`` (the flags of each message, by folder and position,
so a round trip keeps them), ``contacts.vcf`` (vCard 4.0, when the CRM is present), ``activity.csv`` (per-day
counters and logins), the user's Sieve scripts (``sieve/<name>.sieve``, ``sieve/active``), the account page's
settings when there are some (``autoreply.json``, ``forwarding.json``, ``filters.json``), ``shares.json`` (the
grants on its mailboxes and those others gave it, when there are any) and ``app-passwords.json`` (names, scopes,
created, last use; never a hash). Import reads the mail only: scripts, shares and app passwords are the user's to
set up again (ManageSieve, SETACL, new app passwords), where other accounts may not exist.

Import reads an mbox file, a folder of ``.mbox`` files (this export), or a Maildir (Maildir++: ``cur``/``new``
is INBOX, ``.A.B`` is folder ``A/B``, names in modified UTF-7; flags from ``:2,`` names: D draft, F flagged,
R answered, S seen, T deleted). Folders are kept (created when missing).

Import runs the delivery pipeline's steps minus spam (mail the user already had is not scored again) in the CLI
process, writing the database directly (safe while the daemon runs: SQLite serialises writers):
- store: each message goes in the way IMAP APPEND stores it (:func:`relentad.store.imapwrite.append_message`:
  structure parsed once, no trace header — the pipeline's Received/Delivered-To would change the bytes —, the
  source's flags and internal date, the disk quota and message limit checked in the transaction that adds it);
- CRM (``[crm] enabled``): the sorter files it — contacts, companies, thread, links — through the pipeline's own
  step (:func:`relentad.pipeline.sort_step` with ``keep_copies``: the rules do not run, so nothing is refiled,
  and no ``$Unassigned`` keyword is added: the folders and flags are the user's, and a review mark on years of
  old mail would be noise). Mail in a Sent folder (special-use ``\\Sent``, ``[submission] sent_folder``, or a
  last level named Sent, Sent Items, Sent Messages or Sent Mail) is filed as outgoing, like the Sent copy of
  submitted mail, so its recipients become confirmed contacts; so is mail from one of the account's own
  addresses, as always. Drafts (flag ``\\Draft`` or a Drafts folder) were never sent: they are stored, not filed.
  The CRM time of a message is its internal date, so first/last contact and threads follow the mail's history.
Messages go in date order across folders (:func:`date_order`); each batch of :data:`BATCH` is one write
transaction (copies and CRM rows together). A message that does not fit in the quota ends the import: the
messages before it are kept, the error says how many.

Invariants: messages are exported as the client sees them (trace prefix + stored bytes) and imported into the
store exactly as read — the mboxrd quoting is undone exactly, so export → import → export is byte-identical
(flags too: the import adds none).
"""

from __future__ import annotations

import csv
import functools
import heapq
import io
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO
from urllib.parse import quote

from .. import message, pipeline, trace
from ..auth import apppasswords, totp
from ..crm import autoforward, autoreply, pagefilters
from ..crm.sorter import FilingFailed, Sorter
from ..errors import InvalidInput
from ..imap import mutf7
from ..store import acl, imapwrite, mailboxes
from ..store import flags as flagmod
from . import activity

log = logging.getLogger(__name__)

_QUOTED = re.compile(rb"^>*From ")
_UNQUOTE = re.compile(rb"^>+From ")
_MAILDIR_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
BATCH = 200
_ASCTIME = "%a %b %d %H:%M:%S %Y"
_SOURCE = trace.Source(peer_ip="127.0.0.1", helo="localhost", protocol="LOCAL")  # the Delivery needs one; unused


@dataclass(frozen=True)
class Item:
    """One message to import."""

    folder: str
    raw: bytes
    flags: tuple[str, ...]
    internaldate: float
    zone: int = 0  # of the internal date, minutes east of UTC


# -- export -----------------------------------------------------------------------------------------------------


def _from_line(internaldate: float, zone: int = 0) -> bytes:
    """RFC 4155's asctime in UTC; an internal date with another zone (APPEND's) in that zone with the zone after
    the year, as Dovecot and c-client read it (``Fri Jul  8 14:08:34 2011 +0200``), so that it survives a round
    trip."""
    if not zone:
        return b"From MAILER-DAEMON " + datetime.fromtimestamp(internaldate, UTC).strftime(_ASCTIME).encode()
    local = datetime.fromtimestamp(internaldate, timezone(timedelta(minutes=zone)))
    return b"From MAILER-DAEMON " + local.strftime(_ASCTIME + " %z").encode()


def mbox_entry(raw: bytes, internaldate: float, zone: int = 0) -> bytes:
    """One mboxrd entry: From line, quoted message, one separating newline."""
    lines = raw.split(b"\n")
    quoted = b"\n".join(b">" + line if _QUOTED.match(line) else line for line in lines)
    return _from_line(internaldate, zone) + b"\n" + quoted + b"\n"


def _file_name(folder: str) -> str:
    """``A/B`` → ``A.B.mbox``; a ``.`` or ``%`` inside a level is written ``%2E``/``%25``, so that no two folders
    (``a.b`` and ``a/b``) share a file."""
    return ".".join(level.replace("%", "%25").replace(".", "%2E") for level in folder.split("/")) + ".mbox"


def _legacy_file_name(folder: str) -> str:
    return folder.replace("/", ".") + ".mbox"  # exports before the escaping


def _folder_of(file_name: str) -> str:
    """The folder of an ``.mbox`` file without ``flags.json``: the inverse of :func:`_file_name`."""
    levels = file_name[: -len(".mbox")].split(".")
    return "/".join(re.sub("%(2E|25)", lambda m: "." if m[1] == "2E" else "%", level) for level in levels)


Opener = Callable[[str], ContextManager[IO[bytes]]]  # a file name under the export (``mail/INBOX.mbox``) → a file


def export(conn: sqlite3.Connection, account_id: int, open_file: Opener) -> tuple[int, bool]:
    """Everything of the account, each file through ``open_file``: the mail (:func:`write_mail`), ``contacts.vcf``
    when the CRM module is installed, ``activity.csv``. Returns (messages written, whether contacts were)."""
    count = write_mail(conn, account_id, open_file)
    contacts = contacts_vcf(conn, account_id)
    if contacts is not None:
        with open_file("contacts.vcf") as out:
            out.write(contacts.encode())
    with open_file("activity.csv") as out:
        out.write(activity_csv(conn, account_id).encode())
    write_sieve(conn, account_id, open_file)
    reply = autoreply.get(conn, account_id)
    if reply.enabled or reply.message:  # the automatic reply's settings, as the account page shows them
        settings = {key: value for key, value in asdict(reply).items() if key != "updated"}
        with open_file("autoreply.json") as out:
            out.write(json.dumps(settings, indent=1, ensure_ascii=False).encode())
    kept = [
        {"field": f.field, "value": f.value, "folder": f.folder, "seen": f.seen}
        for f in pagefilters.listed(conn, account_id)
    ]
    if kept:  # the account page's filters, in their order
        with open_file("filters.json") as out:
            out.write(json.dumps(kept, indent=1, ensure_ascii=False).encode())
    forward = autoforward.get(conn, account_id)
    if forward.address:  # the account page's forwarding
        with open_file("forwarding.json") as out:
            out.write(
                json.dumps({"enabled": forward.enabled, "address": forward.address, "keep": forward.keep}).encode()
            )
    app_passwords = [{**asdict(entry), "scope": list(entry.scope)} for entry in apppasswords.listed(conn, account_id)]
    if app_passwords:  # what they are and when they were used, never their hashes
        for entry in app_passwords:
            del entry["id"]
        with open_file("app-passwords.json") as out:
            out.write(json.dumps(app_passwords, indent=1, ensure_ascii=False).encode())
    two_factor = totp.state(conn, account_id)
    if two_factor.enabled:  # that it is on and since when; never the secret or the recovery codes
        since = datetime.fromtimestamp(two_factor.since, UTC).isoformat(timespec="seconds")
        with open_file("two-factor.json") as out:
            out.write(
                json.dumps({"enabled": True, "since": since, "recovery_codes_left": two_factor.recovery_left}).encode()
            )
    shares = acl.shares_of(conn, account_id)
    if shares:
        with open_file("shares.json") as out:
            out.write(json.dumps(shares, indent=1, ensure_ascii=False).encode())
    return count, contacts is not None


def write_sieve(conn: sqlite3.Connection, account_id: int, open_file: Opener) -> None:
    """The user's own Sieve scripts (ManageSieve) as ``sieve/<name>.sieve``, the name percent-encoded where a file
    name could not carry it, and the active one's name in ``sieve/active``: what another server's ManageSieve
    takes back (``sieve-connect --upload``, then ``--activate``)."""
    rows = conn.execute(
        "SELECT name, script, active FROM sieve_scripts WHERE account_id = ? ORDER BY name", (account_id,)
    ).fetchall()
    for name, script, active in rows:
        with open_file(f"sieve/{sieve_file_name(str(name))}") as out:
            out.write(str(script).encode())
        if active:
            with open_file("sieve/active") as out:
                out.write(str(name).encode() + b"\n")


def sieve_file_name(name: str) -> str:
    """``<name>.sieve``: ``/``, ``%``, a leading ``.`` and anything outside printable ASCII percent-encoded
    (UTF-8), so every script has a file of its own on any file system."""
    encoded = quote(name, safe=" !#$&'()+,;=@[]^`{}~-_")
    return ("%2E" + encoded[1:] if encoded.startswith(".") else encoded) + ".sieve"


def export_to(conn: sqlite3.Connection, account_id: int, target: Path) -> tuple[int, bool]:
    """:func:`export` into the folder ``target`` (``relentad export``), which must be new or empty: files of an
    earlier export there (a folder since deleted, a Sieve script since removed) would otherwise stay beside the
    new ones and come back with the next import."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInput(f"{target} is not an empty folder: export into a new or empty one")
    (target / "mail").mkdir(parents=True, exist_ok=True)

    def open_file(name: str) -> IO[bytes]:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        return (target / name).open("wb")

    return export(conn, account_id, open_file)


def write_mail(conn: sqlite3.Connection, account_id: int, open_file: Opener) -> int:
    """Every mailbox as ``mail/<folder>.mbox`` and the flags as ``flags.json``, through ``open_file`` (a folder
    for the CLI, a zip for the account page); returns messages written. One message in memory at a time.

    A terminated account's mail is what its mailboxes held when it was terminated, waiting in the retention area
    for the purge (what the user had expunged before stays out, as it was deleted)."""
    flag_map: dict[str, list[list[str]]] = {}
    written = 0
    terminated = conn.execute(
        "SELECT coalesce(terminated, 0) FROM accounts WHERE id = ? AND state = 'terminated'", (account_id,)
    ).fetchone()
    source, since = ("messages m", ()) if terminated is None else ("expunged m", (terminated[0],))
    boxes = conn.execute(
        "SELECT id, name FROM mailboxes WHERE account_id = ? AND noselect = 0 ORDER BY name", (account_id,)
    ).fetchall()
    for box_id, name in boxes:
        rows = conn.execute(
            f"""SELECT m.prefix, b.data, m.internaldate, m.zone, m.flags, m.keywords FROM {source}
                JOIN blobs b ON b.id = m.blob_id WHERE m.mailbox_id = ? {"AND m.expunged >= ?" if since else ""}
                ORDER BY m.uid""",
            (box_id, *since),
        )
        entries = []
        with open_file("mail/" + _file_name(str(name))) as out:
            for prefix, data, internaldate, zone, bits, keywords in rows:
                out.write(mbox_entry(bytes(prefix) + bytes(data), float(internaldate), int(zone)))
                entries.append(flagmod.names(int(bits), str(keywords)))
                written += 1
        flag_map[str(name)] = entries
    with open_file("flags.json") as out:
        out.write(json.dumps(flag_map, indent=1).encode())
    return written


def activity_csv(conn: sqlite3.Connection, account_id: int, days: int = 365) -> str:
    """``activity.csv``: one row per day (received, sent, bytes, logins), then one per login."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["kind", "day_or_time", "received", "sent", "bytes_stored", "logins", "failed_logins", "ip",
                     "protocol", "result", "app_password"])  # fmt: skip
    for day in activity.days(conn, account_id, days):
        writer.writerow(["day", day.day, day.received, day.sent, day.bytes_stored, day.logins, day.failed_logins])
    for login in activity.logins(conn, account_id, time.time() - days * 86400):
        stamp = datetime.fromtimestamp(login.time, UTC).isoformat(timespec="seconds")
        row = ["login", stamp, "", "", "", "", "", login.ip, login.protocol, login.result, login.app_password]
        writer.writerow(row)
    return out.getvalue()


def contacts_vcf(conn: sqlite3.Connection, account_id: int) -> str | None:
    """The account's contacts as vCard 4.0 (a card a client wrote: as CardDAV serves it); None when the CRM
    module is not installed."""
    try:
        from ..carddav import book
        from ..crm import views
    except ImportError:  # pragma: no cover - the CRM is optional
        return None
    return book.export_vcards(conn, account_id, views.list_contacts(conn, account_id))


# -- import -----------------------------------------------------------------------------------------------------


_ZONE = re.compile(r"^([+-]\d{4}|[A-Z]{3,4})$")  # "+0000" or "UTC" where some writers put one (Google Takeout)
_NUMERIC_ZONE = re.compile(r"^([+-])([01]\d|2[0-3])([0-5]\d)$")  # a real offset: under 24 hours


def _from_date(line: bytes) -> tuple[float, int] | None:
    """(time, zone in minutes east of UTC) of a ``From sender date`` line (RFC 4155: asctime, UTC, ``Mon Jan  1
    00:00:00 2024``; a numeric zone before or after the year makes it local time in that zone, as Dovecot and
    c-client read it; a named one is ignored), or None when it carries none."""
    words = line.decode("ascii", "replace").split()[2:]
    zones = [_NUMERIC_ZONE.match(w) for w in words[:7]]
    found = next((z for z in zones if z is not None), None)
    zone = 0 if found is None else (-1 if found[1] == "-" else 1) * (int(found[2]) * 60 + int(found[3]))
    words = [w for w in words if not _ZONE.match(w)]
    for layout in ("%a %b %d %H:%M:%S %Y", "%a %b %d %H:%M %Y"):
        try:
            moment = datetime.strptime(" ".join(words[:5]), layout).replace(tzinfo=timezone(timedelta(minutes=zone)))
        except ValueError:
            continue
        return moment.timestamp(), zone
    return None


def _separates(line: bytes, first: bool) -> bool:
    """Whether ``line`` begins an mbox entry: a ``From `` line that starts the file or carries a date (RFC 4155
    §2: ``From``, the sender, a timestamp). An unquoted ``From `` line inside a body (mboxo writers that do not
    quote it, hand-made files) has none, and stays part of its message."""
    return line.startswith(b"From ") and (first or _from_date(line) is not None)


def read_mbox(data: bytes) -> Iterator[tuple[bytes, float, int]]:
    """(message, internal date, its zone) of each mboxrd entry, unquoted, without the separating newline.

    Entries begin at separator lines (:func:`_separates`; writers quote ``From `` lines in bodies). The newline
    before a From line (or the file's final one) is the separator. In a file whose From lines end in CRLF the
    separator is a CRLF blank line, when there is one: a message keeps its own final CRLF, never a lone CR.
    """
    lines = data.split(b"\n")
    first = next((index for index, line in enumerate(lines) if line not in (b"", b"\r")), 0)
    starts = [index for index, line in enumerate(lines) if index >= first and _separates(line, index == first)]
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(lines)
        body = [line[1:] if _UNQUOTE.match(line) else line for line in lines[start + 1 : end]]
        entry = b"\n".join(body) + (b"\n" if body and end < len(lines) else b"")  # up to the next From line
        if lines[start].endswith(b"\r"):  # a CRLF file (this export writes LF From lines): CRLF separators too
            if entry.endswith(b"\r\n\r\n") or entry == b"\r\n":
                entry = entry[:-2]
        elif entry.endswith(b"\n"):
            entry = entry[:-1]
        date = _from_date(lines[start])
        yield (entry, time.time(), 0) if date is None else (entry, *date)


def _maildir_level(level: str) -> str:
    """One level of a Maildir++ folder name: modified UTF-7 on disk (Dovecot, Courier: ``.Caf&AOk-`` is
    ``Café``); a name that is not valid modified UTF-7 (another writer's ``A&B``) is kept as it is."""
    try:
        return mutf7.decode(level)
    except mutf7.MUTF7Error:
        return level


def _maildir_folder(name: str) -> str:
    return "/".join(_maildir_level(level) for level in name.lstrip(".").split(".")) or mailboxes.INBOX


def _maildir_items(root: Path) -> Iterator[Item]:
    folders = [(mailboxes.INBOX, root)] + [
        (_maildir_folder(p.name), p) for p in sorted(root.iterdir()) if p.is_dir() and p.name.startswith(".")
    ]
    for folder, path in folders:
        files = sorted((path / "cur").glob("*")) + sorted((path / "new").glob("*"))
        for file in files:
            if not file.is_file():
                continue
            info = file.name.split(":2,", 1)[1] if ":2," in file.name else ""
            names = tuple(_MAILDIR_FLAGS[c] for c in info if c in _MAILDIR_FLAGS)
            yield Item(folder, file.read_bytes(), names, file.stat().st_mtime)


def _mbox_items(path: Path, folder: str, flags: list[list[str]] | None) -> Iterator[Item]:
    data = path.read_bytes()
    if data.strip() and not data.lstrip(b"\r\n").startswith(b"From "):  # a single message (.eml), a text file...
        raise InvalidInput(f"{path}: not an mbox file (it does not begin with a 'From ' line), nothing imported")
    for index, (raw, date, zone) in enumerate(read_mbox(data)):
        if not raw:  # two From lines in a row: no message (a stored message is never empty)
            continue
        names = tuple(flags[index]) if flags is not None and index < len(flags) else ()
        yield Item(folder, raw, names, date, zone)


def items(source: Path) -> list[Item]:
    """Everything to import from ``source`` (an mbox file, this module's export folder, or a Maildir). A folder in
    the shared namespace is refused before anything is written: IMAP would resolve its name as another account's
    mailbox, so the mail imported there could never be read."""
    found = _items(source)
    shared = sorted({item.folder for item in found if acl.in_namespace(item.folder)})
    if shared:
        raise InvalidInput(
            f"folder {shared[0]} is in the shared namespace (Shared/<address>/...), where no own folder can be: "
            "rename it in the export (nothing was imported)"
        )
    return found


def _items(source: Path) -> list[Item]:
    if source.is_file():
        return list(_mbox_items(source, mailboxes.INBOX, None))
    if (source / "cur").is_dir() or (source / "new").is_dir():
        return list(_maildir_items(source))
    mail = source / "mail" if (source / "mail").is_dir() else source
    flag_file = source / "flags.json"
    flag_map: dict[str, list[list[str]]] = json.loads(flag_file.read_text("utf-8")) if flag_file.exists() else {}
    by_file = {_file_name(name): name for name in flag_map}
    for name in flag_map:
        by_file.setdefault(_legacy_file_name(name), name)
    found: list[Item] = []
    for path in sorted(mail.glob("*.mbox")):
        folder = by_file.get(path.name) or _folder_of(path.name)
        found.extend(_mbox_items(path, folder, flag_map.get(folder)))
    if not found and not any(mail.glob("*.mbox")):
        raise InvalidInput(f"{source}: neither an mbox file, an export folder nor a Maildir")
    return found


def _folder_id(conn: sqlite3.Connection, account_id: int, folder: str) -> int:
    found = mailboxes.find(conn, account_id, folder)
    return found if found is not None else imapwrite.create_mailbox(conn, account_id, folder)


def folder_role(conn: sqlite3.Connection, mailbox_id: int, folder: str, sent_folder: str = "Sent") -> str:
    """``"sent"``, ``"drafts"`` or ``""``: what the import's CRM filing makes of mail in ``folder``."""
    row = conn.execute("SELECT special_use FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
    return mailboxes.own_mail_role(folder, str(row[0] or "") if row is not None else "", sent_folder)


def _sorted(
    sorter: Sorter, conn: sqlite3.Connection, item: Item, parsed: message.ParsedMessage, placement: pipeline.Placement
) -> pipeline.Delivery:
    """The pipeline's CRM step on one item: a Delivery whose one copy stays where and as it is."""
    delivery = pipeline.Delivery(
        raw=item.raw,
        mail_from="",
        placements=[placement],
        source=_SOURCE,
        transaction_id="import",
        received_at=item.internaldate,  # the CRM's time of the message: first/last contact, threads
        parsed=parsed,
    )
    pipeline.sort_step(sorter, conn, delivery, keep_copies=True)
    return delivery


def import_batch(
    conn: sqlite3.Connection, account_id: int, batch: list[Item], *, crm: bool = True, sent_folder: str = "Sent"
) -> int:
    """Inside one write transaction: store the items (APPEND semantics: exact bytes, flags, dates, quota) and,
    with ``crm``, file them in the CRM. Returns how many items were done: fewer than ``len(batch)`` when the
    next one does not fit in the account's quota (those before it are kept)."""
    sorter = Sorter() if crm else None
    address = str(conn.execute("SELECT email FROM accounts WHERE id = ?", (account_id,)).fetchone()[0])
    roles: dict[str, str] = {}
    for index, item in enumerate(batch):
        if not item.raw:
            continue
        mailbox_id = _folder_id(conn, account_id, item.folder)
        role = roles.get(item.folder)
        if role is None:
            role = roles[item.folder] = folder_role(conn, mailbox_id, item.folder, sent_folder)
        parsed = message.parse(item.raw)
        delivery = None
        if sorter is not None and role != "drafts" and "\\Draft" not in item.flags:
            placement = pipeline.Placement(account_id, address, item.folder, outgoing=role == "sent")
            delivery = _sorted(sorter, conn, item, parsed, placement)
        try:
            uid = imapwrite.append_message(
                conn,
                account_id,
                mailbox_id,
                item.raw,
                structure=parsed.to_json(),
                size=len(item.raw),
                names=[n for n in item.flags if n != "\\Recent"],
                internaldate=item.internaldate,
                zone=item.zone,
            )
        except imapwrite.QuotaExceeded:
            return index
        if delivery is not None and delivery.linked:
            row = conn.execute(
                "SELECT id, blob_id, modseq FROM messages WHERE mailbox_id = ? AND uid = ?", (mailbox_id, uid)
            ).fetchone()
            stored = [pipeline.Stored(account_id, mailbox_id, uid, int(row[2]), int(row[0]), int(row[1]))]
            conn.execute("SAVEPOINT crm")  # a filing that fails leaves the imported message as it is
            try:
                for link in delivery.linked:
                    link(conn, stored)
            except FilingFailed:
                conn.execute("ROLLBACK TO crm")
                log.exception("import: CRM filing of a message failed; the message is imported unfiled")
            conn.execute("RELEASE crm")
    return len(batch)


def date_order(found: list[Item]) -> list[Item]:
    """The items with the folders interleaved by internal date, each folder's own order kept: its messages get
    UIDs in source order (so a round trip exports the same mbox), while the CRM sees the mail roughly as it
    arrived (a reply in Sent is filed before the answer to it in INBOX, so threads and contacts come out as live
    delivery would have made them)."""
    by_folder: dict[str, list[Item]] = {}
    for item in found:
        by_folder.setdefault(item.folder, []).append(item)
    return list(heapq.merge(*by_folder.values(), key=lambda item: item.internaldate))


def import_all(
    write: Callable[[Callable[[sqlite3.Connection], int]], int],
    account_id: int,
    found: list[Item],
    progress: Callable[[int], None] = lambda n: None,
    *,
    crm: bool = True,
    sent_folder: str = "Sent",
) -> int:
    """Import ``found`` in batches of :data:`BATCH`, each through ``write`` (one transaction returning the job's
    result), in :func:`date_order`; returns the count. Raises QuotaExceeded, saying how many were imported, at
    the first message that does not fit."""
    ordered = date_order(found)
    done = 0
    for start in range(0, len(ordered), BATCH):
        batch = ordered[start : start + BATCH]
        job = functools.partial(import_batch, account_id=account_id, batch=batch, crm=crm, sent_folder=sent_folder)
        stored = write(job)
        done += stored
        progress(stored)
        if stored < len(batch):
            raise imapwrite.QuotaExceeded(
                f"the account's quota (storage or number of messages) would be exceeded: imported {done} of "
                f"{len(found)} message(s), stopped at the next one"
            )
    return len(found)
