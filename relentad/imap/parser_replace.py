"""REPLACE and UID REPLACE (RFC 8508): the command and its grammar, apart from APPEND's but sharing its message.

``replace = "REPLACE" SP seq-number SP mailbox append-message``; seq-number is a number or ``*``, a UID in
``UID REPLACE``. The message is APPEND's (flags, date-time, literal or literal8, RFC 6855 ``UTF8 (...)``).

Invariants: pure; ``target`` None stands for ``*`` (the last message).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from relentad.imap.parser_commands import AppendMessage, Command
from relentad.imap.parser_cursor import Cursor
from relentad.imap.parser_mailbox import append_message

__all__ = ["Replace", "parse_replace", "replace_target"]


@dataclass(frozen=True, kw_only=True)
class Replace(Command):
    """[UID] REPLACE n mailbox message: APPEND the message to the mailbox and expunge message n, atomically."""

    target: int | None
    mailbox: str
    message: AppendMessage


def _target(cur: Cursor) -> int | None:
    if cur.skip(b"*"):
        return None
    return cur.number("message number or UID", nonzero=True)


def parse_replace(cur: Cursor, tag: str, name: str, uid: bool) -> Replace:
    cur.sp()
    target = _target(cur)
    cur.sp()
    mailbox = cur.mailbox()
    cur.sp()
    return Replace(tag=tag, name=name, uid=uid, target=target, mailbox=mailbox, message=append_message(cur))


_LINE = re.compile(rb"[^ ]+ (UID )?REPLACE ([0-9]{1,10}|\*) ", re.IGNORECASE)


def replace_target(first: bytes) -> tuple[bool, int | None] | None:
    """(uid, target) when a command's first line is a REPLACE, for the quota check before its literal is read;
    None for any other command (or a REPLACE whose number does not parse: the parser answers it)."""
    match = _LINE.match(first)
    if match is None:
        return None
    return match[1] is not None, None if match[2] == b"*" else int(match[2])
