"""FETCH PREVIEW (RFC 8970): the start of a message's visible text, for a client's message list.

The text comes from the first text/plain or text/html leaf that is not an attachment (depth first, so in a
multipart/alternative the plain part, which comes first, wins), decoded and HTML-stripped by
:mod:`relentad.bodytext` as SEARCH BODY reads it, whitespace runs collapsed to one space, cut at
:data:`LENGTH` characters. Control characters (C0, DEL, C1) count as whitespace: a preview is one line of text,
and a NUL would go out as 0x80, which is no UTF-8. A message with no such text has the empty preview (RFC 8970
§3.1: a zero-length string, NIL being for a LAZY preview not yet generated).

Invariants: pure and bounded — at most :data:`MAX_READ` octets of at most :data:`MAX_PARTS` parts are decoded,
whatever the message's size; never raises on malformed content (bodytext does not).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from ..bodytext import part_text
from ..mimetree import Part

Reader = Callable[[Part, int], bytes]
"""(part, n) → the first n octets (at most) of the part's body, as the CRLF-normalised message has them."""

LENGTH = 256
"""RFC 8970 §3.1: at most 256 characters."""
FIRST_READ = 4096
MAX_READ = 65536
"""Octets of a part decoded at first, and at most when the first read yields too little text (HTML with a long
style sheet, say)."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

MAX_PARTS = 16
"""Text parts tried at most: a message of thousands of empty parts costs no more than a normal one."""


def _candidates(tree: Part) -> list[Part]:
    """The text/plain and text/html leaves, depth first, none inside an attachment (a forwarded message attached
    as a file is not the text of this one)."""
    out: list[Part] = []
    stack = [tree]
    while stack and len(out) < MAX_PARTS:
        part = stack.pop()
        if part.disposition == "attachment":
            continue
        if part.children:
            stack.extend(reversed(part.children))
        elif part.type == "text" and part.subtype in ("plain", "html"):
            out.append(part)
    return out


def slicer(data: bytes) -> Reader:
    """A :data:`Reader` over the whole message in memory (CRLF-normalised, as its tree was parsed from it)."""
    return lambda part, n: data[part.body_start : min(part.body_end, part.body_start + n)]


def preview(tree: Part, read: Reader) -> str:
    """The preview of the message whose part tree is ``tree``; ``read`` gives the octets of a part's body."""
    for part in _candidates(tree):
        size = part.body_end - part.body_start
        for limit in (FIRST_READ, MAX_READ):
            body = read(part, limit)
            local = dataclasses.replace(part, header_start=0, body_start=0, body_end=len(body), children=[])
            text = " ".join(_CONTROL.sub(" ", part_text(body, local, limit)).split())
            if len(text) >= LENGTH or size <= limit:
                break
        if text:
            return text[:LENGTH]
    return ""
