"""Parsing of RFC 5322 / MIME messages: the one entry point the pipeline, store, IMAP and CRM use.

`parse(raw)` runs once per message at delivery (the SMTP DATA hot path) and yields a `ParsedMessage`
that the store keeps as JSON (`to_json` / `from_json`); IMAP FETCH then serves ENVELOPE and
BODYSTRUCTURE from it and body sections as slices of the raw message (`section_bytes`).

Invariants:
- `parse` never raises, whatever the bytes (bad headers, broken or missing boundaries, bad charsets
  and encoded-words, NUL, 8-bit headers, bare LF, no body, absurd nesting, huge header counts): the
  scanners are written not to, and a last-resort net logs any bug and degrades to one text part.
- Work is linear in the message size (no backtracking regexes on hostile input; depth and part count
  capped in mimetree.py).
- All offsets and sizes refer to the CRLF-normalised message, `normalize_crlf(raw)`: bare LF becomes
  CRLF (IMAP serves CRLF). `ParsedMessage.needs_crlf` says whether the stored raw bytes differ from that
  form, so FETCH normalises (only then) before slicing; `size` is the normalised size (RFC822.SIZE).
- Decoded header values (subject, names) go through RFC 2047; ENVELOPE keeps the raw text (envelope.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relentad.addresses import Address, addresses_from_envelope, parse_addresses
from relentad.bodytext import text_for_search
from relentad.envelope import body_structure, envelope, envelope_from_values, envelope_values
from relentad.headers import Field, decode_header, header_fields, message_ids, parse_date
from relentad.mimetree import Part, needs_crlf, normalize_crlf, parse_tree, split_header
from relentad.sections import binary_section, section_bytes

__all__ = [
    "Address",
    "ParsedMessage",
    "Part",
    "binary_section",
    "decode_header",
    "header_fields_of",
    "needs_crlf",
    "normalize_crlf",
    "parse",
    "parse_addresses",
    "section_bytes",
    "text_for_search",
]

logger = logging.getLogger(__name__)

JSON_VERSION = 1
_LIST_FIELDS = ("list-id", "list-unsubscribe", "precedence", "auto-submitted", "references")


def _addresses_json(addresses: list[Address]) -> list[list[str | None]]:
    return [[a.name, a.address, a.group] for a in addresses]


def _addresses_from_json(items: list[list[str | None]]) -> list[Address]:
    return [Address(str(name), str(address), group) for name, address, group in items]


@dataclass(slots=True)
class ParsedMessage:
    """What delivery learns about a message, kept beside it in the store."""

    size: int
    """Octets of the CRLF-normalised message (RFC822.SIZE)."""
    needs_crlf: bool
    tree: Part
    envelope: list[Any]
    """RFC 3501 ENVELOPE, JSON-ready (see envelope.py for the string rules)."""
    date: datetime | None = None
    subject: str | None = None
    from_: list[Address] = field(default_factory=list)
    sender: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    message_id: str | None = None
    """The Message-ID without angle brackets, case kept."""
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    list_id: str | None = None
    list_unsubscribe: str | None = None
    precedence: str | None = None
    auto_submitted: str | None = None
    open_end: bool = False
    """The last line has no CRLF (an APPENDed draft may end so): POP3's RETR adds one, and LIST must count it."""

    @property
    def bodystructure(self) -> list[Any]:
        """FETCH BODYSTRUCTURE (extension data included)."""
        return body_structure(self.tree, extended=True)

    @property
    def body(self) -> list[Any]:
        """FETCH BODY (no extension data)."""
        return body_structure(self.tree, extended=False)

    @property
    def is_bulk(self) -> bool:
        """Mailing-list or automatic mail (RFC 2369 List-*, RFC 3834 Auto-Submitted, Precedence)."""
        if self.list_id is not None or self.list_unsubscribe is not None:
            return True
        if self.auto_submitted is not None and self.auto_submitted.split(";")[0].strip().lower() != "no":
            return True
        return (self.precedence or "").strip().lower() in ("bulk", "list", "junk")

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON-ready form (short keys; the tree as positional lists)."""
        return {
            "v": JSON_VERSION,
            "n": int(self.needs_crlf),
            "s": self.size,
            "t": self.tree.to_list(),
            "e": self.envelope,
            "d": self.date.isoformat() if self.date else None,
            "su": self.subject,
            "a": [
                _addresses_json(group) for group in (self.from_, self.sender, self.reply_to, self.to, self.cc, self.bcc)
            ],
            "m": self.message_id,
            "i": self.in_reply_to,
            "r": self.references,
            "l": [self.list_id, self.list_unsubscribe, self.precedence, self.auto_submitted],
            **({"o": 1} if self.open_end else {}),  # only when set: older rows lack it and mean "ends with CRLF"
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParsedMessage:
        if data.get("v") != JSON_VERSION:
            raise ValueError(f"unsupported parsed-message version {data.get('v')!r}")
        groups = [_addresses_from_json(items) for items in data["a"]]
        return cls(
            size=data["s"],
            needs_crlf=bool(data["n"]),
            tree=Part.from_list(data["t"]),
            envelope=data["e"],
            date=datetime.fromisoformat(data["d"]) if data["d"] else None,
            subject=data["su"],
            from_=groups[0],
            sender=groups[1],
            reply_to=groups[2],
            to=groups[3],
            cc=groups[4],
            bcc=groups[5],
            message_id=data["m"],
            in_reply_to=data["i"],
            references=data["r"],
            list_id=data["l"][0],
            list_unsubscribe=data["l"][1],
            precedence=data["l"][2],
            auto_submitted=data["l"][3],
            open_end=bool(data.get("o")),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ParsedMessage:
        return cls.from_dict(json.loads(text))


def header_fields_of(data: bytes, part: Part) -> list[Field]:
    """(lower-cased name, unfolded raw value) of each field of a part's header, the message's for the
    root, in order: for SEARCH HEADER and anything else that needs a field parse() did not keep.
    Values are not RFC 2047-decoded (see `decode_header`); `data` is CRLF-normalised."""
    fields_end, _ = split_header(data, part.header_start, part.body_end)
    return header_fields(data, part.header_start, fields_end)


def parse(raw: bytes) -> ParsedMessage:
    """Parse a message (any line endings); never raises. See the module invariants."""
    crlf = needs_crlf(raw)
    data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") if crlf else raw
    try:
        return _parse(data, crlf)
    except Exception:  # a parser bug must not bounce mail: log it and store the message as one text part
        logger.exception("message parse failed; stored as a single text/plain part (%d octets)", len(data))
        return ParsedMessage(
            len(data),
            crlf,
            Part(0, 0, len(data), params=[("charset", "us-ascii")]),
            [None] * 10,
            open_end=_open_end(data),
        )


def _parse(data: bytes, crlf: bool) -> ParsedMessage:
    tree, fields = parse_tree(data, envelope)
    values = envelope_values(fields)
    extra: dict[str, str] = {}
    for name, value in fields:
        if name in _LIST_FIELDS and name not in extra:
            extra[name] = value
    env = envelope_from_values(values)
    # Sender and Reply-To default to From in the envelope only (same list object): not for the CRM.
    subject = values.get("subject")
    message_id = message_ids(values.get("message-id"))
    return ParsedMessage(
        size=len(data),
        needs_crlf=crlf,
        tree=tree,
        envelope=env,
        date=parse_date(values.get("date")),
        subject=decode_header(subject) if subject is not None else None,
        from_=addresses_from_envelope(env[2]),
        sender=addresses_from_envelope(env[3]) if env[3] is not env[2] else [],
        reply_to=addresses_from_envelope(env[4]) if env[4] is not env[2] else [],
        to=addresses_from_envelope(env[5]),
        cc=addresses_from_envelope(env[6]),
        bcc=addresses_from_envelope(env[7]),
        message_id=message_id[0] if message_id else None,
        in_reply_to=message_ids(values.get("in-reply-to")),
        references=message_ids(extra.get("references")),
        list_id=extra.get("list-id"),
        list_unsubscribe=extra.get("list-unsubscribe"),
        precedence=extra.get("precedence"),
        auto_submitted=extra.get("auto-submitted"),
        open_end=_open_end(data),
    )


def _open_end(data: bytes) -> bool:
    return bool(data) and not data.endswith(b"\r\n")
