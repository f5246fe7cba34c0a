"""IMAP errors that carry their reply: a handler raises, the session renders (STYLE.md #4).

`ImapError(status, text, code)` becomes `<tag> NO|BAD [code] text`. The store's own errors (NotFound,
AlreadyExists, InvalidInput, QuotaExceeded, StoreUnavailable) are translated in exactly one place,
:func:`reply_for`, so handlers can let them through.
"""

from __future__ import annotations

from ..errors import AlreadyExists, InvalidInput, LimitReached, NotFound, RelentadError, StoreUnavailable
from ..store.imapwrite import NotSelectable, QuotaExceeded
from .responses import ResponseCode


class ImapError(Exception):
    """A tagged NO or BAD reply with an optional response code (RFC 5530 codes where one fits)."""

    def __init__(self, status: str, text: str, code: ResponseCode = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code


def no(text: str, code: ResponseCode = None) -> ImapError:
    return ImapError("NO", text, code)


def bad(text: str, code: ResponseCode = None) -> ImapError:
    return ImapError("BAD", text, code)


def reply_for(exc: RelentadError) -> ImapError:
    """The IMAP reply for an expected store error (RFC 5530 response codes)."""
    if isinstance(exc, NotFound):
        return no(str(exc), "NONEXISTENT")
    if isinstance(exc, AlreadyExists):
        return no(str(exc), "ALREADYEXISTS")
    if isinstance(exc, QuotaExceeded):
        return no(str(exc), "OVERQUOTA")
    if isinstance(exc, StoreUnavailable):
        return no("the mail store is temporarily unavailable, try again later", "UNAVAILABLE")
    if isinstance(exc, LimitReached):
        return no(str(exc), "LIMIT")
    if isinstance(exc, NotSelectable | InvalidInput):
        return no(str(exc), "CANNOT")
    return no(str(exc))
