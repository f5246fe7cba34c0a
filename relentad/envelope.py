"""IMAP ENVELOPE, BODYSTRUCTURE and BODY structures (RFC 3501 §7.4.2, RFC 9051 §7.5.2) as JSON-ready lists.

Every value is `str` (an IMAP string; the response writer quotes it or sends a literal), `int` (a number)
or None (NIL), nested in lists that are parenthesised lists on the wire.

Rendering rule for the response writer: consecutive list elements are joined by SP, except that a list
directly followed by a list is written without SP in between — as RFC 3501 requires for the address
lists (`1*address`) and the children of a multipart (`1*body`), and as Dovecot writes everything.

Choices (all allowed by the RFCs):
- ENVELOPE strings are the raw header text, unfolded, encoded-words kept (RFC 3501 §7.4.2), through the
  one bytes→str rule of headers.header_text. The first occurrence of a repeated field is used. An address
  field with no address is NIL; Sender and Reply-To default to From.
- BODYSTRUCTURE media types, subtypes, parameter names, disposition types and encodings are lower-case
  ("text" "plain" ("charset" "us-ascii") … "7bit"), exactly as Dovecot writes them (the RFC 3501
  examples use upper case; both are valid, clients compare case-insensitively); parameter values keep
  their case. The encoding defaults to "7bit". Body MD5 is the Content-MD5 value (as Dovecot gives it), else NIL.
- Lines are the number of CRLFs in the body. message/global is described like message/rfc822.
- Text parts without a charset get charset=us-ascii (RFC 2045 §5.2), as Dovecot writes them.

Checked against Dovecot 2.3 on the 3,023 SpamAssassin corpus messages: RFC822.SIZE, BODYSTRUCTURE and
BODY agree except where this module deliberately differs — an invalid Content-Type is
text/plain (Dovecot: "" ""), a multipart without delimiters is demoted (Dovecot: an empty text/plain
child), Content-Transfer-Encoding counts without MIME-Version, unquoted parameter values run to ";".
ENVELOPE differs only in whitespace (Dovecot collapses runs in subjects and names), 8-bit text (this
module decodes it), and garbage addresses (Dovecot writes MISSING_DOMAIN / SYNTAX_ERROR, this module
keeps the text and uses "" for a missing host).
"""

from __future__ import annotations

from typing import Any

from relentad.addresses import envelope_addresses
from relentad.headers import Field
from relentad.mimetree import Part

_ENVELOPE_FIELDS = ("date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id")
_ADDRESS_FIELDS = frozenset(("from", "sender", "reply-to", "to", "cc", "bcc"))


def envelope_values(fields: list[Field]) -> dict[str, str]:
    """The first value of each field the envelope (and the summary in message.py) reads."""
    found: dict[str, str] = {}
    for name, value in fields:
        if name in _ENVELOPE_FIELDS and name not in found:
            found[name] = value
    return found


def envelope(fields: list[Field]) -> list[Any]:
    """RFC 3501 ENVELOPE: date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to, message-id."""
    return envelope_from_values(envelope_values(fields))


def envelope_from_values(values: dict[str, str]) -> list[Any]:
    """ENVELOPE from the first values of its fields (see `envelope_values`)."""
    out: list[Any] = []
    for name in _ENVELOPE_FIELDS:
        value = values.get(name)
        if name in _ADDRESS_FIELDS:
            out.append(envelope_addresses(value))
        else:
            out.append(value)
    if out[3] is None:
        out[3] = out[2]
    if out[4] is None:
        out[4] = out[2]
    return out


def _params(params: list[tuple[str, str]]) -> list[str] | None:
    if not params:
        return None
    flat: list[str] = []
    for name, value in params:
        flat.append(name)
        flat.append(value)
    return flat


def _disposition(part: Part) -> list[Any] | None:
    if part.disposition is None:
        return None
    return [part.disposition, _params(part.disposition_params)]


def _language(part: Part) -> str | list[str] | None:
    if not part.language:
        return None
    return part.language[0] if len(part.language) == 1 else list(part.language)


def body_structure(part: Part, extended: bool = True) -> list[Any]:
    """BODYSTRUCTURE (extended=True) or BODY (extended=False) of a message's root part or any part."""
    if part.is_multipart:
        out: list[Any] = [body_structure(child, extended) for child in part.children]
        out.append(part.subtype)
        if extended:
            out += [_params(part.params), _disposition(part), _language(part), part.location]
        return out
    out = [
        part.type,
        part.subtype,
        _params(part.params),
        part.content_id,
        part.description,
        part.encoding or "7bit",
        part.size,
    ]
    if part.is_message:
        out += [part.envelope, body_structure(part.children[0], extended), part.lines]
    elif part.type == "text":
        out.append(part.lines)
    if extended:
        out += [part.md5, _disposition(part), _language(part), part.location]
    return out
