"""Contact export: vCard 4.0 (RFC 6350) and 3.0 (RFC 2426, for CardDAV) and CSV (what the csv module and
spreadsheets read).

Invariants: vCard output is CRLF-terminated, every line folded to at most 75 octets without splitting a UTF-8
sequence (§3.2), text values escaped (§3.4: backslash, comma, semicolon, newline), one card per contact with
VERSION first after BEGIN and an FN (§6.2.1) always present; the UID is stable for a contact of an account.
CSV has a header row, one row per contact; multi-valued fields are joined with "; ".
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

_NAMESPACE = uuid.UUID("5d5bd3a4-55a2-4c1b-9a57-6f0e8f3cbd11")
_KIND = {"person": "individual", "list": "group", "bulk": "org"}
CSV_FIELDS = (
    "id",
    "name",
    "kind",
    "addresses",
    "company",
    "company_domain",
    "tags",
    "notes",
    "first_contact",
    "last_contact",
    "count_in",
    "count_out",
)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def escape(text: str) -> str:
    """RFC 6350 §3.4 text escaping; a line break (CR LF, CR or LF) is ``\\n``, other controls, which no vCard value
    may hold (§3.3 VALUE-CHAR), are dropped (names and notes stored by older releases could have them), and so are
    U+FFFE, U+FFFF and surrogates, which no XML document (CardDAV's address-data) may hold."""
    text = _CONTROL.sub("", _LINE_BREAK.sub("\n", text))
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;").replace("\n", "\\n")


def fold(line: str) -> str:
    """One content line, folded at 75 octets (continuations start with a space), CRLF-terminated."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line + "\r\n"
    parts, start, limit = [], 0, 75
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            end -= 1
        parts.append(data[start:end].decode("utf-8"))
        start, limit = end, 74  # continuation lines carry the leading space
    return "\r\n ".join(parts) + "\r\n"


def _stamp(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y%m%dT%H%M%SZ")


def uid(account_id: int, contact_id: int) -> str:
    """The contact's vCard UID: a name-based UUID, the same in every export and over CardDAV."""
    return str(uuid.uuid5(_NAMESPACE, f"{account_id}/{contact_id}"))


def _structured_name(name: str) -> str:
    """N (family;given;additional;prefixes;suffixes) guessed from a display name: "Family, Given" or the last word
    as the family name. vCard 3.0 requires N (RFC 2426 §3.1.2) and iOS sorts by it."""
    family, comma, given = name.partition(",")
    if not comma:
        given, _, family = name.rpartition(" ")
    return f"{escape(family.strip())};{escape(given.strip())};;;"


def vcard(account_id: int, contact: dict[str, Any], version: str = "4.0") -> str:
    """One vCard for a contact as :func:`relentad.crm.views.contact` returns it: 4.0 (RFC 6350) or 3.0 (RFC 2426,
    what CardDAV clients handle best). REV is the card's last change, never a message's arrival."""
    name = contact["name"] or (contact["addresses"][0] if contact["addresses"] else f"contact {contact['id']}")
    modern = version == "4.0"
    lines = ["BEGIN:VCARD", f"VERSION:{version}"]
    if modern:
        lines += [f"UID:urn:uuid:{uid(account_id, contact['id'])}", f"KIND:{_KIND.get(contact['kind'], 'individual')}"]
    else:
        lines.append(f"UID:{uid(account_id, contact['id'])}")
    lines.append(f"FN:{escape(name)}")
    person = contact["kind"] == "person" and bool(contact["name"])
    if person or not modern:
        lines.append("N:" + (_structured_name(contact["name"]) if person else f"{escape(name)};;;;"))
    for index, address in enumerate(contact["addresses"], 1):
        if modern:
            lines.append(f"EMAIL;PREF={index}:{escape(address)}" if index == 1 else f"EMAIL:{escape(address)}")
        else:
            lines.append(f"EMAIL;TYPE=INTERNET{',PREF' if index == 1 else ''}:{escape(address)}")
    if contact["company"]:
        lines.append(f"ORG:{escape(contact['company'])}")
    if contact["tags"]:
        lines.append("CATEGORIES:" + ",".join(escape(tag) for tag in contact["tags"]))
    if contact["notes"]:
        lines.append(f"NOTE:{escape(contact['notes'])}")
    revision = _stamp(contact.get("card_changed") or contact["last_contact"])
    if revision:
        lines.append(f"REV:{revision}")
    lines.append("END:VCARD")
    return "".join(fold(line) for line in lines)


def vcards(account_id: int, contacts: Iterable[dict[str, Any]]) -> str:
    return "".join(vcard(account_id, c) for c in contacts)


def csv_text(contacts: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for c in contacts:
        writer.writerow(
            [
                c["id"],
                c["name"],
                c["kind"],
                "; ".join(c["addresses"]),
                c["company"],
                c["company_domain"],
                "; ".join(c["tags"]),
                c["notes"],
                _iso(c["first_contact"]),
                _iso(c["last_contact"]),
                c["count_in"],
                c["count_out"],
            ]
        )
    return out.getvalue()


def _iso(timestamp: float | None) -> str:
    return "" if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
