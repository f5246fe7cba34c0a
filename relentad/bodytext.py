"""Decoded content of MIME parts: transfer decoding (RFC 2045 §6), charsets, and plain text for SEARCH.

Used by FETCH BINARY (RFC 3516) and by SEARCH BODY/TEXT, the CRM and the spam filter, which all want text
rather than bytes.

Invariants:
- Never raises on malformed content: bad base64 is decoded as far as it goes, unknown charsets fall back
  to UTF-8 then Windows-1252 (headers.decode_bytes).
- Work is bounded: `text_for_search` reads at most 4 × limit bytes of each part and returns at most
  `limit` characters, and the HTML stripping is linear in its input (no backtracking regexes over
  unclosed tags).
"""

from __future__ import annotations

import binascii
import html
import re

from relentad.headers import decode_bytes, param_value
from relentad.mimetree import Part, normalize_crlf

SEARCH_TEXT_LIMIT = 256 * 1024
IDENTITY_ENCODINGS = frozenset((None, "", "7bit", "8bit", "binary"))

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_JUNK = bytes(b for b in range(256) if b not in _B64_ALPHABET)


def decode_transfer(body: bytes, encoding: str | None) -> bytes | None:
    """Undo a Content-Transfer-Encoding; None when the encoding is unknown (IMAP UNKNOWN-CTE)."""
    if encoding in IDENTITY_ENCODINGS:
        return body
    if encoding == "base64":
        clean = body.translate(None, _B64_JUNK)
        pad = clean.find(b"=")
        if pad >= 0:  # padding ends the data (RFC 2045 §6.8); anything after it is junk
            clean = clean[:pad]
        extra = len(clean) % 4
        if extra == 1:  # a lone trailing sextet carries no whole octet
            clean = clean[:-1]
        elif extra:
            clean += b"=" * (4 - extra)
        try:
            return binascii.a2b_base64(clean)
        except (binascii.Error, ValueError):
            return b""
    if encoding == "quoted-printable":
        if b" \r\n" in body or b"\t\r\n" in body or body.endswith((b" ", b"\t")):
            # RFC 2045 §6.7 (3): trailing whitespace is transport padding, deleted when decoding.
            body = b"\r\n".join(line.rstrip(b" \t") for line in body.split(b"\r\n"))
        try:
            return binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            return body
    return None


def _strip_blocks(text: str, lowered: str, opening: str, closing: str) -> tuple[str, str]:
    """Remove opening … closing … ">" spans (scripts, styles, comments) with plain finds: linear time."""
    if opening not in lowered:
        return text, lowered
    out: list[str] = []
    low: list[str] = []
    pos = 0
    while True:
        start = lowered.find(opening, pos)
        if start < 0:
            break
        out.append(text[pos:start])
        low.append(lowered[pos:start])
        stop = lowered.find(closing, start + len(opening))
        if stop < 0:
            pos = len(text)
            break
        gt = lowered.find(">", stop)
        pos = len(text) if gt < 0 else gt + 1
    out.append(text[pos:])
    low.append(lowered[pos:])
    return "".join(out), "".join(low)


_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}
_TAG = re.compile(r"<[^<>]*>")
_INLINE_NAMES = (
    "a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "del", "dfn", "em", "font", "i", "ins", "kbd", "mark", "o:p",
    "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "time", "tt", "u", "var", "wbr",
)  # fmt: skip
"""Phrasing tags, which do not separate words: `<b>Rech</b>nung` reads "Rechnung" (and Outlook's spans split words)."""


def _names_pattern(names: tuple[str, ...]) -> str:
    """The names as one alternation per first letter, behind a check of that letter, ASCII case-insensitive (HTML's
    rule): the engine then rejects most other tags at their first letter. One flat `re.IGNORECASE` alternation
    made this function 1.5 × as slow and SEARCH BODY 18 % slower (scripts/bench/imap_search.py)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name[0], []).append(re.escape(name[1:]))
    firsts = "".join(sorted(groups))
    branches = "|".join(f"{first}(?:{'|'.join(sorted(rest, key=len, reverse=True))})" for first, rest in groups.items())
    return f"(?=[{firsts}{firsts.upper()}])(?ai:{branches})"


_INLINE_TAG = re.compile(rf"</?{_names_pattern(_INLINE_NAMES)}(?=[\s/>])[^<>]*>")
_SPACE_RUN = re.compile(" {2,}")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")


def html_to_text(markup: str) -> str:
    """Visible text of an HTML document, roughly: scripts, styles, comments and tags dropped; block tags separate
    words, phrasing tags (b, span, a, ...) do not."""
    lowered = markup.lower()
    if len(lowered) != len(markup):  # a few characters lower-case to two; offsets must stay aligned
        lowered = markup.translate(_ASCII_LOWER)
    markup, lowered = _strip_blocks(markup, lowered, "<!--", "-->")
    markup, lowered = _strip_blocks(markup, lowered, "<script", "</script")
    markup, _ = _strip_blocks(markup, lowered, "<style", "</style")
    text = html.unescape(_TAG.sub(" ", _INLINE_TAG.sub("", markup)))
    # runs of blanks to one space: the other blanks become spaces first, as the regex's first character is then
    # a literal the engine finds fast (one `[ \t\r\f\v]+` took a third of the whole function)
    text = text.replace("\t", " ").replace("\r", " ").replace("\f", " ").replace("\v", " ")
    text = _SPACE_RUN.sub(" ", text)
    return _BLANK_LINES.sub("\n", text).strip()


def part_text(data: bytes, part: Part, max_bytes: int) -> str:
    """Decoded text of a text/* leaf (charset-aware, HTML stripped), reading at most max_bytes."""
    body = data[part.body_start : min(part.body_end, part.body_start + max_bytes)]
    decoded = decode_transfer(body, part.encoding)
    if decoded is None:
        decoded = body
    text = decode_bytes(decoded, param_value(part.params, "charset"))
    if part.subtype == "html":
        text = html_to_text(text)
    return text


def text_for_search(data: bytes, tree: Part, limit: int = SEARCH_TEXT_LIMIT) -> str:
    """Text of every text/* part of the message (embedded messages included), at most `limit` chars.

    `data` is the message the tree was parsed from, as stored or CRLF-normalised (normalised here).
    """
    data = normalize_crlf(data)
    chunks: list[str] = []
    left = limit
    stack = [tree]
    while stack and left > 0:
        part = stack.pop()
        if part.children:
            stack.extend(reversed(part.children))
        elif part.type == "text":
            text = part_text(data, part, 4 * left)[:left]
            if text:
                chunks.append(text)
                left -= len(text) + 1
    return "\n".join(chunks)[:limit]
