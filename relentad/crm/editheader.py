"""Sieve ``editheader`` (RFC 5293): the header edits ``addheader`` and ``deleteheader`` make to a message.

The edits change the message's own header section, so the copy the rules file (and redirect) is a message of its
own, stored as its own blob. The fields relentad adds to each copy (Return-Path, Delivered-To, Received,
Authentication-Results, X-Spam-*) go above it when it is filed: no script can add, hide or remove them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..errors import InvalidInput
from ..headers import decode_header, encode_field, field_spans, header_end, header_text

PROTECTED = frozenset({"received", "auto-submitted"})
"""Fields ``deleteheader`` leaves alone (RFC 5293 §6: never Received; Auto-Submitted, as in Pigeonhole, because
vacation and every other auto-responder read it to stop mail loops). The attempt is ignored, as §6 wants."""
MAX_VALUE = 2048
"""Octets of an ``addheader`` value (Pigeonhole's ``sieve_editheader_max_header_size``)."""
MAX_NAME = 200
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 §3.6.8 ftext: printable US-ASCII but ":"


class Field(NamedTuple):
    """One header field of the message: where its octets are (folded lines and line end included), its value."""

    start: int
    stop: int
    value: str  # unfolded, RFC 2047 decoded, as the header test reads it


def check_name(name: str) -> str:
    """A field name ``addheader``/``deleteheader`` may use (RFC 5293 §4: an RFC 5322 field name)."""
    if not name or len(name) > MAX_NAME or _FIELD_NAME.fullmatch(name) is None:
        raise InvalidInput(f"{name[:MAX_NAME]!r} is not a header field name")
    return name


def check_value(value: str) -> str:
    """A value ``addheader`` may add: one line of text (folding is ours to do; RFC 5322 has no control characters
    but tab in a field), at most MAX_VALUE octets."""
    if _CONTROL.search(value):
        raise InvalidInput("the value must be one line of text (no control characters)")
    if len(value.encode("utf-8")) > MAX_VALUE:
        raise InvalidInput(f"the value is longer than {MAX_VALUE} octets")
    return value


def _line_end(raw: bytes, end: int) -> bytes:
    """The line end the message's header section uses (a stored message keeps the octets it came with)."""
    return b"\n" if end and raw[:end].endswith(b"\n") and not raw[:end].endswith(b"\r\n") else b"\r\n"


def add(raw: bytes, name: str, value: str, *, last: bool = False) -> bytes:
    """``raw`` with the field ``name: value`` first in its header section, or last with ``last`` (RFC 5293 §4):
    RFC 2047-encoded when the value is not ASCII, folded either way."""
    end = header_end(raw)
    newline = _line_end(raw, end)
    field = encode_field(name, value, newline.decode()).encode("ascii")
    if not last:
        return field + raw
    if end == len(raw) and raw and not raw.endswith(b"\n"):  # a header section without a final line end
        return raw + newline + field
    return raw[:end] + field + raw[end:]


def fields(raw: bytes, name: str) -> list[Field]:
    """The message's fields called ``name`` (any case), top to bottom."""
    wanted = name.lower()
    return [
        Field(start, stop, decode_header(header_text(raw[start:stop]).partition(":")[2].replace("\r\n", "").strip()))
        for found, start, stop in field_spans(raw, 0, header_end(raw))
        if found == wanted
    ]


def remove(raw: bytes, gone: list[Field]) -> bytes:
    """``raw`` without the fields ``gone`` (folded lines and all); the rest byte for byte."""
    pieces, pos = [], 0
    for field in sorted(gone):
        pieces.append(raw[pos : field.start])
        pos = field.stop
    pieces.append(raw[pos:])
    return b"".join(pieces)
