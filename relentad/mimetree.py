"""The MIME part tree of a message, as byte offsets into its CRLF-normalised form (`normalize_crlf`).

`parse_tree` scans once, without copying bodies: each `Part` records where its header and body lie, its
Content-* fields, and its children (the parts of a multipart; for message/rfc822 and message/global the
one embedded message, whose own header and body are again a `Part`).

Invariants:
- 0 <= header_start <= body_start <= body_end <= len(data) for every part; a part's header runs from
  header_start to body_start and includes the blank line when there is one (RFC 3501 BODY[HEADER]).
- Never raises on malformed input. A multipart without a boundary parameter, or whose boundary never
  occurs, and a multipart or message beyond MAX_DEPTH or after MAX_PARTS parts, is "demoted" to a
  text/plain leaf (its bytes stay searchable and BODYSTRUCTURE stays valid). A message/rfc822 with a
  base64 or quoted-printable encoding is a leaf application/octet-stream (its bytes are no message).
- Delimiter lines must be "--boundary" plus optional whitespace (RFC 2046 §5.1.1), so "--boundaryX"
  is content; a close-delimiter "--boundary--" may be followed by junk on its line (seen in real mail,
  accepted by Dovecot). The CRLF before a delimiter belongs to the delimiter. A missing
  close-delimiter ends the last part at the end of the enclosing body. Preamble and epilogue belong
  to no part.
- Types, subtypes, parameter names and the encoding are lower-cased here; values keep their case.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relentad.headers import Field, header_fields, param_value, parse_params

_PADDING = re.compile(rb"[ \t]*+")

MAX_DEPTH = 50
MAX_PARTS = 10_000

Params = list[tuple[str, str]]


@dataclass(slots=True)
class Part:
    """One MIME entity; offsets index the CRLF-normalised message."""

    header_start: int
    body_start: int
    body_end: int
    type: str = "text"
    subtype: str = "plain"
    params: Params = field(default_factory=list)
    disposition: str | None = None
    disposition_params: Params = field(default_factory=list)
    language: list[str] | None = None
    location: str | None = None
    content_id: str | None = None
    description: str | None = None
    encoding: str | None = None
    lines: int = 0
    children: list[Part] = field(default_factory=list)
    envelope: list[Any] | None = None
    """For message/rfc822 and message/global: the embedded message's ENVELOPE (see envelope.py)."""
    md5: str | None = None
    """Content-MD5 (RFC 1864), given as BODYSTRUCTURE's body MD5."""

    @property
    def header_end(self) -> int:
        """End of the header, blank line included: the body starts right there."""
        return self.body_start

    @property
    def size(self) -> int:
        """Body size in octets (RFC 3501 body-fld-octets)."""
        return self.body_end - self.body_start

    @property
    def filename(self) -> str | None:
        """Decoded attachment file name: Content-Disposition filename, else Content-Type name."""
        return param_value(self.disposition_params, "filename") or param_value(self.params, "name")

    @property
    def is_multipart(self) -> bool:
        return self.type == "multipart" and bool(self.children)

    @property
    def is_message(self) -> bool:
        """True for message/rfc822 (and message/global) parts that hold a parsed embedded message."""
        return self.type == "message" and bool(self.children)

    def to_list(self) -> list[Any]:
        """Compact JSON form: a positional list (see `from_list`)."""
        return [
            self.header_start,
            self.body_start,
            self.body_end,
            self.type,
            self.subtype,
            [list(p) for p in self.params],
            self.disposition,
            [list(p) for p in self.disposition_params],
            self.language,
            self.location,
            self.content_id,
            self.description,
            self.encoding,
            self.lines,
            [child.to_list() for child in self.children],
            self.envelope,
            self.md5,
        ]

    @classmethod
    def from_list(cls, data: list[Any]) -> Part:
        return cls(
            data[0],
            data[1],
            data[2],
            data[3],
            data[4],
            [(k, v) for k, v in data[5]],
            data[6],
            [(k, v) for k, v in data[7]],
            data[8],
            data[9],
            data[10],
            data[11],
            data[12],
            data[13],
            [cls.from_list(child) for child in data[14]],
            data[15],
            data[16] if len(data) > 16 else None,  # structures stored before Content-MD5 was kept have 16 items
        )


EnvelopeBuilder = Callable[[list[Field]], list[Any]]
"""Builds the ENVELOPE of an embedded message from its fields (envelope.envelope, passed in)."""


def needs_crlf(raw: bytes) -> bool:
    """True when raw has a bare LF; two C-speed counts, so cheap on the common all-CRLF message."""
    lf = raw.count(b"\n")
    return lf != 0 and lf != raw.count(b"\r\n")


def normalize_crlf(raw: bytes) -> bytes:
    """raw with every bare LF turned into CRLF: the form all offsets refer to. Unchanged (same object)
    when already CRLF."""
    if not needs_crlf(raw):
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def split_header(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(end of header fields, start of body) for the entity data[start:end].

    Fields end before the blank line; the body starts after it. Without a blank line the whole entity is
    header and the body is empty; an entity starting with a blank line has no fields.
    """
    if data.startswith(b"\r\n", start, end):
        return start, start + 2
    blank = data.find(b"\r\n\r\n", start, end)
    if blank < 0:
        return end, end
    return blank + 2, blank + 4


def parse_tree(data: bytes, envelope_of: EnvelopeBuilder) -> tuple[Part, list[Field]]:
    """The part tree of a whole message and its top-level header fields.

    `envelope_of(fields)` builds the ENVELOPE of each embedded message (passed in so that this module
    does not depend on envelope.py).
    """
    fields_end, body_start = split_header(data, 0, len(data))
    fields = header_fields(data, 0, fields_end)
    root = _Scanner(data, envelope_of).entity(0, body_start, len(data), fields, depth=0, digest=False)
    return root, fields


class _Scanner:
    """One scan of one message; `budget` counts parts so a hostile message cannot make the tree unbounded."""

    __slots__ = ("budget", "data", "envelope_of")

    def __init__(self, data: bytes, envelope_of: EnvelopeBuilder) -> None:
        self.data = data
        self.envelope_of = envelope_of
        self.budget = MAX_PARTS

    def part(self, start: int, end: int, *, depth: int, digest: bool) -> Part:
        fields_end, body_start = split_header(self.data, start, end)
        fields = header_fields(self.data, start, fields_end)
        return self.entity(start, body_start, end, fields, depth=depth, digest=digest)

    def entity(self, start: int, body_start: int, end: int, fields: list[Field], *, depth: int, digest: bool) -> Part:
        """A Part from its already-split header; recurses into multiparts and embedded messages."""
        self.budget -= 1
        part = Part(start, body_start, end)
        _content_fields(part, fields, digest)
        if part.type == "multipart":
            if depth < MAX_DEPTH and self.budget > 0:
                self.split_multipart(part, depth)
            if not part.children:
                _demote(part, "text", "plain")
        elif part.type == "message" and part.subtype in ("rfc822", "global"):
            if part.encoding in ("base64", "quoted-printable"):
                _demote(part, "application", "octet-stream")
            elif depth < MAX_DEPTH and self.budget > 0:
                inner_fields_end, inner_body = split_header(self.data, body_start, end)
                inner_fields = header_fields(self.data, body_start, inner_fields_end)
                inner = self.entity(body_start, inner_body, end, inner_fields, depth=depth + 1, digest=False)
                part.children = [inner]
                part.envelope = self.envelope_of(inner_fields)
            else:
                _demote(part, "text", "plain")
        if part.type in ("text", "message"):
            part.lines = self.data.count(b"\r\n", body_start, end)
        return part

    def split_multipart(self, part: Part, depth: int) -> None:
        """Children between delimiter lines (RFC 2046 §5.1.1), leniently."""
        boundary = next((value for name, value in part.params if name == "boundary"), "")
        if not boundary:
            return
        data = self.data
        delimiter = b"--" + boundary.encode("utf-8", "replace")
        digest = part.subtype == "digest"
        start, end = part.body_start, part.body_end
        previous_end: int | None = None  # where the current part's bytes start (after a delimiter line)
        search = start
        at_start = data.startswith(delimiter, start, end)
        while self.budget > 0:
            if at_start:
                crlf, line = start, start
                at_start = False
            else:
                crlf = data.find(b"\r\n" + delimiter, search, end)
                if crlf < 0:
                    break
                line = crlf + 2
            pos = line + len(delimiter)
            closing = data.startswith(b"--", pos, end)
            if closing:
                pos += 2
            padding = _PADDING.match(data, pos, end)
            if padding is not None:
                pos = padding.end()
            if pos < end and not closing and not data.startswith(b"\r\n", pos, end):
                search = line  # "--boundaryX": not a delimiter line
                continue
            line_end = min(pos + 2, end)
            if previous_end is not None:
                part_end = max(crlf, previous_end)  # "--b\r\n--b": an empty part
                part.children.append(self.part(previous_end, part_end, depth=depth + 1, digest=digest))
            if closing:
                return
            previous_end = line_end
            search = line_end - 2 if line_end - 2 >= line else line_end
        if previous_end is not None and self.budget > 0:
            part.children.append(self.part(previous_end, end, depth=depth + 1, digest=digest))


def _content_fields(part: Part, fields: list[Field], digest: bool) -> None:
    """Fill the Content-* attributes of `part`; the first occurrence of each field wins."""
    content_type: str | None = None
    for name, value in fields:
        if not name.startswith("content-"):
            continue
        if name == "content-type":
            if content_type is None:
                content_type = value
        elif name == "content-transfer-encoding":
            if part.encoding is None:
                part.encoding = value.split("(", 1)[0].strip().lower() or None
        elif name == "content-disposition":
            if part.disposition is None:
                token, part.disposition_params = parse_params(value)
                part.disposition = token or None
        elif name == "content-language":
            if part.language is None:
                tags = [tag.strip() for tag in value.split("(", 1)[0].split(",")]
                part.language = [tag for tag in tags if tag] or None
        elif name == "content-location":
            if part.location is None:
                part.location = "".join(value.split())
        elif name == "content-id":
            if part.content_id is None:
                part.content_id = value
        elif name == "content-description":
            if part.description is None:
                part.description = value
        elif name == "content-md5" and part.md5 is None:
            part.md5 = value.split("(", 1)[0].strip() or None
    _set_type(part, content_type, digest)


def _set_type(part: Part, content_type: str | None, digest: bool) -> None:
    """RFC 2045 §5.2: a missing or invalid Content-Type means text/plain; charset=us-ascii, and a text/*
    type without charset has charset=us-ascii."""
    if content_type is not None:
        token, params = parse_params(content_type)
        kind, slash, subtype = token.partition("/")
        kind, subtype = kind.strip(), subtype.strip()
        if slash and kind and subtype and " " not in kind and " " not in subtype:
            if kind == "text" and not any(name == "charset" for name, _ in params):
                params.append(("charset", "us-ascii"))  # RFC 2045 §5.2 default, made explicit as Dovecot does
            part.type, part.subtype, part.params = kind, subtype, params
            return
    if digest:  # RFC 2046 §5.1.5
        part.type, part.subtype = "message", "rfc822"
    else:
        part.params = [("charset", "us-ascii")]


def _demote(part: Part, kind: str, subtype: str) -> None:
    part.type, part.subtype, part.children, part.envelope = kind, subtype, [], None
