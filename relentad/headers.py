"""Header fields of RFC 5322 / MIME messages: scanning, unfolding, RFC 2047 decoding, charsets, dates.

This is the one place that turns header bytes into str; everything above works on str.

Invariants:
- Nothing here raises on malformed input. Garbage yields empty results, None, or the text as given.
- Bytes become str by one documented rule (`header_text`): strict UTF-8 (RFC 6532 SMTPUTF8 headers), and
  for invalid UTF-8 (legacy unlabelled 8-bit mail) Windows-1252 with replacement. The result is always
  valid Unicode without surrogates (safe for SQLite and JSON) and without NUL, which IMAP strings
  cannot carry (RFC 3501 §9 CHAR8). So "raw" envelope strings are the raw text up to that rule.
- Input buffers are CRLF-normalised (see `relentad.message.normalize_crlf`); offsets index that form.
- Field names are returned lower-cased; values are unfolded (CRLF before WSP removed, RFC 5322 §2.2.3)
  and stripped of surrounding whitespace.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.header import Header
from email.utils import parsedate_tz

Field = tuple[str, str]
"""(lower-cased name, unfolded value)."""

_DENIED_CODECS = frozenset({"unicode-escape", "raw-unicode-escape", "punycode", "idna", "undefined"})
_CHARSET_ALIASES = {
    # Unlabelled or meaningless labels: use the UTF-8 → Windows-1252 rule.
    "us-ascii": None,
    "ascii": None,
    "ansi_x3.4-1968": None,
    "unknown-8bit": None,
    "x-unknown": None,
    "unknown": None,
    "default": None,
    "8bit": None,
    "x-user-defined": None,
    # Labels that mail uses for a superset (as WHATWG Encoding does).
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "tis-620": "cp874",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
}


def header_text(data: bytes) -> str:
    """Bytes of a header to str by the module rule: ASCII fast, UTF-8, else Windows-1252; NUL dropped."""
    if data.isascii():
        text = data.decode("ascii")
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", "replace")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


@functools.lru_cache(maxsize=256)
def _codec(charset: str) -> str | None:
    """Python codec for a MIME charset label, or None for the fallback rule; bounded cache."""
    name = charset.strip().strip("\"'").lower()
    if name in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[name]
    try:
        b"".decode(name)  # rejects bytes-to-bytes codecs such as zlib
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if info.name.replace("_", "-") in _DENIED_CODECS:
        return None
    return info.name


_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode body or encoded-word bytes in `charset`; unknown or wrong labels fall back, never raise.

    The result never holds lone surrogates (UTF-7 can encode them), so it always encodes to UTF-8.
    """
    codec = _codec(charset) if charset else None
    if codec is not None:
        try:
            text = data.decode(codec, "replace")
        except (LookupError, ValueError, TypeError):  # a codec with a broken decoder must not break parsing
            pass
        else:
            return text if text.isascii() or not _SURROGATE.search(text) else _SURROGATE.sub("\ufffd", text)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


# A field: name (no WSP, obsolete WSP before the colon allowed), colon, value lines up to the next line
# that does not start with WSP. Lines without a colon ("From " mbox lines, garbage) never match.
_FIELD_TEXT = re.compile(r"^([^ \t\r\n:]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.MULTILINE)
_FIELD_BYTES = re.compile(rb"^([^ \t\r\n:]+)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)", re.MULTILINE)


def header_fields(data: bytes, start: int, end: int) -> list[Field]:
    """All fields of the header block data[start:end] in order; lines without a colon are skipped.

    An all-ASCII block (the usual case) is decoded once and scanned as str; otherwise each field is
    decoded on its own so that one 8-bit field cannot change how the others read.
    """
    block = data[start:end]
    if block.isascii():
        text = block.decode("ascii")
        if "\x00" in text:
            text = text.replace("\x00", "")
        return [
            (name.lower(), (value.replace("\r\n", "") if "\n" in value else value).strip())
            for name, value in _FIELD_TEXT.findall(text)
        ]
    return [
        (header_text(name).lower(), header_text(value.replace(b"\r\n", b"")).strip())
        for name, value in _FIELD_BYTES.findall(block)
    ]


def field_spans(data: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    """(lower-cased name, start, end) of each field of data[start:end], end after its final CRLF.

    Fields are recognised exactly as in `header_fields`; `start` must begin a line.
    """
    spans: list[tuple[str, int, int]] = []
    for match in _FIELD_BYTES.finditer(data, start, end):
        stop = match.end()
        if stop < end and data[stop] == 10:  # the LF ending the field
            stop += 1
        spans.append((header_text(match.group(1)).lower(), match.start(), stop))
    return spans


_BLANK_LINE = re.compile(rb"\n\r?\n")


def header_end(data: bytes) -> int:
    """Where the header section of ``data`` (a whole message, CRLF or bare LF) ends: after its last line's LF; 0
    when the message starts with the blank line, the whole when there is no body."""
    if data.startswith((b"\r\n", b"\n")):
        return 0
    blank = _BLANK_LINE.search(data)
    return blank.start() + 1 if blank else len(data)


def without_fields(data: bytes, drop: Callable[[str, bytes], bool]) -> bytes:
    """``data`` (a whole message, CRLF or bare LF) without the top-level header fields for which ``drop(lower-cased
    name, the field's bytes)`` is true, folded lines and all; the body untouched, and ``data`` itself when none is
    dropped. For fields only this server may set, which must not arrive already set from outside."""
    end = header_end(data)
    spans = [(start, stop) for name, start, stop in field_spans(data, 0, end) if drop(name, data[start:stop])]
    if not spans:
        return data
    pieces, pos = [], 0
    for start, stop in spans:
        pieces.append(data[pos:start])
        pos = stop
    pieces.append(data[pos:])
    return b"".join(pieces)


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def encode_field(name: str, value: str, linesep: str = "\r\n") -> str:
    """One header field ending in ``linesep``: RFC 2047-encoded (UTF-8) when the value is not ASCII or has a word no
    folding can bring under 998 octets a line (RFC 5322 §2.1.1), folded either way."""
    long_word = max((len(word) for word in value.split()), default=0) > 900
    charset = "us-ascii" if value.isascii() and not long_word else "utf-8"
    return f"{name}: " + Header(value, charset, header_name=name).encode(linesep=linesep) + linesep


def decode_header(value: str) -> str:
    """Decode RFC 2047 encoded-words in an unfolded header value, leniently.

    Whitespace between adjacent encoded-words is dropped (RFC 2047 §6.2); adjacent words in one charset
    are decoded together so multi-byte characters split across words survive. Undecodable words stay as
    written. NUL characters (e.g. from UTF-16 words) are dropped.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset = ""
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        decoded = _decode_word(match)
        gap = value[pos : match.start()]
        if decoded is None:
            continue  # left in place: it is emitted with the next gap
        charset, payload = decoded
        if gap and not (pending and gap.isspace()):
            _flush(out, pending, pending_charset)
            out.append(gap)
        elif pending and charset != pending_charset:
            _flush(out, pending, pending_charset)
        pending_charset = charset
        pending.append(payload)
        pos = match.end()
    _flush(out, pending, pending_charset)
    out.append(value[pos:])
    text = "".join(out)
    return text.replace("\x00", "") if "\x00" in text else text


def _decode_word(match: re.Match[str]) -> tuple[str, bytes] | None:
    charset = match.group(1).split("*", 1)[0].lower()
    text = match.group(3).encode("utf-8", "surrogatepass")
    try:
        if match.group(2) in "bB":
            text = text.rstrip(b"=")
            return charset, binascii.a2b_base64(text + b"=" * (-len(text) % 4))
        return charset, binascii.a2b_qp(text, header=True)
    except (binascii.Error, ValueError):
        return None


def _flush(out: list[str], pending: list[bytes], charset: str) -> None:
    if pending:
        out.append(decode_bytes(b"".join(pending), charset))
        pending.clear()


def parse_date(value: str | None) -> datetime | None:
    """RFC 5322 date (obsolete forms included) as an aware datetime; None when unparseable.

    A missing or "-0000" zone is taken as UTC (RFC 5322 §3.3: no information about the local zone).
    """
    if not value:
        return None
    try:
        parts = parsedate_tz(value)
        if parts is None:
            return None
        offset = parts[9] or 0
        zone = UTC if offset == 0 else timezone(timedelta(seconds=offset))
        return datetime(*parts[:6], tzinfo=zone)
    except (ValueError, OverflowError, TypeError, IndexError):
        return None


_MSGID = re.compile(r"<([^<>]*)>")


def message_ids(value: str | None) -> list[str]:
    """Message-IDs in a Message-ID / In-Reply-To / References value, without angle brackets.

    Bracketed ids win; a value with none is split on whitespace (common garbage). Ids keep their case.
    """
    if not value:
        return []
    found = [m.strip() for m in _MSGID.findall(value)]
    ids = [m for m in found if m]
    if ids or found:
        return ids
    return [part for part in value.split() if "@" in part]


# A comment outside quoted strings; the quoted-string alternative is matched first and kept as is.
_COMMENT = re.compile(r'("(?:[^"\\]|\\.)*+"?)|\([^()"]*+\)', re.DOTALL)


def _keep_quoted(match: re.Match[str]) -> str:
    return match.group(1) if match.group(1) is not None else " "


# name [= ("quoted" | token)] [;] — possessive quantifiers keep this linear on hostile input.
_PARAM = re.compile(r'([^=;]*+)(?:=[ \t]*+(?:"((?:[^"\\]|\\.)*+)"?[^;]*+|([^;]*+)))?;?', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def parse_params(value: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a Content-Type / Content-Disposition value into its lower-cased token and parameters.

    Parameters keep their order; names are lower-cased, values unquoted. RFC 2231 continuations
    (name*0, name*1*…) are joined into one parameter; an extended value keeps the name with its star
    (``filename*``) and the encoded form ``charset'lang'%XX`` (as Dovecot does), see `param_value`.
    """
    if "(" in value:
        value = _COMMENT.sub(_keep_quoted, value)
    head, sep, rest = value.partition(";")
    token = head.strip().lower()
    if not sep:
        return token, []
    params: list[tuple[str, str]] = []
    pos, size = 0, len(rest)
    while pos < size:
        match = _PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            break
        pos = match.end()
        name, quoted, plain = match.groups()
        name = name.strip().lower()
        if not name or (quoted is None and plain is None):
            continue
        if quoted is not None:
            params.append((name, _QUOTED_PAIR.sub(r"\1", quoted) if "\\" in quoted else quoted))
        else:
            params.append((name, plain.strip()))
    if any("*" in name for name, _ in params):
        params = _join_continuations(params)
    return token, params


def _join_continuations(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """RFC 2231 §3: name*0, name*1 … become one parameter, named name* (in the encoded form) if any section is
    encoded; then, as Dovecot does, plain sections get their "%" escaped and a plain first section an empty
    charset and language ("''"), so that the joined value decodes as one."""
    sections: dict[str, list[tuple[int, str, bool]]] = {}
    order: list[tuple[str, str] | str] = []
    for name, value in params:
        base, _, section = name.partition("*")
        number = section.rstrip("*")
        if number.isascii() and number.isdigit() and len(number) <= 6:
            if base not in sections:
                sections[base] = []
                order.append(base)
            sections[base].append((int(number), value, section.endswith("*")))
        else:
            order.append((name, value))
    result: list[tuple[str, str]] = []
    for item in order:
        if isinstance(item, tuple):
            result.append(item)
            continue
        parts = sorted(sections[item])
        if not any(encoded for _, _, encoded in parts):
            result.append((item, "".join(value for _, value, _ in parts)))
            continue
        joined = "".join(value if encoded else value.replace("%", "%25") for _, value, encoded in parts)
        result.append((item + "*", joined if parts[0][2] else "''" + joined))
    return result


_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


def param_value(params: list[tuple[str, str]], name: str) -> str | None:
    """Decoded value of parameter `name`, from its RFC 2231 extended form ``name*`` when present."""
    for key, value in params:
        if key == name + "*":
            pieces = value.split("'", 2)
            charset, text = (pieces[0], pieces[2]) if len(pieces) == 3 else ("", value)
            raw = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), text)
            return decode_bytes(raw.encode("latin-1", "replace"), charset or None)
    for key, value in params:
        if key == name:
            return decode_header(value)
    return None
