"""Exceptions that carry their wire reply, so protocol code raises and one place renders.

An SMTP-facing error knows its basic and enhanced status codes (RFC 5321, RFC 3463); an IMAP-facing error its
status (NO or BAD) and response code. The CLI shows any :class:`RelentadError` as its one-line message.
"""

from __future__ import annotations


class RelentadError(Exception):
    """Base of every expected error; ``str(error)`` is a message fit for a user."""


class NotFound(RelentadError):
    """A named domain, account, alias or mailbox does not exist."""


class AlreadyExists(RelentadError):
    """Creating something whose name is taken."""


class InvalidInput(RelentadError):
    """An address, name or value that does not parse or is not allowed."""


class LimitReached(InvalidInput):
    """A per-account limit on how many of something there may be (mailboxes) is reached."""


class SMTPReply(RelentadError):
    """A refusal to send as an SMTP reply: ``code`` (e.g. 550), ``enhanced`` (e.g. "5.1.1") and a text."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(f"{code} {enhanced} {text}")
        self.code = code
        self.enhanced = enhanced
        self.text = text

    @property
    def reply(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


class StoreUnavailable(RelentadError):
    """The database could not be written (disk full, I/O error); clients are told to try again later."""
