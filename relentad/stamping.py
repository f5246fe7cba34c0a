"""Header fixes a submission server makes before a message leaves (RFC 6409 §8): pure bytes in, bytes out.

:func:`prepare` first makes every line ending CRLF (:func:`normalize_line_endings`: a bare CR or bare LF becomes
CRLF, as aiosmtplib does on the wire, and the message ends in CRLF), so the fields it checks, the bytes DKIM signs,
the local copies and what the queue sends are the same bytes. It then checks the author fields against an
ownership predicate and
- refuses a header line without a field name and colon (``550 5.6.0``);
- writes ``Name : value`` (RFC 5322 §4.5.8 obsolete syntax, the same field to every reader) as ``Name: value``,
  which DKIM signers and verifiers can parse;
- refuses a message without exactly one From field, with more than one Sender, Date or Message-ID field, with a
  Sender that is not exactly one mailbox or a Date that is not a date (``550 5.6.0``, RFC 5322 §3.6), and From or
  Sender addresses the account does not own (``553 5.7.1``, as :class:`relentad.errors.SMTPReply`);
- removes every Bcc field (RFC 5322 §3.6.3: the submitter's copy may keep it, the world's may not);
- adds ``Sender`` when none is present and the envelope sender (not the null one) is not the (single) From
  address, or From names more than one author (RFC 5322 §3.6.2: Sender is then required; with the null envelope
  sender it is the logged-in account's address);
- adds ``Message-ID`` and ``Date`` (in UTC, ``+0000``) when missing;
- prepends the given ``Received`` field.

Invariants: apart from line endings, the body and every field not named above are left byte for byte as submitted
(a DKIM signature made later covers exactly what is sent and stored); added fields end in CRLF and carry nothing a
client could use to inject a header line.
"""

from __future__ import annotations

import email.utils
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import trace
from .errors import SMTPReply

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_SPACE_BEFORE_COLON = re.compile(rb"^([!-9;-~]+)[ \t]+:")
_LINE_ENDING = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Field:
    """One header field as it was written, folding and line ending included."""

    name: str  # lower case
    raw: bytes

    @property
    def value(self) -> str:
        """The unfolded value, decoded leniently (8-bit headers are kept as surrogates)."""
        text = self.raw.split(b":", 1)[1].decode("utf-8", "surrogateescape")
        return re.sub(r"\r?\n(?=[ \t])", "", text).strip()


@dataclass(frozen=True)
class Prepared:
    """The message to send, and who it is from (for DKIM's signing domain)."""

    raw: bytes
    from_address: str  # the first From address


def normalize_line_endings(raw: bytes) -> bytes:
    """``raw`` with every bare CR and bare LF made CRLF, ending in CRLF (unless empty).

    aiosmtplib sends exactly this (each of CRLF, CR and LF becomes CRLF), so a bare CR cannot hide a header line
    from the checks below, or change the body, after the message was checked and signed.
    """
    crlf = raw.count(b"\r\n")
    if crlf != raw.count(b"\r") or crlf != raw.count(b"\n"):
        raw = _LINE_ENDING.sub(b"\r\n", raw)
    return raw if not raw or raw.endswith(b"\r\n") else raw + b"\r\n"


def split(raw: bytes) -> tuple[list[Field], bytes]:
    """The header fields and the rest (the blank separator line and the body, as written)."""
    fields: list[Field] = []
    pos = 0
    current = b""
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        line = raw[pos:] if end < 0 else raw[pos : end + 1]
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and current:
            current += line
        else:
            if current:
                fields.append(_field(current))
            current = line
        pos += len(line)
    if current:
        fields.append(_field(current))
    return fields, raw[pos:]


def _field(raw: bytes) -> Field:
    match = _FIELD_NAME.match(raw)
    name = match.group(1).decode("ascii").lower() if match else ""
    if not raw.endswith(b"\n"):
        raw += b"\r\n"
    return Field(name, raw)


def addresses(field: Field) -> list[str]:
    """The addr-specs in an address field (display names and groups dropped)."""
    return [addr for _, addr in email.utils.getaddresses([field.value]) if addr]


def _is_date(value: str) -> bool:
    """Whether ``value`` is an RFC 5322 date-time (obsolete forms included, as mail readers take them)."""
    try:
        email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _at_most_one(fields: list[Field], name: str, shown: str) -> list[Field]:
    """The fields called ``name``; refused when there are two or more (RFC 5322 §3.6: max 1)."""
    found = [f for f in fields if f.name == name]
    if len(found) > 1:
        raise SMTPReply(550, "5.6.0", f"A message may have only one {shown} header field")
    return found


def _not_owned(what: str, address: str) -> SMTPReply:
    return SMTPReply(553, "5.7.1", f"{what} address <{trace.clean(address)}> is not yours to send from")


def prepare(
    raw: bytes,
    *,
    mail_from: str,
    login: str,
    owns: Callable[[str], bool],
    received: bytes,
    hostname: str,
    now: float | None = None,
) -> Prepared:
    """The message as it should leave: checked, fixed and stamped (see the module docstring).

    ``mail_from`` is the envelope sender ("" for the null one), ``login`` the authenticated account's address.
    """
    fields, rest = split(normalize_line_endings(raw))
    for nameless in (f for f in fields if not f.name):
        shown = trace.clean(nameless.raw.rstrip(b"\r\n")[:40].decode("utf-8", "replace"))
        raise SMTPReply(550, "5.6.0", f"A header line has no field name and colon: {shown}")
    from_fields = [f for f in fields if f.name == "from"]
    if len(from_fields) != 1:
        raise SMTPReply(550, "5.6.0", "A message needs exactly one From header field")
    authors = addresses(from_fields[0])
    if not authors:
        raise SMTPReply(550, "5.6.0", "The From header field has no address")
    senders = _at_most_one(fields, "sender", "Sender")
    sender_addresses = addresses(senders[0]) if senders else []
    if senders and len(sender_addresses) != 1:
        raise SMTPReply(550, "5.6.0", "The Sender header field must name exactly one mailbox")
    dates = _at_most_one(fields, "date", "Date")
    if dates and not _is_date(dates[0].value):
        raise SMTPReply(550, "5.6.0", "The Date header field is not a valid date")
    _at_most_one(fields, "message-id", "Message-ID")
    for author in authors:
        if not owns(author):
            raise _not_owned("From", author)
    for sender in sender_addresses:
        if not owns(sender):
            raise _not_owned("Sender", sender)
    kept = [_SPACE_BEFORE_COLON.sub(rb"\1:", f.raw, count=1) for f in fields if f.name != "bcc"]
    names = {f.name for f in fields}
    added: list[bytes] = []
    if not senders and (len(authors) != 1 or (mail_from and authors[0].lower() != mail_from.lower())):
        added.append(f"Sender: <{trace.clean(mail_from or login)}>\r\n".encode())
    if "message-id" not in names:
        added.append(f"Message-ID: <{secrets.token_hex(12)}@{trace.clean(hostname)}>\r\n".encode())
    if "date" not in names:
        added.append(f"Date: {trace.date(now if now is not None else time.time())}\r\n".encode())
    if not rest.startswith((b"\r\n", b"\n")):
        rest = b"\r\n" + rest  # a message with no body and no separator still needs the blank line
    return Prepared(received + b"".join(kept) + b"".join(added) + rest, authors[0])
