"""Fuzz targets: one function per parser family, bytes in, AssertionError or any other exception out on a bug.

Each target calls the pure parsers the way the daemon does and checks their documented invariants:

- ``imap``: :func:`relentad.imap.parser.parse_command` raises only ``ParseError``; the framing helpers
  (``pending_literal``, ``line_tag``, ``is_done``) and modified UTF-7 (``mutf7.decode``: ``MUTF7Error`` only)
  never raise; a parsed command renders with ``repr``.
- ``message``: :mod:`relentad.message` parses without its last-resort net (``_parse``), the part tree keeps
  its offsets in bounds, BODYSTRUCTURE/BODY/ENVELOPE render as IMAP, the JSON round trip is exact, every part's
  section and text extraction work, and the spam tokenizer does not raise.
- ``address``: :mod:`relentad.addrspec` raises only ``InvalidInput`` and ``normalize`` is idempotent;
  :mod:`relentad.addresses`' fast path agrees with the general parser; header decoding, dates, Message-IDs
  and MIME parameters never raise.
- ``smtp-args``: the MAIL/RCPT/VRFY argument as the SMTP server parses it (``RelentadSMTP._getaddr`` with its
  fast path, aiosmtpd's ``_getparams``): no exception, the same answer as aiosmtpd's own parser wherever that one
  does not raise, and an accepted address is either normalised or refused with ``InvalidInput``. The whole
  sessions (replies, state, handlers) are fuzzed over a socket by the ``smtp`` target (wire.py).

The first input byte selects options (UTF-8 mode for IMAP), the rest is the input. No I/O, no state: safe to
run millions of times in one process (atheris or the pure-Python engine in ``fuzz.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any


class _RaiseOnError(logging.Handler):
    """A parser that logs an error has hit a bug its safety net hid: make it a fuzz failure."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            raise AssertionError(f"logged: {record.getMessage()}")


def install_log_trap() -> None:
    handler = _RaiseOnError()
    handler.raiseExceptions = True  # type: ignore[attr-defined]
    logging.raiseExceptions = True
    root = logging.getLogger("relentad")
    root.addHandler(handler)
    root.propagate = False


def _walk(part: Any, path: tuple[int, ...] = ()) -> Any:
    yield path, part
    for number, child in enumerate(part.children, 1):
        yield from _walk(child, (*path, number))


def target_imap(data: bytes) -> None:
    from relentad.imap import mutf7
    from relentad.imap.parser import ParseError, is_done, line_tag, parse_command, pending_literal

    if not data:
        return
    utf8, buffer = bool(data[0] & 1), data[1:]
    for line in buffer.split(b"\n"):
        spec = pending_literal(line + b"\n")
        assert spec is None or spec.size >= 0
        line_tag(line)
        is_done(line)
    try:
        command = parse_command(buffer, utf8=utf8)
    except ParseError as exc:
        assert isinstance(exc.text, str)
    else:
        repr(command)
    try:
        name = mutf7.decode(buffer.decode("latin-1"))
    except mutf7.MUTF7Error:
        pass
    else:
        assert mutf7.encode(name) == buffer.decode("latin-1"), "decode accepts only the canonical form"


def target_message(data: bytes) -> None:
    from relentad import message
    from relentad.bodytext import text_for_search
    from relentad.imap.responses import render
    from relentad.mimetree import needs_crlf, normalize_crlf
    from relentad.sections import binary_section, section_bytes
    from relentad.spam.tokenize import tokenize

    crlf = needs_crlf(data)
    norm = normalize_crlf(data) if crlf else data
    parsed = message._parse(norm, crlf)  # no last-resort net: a bug here is what we look for
    size = len(norm)
    for path, part in _walk(parsed.tree):
        assert 0 <= part.header_start <= part.body_start <= part.body_end <= size, (path, part)
        section_bytes(norm, parsed.tree, path)
        section_bytes(norm, parsed.tree, path, "MIME" if path else "HEADER")
        section_bytes(norm, parsed.tree, path, "TEXT")
        section_bytes(norm, parsed.tree, path, "HEADER.FIELDS", ["subject", "from"])
        binary_section(norm, parsed.tree, path)
        message.header_fields_of(norm, part)
    for value in (parsed.bodystructure, parsed.body, parsed.envelope):
        render(value)
        render(value, utf8=True)
    again = message.ParsedMessage.from_json(parsed.to_json())
    assert again.to_json() == parsed.to_json(), "JSON round trip"
    text_for_search(norm, parsed.tree)
    tokenize(data, own_hosts=["mx.example.test"])


def target_address(data: bytes) -> None:
    from relentad import addresses, addrspec, headers
    from relentad.errors import InvalidInput

    text = headers.header_text(data)
    for candidate in (text, data.decode("utf-8", "replace")):
        try:
            normal = addrspec.normalize(candidate)
        except InvalidInput:
            pass
        else:
            assert addrspec.normalize(normal) == normal, f"normalize is not idempotent: {candidate!r} → {normal!r}"
            addrspec.base_address(normal)
        fast = addresses.fast_envelope_addresses(candidate)
        if fast is not None:
            slow = addresses.slow_envelope_addresses(candidate)
            assert fast == slow, f"fast path {fast!r} != general parser {slow!r} for {candidate!r}"
        items = addresses.envelope_addresses(candidate)
        addresses.addresses_from_envelope(items)
        addresses.parse_addresses(candidate)
        headers.decode_header(candidate)
        headers.parse_date(candidate)
        headers.message_ids(candidate)
        headers.parse_params(candidate)


def target_smtp_args(data: bytes) -> None:
    from aiosmtpd.smtp import SMTP

    from relentad import addrspec
    from relentad.errors import InvalidInput
    from relentad.smtp.server import RelentadSMTP

    protocol = RelentadSMTP.__new__(RelentadSMTP)  # the parsing methods need no connection
    protocol.local_part_limit = 64
    arg = data.decode("utf-8", "surrogateescape").strip()  # what aiosmtpd hands the command handlers
    address, rest = protocol._getaddr(arg)
    try:
        reference = SMTP._getaddr(protocol, arg)
    except (IndexError, AttributeError, ValueError):  # Python's email parser on some malformed paths
        reference = None
    if reference is not None:
        assert (address, rest) == reference, f"fast path {(address, rest)!r} != aiosmtpd {reference!r} for {arg!r}"
    if rest is not None:
        protocol._getparams(rest.upper().split(" "))
    if address:
        try:
            addrspec.normalize(address)
        except InvalidInput:
            pass


def target_contacts(data: bytes) -> None:
    from relentad.carddav import vcard
    from relentad.crm import contactfile

    for fmt in ("vcard", "csv"):
        try:
            parsed = contactfile.parse(data, fmt)
        except contactfile.FileError:
            continue
        for entry in parsed.entries:
            assert bool(entry.skip) or entry.card is not None, f"{entry.where}: neither a card nor a reason"
            if entry.card is not None:
                fields = vcard.fields(entry.card)
                assert entry.skip or fields["addresses"], f"{entry.where}: imported without an address"


TARGETS: dict[str, Callable[[bytes], None]] = {
    "imap": target_imap,
    "message": target_message,
    "address": target_address,
    "smtp-args": target_smtp_args,
    "contacts": target_contacts,
}

# Seeds: valid inputs the mutators start from (the atheris engine writes them to its corpus folder).
SEEDS: dict[str, list[bytes]] = {
    "imap": [
        b"\x00a1 LOGIN alice@example.test secret",
        b"\x00a2 SELECT INBOX (CONDSTORE)",
        b"\x01a3 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]<0.100> BODYSTRUCTURE ENVELOPE)",
        b"\x00a4 UID SEARCH CHARSET UTF-8 OR FROM alice SUBJECT {5}\r\nhello SINCE 1-Jan-2020 UNSEEN",
        b"\x00a5 STORE 2,4:7 +FLAGS.SILENT (\\Seen $Label1) (UNCHANGEDSINCE 12)",
        b'\x00a6 APPEND INBOX (\\Flagged) "25-Nov-2026 08:00:00 +0000" {11+}\r\nhello world',
        b'\x00a7 LIST "" "*" RETURN (SUBSCRIBED CHILDREN STATUS (MESSAGES UNSEEN))',
        b"\x00a8 UID MOVE 1:5 &AOQ-rchiv",
        b'\x00a9 ID ("name" "mutt" "version" NIL)',
        b"\x00b1 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==",
        b'\x00b2 SETQUOTA "" (STORAGE 512)',
        b"\x00b3 SEARCH RETURN (MIN MAX COUNT SAVE) $ MODSEQ 5 NOT DELETED",
        b"\x00b4 STATUS Sent (MESSAGES UIDNEXT HIGHESTMODSEQ SIZE)",
        b"\x00b5 ENABLE QRESYNC UTF8=ACCEPT",
        b"\x00b6 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        b"\x00b7 COMPRESS DEFLATE",
    ],
    "message": [
        b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: =?utf-8?q?h=C3=A9llo?=\r\n"
        b"Date: Wed, 25 Nov 2026 08:00:00 +0000\r\nMessage-ID: <a@b>\r\n\r\nHi.\r\n",
        b'Content-Type: multipart/mixed; boundary="xx"\r\nMIME-Version: 1.0\r\n\r\npre\r\n--xx\r\n'
        b"Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"<p>caf=E9</p>\r\n--xx\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nbody\r\n--xx\r\n"
        b'Content-Type: application/pdf; name*0="a"; name*1="b.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
        b'Content-Disposition: attachment; filename="x.pdf"\r\n\r\nJVBERi0=\r\n--xx--\r\nepilogue\n',
        b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: digest part\n\nx\n--d--\n",
    ],
    "address": [
        b'Alice <alice@example.test>, "Bob, B" <bob@example.test>',
        b"undisclosed-recipients:;",
        b"team: a@b.test, (comment) c@d.test;, e@f.test (Eve)",
        b"=?utf-8?b?w6lsw6g=?= <x@xn--bcher-kva.example>",
        b'"a@b"@example.test',
        b"@route.test:user@example.test",
        b"user%other@example.test.",
        b"M\xfcller <m@b\xfccher.example>",
        b"Wed, 25 Nov 2026 08:00:00 +0000",
        b"<id@host> <other@host>",
        b"text/plain; charset*=utf-8''%C3%A9; name*0=a; name*1=b",
    ],
}

SEEDS["smtp-args"] = [
    b"<alice@example.test>",
    b"<alice@example.test> SIZE=1000 BODY=8BITMIME SMTPUTF8",
    b"<>",
    b'<"a b"@example.test>',
    b"<@relay.test:alice@example.test>",
    b"alice@example.test",
    b"<al\xc3\xafce@b\xc3\xbccher.example> SMTPUTF8",
    b"<a@[192.0.2.1]>",
]

SEEDS["contacts"] = [
    b"BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=\r\n=C3=BCrgen\r\n"
    b"item1.EMAIL;PREF;INTERNET:j@acme.example\r\nPHOTO;ENCODING=BASE64:\r\n    /9j/\r\n\r\nEND:VCARD\r\n",
    b'BEGIN:VCARD\nVERSION:3.0\nFN:A\n B\nURL;TYPE="a:b":x\nCATEGORIES:a\\,b,c\nEMAIL:a@b.example\nEND:VCARD\n'
    b"BEGIN:VCARD\nVERSION:4.0\nFN:\nN:F;G;;;\nEMAIL:c@d.example\nEND:VCARD\n",
    b'\xef\xbb\xbfName,E-mail 1 - Value,Group Membership,Notes\r\n"M\xc3\xbcller, J",a@b.example ::: c@d.example,'
    b'* myContacts ::: VIP,"x\ny"\r\n',
    b"First Name;Last Name;E-mail Address;Categories\r\nZo\xeb;\xc5ngstr\xf6m;z@e.example;A;B\r\n",
]

# Tokens the mutators splice in: the grammar's keywords and the bytes parsers branch on.
DICTIONARY: list[bytes] = [
    b" ", b"\r\n", b"\n", b"(", b")", b"[", b"]", b"<", b">", b"{", b"}", b"{0}\r\n", b"{5+}\r\n", b"~{3}\r\n",
    b"\"", b"\\", b"*", b"%", b":", b",", b";", b"@", b"=", b"&", b"-", b"$", b"NIL", b"UID ", b"BODY[",
    b"BODY.PEEK[", b"]<0.10>", b"HEADER.FIELDS.NOT (", b"MIME", b"TEXT", b"1:*", b"4294967295", b"4294967296",
    b"99999999999999999999", b"CHARSET", b"OR", b"NOT", b"(UNCHANGEDSINCE 1)", b"=?utf-8?b?", b"=?iso-8859-1?q?",
    b"?=", b"Content-Type: ", b"multipart/mixed; boundary=", b"message/rfc822", b"--", b"\r\n\r\n",
    b"Content-Transfer-Encoding: base64", b"quoted-printable", b"charset*=", b"''", b"\x00", b"\xff", b"\xc3\xa9",
    b"\xed\xa0\x80", b"xn--", b".", b"..", b"BEGIN:VCARD\r\n", b"END:VCARD\r\n", b"VERSION:2.1\r\n",
    b"ENCODING=QUOTED-PRINTABLE", b";CHARSET=", b"EMAIL:", b"item1.", b"=\r\n", b"E-mail 1 - Value", b":::",
]  # fmt: skip
