"""A domain's footer (disclaimer) added to every message its users send (``relentad domain footer``).

Many businesses must put their company details under every message (in the EU the registered name, seat and
register number), and most want one legal notice on all of them, whatever program each user writes with. Gmail's
"append footer" and Exchange's disclaimers do this on the server; so does submission here, after the sender
checks and before DKIM signs, so the footer is signed, sent and kept in the Sent copy like the rest.

Where the footer goes: into the message's body text, not as an attachment. A single text part gets it at its end;
in ``multipart/alternative`` both the plain and the HTML version do (the HTML one before ``</body>``); in
``multipart/mixed`` and ``related`` the first part, the body, does (an attachment never). Signed and encrypted
messages (``multipart/signed``, ``multipart/encrypted``, S/MIME) are left as they are: a change would break them.

Invariants: only the body bytes of the parts given the footer change (and their ``Content-Type`` charset or
``Content-Transfer-Encoding`` when the footer needs another: a charset that cannot write it becomes UTF-8, 7bit text
that cannot carry it becomes quoted-printable); every other byte of the message stays as it was. A part whose
encoding or charset is unknown is left alone. Never raises on a malformed message.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import sqlite3
import time
from dataclasses import dataclass

from . import addrspec, headers, message
from .bodytext import decode_transfer
from .errors import InvalidInput, NotFound
from .mimetree import Part
from .store import accounts

SIGNED_OR_SEALED = frozenset(
    {"multipart/signed", "multipart/encrypted", "application/pkcs7-mime", "application/x-pkcs7-mime"}
)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)
MAX_FOOTER = 8192
"""Characters a footer may have (each version): a notice, not a newsletter."""


@dataclass(frozen=True)
class Footer:
    text: str  # for text/plain parts
    html: str  # for text/html parts: markup as given, or the text escaped with line breaks

    @classmethod
    def of(cls, text: str, markup: str = "") -> Footer:
        text = "\r\n".join(text.strip("\r\n").splitlines())
        if not markup:
            markup = "<br>\r\n".join(html.escape(line) for line in text.split("\r\n"))
        return cls(text, "\r\n".join(markup.strip("\r\n").splitlines()))


# -- the domain's footer in the store (table domain_footers, migration 043) -----------------------------------------


def get(conn: sqlite3.Connection, domain: str) -> Footer | None:
    """The footer of the hosted ``domain`` (normalised), None when it has none."""
    row = conn.execute(
        "SELECT f.text, f.html FROM domain_footers f JOIN domains d ON d.id = f.domain_id WHERE d.name = ?",
        (addrspec.normalize_domain(domain),),
    ).fetchone()
    return None if row is None else Footer(str(row[0]), str(row[1]))


def put(conn: sqlite3.Connection, domain: str, text: str, markup: str = "") -> Footer:
    """Set the domain's footer from its text (and, optionally, its HTML version); InvalidInput when it is empty,
    too long or the domain is not hosted."""
    name = addrspec.normalize_domain(domain)
    domain_id = accounts.domain_id(conn, name)
    if domain_id is None:
        raise NotFound(f"domain {name} is not hosted here")
    if not text.strip():
        raise InvalidInput("the footer's text is empty")
    if len(text) > MAX_FOOTER or len(markup) > MAX_FOOTER:
        raise InvalidInput(f"a footer has at most {MAX_FOOTER} characters (each version)")
    if any(ord(c) < 0x20 and c not in "\r\n\t" for c in text + markup):
        raise InvalidInput("the footer holds control characters")
    made = Footer.of(text, markup)
    conn.execute(
        """INSERT INTO domain_footers (domain_id, text, html, updated) VALUES (?, ?, ?, ?)
           ON CONFLICT (domain_id) DO UPDATE SET
             text = excluded.text, html = excluded.html, updated = excluded.updated""",
        (domain_id, made.text, made.html, time.time()),
    )
    return made


def remove(conn: sqlite3.Connection, domain: str) -> bool:
    """Drop the domain's footer; whether it had one."""
    name = addrspec.normalize_domain(domain)
    cursor = conn.execute(
        "DELETE FROM domain_footers WHERE domain_id = (SELECT id FROM domains WHERE name = ?)", (name,)
    )
    return cursor.rowcount > 0


# -- adding it to a message -------------------------------------------------------------------------------------


def add(raw: bytes, footer: Footer) -> bytes:
    """``raw`` (CRLF line ends, as submission makes them) with the footer in its body text; ``raw`` itself when it
    has no part to put it in or is signed or encrypted."""
    parsed = message.parse(raw)
    if parsed.needs_crlf:
        return raw
    parts = _body_parts(parsed.tree)
    for part in sorted(parts, key=lambda p: p.header_start, reverse=True):  # the last first: offsets stay valid
        raw = _with_footer(raw, part, footer)
    end = headers.header_end(raw)
    names = {name.lower() for name, _ in headers.header_fields(raw, 0, end)}
    if parts and parts[0] is parsed.tree and "mime-version" not in names:  # a Content-Type set here must count
        raw = raw[:end] + b"MIME-Version: 1.0\r\n" + raw[end:]
    return raw


def _kind(part: Part) -> str:
    return f"{part.type}/{part.subtype}"


def _body_parts(part: Part) -> list[Part]:
    """The parts that hold the message's own text: the body a reader sees first, in each of its versions."""
    kind = _kind(part)
    if kind in SIGNED_OR_SEALED:
        return []
    if part.is_multipart:
        if part.subtype == "alternative":
            return [found for child in part.children for found in _body_parts(child)]
        return _body_parts(part.children[0])
    if part.type == "text" and part.subtype in ("plain", "html") and (part.disposition or "inline") == "inline":
        return [part]
    return []


def _with_footer(raw: bytes, part: Part, footer: Footer) -> bytes:
    decoded = decode_transfer(raw[part.body_start : part.body_end], part.encoding)
    charset = headers.param_value(part.params, "charset") or "us-ascii"
    try:
        codec = codecs.lookup(charset).name
        text = decoded.decode(codec) if decoded is not None else None
    except (LookupError, UnicodeDecodeError):
        return raw
    if text is None:
        return raw
    if part.subtype == "html":
        addition = f"\r\n<div>{footer.html}</div>\r\n"
        closing = [m.start() for m in _BODY_CLOSE.finditer(text)]  # on the text itself: lower() may change lengths
        new_text = text[: closing[-1]] + addition + text[closing[-1] :] if closing else text + addition
    else:
        new_text = text.rstrip("\r\n") + "\r\n\r\n" + footer.text + "\r\n"
    try:
        data = new_text.encode(codec)
    except UnicodeEncodeError:
        charset, codec, data = "utf-8", "utf-8", new_text.encode("utf-8")
    encoding = (part.encoding or "7bit").lower()
    if encoding in ("7bit", "") and (not data.isascii() or any(len(line) > 998 for line in data.split(b"\r\n"))):
        encoding = "quoted-printable"
    body = _encode(data, encoding)
    if body is None:
        return raw
    header = raw[part.header_start : part.body_start]
    if codec != _codec_of(part) or encoding != (part.encoding or "7bit").lower():
        header = _retyped(header, part, charset, encoding)
    return raw[: part.header_start] + header + body + raw[part.body_end :]


def _codec_of(part: Part) -> str:
    try:
        return codecs.lookup(headers.param_value(part.params, "charset") or "us-ascii").name
    except LookupError:
        return ""


def _encode(data: bytes, encoding: str) -> bytes | None:
    if encoding in ("7bit", "8bit", "binary"):
        return data if data.endswith(b"\r\n") else data + b"\r\n"
    if encoding == "base64":
        encoded = base64.b64encode(data)
        return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))
    if encoding == "quoted-printable":
        lines = data.split(b"\r\n")
        quoted = (binascii.b2a_qp(line, istext=False).replace(b"=\n", b"=\r\n") for line in lines)
        return b"\r\n".join(quoted)
    return None


def _retyped(header: bytes, part: Part, charset: str, encoding: str) -> bytes:
    """The part's header with its Content-Type charset and Content-Transfer-Encoding set anew (every other field,
    and every other parameter, as it was)."""
    kept = headers.without_fields(header, lambda name, _: name in ("content-type", "content-transfer-encoding"))
    params = [(name, value) for name, value in part.params if name.rstrip("*") != "charset"]
    params.append(("charset", charset))
    rendered = "".join(f"; {name}={_param(value)}" for name, value in params)
    fields = f"Content-Type: {_kind(part)}{rendered}\r\nContent-Transfer-Encoding: {encoding}\r\n".encode()
    end = len(kept) - 2 if kept.endswith(b"\r\n\r\n") else len(kept)  # before the blank line
    return kept[:end] + fields + kept[end:]


def _param(value: str) -> str:
    if value and all(c.isalnum() or c in "-._" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
