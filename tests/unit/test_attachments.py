"""Attachments that can run programs (attachments.py): by name, by the names inside ZIPs (nested, encrypted), by a
program's first bytes; never by a harmless file or a text part; never an exception on malformed input."""

from __future__ import annotations

import base64
import io
import zipfile

from hypothesis import given, settings
from hypothesis import strategies as st

from relentad import attachments, message
from relentad.mimetree import normalize_crlf

BLOCKED = frozenset(attachments.BLOCKED)


def mail(*parts: tuple[str, str, bytes]) -> bytes:
    """A multipart/mixed message with (content type, Content-Disposition, body) parts, each base64."""
    out = [
        b"From: a@example.org\r\nTo: b@example.test\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n'
    ]
    for content_type, disposition, body in parts:
        encoded = base64.encodebytes(body).replace(b"\n", b"\r\n")
        out.append(
            f"--XX\r\nContent-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n".encode()
            + encoded
        )
    out.append(b"--XX--\r\n")
    return b"".join(out)


def judged(raw: bytes) -> str | None:
    parsed = message.parse(raw)
    data = normalize_crlf(raw) if parsed.needs_crlf else raw
    found = attachments.find(data, parsed.tree, BLOCKED)
    return None if found is None else found.describe()


def zipped(files: dict[str, bytes], password: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    raw = bytearray(buffer.getvalue())
    if password:  # each entry marked encrypted (flag bit 0), as a password-protected archive has it
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            at = raw.find(signature)
            while at >= 0:
                raw[at + offset] |= 1
                at = raw.find(signature, at + 4)
        assert all(entry.flag_bits & 1 for entry in zipfile.ZipFile(io.BytesIO(bytes(raw))).infolist())
    return bytes(raw)


def test_by_name() -> None:
    pdf = b"%PDF-1.4 harmless"
    assert judged(mail(("application/pdf", 'attachment; filename="invoice.pdf"', pdf))) is None
    assert judged(mail(("application/octet-stream", 'attachment; filename="invoice.pdf.exe"', pdf))) == (
        '"invoice.pdf.exe" (.exe)'
    )
    assert judged(mail(("application/octet-stream", 'attachment; filename="run.JS. "', b"x"))) == '"run.JS. " (.js)'
    encoded = "attachment; filename*=utf-8''rechnung%C3%BC.scr"  # RFC 2231
    assert judged(mail(("application/octet-stream", encoded, b"x"))) == '"rechnung?.scr" (.scr)'
    by_type_name = mail(("application/x-msdownload; name=setup.msi", "attachment", b"x"))
    assert judged(by_type_name) == '"setup.msi" (.msi)'
    assert attachments.extension("C:\\temp\\a.tar.gz") == "gz" and attachments.extension("README") == ""


def test_inside_archives() -> None:
    inner = zipped({"docs/readme.txt": b"hi", "docs/start.vbs": b"x"})
    assert judged(mail(("application/zip", 'attachment; filename="docs.zip"', inner))) == (
        '"docs.zip: docs/start.vbs" (.vbs)'
    )
    nested = zipped({"outer.txt": b"hi", "inner.zip": zipped({"payload.lnk": b"x"})})
    assert judged(mail(("application/octet-stream", 'attachment; filename="a.zip"', nested))) == (
        '"a.zip: inner.zip: payload.lnk" (.lnk)'
    )
    locked = zipped({"invoice.exe": b"x"}, password=True)
    assert judged(mail(("application/zip", 'attachment; filename="locked.zip"', locked))) == (
        '"locked.zip: invoice.exe" (.exe)'
    )
    fine = zipped({"report.pdf": b"%PDF", "photo.jpg": b"\xff\xd8"})
    assert judged(mail(("application/zip", 'attachment; filename="fine.zip"', fine))) is None
    docx = zipped({"word/document.xml": b"<w/>", "word/vbaProject.bin": b"x"})  # an Office file is a ZIP: not opened
    assert judged(mail(("application/vnd.openxmlformats", 'attachment; filename="a.docx"', docx))) is None
    assert judged(mail(("application/zip", 'attachment; filename="broken.zip"', b"PK\x03\x04 broken"))) is None


def test_a_program_by_its_first_bytes() -> None:
    program = b"MZ\x90\x00\x03" + bytes(100)
    assert judged(mail(("application/octet-stream", 'attachment; filename="notes.txt"', program))) == (
        '"notes.txt" (a Windows program)'
    )
    assert judged(mail(("application/octet-stream", "attachment", program))) == '"(unnamed part)" (a Windows program)'
    text = b"MZ is how this line starts"
    assert judged(b"Content-Type: text/plain\r\n\r\n" + text) is None  # a text part is never sniffed


def test_in_an_embedded_message() -> None:
    inner = mail(("application/octet-stream", 'attachment; filename="x.bat"', b"x"))
    outer = (
        b'From: a@example.org\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="YY"\r\n'
        b"\r\n--YY\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n--YY\r\nContent-Type: message/rfc822\r\n\r\n"
        + inner
        + b"\r\n--YY--\r\n"
    )
    assert judged(outer) == '"x.bat" (.bat)'


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_never_raises(raw: bytes) -> None:
    judged(raw)
    judged(mail(("application/zip", 'attachment; filename="a.zip"', raw)))
