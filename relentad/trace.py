"""Trace header fields a receiving server adds: Return-Path, Delivered-To and Received (RFC 5321 §4.4).

Invariant: everything a client sent that ends up here (HELO name, addresses) is cleaned of CR, LF and control
characters and bounded in length, so a hostile client cannot inject header lines.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_TOKEN = 255


@dataclass(frozen=True)
class Source:
    """Where a message came from, as the protocol layer saw it."""

    peer_ip: str
    helo: str
    protocol: str  # RFC 3848 / RFC 6531 "with" keyword: SMTP, ESMTP, ESMTPS, ESMTPSA, UTF8SMTPS...
    tls_version: str | None = None
    tls_cipher: str | None = None
    authenticated_as: str | None = None


def clean(text: str) -> str:
    """``text`` without control characters, at most 255 characters: safe inside one header line."""
    return _UNSAFE.sub("?", text)[:_MAX_TOKEN]


def with_protocol(*, extended: bool, tls: bool, authenticated: bool, smtputf8: bool) -> str:
    """The Received "with" keyword registered for this combination (RFC 3848, RFC 6531 §3.7.3)."""
    base = "UTF8SMTP" if smtputf8 else "ESMTP" if extended else "SMTP"
    if base == "SMTP":
        return "SMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def _ip_literal(ip: str) -> str:
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return f"[{clean(ip)}]"
    if parsed.version == 6:
        return f"[IPv6:{parsed.compressed}]"
    return f"[{parsed}]"


def date(when: float) -> str:
    """A Unix time as an RFC 5322 date-time in UTC, written ``+0000`` (RFC 5322 §3.3): every Date and Received
    relentad writes."""
    return format_datetime(datetime.fromtimestamp(when, UTC))


def received(source: Source, *, hostname: str, transaction_id: str, recipient: str | None, when: float) -> bytes:
    """One Received field, folded over several lines, ending in CRLF."""
    date_time = date(when)
    lines = [f"Received: from {clean(source.helo) or 'unknown'} ({_ip_literal(source.peer_ip)})"]
    by = f"\tby {hostname} (relentad) with {source.protocol} id {transaction_id}"
    lines.append(by)
    if source.tls_version:
        lines.append(f"\t(using {clean(source.tls_version)} with cipher {clean(source.tls_cipher or 'unknown')})")
    if source.authenticated_as:
        lines.append(f"\t(authenticated as {clean(source.authenticated_as)})")
    if recipient is not None:
        lines.append(f"\tfor <{clean(recipient)}>; {date_time}")
    else:
        lines[-1] += f"; {date_time}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


def return_path(mail_from: str) -> bytes:
    return f"Return-Path: <{clean(mail_from)}>\r\n".encode("utf-8", "surrogateescape")


def delivered_to(address: str) -> bytes:
    return f"Delivered-To: {clean(address)}\r\n".encode("utf-8", "surrogateescape")
