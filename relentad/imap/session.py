"""One IMAP connection's session: read a command, check it is allowed in this state, dispatch, reply.

Implementation notes (invariants):
- Per-state command sets and one dispatch table (STYLE.md #2): :data:`STATE_COMMANDS` says what each state
  allows, :data:`relentad.imap.commands.HANDLERS` maps a command name to its handler. A handler returns an
  :class:`Ok` (or None) for the tagged OK, raises :class:`ImapError` (or a store error) for NO/BAD, or returns
  :data:`ANSWERED` when it wrote its own tagged reply (STARTTLS, COMPRESS, LOGOUT, IDLE).
- One place renders failures (:meth:`Session.execute`): an unexpected exception answers ``NO [SERVERBUG]`` and
  the session lives on; consecutive BADs beyond ``imap.max_bad_commands`` end in BYE.
- Changes made by others (other sessions, SMTP delivery) reach the client only through :meth:`Session.sync`,
  run before each tagged reply in the selected state: EXISTS for new mail, FETCH FLAGS for flag changes,
  EXPUNGE/VANISHED for removals — the latter never while answering FETCH, STORE, SEARCH, SORT or THREAD
  (RFC 9051 §7.5.1).
- A session whose account was terminated since its login ends with BYE at its next command
  (:meth:`Session.account_ended`): termination happens in another process, and an open session must neither
  store mail into the account nor read what is left of it.
- No transaction is ever held across network I/O: reads are short ``store.read`` calls or worker-thread reads
  on their own connection; writes are ``store.write`` jobs, published on the bus after they commit.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import functools
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..auth.authenticator import Authenticator, Login
from ..config import Config
from ..errors import RelentadError
from ..events import Bus, Event, MailboxChanged
from ..sessionbase import BaseSession
from ..store import acl, db, imapview, imapwrite
from ..store import flags as flagmod
from ..store.db import Store
from . import access, virtual
from . import capabilities as caps
from .connection import Connection, LineTooLong
from .errors import ImapError, no, reply_for
from .parser import (
    ParseError,
    UnsupportedCharset,
    line_tag,
    message_literal,
    parse_command,
    pending_literal,
    replace_target,
)
from .responses import (
    Atom,
    ImapValue,
    ResponseCode,
    continuation,
    flag_list,
    render,
    tagged,
    untagged,
    untagged_status,
)
from .sequence import SequenceSet
from .sequence import render as render_set
from .view import Selected
from .virtual import VirtualView
from .watch import ExternalChanges

log = logging.getLogger(__name__)
T = TypeVar("T")

PREAUTH_LITERAL = 16_384
"""Largest literal accepted before login (nobody needs to send a message then)."""


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY = frozenset(("CAPABILITY", "NOOP", "LOGOUT", "ID"))
_AUTHENTICATED = _ANY | frozenset(
    (
        "ENABLE",
        "SELECT",
        "EXAMINE",
        "CREATE",
        "DELETE",
        "RENAME",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "LIST",
        "LSUB",
        "STATUS",
        "APPEND",
        "NAMESPACE",
        "IDLE",
        "GETQUOTA",
        "GETQUOTAROOT",
        "SETQUOTA",
        "COMPRESS",
        "MYRIGHTS",
        "GETACL",
        "SETACL",
        "DELETEACL",
        "LISTRIGHTS",
    )
)
STATE_COMMANDS: dict[State, frozenset[str]] = {
    State.NOT_AUTHENTICATED: _ANY | frozenset(("STARTTLS", "AUTHENTICATE", "LOGIN")),
    State.AUTHENTICATED: _AUTHENTICATED,
    State.SELECTED: _AUTHENTICATED
    | frozenset(("CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "SORT", "THREAD", "FETCH", "STORE", "COPY"))
    | frozenset(("MOVE", "REPLACE")),
    State.LOGOUT: frozenset(),
}
"""Which commands each state allows (RFC 9051 §6.1-6.4); UID forms share their command's name."""

_NO_EXPUNGE = frozenset(("FETCH", "STORE", "SEARCH", "SORT", "THREAD"))
_FLAG_LISTS: dict[tuple[int, str], bytes] = {}
"""Rendered flag lists (`(\\Seen $Work)`) by (flag bits, keywords)."""
_FLAGS_LINES: dict[tuple[tuple[str, ...], bool, bool], bytes] = {}
"""FLAGS + PERMANENTFLAGS responses by (keywords, read-only, UTF-8): rendered once, sent at every SELECT."""


@dataclass(frozen=True)
class Ok:
    """A tagged OK: its text and optional response code."""

    text: str = ""
    code: ResponseCode = None


class _Answered:
    """Marker: the handler wrote its own tagged reply."""


ANSWERED = _Answered()
Result = Ok | _Answered | None
Handler = Callable[["Session", Any], Awaitable[Result]]


@dataclass
class Services:
    """What every session shares: the store, the bus, read connections, logins and the current config."""

    store: Store
    bus: Bus
    readers: imapview.ReaderPool
    authenticator: Authenticator
    get_config: Callable[[], Config]
    get_tls: Callable[[], Any]
    watcher: ExternalChanges | None = None
    """Polls for changes other processes commit, while sessions IDLE (None: only in-process changes are seen)."""


class Session(BaseSession[Services, Handler]):
    """One connection's IMAP state (RFC 9051 §3): login, selected mailbox view, enabled extensions, SEARCHRES."""

    service = "imap"

    def __init__(self, services: Services, conn: Connection, handlers: dict[str, Handler]) -> None:
        super().__init__(services, conn, handlers, services.get_config().imap.login_timeout)
        self.state = State.NOT_AUTHENTICATED
        self.selected: Selected | None = None
        self.enabled: set[str] = set()
        self.saved: SequenceSet | None = None
        self.events: asyncio.Queue[Event] | None = None
        self.bad_count = 0
        self.dirty = False
        self.tokens = 2.0 * self.config.imap.commands_per_second
        self.tokens_at = time.monotonic()

    # -- properties -------------------------------------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        return self.state is not State.NOT_AUTHENTICATED

    @property
    def utf8(self) -> bool:
        return "IMAP4REV2" in self.enabled or "UTF8=ACCEPT" in self.enabled

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled or "QRESYNC" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def appendlimit(self) -> int:
        return self.config.limits.message_size

    def capabilities(self) -> list[str]:
        return caps.capabilities(
            authenticated=self.state is not State.NOT_AUTHENTICATED,
            login_allowed=self.login_allowed(),
            starttls=not self.conn.tls and self.services.get_tls() is not None,
            compressed=self.conn.compressed,
            appendlimit=self.appendlimit,
        )

    def capability_code(self) -> list[ImapValue]:
        return [Atom("CAPABILITY"), *(Atom(c) for c in self.capabilities())]

    # -- output -----------------------------------------------------------------------------------------

    def untagged(self, *values: ImapValue) -> None:
        self.send(untagged(*values, utf8=self.utf8))

    def untagged_status(self, status: str, text: str, code: ResponseCode = None) -> None:
        self.send(untagged_status(status, text, code, utf8=self.utf8))

    def reply(self, tag: str | None, status: str, text: str, code: ResponseCode = None) -> None:
        if status == "BAD":
            self.bad_count += 1
        else:
            self.bad_count = 0
        if tag is None:
            self.send(untagged_status(status, text, code, utf8=self.utf8))
        else:
            self.send(tagged(tag, status, text, code, utf8=self.utf8))

    # -- store helpers ----------------------------------------------------------------------------------

    def read(self, fn: Callable[[sqlite3.Connection], T], *, snapshot: bool = False) -> T:
        """A short read on the loop thread; ``snapshot`` puts its queries in one read transaction (needed when
        several queries must agree, e.g. changes and highest modseq). Single queries skip it: every SQLite call
        here hands the GIL to worker threads and may wait to get it back."""

        return self.store.read(functools.partial(db.in_snapshot, fn=fn) if snapshot else fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.store.write(fn)

    def publish(self, mailbox_id: int, modseq: int, owner: int = 0) -> None:
        """Tell every session of the mailbox's owner (this one included) and every session that has it selected as
        a shared mailbox that it changed; after commit only. ``owner``: the owner's account id, 0 for our own."""
        self.services.bus.publish([MailboxChanged(owner or self.account_id, mailbox_id, modseq)])

    def owner_of(self, target: access.Target) -> int:
        """0 for the session's own mailbox, else the owner's account id (as :class:`Selected` and :meth:`publish`
        take it)."""
        return 0 if target.owner_id == self.account_id else target.owner_id

    # -- state changes ----------------------------------------------------------------------------------

    def logged_in(self, login: Login) -> None:
        self.opened(login)
        self.state = State.AUTHENTICATED
        self.events = self.services.bus.subscribe(login.account_id)
        log.info("imap login %s from %s%s", login.email, self.peer, login.via)

    def select(self, view: Selected) -> None:
        self.selected = view
        self.saved = None
        self.state = State.SELECTED
        if view.shared and self.events is not None:
            self.services.bus.watch(view.mailbox_id, self.events)

    def deselect(self) -> None:
        if self.selected is not None and self.selected.shared and self.events is not None:
            self.services.bus.unwatch(self.selected.mailbox_id, self.events)
        self.selected = None
        self.saved = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    # -- change notification ----------------------------------------------------------------------------

    def drain_events(self) -> bool:
        """Empty the event queue; True when something happened to the selected mailbox."""
        relevant = False
        if self.events is None:
            return False
        while not self.events.empty():
            if self.concerns(self.events.get_nowait()):
                relevant = True
        return relevant

    def concerns(self, event: Event) -> bool:
        """Whether the event may change what the selected mailbox shows: not when the session has already looked
        past its modseq (the poll for other processes' changes also reports this daemon's own)."""
        view = self.selected
        if view is None or not view.watches(event.mailbox_id):
            return False
        return not (event.mailbox_id == view.mailbox_id and 0 < event.modseq <= view.modseq)

    async def sync(self, *, expunge_allowed: bool, force: bool = False) -> None:
        """Announce what changed in the selected mailbox since the session last looked (see module notes)."""
        relevant = self.drain_events()
        view = self.selected
        timed = isinstance(view, VirtualView) and view.due(time.time())
        if view is None or not (relevant or force or self.dirty or view.pending_gone or timed):
            return
        self.dirty = False
        if isinstance(view, VirtualView):
            await virtual.sync(self, view, expunge_allowed=expunge_allowed)
            return
        quiet = not relevant and not view.pending_gone  # NOOP, IDLE: one indexed query tells whether to look further
        if quiet and self.read(lambda c: imapview.highest_modseq(c, view.mailbox_id)) == view.modseq:
            return
        changes, gone, highest = self.read(lambda c: imapview.changes_since(c, view.mailbox_id, view.modseq))
        if highest < 0:  # the mailbox was deleted meanwhile: every message is gone
            gone = list(view.uids)
        last = view.uids[-1] if view.uids else 0
        gone_set = set(gone)
        view.pending_gone.update(uid for uid in gone if view.seq(uid) is not None)
        if expunge_allowed and view.pending_gone:
            self.announce_expunged(sorted(view.pending_gone))
        new_uids: list[int] = []
        for change in changes:
            if change.uid in gone_set:
                continue
            if change.uid > last:
                new_uids.append(change.uid)
                if view.new_keywords(change.keywords):
                    self.announce_flags(view)
                continue
            if view.own.pop(change.uid, None) == change.modseq or change.uid in view.pending_gone:
                continue
            seq = view.seq(change.uid)
            if seq is not None:
                if view.new_keywords(change.keywords):
                    self.announce_flags(view)
                self.send(self.flag_line(seq, change.uid, change.flags, change.keywords, change.modseq))
        if new_uids:
            view.uids.extend(new_uids)
            self.untagged(view.exists, Atom("EXISTS"))
            try:
                await self.claim_recent(view, new_uids)
            except RelentadError as exc:  # \Recent is advisory: a store hiccup must not cost the EXISTS
                log.warning("imap %s: could not claim recent messages: %s", self.email, exc)
            if not self.rev2:
                self.untagged(len(view.recent), Atom("RECENT"))
        view.modseq = max(view.modseq, highest)

    async def claim_recent(self, view: Selected, uids: list[int]) -> None:
        """Messages this session sees first are \\Recent for it alone (RFC 3501 §2.3.2): a read-write session
        claims the unclaimed ones in a write job (serialised, so exactly one session wins); EXAMINE only looks."""
        if not uids:  # ``uids`` ascend: each range below is a slice found by bisection
            return
        if view.readonly:
            view.recent.update(uids[bisect.bisect_left(uids, view.info.first_recent_uid) :])
            return
        if uids[-1] >= view.recent_end:
            first, end = await self.write(lambda c: imapwrite.claim_recent(c, view.mailbox_id))
            view.claimed.append((first, end))
            view.recent_end = max(view.recent_end, end)
        for low, high in view.claimed:
            view.recent.update(uids[bisect.bisect_left(uids, low) : bisect.bisect_left(uids, high)])

    def announce_expunged(self, uids: list[int]) -> None:
        """EXPUNGE (or VANISHED with QRESYNC, RFC 7162 §3.2.10) for UIDs leaving the view, then drop them."""
        view = self.selected
        assert view is not None
        present = [uid for uid in uids if view.seq(uid) is not None]
        if not present:
            return
        if self.qresync:
            for uid in present:
                view.remove(uid)
            self.untagged(Atom("VANISHED"), Atom(render_set(present)))
            return
        for uid in sorted(present, reverse=True):
            seq = view.remove(uid)
            if seq is not None:
                self.untagged(seq, Atom("EXPUNGE"))

    def announce_flags(self, view: Selected) -> None:
        """FLAGS and PERMANENTFLAGS (RFC 9051 §7.3.5): at SELECT, and again when a new keyword appears."""
        keywords = list(view.keywords.values())
        key = (tuple(keywords), view.readonly, self.utf8)
        cacheable = not isinstance(view, VirtualView) and not view.shared
        cached = _FLAGS_LINES.get(key) if cacheable else None
        if cached is not None:  # the same few flag sets are announced at every SELECT
            self.send(cached)
            return
        lines = untagged(Atom("FLAGS"), flag_list([*flagmod.SYSTEM_FLAGS, *keywords]), utf8=self.utf8)
        permanent = [] if view.readonly else flag_list([*flagmod.SYSTEM_FLAGS, *keywords, "\\*"])
        if isinstance(view, VirtualView):
            permanent = virtual.permanent_flags(view)
        elif view.shared and not view.readonly:  # RFC 4314 §4: only the flags the rights allow setting
            allowed = access.allowed_flags(view.rights, [*flagmod.SYSTEM_FLAGS, *keywords])
            permanent = flag_list([*allowed, "\\*"] if "w" in view.rights else allowed)
        lines += untagged_status("OK", "flags clients may set", [Atom("PERMANENTFLAGS"), permanent], utf8=self.utf8)
        if cacheable:
            if len(_FLAGS_LINES) > 1024:
                _FLAGS_LINES.clear()
            _FLAGS_LINES[key] = lines
        self.send(lines)

    def flag_items(self, uid: int, bits: int, keywords: str, modseq: int) -> list[ImapValue]:
        if self.selected is not None and uid in self.selected.recent:
            bits |= flagmod.RECENT
        items: list[ImapValue] = [Atom("UID"), uid, Atom("FLAGS"), flag_list(flagmod.names(bits, keywords))]
        if self.condstore:
            items += [Atom("MODSEQ"), [modseq]]
        return items

    def flag_line(self, seq: int, uid: int, bits: int, keywords: str, modseq: int) -> bytes:
        """`* seq FETCH (UID u FLAGS (...) [MODSEQ (m)])`: the same as untagged(seq, FETCH, flag_items(...)), built
        directly (every session hears of every other's flag change), flag lists rendered once per flag set."""
        if self.selected is not None and uid in self.selected.recent:
            bits |= flagmod.RECENT
        flags = _FLAG_LISTS.get((bits, keywords))
        if flags is None:
            if len(_FLAG_LISTS) > 4096:
                _FLAG_LISTS.clear()
            flags = _FLAG_LISTS[(bits, keywords)] = render(flag_list(flagmod.names(bits, keywords)))
        if self.condstore:
            return b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n" % (seq, uid, flags, modseq)
        return b"* %d FETCH (UID %d FLAGS %s)\r\n" % (seq, uid, flags)

    # -- the command loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        self.untagged_status("OK", "relentad IMAP ready", self.capability_code())
        try:
            await self.flush()
            while self.state is not State.LOGOUT and not self.conn.closed:
                try:
                    async with asyncio.timeout_at(self.read_deadline()):  # no extra task, unlike wait_for
                        raw = await self.read_command()
                except TimeoutError:
                    self.say_timeout()
                    break
                except LineTooLong:
                    self.say_too_long()
                    break
                if raw is not None:
                    await self.pace()
                    self.busy = True
                    try:
                        await self.execute(raw)
                    except LineTooLong:  # a line read inside a command: AUTHENTICATE's answer, IDLE's DONE
                        self.say_too_long()
                        break
                    finally:
                        self.busy = False
                if self.bad_count >= self.config.imap.max_bad_commands:
                    self.untagged_status("BYE", "too many invalid commands")
                    break
                await self.flush()
            with contextlib.suppress(ConnectionError, OSError):
                await self.flush()
        except (EOFError, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.close()
            await self.conn.close()

    def revoked(self) -> bool:
        """The selected shared mailbox is no longer shared with this account (or no longer readable): the session
        ends with BYE, as for a terminated account, rather than go on showing what it may no longer read. A
        narrowed grant only updates the view's rights. One indexed query per command, on shared views only."""
        view = self.selected
        if view is None or not view.shared:
            return False
        rights = self.read(lambda conn: acl.rights_of(conn, view.mailbox_id, self.account_id))
        if rights is None or "r" not in rights:
            return True
        view.rights = rights
        return False

    def idle_timeout(self) -> float:
        return self.config.imap.autologout

    def read_deadline(self) -> float:
        """When waiting for the client gives up (loop time): ``imap.login_timeout`` after connecting before login,
        ``imap.autologout`` from now after it (RFC 9051 §5.4). Its own, inline: it runs at every command."""
        if self.state is State.NOT_AUTHENTICATED:
            return self.login_deadline
        return asyncio.get_running_loop().time() + self.config.imap.autologout

    def say_timeout(self) -> None:
        """The BYE before closing for :meth:`read_deadline`."""
        if self.state is State.NOT_AUTHENTICATED:
            self.untagged_status("BYE", "login timeout: not logged in in time")
        else:
            self.untagged_status("BYE", "autologout: idle for too long")

    def say_too_long(self) -> None:
        """The BYE before closing for a line over ``imap.line_length`` (the rest of it cannot be told apart)."""
        self.untagged_status("BYE", f"command line longer than {self.config.imap.line_length} octets")

    async def pace(self) -> None:
        """Token bucket for ``imap.commands_per_second`` (bursts of twice the rate): a client sending faster waits."""
        rate = self.config.imap.commands_per_second
        if rate <= 0:
            return
        now = time.monotonic()
        self.tokens = min(2.0 * rate, self.tokens + (now - self.tokens_at) * rate)
        self.tokens_at = now
        if self.tokens < 1.0:
            await asyncio.sleep((1.0 - self.tokens) / rate)
            self.tokens_at = time.monotonic()
            self.tokens = 1.0
        self.tokens -= 1.0

    def close(self) -> None:
        self.deselect()
        if self.events is not None:
            self.services.bus.unsubscribe(self.account_id, self.events)
            self.events = None
        self.state = State.LOGOUT

    async def read_command(self) -> bytes | None:
        """One command with its literals spliced in (RFC 9051 §4.3, RFC 7888 LITERAL+); None when refused.

        A literal over APPENDLIMIT, or an APPEND's messages that would take the account over its quota, are
        refused before the client sends a synchronizing literal (it waits for "+", gets the tagged NO and drops
        the command, as with Dovecot); a LITERAL+ literal is on its way already and is read and discarded. The
        APPEND's commit checks the quota again, exactly (this early check may race with other deliveries).
        ``imap.line_length`` bounds the command's own octets, literals excluded, across all its lines: per line
        only, a command chaining literals (``{0+}`` after ``{0+}``) never ended and grew without bound."""
        limit = self.config.imap.line_length
        line = await self.conn.readline(limit)
        parts = [line]
        text = len(line)
        authenticated = self.state is not State.NOT_AUTHENTICATED
        literal_limit = self.appendlimit if authenticated else PREAUTH_LITERAL
        refusal: ImapError | None = None
        total = octets = count = 0
        freed: tuple[int, int] | None = None  # what a REPLACE expunges, counted as freed
        while (spec := pending_literal(line)) is not None:
            total += spec.size
            if refusal is None and (spec.size > literal_limit or total > 4 * literal_limit):
                # one literal over APPENDLIMIT, or a command (MULTIAPPEND) over four times it
                refusal = no(f"literal larger than {literal_limit} octets", "TOOBIG")
            if refusal is None and authenticated and message_literal(parts[0], opening=len(parts) == 1):
                octets, count = octets + spec.size, count + 1
                if freed is None:
                    freed = self._replaced(parts[0])
                if acl.PREFIX.encode() + b"/" not in parts[0]:  # a shared target's owner pays: checked at commit
                    refusal = self._over_quota(octets - freed[0], count - freed[1])
            if refusal is not None and spec.synchronizing:  # the client waits for "+": tell it now
                self.reply(line_tag(parts[0]), refusal.status, refusal.text, refusal.code)
                return None
            if refusal is not None:
                await self.conn.discard(spec.size)
            else:
                if spec.synchronizing:
                    self.send(continuation("ready for literal data"))
                    await self.flush()
                parts.append(await self.conn.readexactly(spec.size))
            line = await self.conn.readline(limit - text)
            text += len(line)
            parts.append(line)
        if refusal is not None:
            self.reply(line_tag(parts[0]), refusal.status, refusal.text, refusal.code)
            return None
        return b"".join(parts)

    def _replaced(self, first: bytes) -> tuple[int, int]:
        """(octets, 1) of the message a REPLACE (RFC 8508) would expunge, (0, 0) for an APPEND or when the message
        is not there (the command then fails on its own)."""
        target = replace_target(first)
        view = self.selected
        if target is None or view is None or not view.uids or isinstance(view, VirtualView):
            return 0, 0
        uid, number = target
        if number is None:
            chosen = view.uids[-1]
        elif uid:
            chosen = number
        elif number <= len(view.uids):
            chosen = view.uids[number - 1]
        else:
            return 0, 0
        size = self.read(lambda conn: imapwrite.size_of(conn, view.mailbox_id, [chosen]))
        return (size, 1) if size else (0, 0)

    def _over_quota(self, octets: int, count: int) -> ImapError | None:
        """NO [OVERQUOTA] when ``count`` more messages of ``octets`` in all would not fit the account."""
        try:
            self.read(lambda conn: imapwrite.check_quota(conn, self.account_id, octets, count))
        except imapwrite.QuotaExceeded as exc:
            return reply_for(exc)
        return None

    async def execute(self, raw: bytes) -> None:
        """Parse, check the state, run the handler, render its outcome (the one place that does)."""
        try:
            command = parse_command(raw, utf8=self.utf8)
        except ParseError as exc:
            if exc.resets_saved and self.selected is not None:
                self.saved = SequenceSet.of([])  # a pipelined command using `$` must not act on the one before
            if isinstance(exc, UnsupportedCharset):
                self.reply(exc.tag, "NO", exc.text, "BADCHARSET (UTF-8 US-ASCII)")
            else:
                self.reply(exc.tag, "BAD", exc.text)
            return
        ended = self.account_ended()
        if ended:
            self.untagged_status("BYE", ended)
            self.close()
            return
        if self.revoked():
            self.untagged_status("BYE", "access to the selected shared mailbox was withdrawn")
            self.close()
            return
        handler = self.handlers.get(command.name)
        if handler is None or command.name not in STATE_COMMANDS[self.state]:
            self.reply(command.tag, "BAD", f"{command.name} is not allowed in the {self.state.value} state")
            return
        status, text, code = "OK", f"{command.name} completed", None
        try:
            result = await handler(self, command)
        except ImapError as exc:
            status, text, code = exc.status, exc.text, exc.code
        except RelentadError as exc:
            error = reply_for(exc)
            status, text, code = error.status, error.text, error.code
        except (EOFError, ConnectionError, asyncio.IncompleteReadError, LineTooLong):
            raise
        except Exception:
            log.exception("imap %s: %s failed", self.email or self.peer, command.name)
            status, text, code = "NO", "internal server error; the session goes on", "SERVERBUG"
        else:
            if result is ANSWERED:
                return
            if isinstance(result, Ok):
                text = result.text or text
                code = result.code
        if self.selected is not None:
            try:
                await self.sync(expunge_allowed=command.uid or command.name not in _NO_EXPUNGE)
            except (EOFError, ConnectionError, asyncio.IncompleteReadError):
                raise
            except Exception:  # the updates wait for the next command; this one still gets its reply
                log.exception("imap %s: announcing changes failed", self.email or self.peer)
        self.reply(command.tag, status, text, code)

    async def shutdown(self) -> None:
        """Daemon stopping: say BYE and close (the client reconnects to the next instance)."""
        with contextlib.suppress(Exception):
            self.untagged_status("BYE", "server shutting down")
            await asyncio.wait_for(self.flush(), 2)
        self.close()
        await self.conn.close()
