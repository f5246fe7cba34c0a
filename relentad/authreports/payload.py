"""Finding a report in a message and decompressing it, bounded.

Reporters send a DMARC aggregate report as one ``.xml``, ``.xml.gz`` or ``.zip`` attachment (or body), and a TLS-RPT
report as ``application/tlsrpt+gzip`` or ``+json`` inside ``multipart/report; report-type=tlsrpt`` (RFC 8460 §5.3).
Which one it is is decided by the decompressed content (XML or JSON), not by what the sender declared: reporters
label the same gzip file ``application/gzip``, ``application/x-gzip`` or ``application/octet-stream``.

Invariants: decompression never produces more than ``limit`` bytes (a gzip or zip bomb is refused with
:class:`PayloadError` after at most ``limit + 1`` bytes were produced, whatever it claims in its headers; a zip
entry is read only when stored or deflated, the methods whose output zipfile bounds); at most
:data:`MAX_PARTS` candidate parts of a message are looked at; nothing here raises anything but PayloadError.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import io
import zipfile
import zlib
from dataclasses import dataclass

MAX_PARTS = 3
"""Report parts read from one message (reporters send one report per message, RFC 7489 §7.2.1.1)."""
MAX_WALK = 50
"""MIME parts looked at in one message before giving up on finding a report."""

REPORT_TYPES = frozenset(
    {
        "application/gzip",
        "application/x-gzip",
        "application/zip",
        "application/x-zip",
        "application/x-zip-compressed",
        "application/xml",
        "text/xml",
        "application/tlsrpt+gzip",
        "application/tlsrpt+json",
    }
)
REPORT_SUFFIXES = (".xml", ".gz", ".zip", ".json", ".xml.gz", ".json.gz")


class PayloadError(Exception):
    """A report part that cannot be read (bad compression, over the size limit, an encrypted zip)."""


@dataclass(frozen=True)
class Part:
    """One candidate report part: its content type, file name (may be empty) and bytes as sent (still compressed)."""

    content_type: str
    filename: str
    data: bytes


def _is_candidate(part: email.message.Message) -> bool:
    ctype = part.get_content_type()
    if ctype in REPORT_TYPES:
        return True
    filename = (part.get_filename() or "").lower()
    return ctype in ("application/octet-stream", "text/plain") and filename.endswith(REPORT_SUFFIXES)


def report_parts(raw: bytes) -> list[Part]:
    """The parts of ``raw`` that look like a report (by content type or file name), at most :data:`MAX_PARTS`;
    empty for a message that has none (a person writing to postmaster@)."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        found: list[Part] = []
        for index, part in enumerate(msg.walk()):
            if index >= MAX_WALK or len(found) >= MAX_PARTS:
                break
            if part.is_multipart() or not _is_candidate(part):
                continue
            data = part.get_payload(decode=True)
            if isinstance(data, bytes) and data:
                found.append(Part(part.get_content_type(), str(part.get_filename() or ""), data))
        return found
    except Exception:  # the stdlib parser copes with nearly anything; what it does not is no report
        return []


def decompress(data: bytes, limit: int) -> bytes:
    """``data`` uncompressed: gzip and zip by their magic numbers, anything else as it is; at most ``limit`` bytes."""
    if data[:2] == b"\x1f\x8b":
        return _gunzip(data, limit)
    if data[:4] == b"PK\x03\x04":
        return _unzip(data, limit)
    if len(data) > limit:
        raise PayloadError(f"larger than {limit} bytes")
    return data


MAX_MEMBERS = 100
"""gzip members or zip entries one report may have (reporters send one): thousands of tiny ones cost time, and
zipfile builds an object per entry of the central directory before anything is read."""


def _gunzip(data: bytes, limit: int) -> bytes:
    out = bytearray()
    rest = data
    members = 0
    try:
        while rest[:2] == b"\x1f\x8b":  # gzip files may have several members (RFC 1952 §2.2)
            members += 1
            if members > MAX_MEMBERS:
                raise PayloadError(f"more than {MAX_MEMBERS} gzip members")
            inflater = zlib.decompressobj(wbits=31)
            out += inflater.decompress(rest, limit + 1 - len(out))
            if len(out) > limit:
                raise PayloadError(f"larger than {limit} bytes uncompressed")
            if not inflater.eof:
                raise PayloadError("truncated gzip data")
            rest = inflater.unused_data
    except zlib.error as exc:
        raise PayloadError(f"bad gzip data: {exc}") from None
    return bytes(out)


MAX_DIRECTORY = 65_536
"""Bytes of a zip archive's central directory read (a report's has one entry of some 150): zipfile builds an object
per entry as far as the stated size goes, whatever entry count the end record claims."""


def _zip_directory(data: bytes) -> tuple[int, int] | None:
    """(entries, central directory size) as zipfile will read them: from the end of central directory record
    (APPNOTE 4.3.16), or the ZIP64 one just before it when its locator is there; None when there is none."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0 or len(data) < end + 22:
        return None
    entries, size = (
        int.from_bytes(data[end + 10 : end + 12], "little"),
        int.from_bytes(data[end + 12 : end + 16], "little"),
    )
    record = data[max(0, end - 76) : end - 20]
    if data[end - 20 : end - 16] == b"PK\x06\x07" and len(record) == 56 and record[:4] == b"PK\x06\x06":
        entries, size = int.from_bytes(record[32:40], "little"), int.from_bytes(record[40:48], "little")
    return entries, size


def _unzip(data: bytes, limit: int) -> bytes:
    """The first file of the zip archive that is not a folder (reporters send exactly one)."""
    directory = _zip_directory(data)
    if directory is None:
        raise PayloadError("bad zip archive: no end of central directory")
    entries, size = directory
    if entries > MAX_MEMBERS or size > MAX_DIRECTORY:  # 0xFFFF (ZIP64) too: no report needs that many
        raise PayloadError(f"zip archive with more than {MAX_MEMBERS} files ({entries} in {size} bytes of directory)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = [info for info in archive.infolist() if not info.is_dir()]
            if not files:
                raise PayloadError("empty zip archive")
            info = files[0]
            if info.flag_bits & 0x1:
                raise PayloadError("encrypted zip archive")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                # zipfile bounds only deflate's output: bzip2 and LZMA inflate 4 KiB of input at once, unbounded
                raise PayloadError(f"zip compression method {info.compress_type} (reporters use deflate)")
            with archive.open(info) as member:  # reads and inflates in steps: the header's sizes may lie
                out = member.read(limit + 1)
    except PayloadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, zlib.error, EOFError, OSError) as exc:
        raise PayloadError(f"bad zip archive: {exc}") from None
    except Exception as exc:  # zipfile raises assorted errors on hostile archives (lzma, bz2 ...)
        raise PayloadError(f"bad zip archive: {type(exc).__name__}") from None
    if len(out) > limit:
        raise PayloadError(f"larger than {limit} bytes uncompressed")
    return out
