"""Attachments that can run programs, refused on the MX (``[attachments]``).

Most malware reaches a small business as an attachment that runs when opened: a program (``.exe``, ``.scr``), a
script (``.js``, ``.vbs``, ``.ps1``), a shortcut or a disk image, often inside a ``.zip`` or renamed
(``invoice.pdf.exe``, a program called ``invoice.txt``). Gmail and Microsoft 365 refuse these outright; so does
this server by default, with the list Gmail publishes. A message is judged by every part of it, embedded
messages included:

- a part's file name (Content-Disposition ``filename``, else Content-Type ``name``, RFC 2047/2231 decoded), by its
  last extension, trailing dots and spaces dropped as Windows drops them (``invoice.exe.`` runs as an ``.exe``);
- the names inside a ZIP archive (a part named ``.zip`` or typed as one), and inside a ZIP in that ZIP: the
  central directory lists names even when the contents are encrypted, so a password-protected archive cannot
  hide a program's name;
- a Windows program by its first bytes (``MZ``) whatever it is called, for parts that are not text.

Invariants: never raises on malformed input (a part that does not decode, a ZIP that does not open, is judged by
its name alone); reads at most :data:`MAX_DECODED` bytes of a part and :data:`MAX_NAMES` names of an archive, so a
hostile message costs bounded work.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from .bodytext import decode_transfer
from .errors import SMTPReply
from .mimetree import Part

BLOCKED = (
    "ade", "adp", "apk", "appx", "appxbundle", "bat", "cab", "chm", "cmd", "com", "cpl", "diagcab", "diagcfg",
    "diagpack", "dll", "dmg", "ex", "ex_", "exe", "hta", "img", "ins", "iso", "isp", "jar", "jnlp", "js", "jse",
    "lib", "lnk", "mde", "msc", "msi", "msix", "msixbundle", "msp", "mst", "nsh", "pif", "ps1", "scr", "sct", "shb",
    "sys", "vb", "vbe", "vbs", "vhd", "vxd", "wsc", "wsf", "wsh", "xll",
)  # fmt: skip
"""Gmail's list of blocked file types (support.google.com/mail/answer/6590), the default of ``[attachments]
blocked``."""

ARCHIVE_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"})
MAX_DECODED = 32 * 1024 * 1024
"""Bytes of one part decoded to look inside it or at its first bytes; a larger part is judged by its name."""
MAX_NAMES = 10_000
"""Names read from one archive (a ZIP bomb of names costs no more)."""
MAX_NESTING = 2
"""A ZIP inside a ZIP is opened; deeper ones are judged by their names."""


@dataclass(frozen=True)
class Finding:
    """Why a message is refused: the file (``archive.zip: run.js`` for one inside an archive) and what it is."""

    filename: str
    kind: str  # ".exe", or "a Windows program" for one found by its first bytes

    def describe(self) -> str:
        shown = "".join(c if c.isprintable() and c.isascii() else "?" for c in self.filename)[:200]
        return f'"{shown}" ({self.kind})'

    def refusal(self) -> SMTPReply:
        """The MX's answer at DATA: the sender learns which file, and that it is a policy, not a fault (RFC 3463
        5.7.0, as Gmail answers)."""
        return SMTPReply(
            554, "5.7.0", f"Attachment refused: {self.describe()} can run programs; this server does not accept it"
        )


def extension(name: str) -> str:
    """The extension Windows would run the file by: the last one, lower-cased, trailing dots and spaces dropped."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].rstrip(". \t")
    return base.rsplit(".", 1)[1].lower() if "." in base else ""


def _leaves(part: Part) -> Iterator[Part]:
    if part.children:
        for child in part.children:
            yield from _leaves(child)
    else:
        yield part


def find(data: bytes, tree: Part, blocked: frozenset[str], *, look_inside: bool = True) -> Finding | None:
    """The first attachment of the message (``data``, CRLF-normalised, and its part tree) whose type is in
    ``blocked`` (extensions without the dot), or None."""
    for part in _leaves(tree):
        name = part.filename or ""
        ext = extension(name)
        if ext in blocked:
            return Finding(name, f".{ext}")
        mime = f"{part.type}/{part.subtype}"
        is_archive = ext == "zip" or mime in ARCHIVE_TYPES
        if part.type == "text":
            continue
        if not is_archive and not name and part.type not in ("application", "image"):
            continue
        if not is_archive:  # the first bytes are enough: a few encoded lines, not the whole part
            head = decode_transfer(data[part.body_start : min(part.body_end, part.body_start + 160)], part.encoding)
            if head and head.startswith(b"MZ"):
                return Finding(name or "(unnamed part)", "a Windows program")
        elif look_inside and part.size <= MAX_DECODED * 4 // 3 + 4096:  # larger: judged by its name
            body = decode_transfer(data[part.body_start : part.body_end], part.encoding)
            found = _inside(body, blocked, name or "(unnamed archive)", 1) if body else None
            if found is not None:
                return found
    return None


def _inside(body: bytes, blocked: frozenset[str], shown: str, depth: int) -> Finding | None:
    """A blocked name in the ZIP ``body`` (and in the ZIPs it holds, to :data:`MAX_NESTING`)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        entries = archive.infolist()[:MAX_NAMES]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return None
    for entry in entries:
        ext = extension(entry.filename)
        if ext in blocked:
            return Finding(f"{shown}: {entry.filename}", f".{ext}")
    if depth >= MAX_NESTING:
        return None
    for entry in entries:
        if extension(entry.filename) != "zip" or entry.file_size > MAX_DECODED or entry.flag_bits & 0x1:
            continue  # too large to open here, or encrypted (its own names were checked above)
        try:
            inner = archive.read(entry)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError):
            continue
        found = _inside(inner, blocked, f"{shown}: {entry.filename}", depth + 1)
        if found is not None:
            return found
    return None
