"""Filing rules per account: storage in SQLite and evaluation of compiled Sieve scripts (:mod:`.sieve`).

An account's rules run in ``position`` order at delivery, as one program: they share the RFC 5232 flag
variable, and ``stop`` ends all of them. The account's own active script (:mod:`.userscripts`, managed by its
user over ManageSieve) is the program's last part, after the admin's rules; its trace name ends in
:data:`USER_SUFFIX`. The outcome (:class:`Outcome`) lists the folders the message goes to,
each with the flags it gets; with no ``fileinto`` (or with ``keep``) it stays where earlier steps put it.

relentad extensions, read with the ``header`` / ``exists`` tests as if they were header fields (they never come
from the message itself, so a sender cannot forge them):
- ``X-Relentad-Contact-Tag``: each tag of the sender's contact;
- ``X-Relentad-Company``: the sender's company name and its domain;
- ``X-Relentad-Contact``: ``confirmed``, ``new`` (an unconfirmed person), ``unknown`` (not a contact yet),
  ``list`` or ``bulk``;
- ``X-Relentad-Spam``: ``yes`` when an earlier step (spam filter, DMARC quarantine) filed the copy into Junk,
  else ``no``.

Invariants: evaluation is pure and never raises on message content; a match costs at most the length of the value
times that of the key (``:matches`` globs are compiled once to fixed-length pieces, see :class:`Glob`); folder
names are checked when a rule is added, so delivery never meets a name the store would refuse.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from email.utils import parseaddr

from ..errors import AlreadyExists, InvalidInput, NotFound
from ..headers import decode_header
from ..message import Address, ParsedMessage, header_fields_of, normalize_crlf, parse_addresses
from ..store.imapwrite import check_name
from . import participants
from .folders import FOLLOW_UP, is_virtual
from .sieve import (
    MAX_REDIRECTS,
    Action,
    AddressTest,
    Combined,
    Const,
    ExistsTest,
    HeaderTest,
    If,
    Match,
    NotTest,
    Script,
    SizeTest,
    Vacation,
    compile_script,
)
from .sieve import Command as SieveCommand
from .sieve import Test as SieveTest

_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
VIRTUAL = ("x-relentad-contact-tag", "x-relentad-company", "x-relentad-contact", "x-relentad-spam")
_ADDRESS_FIELDS = ("from", "sender", "reply-to", "to", "cc", "bcc")
USER_SUFFIX = " (user)"
"""Appended to the name of the user's own script in traces (``rules test``), to tell it from an admin rule."""
PROGRAM = """SELECT 0 AS k, position AS p, id, name, script FROM crm_rules WHERE account_id = {account}
             UNION ALL
             SELECT 1, 0, id, name || {suffix}, script FROM sieve_scripts WHERE account_id = {account} AND active = 1
             ORDER BY k, p, id"""
"""(name, script) of an account's whole program in running order: the admin's rules, then the user's active script
(named with ``{suffix}``, a parameter bound to :data:`USER_SUFFIX`). Both indexes answer it."""


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(text: str, octet: bool) -> str:
    """The form a comparator compares: i;octet exact, i;ascii-casemap (RFC 4790 §9.2) with only A-Z folded (so
    "ß" never equals "ss" and the Kelvin sign never equals "k", as Unicode case folding would have it)."""
    if octet:
        return text
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled RFC 5228 §2.7.1 ``:matches`` pattern (``*`` any run, ``?`` one character, ``\\`` escapes).

    Kept as the fixed-length pieces between the stars, matched first at the start, last at the end and each middle
    one at its leftmost place: O(len(value) × len(pattern)) whatever the pattern. One regex of ``.*`` runs
    backtracks polynomially in the number of stars (``*a*a*a*a*a*a*b`` against 300 "a"s never finishes: a
    subject line could stall the daemon)."""

    pieces: tuple[re.Pattern[str], ...]
    last: int  # the length of the last piece

    def fullmatch(self, value: str) -> bool:
        first, *middle = self.pieces
        if not middle:
            return first.fullmatch(value) is not None
        head = first.match(value)
        end = len(value) - self.last
        if head is None or end < head.end():
            return False
        pos = head.end()
        for piece in middle[:-1]:
            found = piece.search(value, pos, end)
            if found is None:
                return False
            pos = found.end()
        return middle[-1].fullmatch(value, end) is not None


@functools.lru_cache(maxsize=1024)
def glob(pattern: str, octet: bool) -> Glob:
    flags = re.DOTALL | (0 if octet else re.IGNORECASE | re.ASCII)  # re.ASCII: only A-Z fold, as fold() does
    pieces: list[list[str]] = [[]]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            pieces[-1].append(re.escape(pattern[i + 1]))
            i += 1
        elif char == "*":
            pieces.append([])
        else:
            pieces[-1].append("." if char == "?" else re.escape(char))
        i += 1
    return Glob(tuple(re.compile("".join(p), flags) for p in pieces), len(pieces[-1]))


def matches(match: Match, value: str) -> bool:
    """Does ``value`` satisfy the match against any of its keys?"""
    if match.kind == ":matches":
        return any(glob(key, match.octet).fullmatch(value) for key in match.keys)
    value = fold(value, match.octet)
    for key in match.keys:
        folded = fold(key, match.octet)
        if (match.kind == ":is" and value == folded) or (match.kind == ":contains" and folded in value):
            return True
    return False


@dataclass
class MessageView:
    """What rules may look at: the parsed message, the envelope, the size and the virtual fields."""

    parsed: ParsedMessage
    raw: bytes
    envelope_from: str
    envelope_to: str
    virtual: dict[str, list[str]] = field(default_factory=dict)
    _fields: dict[str, list[str]] | None = None

    def _all_fields(self) -> dict[str, list[str]]:
        if self._fields is None:
            data = normalize_crlf(self.raw) if self.parsed.needs_crlf else self.raw
            collected: dict[str, list[str]] = {}
            for key, value in header_fields_of(data, self.parsed.tree):
                collected.setdefault(key, []).append(value)
            self._fields = collected
        return self._fields

    def headers(self, name: str) -> list[str]:
        """Decoded values of a header field (all occurrences), or the relentad virtual field."""
        if name in VIRTUAL:
            return self.virtual.get(name, [])
        if name == "subject":
            return [] if self.parsed.subject is None else [self.parsed.subject]
        return [decode_header(v) for v in self._all_fields().get(name, [])]

    def field_names(self) -> list[str]:
        """The (lower-case) names of the message's header fields."""
        return list(self._all_fields())

    def addresses(self, name: str) -> list[str]:
        if name in _ADDRESS_FIELDS:
            groups: dict[str, list[Address]] = {
                "from": self.parsed.from_,
                "sender": self.parsed.sender,
                "reply-to": self.parsed.reply_to,
                "to": self.parsed.to,
                "cc": self.parsed.cc,
                "bcc": self.parsed.bcc,
            }
            return [a.address for a in groups[name] if a.address]
        if name in VIRTUAL:
            return []
        return [a.address for value in self.headers(name) for a in parse_addresses(value) if a.address]


def _part(address: str, part: str) -> str:
    local, at, domain = address.rpartition("@")
    if part == ":localpart":  # a quoted local part is compared as what it says: "b c" is b c
        local = local if at else address
        quoted = len(local) > 1 and local[0] == local[-1] == '"'
        return _QUOTED_PAIR.sub(r"\1", local[1:-1]) if quoted else local
    if part == ":domain":
        return domain if at else ""
    return address


def evaluate_test(test: SieveTest, view: MessageView) -> bool:
    if isinstance(test, AddressTest):
        for name in test.headers:
            if test.envelope:
                values = [view.envelope_from] if name == "from" else [view.envelope_to] if name == "to" else []
            else:
                values = view.addresses(name)
            if any(matches(test.match, _part(v, test.part)) for v in values):
                return True
        return False
    if isinstance(test, HeaderTest):
        return any(matches(test.match, v) for name in test.headers for v in view.headers(name))
    if isinstance(test, ExistsTest):
        return all(view.headers(name) for name in test.headers)
    if isinstance(test, SizeTest):
        return len(view.raw) > test.limit if test.over else len(view.raw) < test.limit
    if isinstance(test, Combined):
        results = (evaluate_test(t, view) for t in test.tests)
        return all(results) if test.all_ else any(results)
    if isinstance(test, NotTest):
        return not evaluate_test(test.test, view)
    assert isinstance(test, Const)
    return test.value


@dataclass
class Outcome:
    """What the rules decided: folders with their flags, the implicit keep's flags, and a trace for logs."""

    fileinto: list[tuple[str, list[str]]] = field(default_factory=list)
    keep: list[str] | None = None  # explicit keep: flags at that moment
    flags: list[str] = field(default_factory=list)  # the imap4flags variable at the end
    tags: list[str] = field(default_factory=list)  # tagcontact: tags for the message's contact
    vacation: Vacation | None = None  # the first vacation action run (RFC 5230 §4.7: one per delivery)
    redirects: list[str] = field(default_factory=list)  # addresses to forward the message to, at most MAX_REDIRECTS
    cancel_keep: bool = False  # a redirect without :copy cancelled the implicit keep (RFC 5228 §4.2)
    stopped: bool = False
    trace: list[str] = field(default_factory=list)

    def targets(self, current: str) -> list[tuple[str, list[str]]]:
        """(folder, flags) of every copy: fileinto targets, plus ``current`` on keep or when nothing was filed."""
        out = list(self.fileinto)
        if self.keep is not None:
            out.append((current, self.keep))
        elif not out and not (self.cancel_keep and self.redirects):
            out.append((current, list(self.flags)))
        seen: set[str] = set()
        unique = []
        for folder, flags in out:
            if folder not in seen:
                seen.add(folder)
                unique.append((folder, flags))
        return unique


def _add(flags: list[str], new: tuple[str, ...]) -> list[str]:
    known = {f.lower() for f in flags}
    return flags + [f for f in new if f.lower() not in known]


def _run(commands: tuple[SieveCommand, ...], view: MessageView, outcome: Outcome, rule: str) -> None:
    for command in commands:
        if outcome.stopped:
            return
        if isinstance(command, If):
            for test, block in command.branches:
                if test is None or evaluate_test(test, view):
                    _run(block, view, outcome, rule)
                    break
            continue
        _act(command, outcome, rule)


def _act(action: Action, outcome: Outcome, rule: str) -> None:
    name = action.name
    if name == "stop":
        outcome.stopped = True
    elif name == "addflag":
        outcome.flags = _add(outcome.flags, action.flags or ())
    elif name == "setflag":
        outcome.flags = _add([], action.flags or ())
    elif name == "removeflag":
        gone = {f.lower() for f in action.flags or ()}
        outcome.flags = [f for f in outcome.flags if f.lower() not in gone]
    elif name == "fileinto":
        flags = list(action.flags) if action.flags is not None else list(outcome.flags)
        outcome.fileinto.append((action.argument, flags))
    elif name == "keep":
        outcome.keep = list(action.flags) if action.flags is not None else list(outcome.flags)
    elif name == "tagcontact":
        outcome.tags += [tag for tag in action.tags if tag not in outcome.tags]
    elif name == "redirect":
        if len(outcome.redirects) >= MAX_REDIRECTS:  # an error (RFC 5228 §4.2): the message is kept after all
            outcome.cancel_keep, outcome.keep = False, outcome.keep if outcome.keep is not None else list(outcome.flags)
            outcome.trace.append(f"{rule}: redirect {action.argument} (ignored: more than {MAX_REDIRECTS}; kept)")
            return
        if action.argument.lower() not in (r.lower() for r in outcome.redirects):
            outcome.redirects.append(action.argument)
        outcome.cancel_keep = outcome.cancel_keep or not action.copy
    elif name == "vacation":  # no effect on the implicit keep (RFC 5230 §4.7); a second one is ignored
        if outcome.vacation is not None:
            outcome.trace.append(f"{rule}: vacation (ignored: one per message)")
            return
        outcome.vacation = action.vacation
    argument = action.argument or " ".join(action.tags)
    outcome.trace.append(f"{rule}: {name}" + (f" {argument}" if argument else ""))


def evaluate(scripts: list[tuple[str, Script]], view: MessageView) -> Outcome:
    """Run the account's rules, in order, on one message."""
    outcome = Outcome()
    for name, script in scripts:
        _run(script.commands, view, outcome, name)
        if outcome.stopped:
            break
    return outcome


# -- storage ----------------------------------------------------------------------------------------------


COMPILED_OCTETS = 16 << 20
"""Script text the compile cache keeps at most (with its compiled forms): users upload scripts of up to 1 MiB
over ManageSieve, so a count alone (4096 entries) let one user who varied a large script grow it to gigabytes."""
COMPILED_ENTRIES = 4096


class _Compiled:
    """The compile cache, least recently used first, bounded by entries and by octets of text. Thread-safe
    (deliveries compile in worker threads); a compile runs outside the lock."""

    def __init__(self) -> None:
        self.scripts: OrderedDict[str, Script] = OrderedDict()
        self.octets = 0
        self.lock = threading.Lock()

    def get(self, text: str) -> Script:
        with self.lock:
            script = self.scripts.get(text)
            if script is not None:
                self.scripts.move_to_end(text)
                return script
        script = compile_script(text, strict=False)
        with self.lock:
            if text not in self.scripts:
                self.scripts[text] = script
                self.octets += len(text)
            while self.octets > COMPILED_OCTETS or len(self.scripts) > COMPILED_ENTRIES:
                self.octets -= len(self.scripts.popitem(last=False)[0])
        return script


_COMPILED = _Compiled()


def compiled(text: str) -> Script:
    """Compile once per distinct script text (delivery reads the texts, the cache skips the parse); leniently, as
    rules stored by an older release must keep working (:func:`check` is the strict gate when a rule is added)."""
    return _COMPILED.get(text)


def check_folder(name: str) -> None:
    """A folder a rule may file into: a name the store takes, outside the CRM's read-only views (which IMAP
    refuses to CREATE in: a real mailbox there would shadow them)."""
    check_name(name)
    if is_virtual(name) and name != FOLLOW_UP:  # a real Follow-up folder (older than the view) still takes mail
        raise InvalidInput("Contacts/ and Companies/ are the CRM's read-only views")


def check(text: str, own: frozenset[str] | None = None) -> Script:
    """Compile and check folder names and, given the account's ``own`` addresses, that a vacation's ``:from`` is
    one of them; InvalidInput with one line when the script cannot be used."""
    script = compile_script(text)
    for folder in script.folders():
        try:
            check_folder(folder)
        except InvalidInput as exc:
            raise InvalidInput(f"fileinto {folder!r}: {exc}") from None
    for action in script.actions("vacation") if own is not None else ():
        sender = action.vacation.from_ if action.vacation else None
        if sender is not None and not _owns(own or frozenset(), sender):
            raise InvalidInput(f"vacation :from {sender!r} is not one of the account's addresses")
    return script


def _owns(own: frozenset[str], written: str) -> bool:
    address = participants.normalize(parseaddr(written)[1])
    return bool(address) and participants.is_own(address, own)


def own_addresses(conn: sqlite3.Connection, account_id: int) -> frozenset[str]:
    """The account's address and its aliases (catch-alls left out), lower case."""
    rows = conn.execute(
        """SELECT email FROM accounts WHERE id = ?1
           UNION SELECT address FROM aliases WHERE account_id = ?1 AND address NOT LIKE '@%'""",
        (account_id,),
    )
    return frozenset(str(r[0]).lower() for r in rows)


def add(conn: sqlite3.Connection, account_id: int, name: str, text: str, position: int | None = None) -> int:
    """Store a checked rule at ``position`` (1-based; default: last); returns its id."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("a rule needs a name of 1-100 characters")
    check(text, own_addresses(conn, account_id))
    if conn.execute("SELECT 1 FROM crm_rules WHERE account_id = ? AND name = ?", (account_id, name)).fetchone():
        raise AlreadyExists(f"a rule named {name!r} exists")
    count = conn.execute("SELECT count(*) FROM crm_rules WHERE account_id = ?", (account_id,)).fetchone()[0]
    where = count + 1 if position is None else max(1, min(position, count + 1))
    conn.execute(
        "UPDATE crm_rules SET position = position + 1 WHERE account_id = ? AND position >= ?", (account_id, where)
    )
    cursor = conn.execute(
        "INSERT INTO crm_rules (account_id, position, name, script, created) VALUES (?, ?, ?, ?, ?)",
        (account_id, where, name, text, time.time()),
    )
    return int(cursor.lastrowid or 0)


def remove(conn: sqlite3.Connection, account_id: int, name: str) -> None:
    row = conn.execute(
        "SELECT position FROM crm_rules WHERE account_id = ? AND name = ?", (account_id, name)
    ).fetchone()
    if row is None:
        raise NotFound(f"no rule named {name!r}")
    conn.execute("DELETE FROM crm_rules WHERE account_id = ? AND name = ?", (account_id, name))
    conn.execute(
        "UPDATE crm_rules SET position = position - 1 WHERE account_id = ? AND position > ?", (account_id, row[0])
    )


def list_rules(conn: sqlite3.Connection, account_id: int) -> list[dict[str, object]]:
    rows = conn.execute(
        "SELECT position, name, script, created FROM crm_rules WHERE account_id = ? ORDER BY position, id",
        (account_id,),
    )
    return [dict(r) for r in rows]


def load(conn: sqlite3.Connection, account_id: int) -> list[tuple[str, Script]]:
    """The account's rules, compiled (cached by text), in order, the user's active script last; one that no longer
    compiles is skipped."""
    out = []
    for name, text in conn.execute(
        f"SELECT name, script FROM ({PROGRAM.format(account='?1', suffix='?2')})", (account_id, USER_SUFFIX)
    ):
        try:
            out.append((str(name), compiled(str(text))))
        except InvalidInput:
            continue
    return out
