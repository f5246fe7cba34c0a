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
times that of the key (``:matches`` globs are compiled once to fixed-length pieces, see :class:`Glob`; ``:regex``
runs on the linear-time engine of :mod:`.sieveregex`) and all of a message's matching spends from one
:class:`.sieveregex.Budget` (the rules run while the sending server waits); a run-time error in one script drops
its actions and keeps the message (:func:`evaluate`); folder names are checked when a rule is added, so delivery
never meets a name the store would refuse.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime, parseaddr, parsedate_to_datetime
from typing import TypeVar

from .. import __version__
from ..bodytext import decode_transfer, part_text, text_for_search
from ..errors import AlreadyExists, InvalidInput, NotFound
from ..headers import decode_bytes, decode_header
from ..message import Address, ParsedMessage, header_fields_of, normalize_crlf, parse_addresses
from ..message import parse as parse_message
from ..mimetree import Part
from ..store import flags as flagmod
from ..store.imapwrite import check_name
from ..store.mailboxes import stored_name
from . import editheader, participants, userscripts
from .folders import FOLLOW_UP, is_virtual
from .sieve import (
    MAX_BODY,
    MAX_MATCH_VARIABLES,
    MAX_REDIRECTS,
    MAX_VARIABLE_SIZE,
    Action,
    AddressTest,
    BodyTest,
    Combined,
    Const,
    DateTest,
    EnvironmentTest,
    ExistsTest,
    HasflagTest,
    HeaderTest,
    If,
    Include,
    Match,
    NotTest,
    Script,
    SizeTest,
    SpamTest,
    StringTest,
    Vacation,
    compile_script,
)
from .sieve import Command as SieveCommand
from .sieve import Test as SieveTest
from .sieveregex import Budget, Exhausted, compile_regex

log = logging.getLogger(__name__)
T = TypeVar("T")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}")
_NUMBER = re.compile(r"[0-9]*")
_WILDCARDS = re.compile(r"([*?\\])")
MAX_EXPANDED = 16 * MAX_VARIABLE_SIZE
"""Characters of a string once its variables are expanded (a key, a folder, a set value before its cut)."""
VIRTUAL = ("x-relentad-contact-tag", "x-relentad-company", "x-relentad-contact", "x-relentad-spam")
_ADDRESS_FIELDS = ("from", "sender", "reply-to", "to", "cc", "bcc")
USER_SUFFIX = " (user)"
"""Appended to the name of the user's own script in traces (``rules test``), to tell it from an admin rule."""
PAGE_SUFFIX = " (account page)"
"""Ends the names of what the user set on the account page (automatic reply, forwarding, filters); an admin rule's
name may end in neither suffix, so that a name tells where a script came from."""
PROGRAM = """SELECT -1 AS k, 0 AS p, 0 AS id, 'automatic reply (account page)' AS name, script FROM autoreply
                 WHERE account_id = {account} AND enabled = 1
             UNION ALL
             SELECT -1, 1, 0, 'forwarding (account page)', script FROM autoforward
                 WHERE account_id = {account} AND enabled = 1
             UNION ALL
             SELECT 0, position, id, name, script FROM crm_rules WHERE account_id = {account}
             UNION ALL
             SELECT 1, 0, id, 'filter ' || id || ' (account page)', script FROM page_filters
                 WHERE account_id = {account}
             UNION ALL
             SELECT 2, 0, id, name || {suffix}, script FROM sieve_scripts WHERE account_id = {account} AND active = 1
             ORDER BY k, p, id"""
"""(name, script) of an account's whole program in running order: the automatic reply and the forwarding of the
account page when they are on (first, so that no rule's ``stop`` silences them: crm/autoreply.py, autoforward.py),
the admin's rules, the account page's filters (crm/pagefilters.py), then the user's active script (named with
``{suffix}``, a parameter bound to :data:`USER_SUFFIX`). Their primary keys and indexes answer it."""


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

    def captures(self, value: str) -> list[str] | None:
        """What each ``*`` and ``?`` matched (RFC 5229 §3.2, ``${1}``…), the stars as short as they can be but the
        last; None when the pattern does not match. Same algorithm and cost as :meth:`fullmatch`."""
        first, *middle = self.pieces
        if not middle:
            found = first.fullmatch(value)
            return None if found is None else list(found.groups())
        head = first.match(value)
        end = len(value) - self.last
        if head is None or end < head.end():
            return None
        out = list(head.groups())
        pos = head.end()
        for piece in middle[:-1]:
            found = piece.search(value, pos, end)
            if found is None:
                return None
            out += [value[pos : found.start()], *found.groups()]
            pos = found.end()
        tail = middle[-1].fullmatch(value, end)
        if tail is None:
            return None
        return [*out, value[pos:end], *tail.groups()]

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
            pieces[-1].append("(.)" if char == "?" else re.escape(char))
        i += 1
    return Glob(tuple(re.compile("".join(p), flags) for p in pieces), len(pieces[-1]))


MAX_INCLUDE_DEPTH = 10
"""Scripts included inside each other (Pigeonhole's ``sieve_include_max_nesting_depth``)."""
MAX_INCLUDES = 255
"""Scripts included in one run (Pigeonhole's ``sieve_include_max_includes``)."""


@dataclass
class Includes:
    """One top-level script's run as RFC 6609 sees it: how it finds the scripts it includes (``load``: the account's
    script of that name, None when there is none), the chain being run (a script met again there includes itself),
    every script included so far (``:once``) and the global variables."""

    load: Callable[[str], Script | None] | None = None
    stack: list[str] = field(default_factory=list)
    included: set[str] = field(default_factory=set)
    globals: dict[str, str] = field(default_factory=dict)


class Return(Exception):
    """RFC 6609 §3.3 ``return``: ends the script it is in, which goes on as if that script had ended."""


@dataclass
class Variables:
    """One script's RFC 5229 variables while it runs: named ones and the match variables of the last ``:matches``
    that succeeded (``${0}`` the whole value)."""

    named: dict[str, str] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # imap4flags' internal variable, for hasflag
    enabled: bool = False  # the script may reference variables (only then does a :matches record its groups)
    budget: Budget = field(default_factory=Budget)  # the message's work (sieveregex.MAX_WORK), shared by its scripts
    includes: Includes | None = None  # the run's include state (RFC 6609), with its global variables
    declared: set[str] = field(default_factory=set)  # this script's ``global`` names: they live in includes.globals

    def _store(self, name: str) -> dict[str, str]:
        """Where the variable ``name`` lives: the run's globals once declared global here, else this script's."""
        if name in self.declared and self.includes is not None:
            return self.includes.globals
        return self.named

    def expand(self, text: str) -> str:
        """``${name}`` / ``${n}`` replaced (unknown ones by ""), at most MAX_EXPANDED characters in all: a string of
        thousands of references to a 4096-character variable would otherwise make one of gigabytes. Costs from the
        message's budget like reading the result would."""
        if "${" not in text:
            return text
        out: list[str] = []
        size = pos = 0
        for found in _VARIABLE.finditer(text):
            name = found.group(1)
            if name.isdigit():
                index = int(name)
                value = self.groups[index] if index < len(self.groups) else ""
            else:
                value = self._store(name.lower()).get(name.lower(), "")
            out += [text[pos : found.start()], value]
            size += found.start() - pos + len(value)
            pos = found.end()
            if size >= MAX_EXPANDED:
                break
        else:
            out.append(text[pos:])
        result = "".join(out)[:MAX_EXPANDED]
        self.budget.spend(1 + len(result) // 128)
        return result


def _numeric(text: str) -> tuple[int, str] | None:
    """i;ascii-numeric (RFC 4790 §9.1): the leading digits as a number, None (positive infinity) without any. The
    number is kept as (count of digits, digits) without leading zeros, which orders as the numbers do: ``int()``
    refuses strings of over 4300 digits, and a header field of 5000 nines would fail the script."""
    found = _NUMBER.match(text)
    digits = found.group(0).lstrip("0") if found and found.group(0) else None
    return None if digits is None else (len(digits), digits)


def _relation(match: Match, value: str, key: str) -> bool:
    """RFC 5231 §4: value <relation> key under the match's comparator."""
    left: object
    right: object
    if match.numeric:
        a, b = _numeric(value), _numeric(key)
        left, right = (1, (0, "")) if a is None else (0, a), (1, (0, "")) if b is None else (0, b)
    else:
        left, right = fold(value, match.octet), fold(key, match.octet)
    relation = match.relation
    return {
        "gt": left > right,  # type: ignore[operator]
        "ge": left >= right,  # type: ignore[operator]
        "lt": left < right,  # type: ignore[operator]
        "le": left <= right,  # type: ignore[operator]
        "eq": left == right,
        "ne": left != right,
    }[relation]


def _keys(match: Match, variables: Variables | None) -> tuple[str, ...]:
    if match.expand and variables is not None:
        return tuple(variables.expand(key) for key in match.keys)
    return match.keys


def matches(match: Match, value: str, variables: Variables | None = None) -> bool:
    """Does ``value`` satisfy the match against any of its keys? A ``:matches`` hit records its match variables."""
    keys = _keys(match, variables)
    budget = variables.budget if variables is not None else Budget()
    if match.kind != ":regex":  # a C-speed scan of the value per key: :matches' pieces 128 characters a unit,
        budget.spend(len(keys) * (1 + len(value) // (128 if match.kind == ":matches" else 512)))  # str.find's 512
    if match.kind == ":matches":
        for key in keys:
            if variables is None or not variables.enabled:
                if glob(key, match.octet).fullmatch(value):
                    return True
                continue
            groups = glob(key, match.octet).captures(value)
            if groups is not None:
                variables.groups = [g[:MAX_VARIABLE_SIZE] for g in [value, *groups][:MAX_MATCH_VARIABLES]]
                return True
        return False
    if match.kind == ":regex":
        return any(_regex(key, match, value, budget) for key in keys)
    if match.kind == ":value":
        return any(_relation(match, value, key) for key in keys)
    if match.numeric:  # :is with i;ascii-numeric: equal numbers
        return any(_relation(Match(":value", (), numeric=True, relation="eq"), value, key) for key in keys)
    value = fold(value, match.octet)
    for key in keys:
        folded = fold(key, match.octet)
        if (match.kind == ":is" and value == folded) or (match.kind == ":contains" and folded in value):
            return True
    return False


def _regex(key: str, match: Match, value: str, budget: Budget) -> bool:
    try:
        misses = compile_regex.cache_info().misses
        regex = compile_regex(key, not match.octet)
        if compile_regex.cache_info().misses != misses:  # compiled now (built at run time, or out of the cache)
            budget.spend(40 * len(regex.kind))  # some 6 µs an NFA state
        return regex.search(value, budget)
    except InvalidInput as exc:  # a key built from variables at run time
        raise RuleError(str(exc)) from None


class RuleError(Exception):
    """A run-time error in a script (RFC 5228 §2.10.6): its actions are dropped and the message kept."""


def check_values(match: Match, values: list[str], variables: Variables | None = None) -> bool:
    """A test's values against its match: ``:count`` compares how many there are (RFC 5231 §4.2). Each value costs
    8 units of the budget: decoding or parsing it took a few microseconds (thousands of fields, dozens of tests)."""
    if variables is not None:
        variables.budget.spend(8 * len(values))
    if match.kind == ":count":
        count = str(len(values))
        return any(_relation(match, count, key) for key in _keys(match, variables))
    return any(matches(match, value, variables) for value in values)


def _indexed(values: list[T], index: int, last: bool) -> list[T]:
    """RFC 5260 §6: the index-th value (1-based, from the end with :last), or all of them without an index."""
    if not index:
        return values
    position = len(values) - index if last else index - 1
    return [values[position]] if 0 <= position < len(values) else []


@dataclass
class MessageView:
    """What rules may look at: the parsed message, the envelope, the size and the virtual fields."""

    parsed: ParsedMessage
    raw: bytes
    envelope_from: str
    envelope_to: str
    virtual: dict[str, list[str]] = field(default_factory=dict)
    spam_score: float | None = None  # the spam filter's 0-1 score of this copy; None: not scored (spamtest 0)
    now: float | None = None  # currentdate's "now" (the time the message was received); None: the clock
    host: str = ""  # the server's hostname (environment "host")
    _fields: dict[str, list[str]] | None = None
    _bodies: dict[tuple[str, tuple[str, ...]], list[str]] = field(default_factory=dict)
    _received: tuple[bytes, ParsedMessage] | None = None  # the message as it came, once editheader changed it

    @property
    def edited(self) -> bool:
        """Did addheader / deleteheader change the message (RFC 5293)?"""
        return self._received is not None

    def edit(self, raw: bytes) -> None:
        """From now on the message is ``raw`` (an editheader change): later tests read it (RFC 5293 §3)."""
        if raw == self.raw:
            return
        if self._received is None:
            self._received = (self.raw, self.parsed)
        self.raw, self.parsed = raw, parse_message(raw)
        self._fields = None
        self._bodies = {}

    def state(self) -> tuple[bytes, ParsedMessage, tuple[bytes, ParsedMessage] | None]:
        """What :meth:`restore` goes back to (a script that fails loses its edits)."""
        return self.raw, self.parsed, self._received

    def restore(self, state: tuple[bytes, ParsedMessage, tuple[bytes, ParsedMessage] | None]) -> None:
        if state[0] is not self.raw:
            self.raw, self.parsed, self._received = state
            self._fields, self._bodies = None, {}

    def as_received(self) -> MessageView:
        """This view of the message as it came, before any edit: what responses (vacation) quote (RFC 5293 §8)."""
        if self._received is None:
            return self
        raw, parsed = self._received
        return dataclasses.replace(self, raw=raw, parsed=parsed, _fields=None, _bodies={}, _received=None)

    def body(self, transform: str, types: tuple[str, ...]) -> list[str]:
        """The body as the ``body`` test sees it (RFC 5173 §5), each form computed once, at most MAX_BODY
        characters: ``raw`` undecoded, ``text`` the decoded text parts, ``content`` the listed parts decoded."""
        key = (transform, types)
        found = self._bodies.get(key)
        if found is None:
            data = normalize_crlf(self.raw) if self.parsed.needs_crlf else self.raw
            tree = self.parsed.tree
            if transform == "raw":
                found = [data[tree.body_start : tree.body_start + MAX_BODY].decode("utf-8", "replace")]
            elif transform == "text":
                found = [text_for_search(data, tree, MAX_BODY)]
            else:
                found = _content(data, tree, types)
            self._bodies[key] = found
        return found

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


def _content(data: bytes, tree: Part, types: tuple[str, ...]) -> list[str]:
    """RFC 5173 :content: the leaf parts whose type is listed ("text" any text/*, "" any), transfer-decoded, text
    parts in their charset; MAX_BODY characters in all."""
    out: list[str] = []
    left = MAX_BODY
    stack = [tree]
    while stack and left > 0:
        part = stack.pop()
        if part.children:
            stack.extend(reversed(part.children))
            continue
        full = f"{part.type}/{part.subtype}".lower()
        if not any(t in ("", part.type.lower(), full) for t in types):
            continue
        if part.type.lower() == "text":
            text = part_text(data, part, 4 * left)[:left]
        else:
            body = data[part.body_start : min(part.body_end, part.body_start + 4 * left)]
            text = decode_bytes(decode_transfer(body, part.encoding) or body, "utf-8")[:left]
        out.append(text)
        left -= len(text)
    return out


def _part(address: str, part: str) -> str:
    if part in (":user", ":detail"):  # RFC 5233: user+detail (no "+": the whole local part, no detail)
        user, plus, detail = _part(address, ":localpart").partition("+")
        return user if part == ":user" else detail if plus else "\0"
    local, at, domain = address.rpartition("@")
    if part == ":localpart":  # a quoted local part is compared as what it says: "b c" is b c
        local = local if at else address
        quoted = len(local) > 1 and local[0] == local[-1] == '"'
        return _QUOTED_PAIR.sub(r"\1", local[1:-1]) if quoted else local
    if part == ":domain":
        return domain if at else ""
    return address


def _addresses(test: AddressTest, view: MessageView, name: str) -> list[str]:
    if test.envelope:
        return [view.envelope_from] if name == "from" else [view.envelope_to] if name == "to" else []
    if not test.index:
        return view.addresses(name)
    fields = _indexed(view.headers(name), test.index, test.last)
    return [a.address for value in fields for a in parse_addresses(value) if a.address]


def _address_values(test: AddressTest, view: MessageView) -> list[str]:
    values = [_part(v, test.part) for name in test.headers for v in _addresses(test, view, name)]
    return [v for v in values if v != "\0"]  # :detail of an address without one matches nothing (RFC 5233 §4)


def evaluate_test(test: SieveTest, view: MessageView, variables: Variables | None = None) -> bool:
    if isinstance(test, AddressTest):
        return check_values(test.match, _address_values(test, view), variables)
    if isinstance(test, HeaderTest):
        values = [v for name in test.headers for v in _indexed(view.headers(name), test.index, test.last)]
        return check_values(test.match, values, variables)
    if isinstance(test, ExistsTest):
        return all(view.headers(name) for name in test.headers)
    if isinstance(test, SizeTest):
        return len(view.raw) > test.limit if test.over else len(view.raw) < test.limit
    if isinstance(test, Combined):
        results = (evaluate_test(t, view, variables) for t in test.tests)
        return all(results) if test.all_ else any(results)
    if isinstance(test, NotTest):
        return not evaluate_test(test.test, view, variables)
    if isinstance(test, BodyTest):
        return check_values(test.match, view.body(test.transform, test.types), variables)
    if isinstance(test, StringTest):
        sources = [variables.expand(s) if variables else s for s in test.sources]
        if test.match.kind == ":count":  # RFC 5229 §5: empty strings are not counted
            sources = [s for s in sources if s]
        return check_values(test.match, sources, variables)
    if isinstance(test, DateTest):
        return check_values(test.match, _dates(test, view, variables.budget if variables else Budget()), variables)
    if isinstance(test, EnvironmentTest):
        value = _environment(view).get(test.name)
        return value is not None and check_values(test.match, [value], variables)
    if isinstance(test, HasflagTest):
        return check_values(test.match, list(variables.flags) if variables else [], variables)
    if isinstance(test, SpamTest):
        return check_values(test.match, [_spam(view, test.percent)], variables)
    assert isinstance(test, Const)
    return test.value


def _environment(view: MessageView) -> dict[str, str]:
    """RFC 5183 §4 items relentad knows (an unknown one fails the test)."""
    host = view.host
    out = {"name": "relentad", "version": __version__, "location": "MDA", "phase": "during"}
    if host:
        out["host"] = host
        out["domain"] = host.partition(".")[2] or host
    return out


def _spam(view: MessageView, percent: bool) -> str:
    """RFC 5235: the filter's 0-1 score as 0-100 (``:percent``) or 1-10; "0" when the message was not scored."""
    score = view.spam_score
    if score is None:
        return "0"
    score = min(max(score, 0.0), 1.0)
    return str(round(score * 100)) if percent else str(1 + round(score * 9))


def _dates(test: DateTest, view: MessageView, budget: Budget) -> list[str]:
    """The date-part of each date the test looks at (RFC 5260 §4-5); an unparsable date field is skipped. Parsing one
    costs some 15 µs, 100 units of the budget, paid first: a message can carry thousands of Received fields."""
    if test.header is None:
        when = datetime.fromtimestamp(view.now if view.now is not None else time.time(), UTC)
        return [_date_part(_in_zone(when, test.zone, False), test.part)]
    out = []
    fields = _indexed(view.headers(test.header), test.index, test.last)
    budget.spend(100 * len(fields))
    for value in fields:
        text = value.rpartition(";")[2] if test.header == "received" else value
        try:
            when = parsedate_to_datetime(text.strip())
            if when.tzinfo is None and not test.original:  # "-0000": UTC, its local zone unknown (RFC 5322 §3.3)
                when = when.replace(tzinfo=UTC)
            out.append(_date_part(_in_zone(when, test.zone, test.original), test.part))
        except (TypeError, ValueError, IndexError, OverflowError):  # year 9999 in -1200 is past datetime's range
            continue
    return out


def _in_zone(when: datetime, zone: str | None, original: bool) -> datetime:
    if original:
        return when
    if zone is None:
        return when.astimezone()  # the server's zone (RFC 5260 §4: the local time zone)
    minutes = int(zone[1:3]) * 60 + int(zone[3:5])
    return when.astimezone(timezone(timedelta(minutes=minutes if zone[0] == "+" else -minutes)))


_MJD_EPOCH = datetime(1858, 11, 17).toordinal()


def _date_part(when: datetime, part: str) -> str:
    """RFC 5260 §4.2's date-parts."""
    offset = when.utcoffset()  # None: a "-0000" date seen with :originalzone, which keeps its -0000 (RFC 5260 §4.2)
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    zone = f"{'-' if minutes < 0 or offset is None else '+'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    parts = {
        "year": f"{when.year:04d}",
        "month": f"{when.month:02d}",
        "day": f"{when.day:02d}",
        "date": f"{when.year:04d}-{when.month:02d}-{when.day:02d}",
        "julian": str(when.toordinal() - _MJD_EPOCH),
        "hour": f"{when.hour:02d}",
        "minute": f"{when.minute:02d}",
        "second": f"{when.second:02d}",
        "time": f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}",
        "iso8601": when.replace(microsecond=0).isoformat() + ("-00:00" if offset is None else ""),
        "std11": format_datetime(when.replace(microsecond=0)),
        "zone": zone,
        "weekday": str((when.weekday() + 1) % 7),  # 0 is Sunday
    }
    return parts[part]


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
    copies: int = 0  # fileinto targets that came with :copy (they keep the implicit keep)
    reject: str | None = None  # reject / ereject's reason (RFC 5429): refused at SMTP time when it can be
    edited: bytes | None = None  # the message as editheader left it (RFC 5293), to file and redirect; None: unchanged
    stopped: bool = False
    trace: list[str] = field(default_factory=list)

    def targets(self, current: str) -> list[tuple[str, list[str]]]:
        """(folder, flags) of every copy: fileinto targets, plus ``current`` on keep or when nothing was filed (a
        ``fileinto :copy`` leaves the implicit keep as it was, RFC 3894)."""
        out = list(self.fileinto)
        if self.keep is not None:
            out.append((current, self.keep))
        elif len(out) == self.copies and not (self.cancel_keep and self.redirects):
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


def _run(
    commands: tuple[SieveCommand, ...], view: MessageView, outcome: Outcome, rule: str, variables: Variables
) -> None:
    for command in commands:
        if outcome.stopped:
            return
        if isinstance(command, If):
            variables.flags = outcome.flags
            for test, block in command.branches:
                if test is None or evaluate_test(test, view, variables):
                    _run(block, view, outcome, rule, variables)
                    break
            continue
        if isinstance(command, Include):
            _include(command, view, outcome, variables)
            continue
        if command.name in ("addheader", "deleteheader"):
            _edit_header(command, view, variables, outcome, rule)
            continue
        if command.name == "return":
            raise Return
        if command.name == "global":
            variables.declared.update(command.tags)
            continue
        action = _expanded(command, variables) if command.expand else command
        if action.name == "set":
            _set(action, variables)
            continue
        _act(action, outcome, rule)


def _include(command: Include, view: MessageView, outcome: Outcome, variables: Variables) -> None:
    """RFC 6609 include: run the account's script ``command.name`` here with variables of its own (but the globals),
    the same message, actions and work limit. A missing script (unless ``:optional``), one that includes itself, and
    includes past the limits are run-time errors."""
    includes = variables.includes or Includes()
    name = command.name
    if command.once and name in includes.included:
        return
    if name in includes.stack:
        raise RuleError(f"include: {name!r} includes itself")
    script = includes.load(name) if includes.load is not None else None
    if script is None:
        if command.optional:
            return
        raise RuleError(f"include: there is no script {name!r}")
    if len(includes.stack) >= MAX_INCLUDE_DEPTH or len(includes.included) >= MAX_INCLUDES:
        raise RuleError(f"include: more than {MAX_INCLUDE_DEPTH} levels or {MAX_INCLUDES} scripts")
    variables.budget.spend(100)
    includes.included.add(name)
    includes.stack.append(name)
    try:
        own = Variables(enabled=script.variables, budget=variables.budget, includes=includes)
        _run(script.commands, view, outcome, name + USER_SUFFIX, own)
    except Return:
        pass
    finally:
        includes.stack.pop()


def _edit_header(action: Action, view: MessageView, variables: Variables, outcome: Outcome, rule: str) -> None:
    """RFC 5293 addheader / deleteheader on the message the view holds. A field name or value built from variables
    that is none is a run-time error; deleting a protected field is ignored (§6). Each change parses the message
    again (some 3.5 ms a MiB), and costs the budget as much: a unit per 32 octets."""
    name = variables.expand(action.argument) if action.expand else action.argument
    value = variables.expand(action.value) if action.expand else action.value
    try:
        editheader.check_name(name)
        editheader.check_value(value)
    except InvalidInput as exc:
        raise RuleError(f"{action.name}: {exc}") from None
    if action.name == "addheader":
        view.edit(editheader.add(view.raw, name, value, last=action.last))
        outcome.trace.append(f"{rule}: addheader {name}")
    elif name.lower() in editheader.PROTECTED:
        outcome.trace.append(f"{rule}: deleteheader {name} (ignored: a protected field)")
        return
    else:
        found = _indexed(editheader.fields(view.raw, name), action.index, action.last)
        if action.match is not None:
            groups = variables.groups  # deleteheader is no test: it sets no match variables
            found = [f for f in found if check_values(action.match, [f.value], variables)]
            variables.groups = groups
        view.edit(editheader.remove(view.raw, found))
        outcome.trace.append(f"{rule}: deleteheader {name} ({len(found)} removed)")
    variables.budget.spend(1 + len(view.raw) // 32)


def _expanded(action: Action, variables: Variables) -> Action:
    """A fileinto / flag action with its ``${…}`` expanded (RFC 5229 §3); flags that are none are dropped."""
    if action.name == "fileinto":
        folder = variables.expand(action.argument).strip()
        if not folder:
            raise RuleError(f"fileinto {action.argument!r}: the folder name is empty")
        try:
            folder = stored_name(folder)
        except InvalidInput as exc:
            raise RuleError(f"fileinto {folder!r}: {exc}") from None
        return Action("fileinto", folder, action.flags, copy=action.copy)
    flags: list[str] = []
    for flag in (f for item in action.flags or () for f in variables.expand(item).split()):
        try:
            flags.append(flagmod.canonical(flag))
        except InvalidInput:
            continue
    return Action(action.name, flags=tuple(flags))


def _set(action: Action, variables: Variables) -> None:
    """RFC 5229 §4: expand, apply the modifiers in precedence order, store (cut at MAX_VARIABLE_SIZE)."""
    value = variables.expand(action.value)
    for modifier in action.modifiers:
        if modifier == ":lower":
            value = value.lower()
        elif modifier == ":upper":
            value = value.upper()
        elif modifier == ":lowerfirst":
            value = value[:1].lower() + value[1:]
        elif modifier == ":upperfirst":
            value = value[:1].upper() + value[1:]
        elif modifier == ":quotewildcard":
            value = _WILDCARDS.sub(r"\\\1", value)
        elif modifier == ":length":
            value = str(len(value))
    variables._store(action.argument)[action.argument] = value[:MAX_VARIABLE_SIZE]


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
        outcome.copies += action.copy
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
    elif name in ("reject", "ereject"):
        if outcome.reject is not None:
            outcome.trace.append(f"{rule}: {name} (ignored: one per message)")
            return
        outcome.reject = action.argument
    elif name == "vacation":  # no effect on the implicit keep (RFC 5230 §4.7); a second one is ignored
        if outcome.vacation is not None:
            outcome.trace.append(f"{rule}: vacation (ignored: one per message)")
            return
        outcome.vacation = action.vacation
    argument = action.argument or " ".join(action.tags)
    outcome.trace.append(f"{rule}: {name}" + (f" {argument}" if argument else ""))


def _snapshot(outcome: Outcome) -> Outcome:
    """A copy of ``outcome`` to go back to when a script fails (its lists copied; their items are not mutated)."""
    return dataclasses.replace(
        outcome,
        fileinto=list(outcome.fileinto),
        keep=None if outcome.keep is None else list(outcome.keep),
        flags=list(outcome.flags),
        tags=list(outcome.tags),
        redirects=list(outcome.redirects),
        trace=list(outcome.trace),
    )


def evaluate(
    scripts: list[tuple[str, Script]],
    view: MessageView,
    budget: Budget | None = None,
    include: Callable[[str], Script | None] | None = None,
) -> Outcome:
    """Run the account's rules, in order, on one message; ``budget``: the work they may do (shared by the scripts,
    and by the sorter between an account's addresses: the message's delivery waits for them all); ``include``: the
    account's own script of a name (RFC 6609), None when it has none."""
    outcome = Outcome()
    budget = Budget() if budget is None else budget
    for name, script in scripts:
        before, message = _snapshot(outcome), view.state()
        own = name.removesuffix(USER_SUFFIX) if name.endswith(USER_SUFFIX) else None
        includes = Includes(include, [own] if own is not None else [], {own} if own is not None else set())
        try:
            _run(
                script.commands,
                view,
                outcome,
                name,
                Variables(enabled=script.variables, budget=budget, includes=includes),
            )
        except Return:
            pass
        except (RuleError, Exhausted, RecursionError, ValueError, LookupError, TypeError, OverflowError) as exc:
            # RFC 5228 §2.10.6: a run-time error drops the script's actions and keeps the message
            log.warning("sieve: %s failed on a message (%s); the message is kept", name, exc)
            view.restore(message)  # its header edits go too
            outcome = before
            outcome.keep = outcome.keep if outcome.keep is not None else list(outcome.flags)
            outcome.trace.append(f"{name}: error ({exc}); kept")
        if outcome.stopped:
            break
    outcome.edited = view.raw if view.edited else None
    if outcome.reject is not None and (outcome.fileinto or outcome.keep is not None or outcome.redirects):
        # RFC 5429 §2.2: reject cannot go with an action that delivers; the delivery wins, nothing is lost
        outcome.trace.append("reject ignored: the message is also filed, kept or redirected")
        outcome.reject = None
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
    if name.endswith((USER_SUFFIX, PAGE_SUFFIX)):
        raise InvalidInput(f"a rule's name cannot end in {USER_SUFFIX.strip()!r} or {PAGE_SUFFIX.strip()!r}")
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


def includer(conn: sqlite3.Connection, account_id: int) -> Callable[[str], Script | None]:
    """What ``include`` (RFC 6609) finds: the account's own scripts by name, active or not, compiled (cached); a
    stored script an older release let in that no longer compiles is a run-time error of the including script."""

    def load(name: str) -> Script | None:
        try:
            text = userscripts.get(conn, account_id, name)
        except userscripts.ScriptError:
            return None
        try:
            return compiled(text)
        except InvalidInput as exc:
            raise RuleError(f"include {name!r}: {exc}") from None

    return load


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
