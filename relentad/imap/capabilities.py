"""The CAPABILITY list (RFC 9051 §6.1.1), which depends on the connection's state.

Invariant: everything listed here is implemented; STARTTLS only before TLS and when a certificate is configured;
LOGINDISABLED (and no AUTH=PLAIN) while logins are refused on this connection (no TLS, not a permitted loopback).
"""

from __future__ import annotations

BASE = (
    "IMAP4rev1",
    "IMAP4rev2",
    "LITERAL+",
    "SASL-IR",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "ESEARCH",
    "SEARCHRES",
    "SORT",
    "SORT=DISPLAY",
    "ESORT",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "CONDSTORE",
    "QRESYNC",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "BINARY",
    "STATUS=SIZE",
    "UTF8=ACCEPT",
    "SAVEDATE",
    "OBJECTID",
    "PREVIEW",
    "REPLACE",
    "ACL",
    "RIGHTS=texk",
)

ENABLEABLE = frozenset(("CONDSTORE", "QRESYNC", "IMAP4REV2", "UTF8=ACCEPT"))


def capabilities(
    *, authenticated: bool, login_allowed: bool, starttls: bool, compressed: bool, appendlimit: int
) -> list[str]:
    caps = list(BASE)
    caps.append(f"APPENDLIMIT={appendlimit}")
    if not authenticated:
        if starttls:
            caps.append("STARTTLS")
        caps.append("AUTH=PLAIN" if login_allowed else "LOGINDISABLED")
    if not compressed:
        caps.append("COMPRESS=DEFLATE")
    return caps
