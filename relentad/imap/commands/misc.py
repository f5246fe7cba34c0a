"""Commands valid in any state or without a family: CAPABILITY, NOOP, CHECK, LOGOUT, ID, ENABLE, NAMESPACE,
COMPRESS (RFC 9051 §6.1, §6.3.1, §6.3.10; RFC 2971; RFC 5161; RFC 2342; RFC 4978).

Invariant: ENABLE only turns on what :data:`relentad.imap.capabilities.ENABLEABLE` lists, and QRESYNC implies
CONDSTORE (RFC 7162 §3.2.3).
"""

from __future__ import annotations

from ... import __version__
from ...store import acl
from ..capabilities import ENABLEABLE
from ..errors import bad, no
from ..parser import Compress, Enable, Id, NoArgs
from ..responses import Atom
from ..session import ANSWERED, Handler, Result, Session, State


async def capability(session: Session, command: NoArgs) -> Result:
    """CAPABILITY (RFC 9051 §6.1.1)."""
    session.untagged(*session.capability_code())
    return None


async def noop(session: Session, command: NoArgs) -> Result:
    """NOOP (RFC 9051 §6.1.2) and CHECK (RFC 3501 §6.4.1): a chance to hear about changes."""
    if session.selected is not None:
        await session.sync(expunge_allowed=True, force=True)
    return None


async def logout(session: Session, command: NoArgs) -> Result:
    """LOGOUT (RFC 9051 §6.1.3): BYE, then the tagged OK, then the server closes."""
    session.untagged_status("BYE", "relentad IMAP signing off")
    session.reply(command.tag, "OK", "LOGOUT completed")
    session.state = State.LOGOUT
    return ANSWERED


async def id_(session: Session, command: Id) -> Result:
    """ID (RFC 2971 §3.1): we say who we are; what the client says is not needed."""
    session.untagged(Atom("ID"), ["name", "relentad", "version", __version__, "vendor", "relentad"])
    return None


async def enable(session: Session, command: Enable) -> Result:
    """ENABLE (RFC 5161 §3.1): answers ENABLED with the extensions newly enabled."""
    newly: list[str] = []
    for name in command.capabilities:
        if name in ENABLEABLE and name not in session.enabled:
            session.enabled.add(name)
            newly.append("IMAP4rev2" if name == "IMAP4REV2" else name)
    if "QRESYNC" in session.enabled:
        session.enabled.add("CONDSTORE")
    session.untagged(Atom("ENABLED"), *(Atom(name) for name in newly))
    return None


async def namespace(session: Session, command: NoArgs) -> Result:
    """NAMESPACE (RFC 2342 §5, RFC 9051 §6.3.10): the personal namespace "" and the other users' one, where
    mailboxes others share appear (``Shared/<owner>/<mailbox>``, relentad.store.acl); no public namespace."""
    session.untagged(Atom("NAMESPACE"), [["", "/"]], [[acl.PREFIX + "/", "/"]], None)
    return None


async def compress(session: Session, command: Compress) -> Result:
    """COMPRESS DEFLATE (RFC 4978 §3): the OK is the last uncompressed response."""
    if command.mechanism != "DEFLATE":
        raise bad(f"unknown compression mechanism {command.mechanism}")
    if session.conn.compressed:
        raise no("compression is already active", "COMPRESSIONACTIVE")
    session.reply(command.tag, "OK", "DEFLATE active")
    await session.flush()
    session.conn.start_compress()
    return ANSWERED


HANDLERS: dict[str, Handler] = {
    "CAPABILITY": capability,
    "NOOP": noop,
    "CHECK": noop,
    "LOGOUT": logout,
    "ID": id_,
    "ENABLE": enable,
    "NAMESPACE": namespace,
    "COMPRESS": compress,
}
