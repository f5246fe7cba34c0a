"""Object identifiers (RFC 8474 OBJECTID): MAILBOXID, EMAILID and THREADID, derived from what the store keeps.

- MAILBOXID ``F<id>-<uidvalidity>``: the mailbox row with its UIDVALIDITY. RENAME keeps both, so the id survives
  it; a mailbox created anew (also a \\Noselect level made real again, or INBOX's messages moved away by RENAME)
  gets a new UIDVALIDITY, which never repeats in an account, so a row id SQLite hands out again never yields an
  id seen before. A CRM view: ``V<c|o><row id>-<uidvalidity>`` (contact or company, as ``crm/folders.py``);
  contact ids are never reused (``crm/ids.py``) and companies are never deleted.
- EMAILID ``M<digest>`` for a message without trace fields of its own (APPEND), ``M<digest>-<tag>`` otherwise:
  the digest is the first 96 bits of the stored content's SHA-256 (``blobs.sha256``, in hex), the tag a 64-bit
  hash of those fields (``messages.prefix``): a client sees prefix || blob, so equal ids mean equal octets. COPY
  and MOVE keep blob and prefix, hence the id (§5.1); the same content APPENDed twice shares it. A hash of the
  content, as Cyrus's, not the blob's row id: the store shares a blob between accounts, and a row id older than
  the last one APPEND made told a user that someone on the server holds those exact octets (a guessed message
  with a code in it, say); a hash tells nothing the octets did not.
- THREADID ``T<crm thread id>``: the CRM thread of the message's blob in the account (``crm/threads.py``; ids
  never reused, ``crm/ids.py``), NIL for a message the CRM never filed (e.g. APPENDed drafts).

Invariant: every id is 1–255 characters of ``[A-Za-z0-9_-]`` (RFC 8474 §3 objectid), and parsing an id this
module did not make yields None, never an exception.
"""

from __future__ import annotations

import hashlib
import re

from ..store.imapview import MailboxInfo
from .virtual import VirtualInfo

_EMAIL = re.compile(r"M([0-9a-f]{24})(?:-([0-9a-f]{16}))?")
DIGEST = 12
"""Octets of the SHA-256 in an EMAILID (Cyrus takes as many of its SHA-1)."""
_THREAD = re.compile(r"T([1-9][0-9]{0,17})")


def mailbox_id(row_id: int, uidvalidity: int) -> str:
    return f"F{row_id}-{uidvalidity}"


def virtual_mailbox_id(kind: str, row_id: int, uidvalidity: int) -> str:
    """A CRM view's id: ``kind`` is "contact" or "company"."""
    return f"V{'c' if kind == 'contact' else 'o'}{row_id}-{uidvalidity}"


def of_mailbox(info: MailboxInfo) -> str | None:
    """The MAILBOXID of a real mailbox or CRM view; None for a \\Noselect name (it holds no messages)."""
    if isinstance(info, VirtualInfo):
        folder = info.folder
        return None if folder is None else virtual_mailbox_id(folder.kind, folder.id, folder.uidvalidity)
    return None if info.noselect else mailbox_id(info.id, info.uidvalidity)


def prefix_tag(prefix: bytes) -> str:
    """The 16 hex digits standing for a message's own trace fields."""
    return hashlib.blake2b(prefix, digest_size=8).hexdigest()


def email_id(sha256: bytes, prefix: bytes) -> str:
    """The EMAILID of a message whose blob has that SHA-256 and that trace prefix."""
    digest = sha256[:DIGEST].hex()
    return f"M{digest}-{prefix_tag(prefix)}" if prefix else f"M{digest}"


def parse_email_id(text: str) -> tuple[bytes, str | None] | None:
    """(the blob's SHA-256 prefix, prefix tag or None for no prefix) of an EMAILID; None when it is none of ours."""
    match = _EMAIL.fullmatch(text)
    if match is None:
        return None
    return bytes.fromhex(match[1]), match[2]


def thread_id(thread: int | None) -> str | None:
    return None if thread is None else f"T{thread}"


def parse_thread_id(text: str) -> int | None:
    match = _THREAD.fullmatch(text)
    return None if match is None else int(match[1])
