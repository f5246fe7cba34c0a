"""The SMTP DSN extension's parameters (RFC 3461 §4, RFC 6533 §3): parsing, validation and encoding.

MAIL takes ``RET=FULL|HDRS`` and ``ENVID=<xtext>``, RCPT ``NOTIFY=NEVER|<SUCCESS,FAILURE,DELAY>`` and
``ORCPT=<addr-type>;<xtext>``. aiosmtpd upper-cases parameters and refuses those it does not know, so the protocol
(:mod:`relentad.smtp.server`) takes these out of the command line first, in their original case, and leaves
the rest (SIZE, BODY, SMTPUTF8) to aiosmtpd.

Pure and total: every malformed value is a :class:`ParamError` carrying its ``501 5.5.4`` reply, never another
exception. Decoded values hold no control characters, so they can go into a report's fields as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import SMTPReply

RET_VALUES = frozenset({"FULL", "HDRS"})
NOTIFY_VALUES = ("SUCCESS", "FAILURE", "DELAY")  # the canonical order of a stored NOTIFY list
ENVID_MAX = 100  # RFC 3461 §4.4: the encoded value's length
ORCPT_MAX = 500  # RFC 3461 §4.2
_HEX = "0123456789ABCDEF"
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")  # an atom
_UNICODE_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")


class ParamError(SMTPReply):
    """A DSN parameter the client sent is malformed, repeated or conflicting: ``501 5.5.4``."""

    def __init__(self, text: str) -> None:
        super().__init__(501, "5.5.4", text)


@dataclass(frozen=True)
class MailParams:
    """MAIL's DSN parameters: what the sender wants back in a failure report, and its envelope id."""

    ret: str | None = None  # "FULL" | "HDRS" | None (not given: headers only, as before DSN)
    envid: str | None = None  # decoded


@dataclass(frozen=True)
class RcptParams:
    """RCPT's DSN parameters: when the sender wants a report for this recipient, and its original address."""

    notify: frozenset[str] | None = None  # {"NEVER"} or a subset of NOTIFY_VALUES; None: not given (failure, delay)
    orcpt: str | None = None  # "addr-type;decoded address", e.g. "rfc822;bob@b.test"

    def wants(self, event: str) -> bool:
        """Whether a report of ``event`` ("SUCCESS", "FAILURE", "DELAY") is wanted (RFC 3461 §4.1: without NOTIFY,
        failures and delays are reported, successes not)."""
        if self.notify is None:
            return event != "SUCCESS"
        return event in self.notify


NO_MAIL_PARAMS = MailParams()
NO_RCPT_PARAMS = RcptParams()


# -- xtext (RFC 3461 §4) ----------------------------------------------------------------------------------------


def xtext_decode(text: str) -> str:
    """The string ``text`` encodes; ParamError when it is not xtext or not UTF-8 underneath. Lower-case hex digits
    are taken (RFC 3461 asks for upper case; refusing would fail a message over a cosmetic slip)."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "+":
            pair = text[i + 1 : i + 3].upper()
            if len(pair) != 2 or any(c not in _HEX for c in pair):
                raise ParamError("Malformed xtext: '+' must be followed by two hex digits")
            out.append(int(pair, 16))
            i += 3
            continue
        if not "!" <= char <= "~" or char == "=":
            raise ParamError("Malformed xtext: only printable ASCII except '+' and '=' may appear unencoded")
        out.append(ord(char))
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ParamError("Malformed xtext: not UTF-8") from None


def xtext_encode(text: str) -> str:
    """``text`` as xtext: printable ASCII but '+' and '=' as is, every other byte of its UTF-8 as ``+HH``."""
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b not in (0x2B, 0x3D) else f"+{b:02X}" for b in text.encode("utf-8"))


def utf8_addr_xtext(text: str) -> str:
    """``text`` as RFC 6533's utf-8-addr-xtext: QCHARs as is, anything else as ``\\x{HEX}``."""
    return "".join(c if "!" <= c <= "~" and c not in "+=\\" else f"\\x{{{ord(c):X}}}" for c in text)


def _utf8_addr_decode(text: str) -> str:
    """RFC 6533's utf-8-addr-xtext or utf-8-addr-unitext: raw UTF-8 allowed, ``\\x{HEX}`` escapes decoded."""

    def char(match: re.Match[str]) -> str:
        point = int(match[1], 16)
        if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            raise ParamError("Malformed utf-8 address: escape outside Unicode")
        return chr(point)

    decoded = _UNICODE_ESCAPE.sub(char, text)
    if "+" in text or "=" in text or "\\" in _UNICODE_ESCAPE.sub("", text):
        raise ParamError("Malformed utf-8 address: '+', '=' and '\\' must be escaped as \\x{HEX}")
    return decoded


def _printable(text: str, *, ascii_only: bool) -> bool:
    if ascii_only and not text.isascii():
        return False
    return all(c.isprintable() or c == " " for c in text) and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


# -- the parameters -------------------------------------------------------------------------------------------


def _take(params: str, names: tuple[str, ...]) -> tuple[dict[str, str], str]:
    """The ``names`` parameters of ``params`` (upper-cased name → value as sent) and the others, as a string."""
    found: dict[str, str] = {}
    rest: list[str] = []
    for token in params.split():
        name, equals, value = token.partition("=")
        key = name.upper()
        if key not in names:
            rest.append(token)
            continue
        if key in found:
            raise ParamError(f"Duplicate {key} parameter")
        if not equals or not value:
            raise ParamError(f"{key} needs a value")
        found[key] = value
    return found, " ".join(rest)


def parse_mail(params: str) -> tuple[MailParams, str]:
    """MAIL's RET and ENVID out of its parameter string; the other parameters as a string."""
    found, rest = _take(params, ("RET", "ENVID"))
    ret = found.get("RET")
    if ret is not None:
        ret = ret.upper()
        if ret not in RET_VALUES:
            raise ParamError("RET must be FULL or HDRS")
    envid = found.get("ENVID")
    if envid is not None:
        if len(envid) > ENVID_MAX:
            raise ParamError(f"ENVID longer than {ENVID_MAX} characters")
        envid = xtext_decode(envid)
        if not _printable(envid, ascii_only=True):
            raise ParamError("ENVID must be printable ASCII")
    return MailParams(ret, envid), rest


def parse_notify(value: str) -> frozenset[str]:
    words = value.upper().split(",")
    if words == ["NEVER"]:
        return frozenset(words)
    if not all(w in NOTIFY_VALUES for w in words):
        raise ParamError("NOTIFY must be NEVER, or one or more of SUCCESS, FAILURE, DELAY")
    return frozenset(words)


def parse_orcpt(value: str) -> str:
    """``addr-type;decoded address`` from an ORCPT value (rfc822 and other types: xtext; utf-8: RFC 6533)."""
    if len(value) > ORCPT_MAX:
        raise ParamError(f"ORCPT longer than {ORCPT_MAX} characters")
    kind, semicolon, encoded = value.partition(";")
    if not semicolon or not encoded or not _ADDR_TYPE.match(kind):
        raise ParamError("ORCPT must be addr-type;address")
    kind = kind.lower()
    if kind == "utf-8":
        address = _utf8_addr_decode(encoded)
        ascii_only = False
    else:
        if not encoded.isascii():
            raise ParamError("Malformed xtext: only printable ASCII may appear unencoded")
        address = xtext_decode(encoded)
        ascii_only = True
    if not address or not _printable(address, ascii_only=ascii_only):
        raise ParamError("ORCPT address must be printable" + (" ASCII" if ascii_only else ""))
    return f"{kind};{address}"


def parse_rcpt(params: str) -> tuple[RcptParams, str]:
    """RCPT's NOTIFY and ORCPT out of its parameter string; the other parameters as a string."""
    found, rest = _take(params, ("NOTIFY", "ORCPT"))
    notify = parse_notify(found["NOTIFY"]) if "NOTIFY" in found else None
    orcpt = parse_orcpt(found["ORCPT"]) if "ORCPT" in found else None
    return RcptParams(notify, orcpt), rest


# -- stored and sent on ---------------------------------------------------------------------------------------


def notify_text(notify: frozenset[str] | None) -> str | None:
    """NOTIFY as stored and sent on: "NEVER" or the words in canonical order; None when not given."""
    if notify is None:
        return None
    if "NEVER" in notify:
        return "NEVER"
    return ",".join(w for w in NOTIFY_VALUES if w in notify)


def rcpt_params(notify: str | None, orcpt: str | None) -> RcptParams:
    """The stored form back (what :func:`notify_text` and :func:`parse_orcpt` made)."""
    return RcptParams(frozenset(notify.split(",")) if notify else None, orcpt or None)


def orcpt_field(orcpt: str) -> str:
    """A stored ORCPT (``type;address``) as the value sent on in RCPT: ASCII, xtext for rfc822 and other types,
    utf-8-addr-xtext for utf-8 (RFC 6533 §3)."""
    kind, _, address = orcpt.partition(";")
    return f"{kind};{utf8_addr_xtext(address) if kind == 'utf-8' else xtext_encode(address)}"


def original_recipient(orcpt: str) -> str:
    """A report's Original-Recipient value (RFC 3464 §2.3.1): ``type; address``, ASCII."""
    kind, _, address = orcpt.partition(";")
    shown = utf8_addr_xtext(address) if kind == "utf-8" else address
    return f"{kind}; {shown}"
