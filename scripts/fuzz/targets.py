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
- ``contacts``: :func:`relentad.crm.contactfile.parse` raises only ``FileError``; every entry is a card with an
  address or skipped with a reason.
- ``sieve``: :func:`relentad.crm.rules.check` (ManageSieve's PUTSCRIPT / CHECKSCRIPT, ``rules add``) and the lenient
  compile of delivery raise only ``InvalidInput`` with one line, and what the check accepts compiles at delivery;
  an accepted script runs on a fixed message without ``evaluate``'s net raising only ``RuleError`` or
  ``Exhausted``, then through ``evaluate`` as ``rules test`` does; an input taking over :data:`SIEVE_SECONDS` fails
  (matching is linear, see :mod:`relentad.crm.rules`).
- ``vcard``: :func:`relentad.carddav.vcard.parse` (a CardDAV PUT) raises only ``BadCard`` with one line; a card
  folded anew is CRLF-terminated, folded at 75 octets and parses to the same lines; merged with unchanged CRM values
  it is served as written, merged with changed ones or combined it still parses.
- ``pop3``: :func:`relentad.pop3.parser.parse` raises only ``ParseError`` with one line and keeps the arity table;
  message numbers are in range; a client un-stuffing ``multiline(body)`` gets the body back, CRLF-terminated;
  ``top`` gives growing prefixes, the whole message past its last line.
- ``managesieve``: :func:`relentad.managesieve.parser.parse` (of the input, and of the command as the session
  frames it with its literals) raises only ``ParseError`` with one line and keeps the signature table; script names
  raise only ``ScriptError``; any string the server sends (``string``) parses back to itself.

The first input byte selects options (UTF-8 mode for IMAP), the rest is the input. No I/O, no state: safe to
run millions of times in one process (atheris or the pure-Python engine in ``fuzz.py``).
"""

from __future__ import annotations

import logging
import time
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


SIEVE_SECONDS = 2.0
"""An input the sieve target takes longer than this on is a failure: compiling is linear in the script and matching
is bounded (``:matches`` globs, the linear-time ``:regex`` engine, one work budget per message), so a slow input is a
runaway, not a large script (the engine's inputs are at most 64 KiB)."""

_SIEVE_MESSAGE = (
    b"Return-Path: <alice@example.test>\r\nReceived: from mx.example.test by mx; Wed, 25 Nov 2026 08:00:01 +0000\r\n"
    b"From: Alice <alice+news@example.test>\r\nTo: Bob <bob@example.test>, team: c@d.test;\r\n"
    b"Subject: [acme-dev] =?utf-8?q?h=C3=A9llo?= 42\r\nDate: Wed, 25 Nov 2026 08:00:00 +0100\r\n"
    b"List-Id: <acme-dev.lists.example.test>\r\nMessage-ID: <a@b>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
    b"Hi Bob, the invoice 2026-11 is attached.\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>Hi</p>\r\n--b--\r\n"
)
_parsed_sieve_message: list[Any] = []


def _sieve_view() -> Any:
    """A fresh view (it caches decoded fields) of the one fixed message the sieve target runs scripts on."""
    from relentad import message
    from relentad.crm import rules

    if not _parsed_sieve_message:
        _parsed_sieve_message.append(message.parse(_SIEVE_MESSAGE))
    virtual = {"x-relentad-contact": ["new"], "x-relentad-contact-tag": ["vip"], "x-relentad-spam": ["no"]}
    return rules.MessageView(
        _parsed_sieve_message[0],
        _SIEVE_MESSAGE,
        "alice+news@example.test",
        "bob+lists@example.test",
        virtual,
        spam_score=0.25,
        now=1_795_000_000.0,
        host="mx.example.test",
    )


def _one_line(exc: BaseException) -> None:
    text = str(exc)
    assert text and "\n" not in text and "\r" not in text, f"{type(exc).__name__} is not one line: {text[:300]!r}"


def target_sieve(data: bytes) -> None:
    from relentad.crm import rules, sieve
    from relentad.crm.sieveregex import Budget, Exhausted
    from relentad.errors import InvalidInput

    text = data.decode("utf-8", "replace")  # ManageSieve takes strict UTF-8 only: no lone surrogates get here
    started = time.monotonic()
    try:
        script = rules.check(text)  # PUTSCRIPT / CHECKSCRIPT and ``rules add``
    except InvalidInput as exc:
        _one_line(exc)
        script = None
    try:
        lenient = sieve.compile_script(text, strict=False)  # delivery, for scripts stored earlier
    except InvalidInput as exc:
        _one_line(exc)
        assert script is None, "a script the strict check accepts must compile at delivery"
        lenient = None
    for compiled in (script, lenient):
        if compiled is None:
            continue
        outcome = rules.Outcome()
        variables = rules.Variables(enabled=compiled.variables, budget=Budget())
        try:  # without evaluate()'s net, which would hide a bug as "a run-time error, the message kept"
            rules._run(compiled.commands, _sieve_view(), outcome, "fuzz", variables)
        except rules.Return:  # RFC 6609 return at the top: the script has ended, as evaluate() takes it
            pass
        except (rules.RuleError, Exhausted) as exc:
            _one_line(exc)
        rules.evaluate([("fuzz", compiled)], _sieve_view()).targets("INBOX")  # the daemon's call, as ``rules test``
    elapsed = time.monotonic() - started
    assert elapsed < SIEVE_SECONDS, f"{elapsed:.1f}s on a {len(data)}-octet script: a runaway"


def target_vcard(data: bytes) -> None:
    from relentad.carddav import vcard

    repaired = data.decode("utf-8", "replace").encode("utf-8")  # most mutants are not UTF-8: check those cards too
    for body in (data, repaired) if repaired != data else (data,):
        try:
            card = vcard.parse(body)
        except vcard.BadCard as exc:
            _one_line(exc)
        else:
            _served_back(card, body)


def _served_back(card: Any, data: bytes) -> None:
    """A parsed card's documented round trips: folded anew it parses to the same lines, and merged with the CRM's
    values (unchanged, then every group changed) or combined with another it is a card relentad can serve."""
    from relentad.carddav import vcard
    from relentad.crm.participants import normalize

    assert card.version in vcard.VERSIONS and card.values("FN"), card
    fields = vcard.fields(card)
    raws = [line.raw for line in card.lines]
    served = vcard.text(card.version, raws)
    assert served.endswith("\r\n"), "a card is CRLF-terminated"
    for line in served.split("\r\n"):
        assert len(line.encode("utf-8")) <= 75, f"a line of {len(line.encode())} octets: not folded"
    again = vcard.parse(served.encode("utf-8"), limits=False)
    assert (again.version, again.lines) == (card.version, card.lines), "a card folded anew parses to the same lines"
    stored = data.decode("utf-8")  # what a PUT keeps
    addresses = sorted({a for a in (normalize(v) for v in fields["addresses"]) if a})
    contact = {
        "id": 7,
        "kind": "person",
        "name": fields["name"] or "Fuzz Person",
        "addresses": addresses,
        "company": fields["company"],
        "tags": sorted(fields["tags"] or []),
        "notes": fields["notes"],
        "last_contact": 1_795_000_000.0,
    }
    unchanged = vcard.merged(1, contact, stored, vcard.crm_values(contact))
    assert unchanged == served, "a card the CRM did not change is served as the client wrote it"
    for version in vcard.VERSIONS:  # every group changed since: the CRM's lines replace them
        changed = vcard.merged(1, {**contact, "addresses": [*addresses, "crm@example.test"]}, stored, {}, version)
        assert vcard.parse(changed.encode("utf-8"), limits=False).version == version
    vcard.parse(vcard.combine(stored, stored, "urn:uuid:x").encode("utf-8"), limits=False)
    vcard.parse(vcard.combine(None, stored, "urn:uuid:x").encode("utf-8"), limits=False)


def _unstuff(wire: bytes) -> bytes:
    """A POP3 client reading a multi-line response (RFC 1939 §3): CRLF lines up to ".", each leading "." removed."""
    assert wire == b".\r\n" or wire.endswith(b"\r\n.\r\n"), f"no terminator at the end: {wire[-60:]!r}"
    lines = wire[:-3].split(b"\r\n")[:-1]
    assert b"." not in lines, "a terminator before the end of the body"
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def target_pop3(data: bytes) -> None:
    from relentad.mimetree import normalize_crlf
    from relentad.pop3 import parser

    for line in [data, *data.split(b"\n")]:
        try:
            command = parser.parse(line)
        except parser.ParseError as exc:
            _one_line(exc)
            continue
        fewest, most = parser.SIGNATURES[command.name]
        assert fewest <= len(command.args) <= most, command
        for arg in command.args:
            for zero in (False, True):
                try:
                    value = parser.number(arg, zero=zero)
                except parser.ParseError as exc:
                    _one_line(exc)
                else:
                    assert (0 if zero else 1) <= value <= parser.MAX_NUMBER, (arg, value)
    body = normalize_crlf(data)  # what RETR reads (maildrop.message)
    expected = body + (b"\r\n" if body and not body.endswith(b"\r\n") else b"")
    assert _unstuff(parser.multiline(body)) == expected, "un-stuffing gives back the body as LIST sized it"
    previous = b""
    for lines in (0, 1, 2, 7, parser.MAX_NUMBER):
        head = parser.top(body, lines)
        assert body.startswith(head) and head.startswith(previous), f"TOP {lines} is not a growing prefix"
        assert _unstuff(parser.multiline(head)) == head + (b"\r\n" if head and not head.endswith(b"\r\n") else b"")
        previous = head
    assert previous == body, "TOP with more lines than the body has is the whole message"


def _framed(data: bytes) -> bytes:
    """One command as ``Session.read_command`` reads it: a line, then each literal it announces and the next line."""
    end = data.find(b"\n") + 1 or len(data)
    raw, line = data[:end], data[:end]
    while (size := _pending(line)) is not None:
        literal = data[end : end + size]
        following = data.find(b"\n", end + size) + 1 or len(data)
        line = data[end + size : following]
        raw += literal + line
        end = following
        if not line:
            break
    return raw


def _pending(line: bytes) -> int | None:
    from relentad.managesieve.parser import pending_literal

    size = pending_literal(line)
    assert size is None or size >= 0, size
    return size


def target_managesieve(data: bytes) -> None:
    from relentad.crm import userscripts
    from relentad.managesieve import parser

    for raw in (data, _framed(data)):
        try:
            command = parser.parse(raw)
        except parser.ParseError as exc:
            _one_line(exc)
        else:
            signature = parser.SIGNATURES[command.name]
            kinds = signature.replace("?", "")
            assert len(kinds) - signature.count("?") <= len(command.args) <= len(kinds), command
            for kind, arg in zip(kinds, command.args, strict=False):
                assert isinstance(arg, int) == (kind == "n"), (kind, arg)
                if isinstance(arg, str):
                    try:
                        userscripts.check_name(arg)
                    except userscripts.ScriptError as exc:
                        _one_line(exc)
            assert parser.response("OK", repr(command)).endswith(b"\r\n")
        try:
            parser.parse_string(raw)
        except parser.ParseError as exc:
            _one_line(exc)
    text = data.decode("utf-8", "replace")
    assert parser.parse_string(parser.string(text) + b"\r\n") == text, "a string the server sends reads back"
    assert parser.parse(b"NOOP " + parser.string(text) + b"\r\n").args == (text,)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "imap": target_imap,
    "message": target_message,
    "address": target_address,
    "smtp-args": target_smtp_args,
    "contacts": target_contacts,
    "sieve": target_sieve,
    "vcard": target_vcard,
    "pop3": target_pop3,
    "managesieve": target_managesieve,
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

SEEDS["sieve"] = [
    b'require ["fileinto", "imap4flags", "envelope", "subaddress", "variables", "relational",'
    b' "comparator-i;ascii-numeric"];\n'
    b'if header :matches "subject" "[*] *" { set :lower "list" "${1}"; fileinto "Lists/${list}"; stop; }\n'
    b'elsif envelope :detail :is "to" "lists"\n'
    b'{ addflag ["\\\\Seen", "$Label1"]; fileinto :flags "\\\\Flagged" "Lists"; }\n'
    b'elsif header :count "ge" :comparator "i;ascii-numeric" "received" "3" { keep; } else { keep :flags ""; }\n',
    b'require ["regex", "body", "fileinto", "date", "relational", "index"];\n'
    b'if anyof (body :text :contains "invoice", header :regex "list-id" "<([a-z0-9-]+)[.@]",\n'
    b'          date :zone "+0000" :value "ge" "date" "year" "2000", header :index 1 :last :is "received" "x")\n'
    b'{ fileinto "Invoices"; }\nif not allof (exists ["from", "date"], size :under 100K) { fileinto "Odd"; }\n',
    b'require ["vacation", "vacation-seconds", "copy", "fileinto", "vnd.relentad.tagcontact", "spamtest",'
    b' "relational", "comparator-i;ascii-numeric"];\n'
    b'if address :domain :is "from" "example.test" { tagcontact ["vip", "customer"]; redirect :copy "x@y.test"; }\n'
    b'if spamtest :value "ge" :comparator "i;ascii-numeric" "8" { fileinto :copy "Junk"; }\n'
    b'vacation :seconds 7200 :subject "Away" :addresses ["bob@example.test"] text:\nI am away.\n..dot\n.\n;\n',
    b'require ["environment", "variables", "imap4flags", "reject"];\n'
    b'if environment :contains "host" "mx" { set :upperfirst :length "n" "abc"; addflag "${n}"; }\n'
    b'if string :is "${n}" "3" { if hasflag :contains "3" { reject "no"; } }\n'
    b'if header :contains "X-Relentad-Contact" "new" { setflag "$Review"; removeflag "$Review"; }\n',
    b"# a comment\r\n/* block */ if true { keep; } if false { stop; }\r\n",
    b'require ["editheader", "variables", "fileinto"];\n'
    b'if header :matches "subject" "*" { deleteheader "Subject"; addheader "Subject" "[x] ${1}"; }\n'
    b'addheader :last "X-A" "b\xc3\xa9"; deleteheader :index 1 :last :contains "received" "a";\n'
    b'deleteheader :matches "X-*" ["a*", "b"]; if exists "x-a" { fileinto "A"; }\n',
    b'require ["include", "variables", "fileinto"];\n'
    b'global "a"; set "a" "b"; include :once :optional "x"; include "y"; if true { return; } fileinto "${a}";\n',
]

SEEDS["vcard"] = [
    b"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:urn:uuid:1\r\nFN:J\\, M\\;\r\nN:M\xc3\xbcller;J\xc3\xbcrgen;;;\r\n"
    b"EMAIL;PREF=1:j@acme.example\r\nitem1.EMAIL;TYPE=work:J@Acme.Example\r\nitem1.X-ABLabel:_$!<Work>!$_\r\n"
    b'ORG:Acme;Dev\r\nCATEGORIES:vip,a\\,b\r\nNOTE:line\\nnext\r\nTEL;TYPE="cell,voice":+1 555\r\n'
    b"PHOTO:data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHR\r\n"
    b" ofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/\r\nREV:20261125T080000Z\r\nEND:VCARD\r\n",
    b"\xef\xbb\xbfBEGIN:VCARD\nVERSION:3.0\nFN:\nN:Doe;Jane;;;\nEMAIL;TYPE=INTERNET,PREF:jane@example.test\n"
    b'ADR;TYPE=home:;;Main St 1;Town;;12345;DE\nX-CUSTOM;X-PARAM="a:b":v\nEND:VCARD\n',
]

SEEDS["pop3"] = [
    b"USER alice@example.test\r\nPASS secret with spaces\r\nSTAT\r\nLIST 1\r\nTOP 1 10\r\nRETR 2\r\nQUIT\r\n",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nUIDL\r\nDELE 4294967296\r\nTOP 1 99999999999999\r\nCAPA\r\nSTLS\r\n",
    b"From: a@b\r\nSubject: x\r\n\r\n.line\r\n..two\r\n.\r\nlast",
    b"\r\n.\nbody\n\n.\r\r\n",
]

SEEDS["managesieve"] = [
    b'AUTHENTICATE "PLAIN" "AGFsaWNlAHNlY3JldA=="\r\n',
    b'PUTSCRIPT "vacation" {29+}\r\nif true { keep; } # \xc3\xa9 done\r\n\r\n',
    b"CHECKSCRIPT {7}\r\nkeep;\r\n\r\n\r\n",
    b'HAVESPACE "my script" 4096\r\nRENAMESCRIPT "a" "b\\"c"\r\nSETACTIVE ""\r\nNOOP "tag"\r\n',
    b'GETSCRIPT {4+}\r\nname\r\nauthenticate plain\r\nLISTSCRIPTS\r\nDELETESCRIPT "x\\\\y"\r\nLOGOUT\r\n',
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
    b"VERSION:4.0\r\n", b"VERSION:3.0\r\n", b"FN:", b"N:", b"ORG:", b"CATEGORIES:", b"NOTE:", b"UID:", b"\r\n ",
    b'TYPE="', b"if ", b"elsif ", b"else ", b"{ ", b" }", b";\n", b"require ", b"fileinto ", b":matches ", b":regex ",
    b":contains ", b":is ", b":count ", b":value ", b'"ge" ', b"${1}", b"${", b"text:\n", b"\n.\n", b"[", b"]",
    b"anyof (", b"allof (", b"not ", b"header ", b"address ", b"envelope ", b"body ", b"string ", b"date ", b"set ",
    b"vacation ", b"redirect ", b":copy ", b":flags ", b"addflag ", b"stop;", b"keep;", b":comparator ",
    b'"i;ascii-numeric" ', b'"i;octet" ', b":index 1 ", b":last ", b":zone ", b"/*", b"*/", b"#", b'"*?\\*"',
    b"addheader ", b"deleteheader ", b"include ", b":once ", b":optional ", b"return;", b"global ",
    b"USER ", b"PASS ", b"TOP 1 ", b"RETR ", b"LIST ", b"\r\n.\r\n", b"\r\n.", b"PUTSCRIPT ", b"CHECKSCRIPT ",
    b"HAVESPACE ", b"AUTHENTICATE ", b"{4}\r\n", b"{2+}\r\n", b"{4294967296}\r\n",
]  # fmt: skip
