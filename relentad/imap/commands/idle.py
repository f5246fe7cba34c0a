"""IDLE (RFC 2177, RFC 9051 §6.3.13): wait for DONE while telling the client about changes as they commit.

Invariants: the client's line and the account's change bus are awaited together, so an SMTP delivery reaches an
idling client as soon as its transaction commits (the pipeline publishes after commit); changes other processes
commit (the CLI's import, announce) are noticed within ``watch.POLL_INTERVAL`` seconds by the poll that runs while
any session IDLEs; a selected view that changes with time (``Follow-up``) is looked at again when its next
thread becomes due; the autologout timer applies (from the last event); anything but DONE ends the IDLE with BAD.
An idling session whose account was terminated or whose app password was revoked (another process) gets BYE at
the next change it would be told about, or within :data:`ACCOUNT_CHECK` seconds: a lost phone idles for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from ...events import Event
from ..errors import bad
from ..parser import NoArgs, is_done
from ..responses import continuation
from ..session import ANSWERED, Handler, Result, Session, State
from ..virtual import VirtualView

ACCOUNT_CHECK = 30.0
"""Seconds between two checks, while a session idles, that its login still stands (one indexed read each)."""


async def idle(session: Session, command: NoArgs) -> Result:
    """IDLE ... DONE; while it lasts, changes other processes commit are polled for too (:mod:`..watch`)."""
    watcher = session.services.watcher
    view = session.selected
    # a shared mailbox changes with its owner's account: poll that one too (the bus forwards it, Bus.watch)
    watched = [session.account_id] + ([view.owner_id] if view is not None and view.shared else [])
    if watcher is not None:
        for account_id in watched:
            watcher.enter(account_id)
    try:
        return await _idle(session)
    finally:
        if watcher is not None:
            for account_id in watched:
                watcher.leave(account_id)


async def _idle(session: Session) -> Result:
    assert session.events is not None
    session.busy = False  # an idling session may be told BYE at once on shutdown
    session.send(continuation("idling"))
    if session.selected is not None:
        await session.sync(expunge_allowed=True, force=True)
    await session.flush()
    reader = asyncio.ensure_future(session.conn.readline(session.config.imap.line_length))
    pending: asyncio.Future[Event] | None = None
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + session.config.imap.autologout
        check = loop.time() + ACCOUNT_CHECK
        while True:
            waiter = pending = asyncio.ensure_future(session.events.get())
            wake = _wake_in(session)
            timeout = min(deadline, check) - loop.time()
            done, _ = await asyncio.wait(
                {reader, waiter},
                timeout=timeout if wake is None else min(timeout, wake),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done and loop.time() >= deadline:
                session.untagged_status("BYE", "autologout: idle for too long")
                session.state = State.LOGOUT
                return ANSWERED
            if not done:  # time to check the login, or the view changes with time (Follow-up): look again
                waiter.cancel()
                pending = None
                if loop.time() >= check:
                    check = loop.time() + ACCOUNT_CHECK
                    if _ended(session):
                        return ANSWERED
                await session.sync(expunge_allowed=True)
                await session.flush()
                continue
            deadline = loop.time() + session.config.imap.autologout
            if waiter in done:
                event = waiter.result()
                if session.concerns(event):
                    if _ended(session):
                        return ANSWERED
                    if session.revoked():  # a withdrawn shared mailbox tells an idling grantee nothing more
                        session.untagged_status("BYE", "access to the selected shared mailbox was withdrawn")
                        session.state = State.LOGOUT
                        return ANSWERED
                    session.dirty = True
                    await session.sync(expunge_allowed=True)
                    await session.flush()
            else:
                waiter.cancel()
            pending = None
            if reader in done:
                line = reader.result()
                if not is_done(line):
                    raise bad("expected DONE to end IDLE")
                break
    finally:
        if pending is not None:
            pending.cancel()
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
    return None


def _ended(session: Session) -> bool:
    """BYE when the account was terminated or the app password of the login revoked since it was last looked at."""
    ended = session.account_ended()
    if ended:
        session.untagged_status("BYE", ended)
        session.state = State.LOGOUT
    return bool(ended)


def _wake_in(session: Session) -> float | None:
    """Seconds until the selected view changes by time alone (a Follow-up thread becomes due); None: never."""
    view = session.selected
    if not isinstance(view, VirtualView) or view.wake_at is None:
        return None
    return max(0.05, view.wake_at - time.time())


HANDLERS: dict[str, Handler] = {"IDLE": idle}
