"""The domain footer (footer.py): into the body text of every shape of message, encodings and charsets kept or
changed as the footer needs, every other byte as it was, signed mail untouched, malformed mail never an error."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from relentad import footer
from relentad.footer import Footer

NOTICE = Footer.of("Example GmbH · Berlin · HRB 12345\nManaging director: Jo Doe")
HEAD = b"From: a@example.test\r\nTo: b@example.org\r\nSubject: s\r\nMessage-ID: <1@example.test>\r\n"


def read(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def texts(raw: bytes) -> dict[str, str]:
    """Each text part's decoded content by subtype (the first of each)."""
    found: dict[str, str] = {}
    for part in read(raw).walk():
        if part.get_content_maintype() == "text" and part.get_content_subtype() not in found:
            found[part.get_content_subtype()] = part.get_content().replace("\r\n", "\n")
    return found


def test_a_plain_message_gets_the_footer_at_its_end() -> None:
    raw = HEAD + b"\r\nHello,\r\nsee you.\r\n"
    out = footer.add(raw, NOTICE)
    assert out.startswith(HEAD) and b"Hello,\r\nsee you.\r\n\r\n" in out
    body = texts(out)["plain"]
    assert body.endswith("Managing director: Jo Doe\n") and "HRB 12345" in body  # · needs UTF-8: QP now
    assert b"Content-Transfer-Encoding: quoted-printable" in out and b"charset=utf-8" in out
    assert b"MIME-Version: 1.0\r\n\r\n" in out  # before the blank line, after the fields that were there
    ascii_only = Footer.of("Example Inc.")
    assert footer.add(raw, ascii_only) == raw.replace(b"see you.\r\n", b"see you.\r\n\r\nExample Inc.\r\n").replace(
        b"Message-ID: <1@example.test>\r\n", b"Message-ID: <1@example.test>\r\nMIME-Version: 1.0\r\n"
    )


def test_alternative_related_and_mixed() -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "a@example.test", "b@example.org", "Grüße"
    mail.set_content("Hallo Welt — plain\n")
    mail.add_alternative("<html><body><p>Hallo <b>Welt</b></p></BODY></html>\n", subtype="html")
    mail.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    raw = mail.as_bytes(policy=email.policy.SMTP)
    out = footer.add(raw, NOTICE)
    found = texts(out)
    assert found["plain"].rstrip("\n").endswith("Managing director: Jo Doe")
    html_text = found["html"]
    assert html_text.index("HRB 12345") < html_text.lower().index("</body>")
    assert "<br>" in html_text  # the text footer's line break, as HTML
    attachment = [p for p in read(out).walk() if p.get_filename() == "a.pdf"]
    assert attachment[0].get_content() == b"%PDF-1.4"  # the attachment as it was


def test_html_whose_lower_case_is_longer_keeps_the_footer_inside_the_body() -> None:
    """ "İ".lower() is two characters: a position found in the lower-cased text is off by one per such letter."""
    raw = (
        HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    raw += "<html><body>İİİİ</BODY></html>\r\n".encode()
    body = texts(footer.add(raw, NOTICE))["html"]
    assert "İİİİ\r\n<div>" in body.replace("\n", "\r\n") or "İİİİ\n<div>" in body
    assert body.index("HRB 12345") < body.index("</BODY>")


def test_base64_and_a_charset_that_cannot_write_the_footer() -> None:
    latin = (
        HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1; format=flowed\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b"R3L832U=\r\n"  # "Grüße" in Latin-1
    )
    out = footer.add(latin, Footer.of("Société Générale ✓"))
    part = read(out)
    assert part.get_content_charset() == "utf-8" and part["Content-Transfer-Encoding"] == "base64"
    assert part.get_param("format") == "flowed"
    assert part.get_content().replace("\r\n", "\n") == "Grüße\n\nSociété Générale ✓\n"


def test_signed_encrypted_and_attachment_only_mail_is_left_alone() -> None:
    signed = (
        HEAD + b'MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol="application/pgp-signature"; '
        b'micalg=pgp-sha256; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n'
        b"--b\r\nContent-Type: application/pgp-signature\r\n\r\nSIG\r\n--b--\r\n"
    )
    assert footer.add(signed, NOTICE) == signed
    smime = HEAD + b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nX\r\n"
    assert footer.add(smime, NOTICE) == smime
    only_file = HEAD + b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nx\r\n"
    assert footer.add(only_file, NOTICE) == only_file


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_never_raises(raw: bytes) -> None:
    footer.add(raw, NOTICE)
    footer.add(HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + raw.replace(b"\n", b"\r\n"), NOTICE)
