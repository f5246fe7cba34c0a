"""vCards a client PUTs (RFC 6350 4.0, RFC 2426 3.0): parsing one into content lines, the CRM fields it sets, and
serving it back merged with the CRM's current values. Pure: no store.

The merge rule (README "CardDAV"): a card is the client's last PUT, line for line, except for the groups the CRM
keeps — the name (FN, N), EMAIL, ORG, CATEGORIES and NOTE. Each group is served as the client wrote it while the
CRM's value is still the one recorded right after that PUT (``base``); once the CRM changed it since (a rename in
the CLI, an address added, a tag, a note), the CRM's value replaces the whole group, rendered as ``relentad
export`` does, and REV becomes the CRM's. A group the card lacks is so too: absent until the CRM changes it (a
card served as sent lets the client keep it without a conflict: vdirsyncer, sent no ETag, compares the card).
Everything else (TEL, ADR, BDAY, PHOTO, X-…) is served as sent.

Invariants: the input is one BEGIN:VCARD … END:VCARD of VERSION 3.0 or 4.0 in UTF-8 with an FN (3.0 also needs N,
but clients omit it: not required here); anything else raises :class:`BadCard`. Output is CRLF-terminated,
folded at 75 octets (:func:`relentad.crm.export.fold`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..crm import export
from ..crm.participants import normalize

MAX_CARD = 256 * 1024  # octets of one stored vCard
MAX_LINES = 5000
VERSIONS = ("3.0", "4.0")
# the CRM's groups: property names (upper case) → the field of the CRM they set
GROUPS = {"FN": "name", "N": "name", "EMAIL": "addresses", "ORG": "company", "CATEGORIES": "tags", "NOTE": "notes"}
_NAME = re.compile(r"(?:([A-Za-z0-9-]+)\.)?([A-Za-z0-9-]+)")


class BadCard(ValueError):
    """Not a vCard relentad stores; ``version``: the card is well formed but of a version it does not serve."""

    def __init__(self, message: str, *, version: bool = False) -> None:
        super().__init__(message)
        self.version = version


@dataclass(frozen=True)
class Line:
    """One content line: ``name`` upper case without its group; ``raw`` the unfolded line as sent."""

    name: str
    params: str  # ";TYPE=work" as sent ("" for none)
    value: str  # as sent, still escaped
    raw: str


@dataclass(frozen=True)
class Card:
    version: str
    lines: list[Line]  # between BEGIN and END, VERSION excluded

    def values(self, name: str) -> list[str]:
        return [line.value for line in self.lines if line.name == name]

    @property
    def uid(self) -> str:
        found = self.values("UID")
        return found[0].strip() if found else ""


def parse_line(raw: str) -> Line:
    head, colon, value = split_value(raw)
    if not colon:
        raise BadCard(f"not a content line: {raw[:60]!r}")
    name, _, params = head.partition(";")
    found = _NAME.fullmatch(name)
    if found is None:
        raise BadCard(f"bad property name {name[:60]!r}")
    return Line(found.group(2).upper(), ";" + params if params else "", value, raw)


def split_value(raw: str) -> tuple[str, str, str]:
    """Name and parameters, ":" and value: the first colon outside a quoted parameter value."""
    quoted = False
    for index, char in enumerate(raw):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            return raw[:index], ":", raw[index + 1 :]
    return raw, "", ""


def parse(data: bytes, *, limits: bool = True) -> Card:
    """One vCard from a PUT body; :class:`BadCard` when it is none relentad can keep. ``limits=False`` for a card
    relentad stored or made itself (a merged card is folded anew and gains the CRM's lines: it may be larger than
    the client's was, and must still be served)."""
    if limits and len(data) > MAX_CARD:
        raise BadCard(f"a card is at most {MAX_CARD // 1024} KiB")
    declared = re.search(rb"^VERSION:[ \t]*([^\r\n]*)", data, re.MULTILINE | re.IGNORECASE)
    if declared is not None and declared.group(1).strip() not in (v.encode() for v in VERSIONS):
        # before the rest: a 2.1 card's quoted-printable soft breaks or Latin-1 would be refused as malformed
        raise BadCard(
            f"vCard {declared.group(1).strip()[:20].decode('latin-1')} is not served: 3.0 or 4.0", version=True
        )
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise BadCard("a vCard is UTF-8") from None
    if "\x00" in text or re.search(r"\r(?!\n)", text):
        raise BadCard("a NUL or a CR outside a line break in a vCard")
    unfolded = re.sub(r"\r?\n[ \t]", "", text)  # §3.2 (and LF-only files, which many tools write)
    raw_lines = [line for line in re.split(r"\r?\n", unfolded) if line.strip()]
    if limits and len(raw_lines) > MAX_LINES:
        raise BadCard(f"a card has at most {MAX_LINES} lines")
    if len(raw_lines) < 3 or raw_lines[0].strip().upper() != "BEGIN:VCARD":
        raise BadCard("a vCard starts with BEGIN:VCARD")
    if raw_lines[-1].strip().upper() != "END:VCARD":
        raise BadCard("a vCard ends with END:VCARD")
    lines = [parse_line(raw) for raw in raw_lines[1:-1]]
    if any(line.name in ("BEGIN", "END") and line.value.strip().upper() == "VCARD" for line in lines):
        raise BadCard("one vCard per resource (RFC 6352 §5.1)")
    versions = [line.value.strip() for line in lines if line.name == "VERSION"]
    if len(versions) != 1:
        raise BadCard("a vCard has one VERSION")
    if versions[0] not in VERSIONS:
        raise BadCard(f"vCard {versions[0]} is not served: 3.0 or 4.0", version=True)
    card = Card(versions[0], [line for line in lines if line.name != "VERSION"])
    if not card.values("FN"):
        raise BadCard("a vCard has an FN")
    return card


# -- values --------------------------------------------------------------------------------------------------


def split(value: str, separator: str) -> list[str]:
    """A structured or list value split at unescaped ``separator``s, each part unescaped (RFC 6350 §3.4)."""
    parts, current, chars = [], [], iter(value)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            current.append("\n" if following in "nN" and following else following)
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def unescape(value: str) -> str:
    return split(value, "\x00")[0]  # no separator: every escape undone


def fields(card: Card) -> dict[str, Any]:
    """What the card says of the CRM's fields: name, addresses (as written), company, tags and notes; None for a
    company, tags or notes the card has no line for (a client that does not show them drops them: iOS and
    CATEGORIES), which leaves the CRM's as they are — an empty ``CATEGORIES:`` or ``NOTE:`` clears them."""
    name = unescape(card.values("FN")[0]).strip()
    if not name and card.values("N"):  # an FN may be empty; the structured name then gives one
        family, given = [*split(card.values("N")[0], ";"), "", ""][:2]
        name = " ".join(part.strip() for part in (given, family) if part.strip())
    organisations, categories, notes = card.values("ORG"), card.values("CATEGORIES"), card.values("NOTE")
    return {
        "name": name,
        "addresses": [unescape(v).strip() for v in card.values("EMAIL") if unescape(v).strip()],
        "company": split(organisations[0], ";")[0].strip() if organisations else None,
        "tags": [t.strip() for v in categories for t in split(v, ",") if t.strip()] if categories else None,
        "notes": "\n".join(unescape(v) for v in notes) if notes else None,
    }


def crm_values(contact: dict[str, Any]) -> dict[str, Any]:
    """The CRM's values of the groups, comparable with a recorded ``base``."""
    return {
        "name": contact["name"],
        "addresses": sorted(contact["addresses"]),
        "company": contact["company"],
        "tags": sorted(contact["tags"]),
        "notes": contact["notes"],
    }


# -- serving -------------------------------------------------------------------------------------------------


def _crm_lines(account_id: int, contact: dict[str, Any], version: str) -> list[tuple[str, str]]:
    """(property name, unfolded line) of each line ``relentad export`` writes for the contact: rendered once per
    card served, however many of its groups the CRM changed."""
    card = parse(export.vcard(account_id, contact, version).encode("utf-8"), limits=False)
    return [(line.name, line.raw) for line in card.lines]


def merged(
    account_id: int, contact: dict[str, Any], stored: str, base: dict[str, Any], version: str | None = None
) -> str:
    """The card served for a contact with a stored vCard: the client's lines, and the CRM's for each group it
    changed since ``base`` (the module's rule). ``version``: the one asked for (None: the stored card's)."""
    card = parse(stored.encode("utf-8"), limits=False)
    now = crm_values(contact)
    changed = {field for field in now if base.get(field) != now[field]}
    version = version or card.version
    crm = _crm_lines(account_id, contact, version) if changed else []
    # addresses change one by one: the client's line of an address the CRM still has stays as written (its TYPE,
    # its Apple group and label); the CRM's lines come only for the addresses the card lacks
    kept = {_address(line) for line in card.lines if line.name == "EMAIL"} & set(contact["addresses"])
    added = [raw for name, raw in crm if name == "EMAIL" and _address(parse_line(raw)) not in kept]

    def lines_of(field: str) -> list[str]:
        return added if field == "addresses" else [raw for name, raw in crm if GROUPS.get(name) == field]

    out: list[str] = []
    placed: set[str] = set()
    for line in card.lines:
        field = GROUPS.get(line.name)
        if line.name == "REV" and changed:
            continue
        if field is None or field not in changed:
            out.append(line.raw)
            continue
        if field == "addresses" and _address(line) in kept:
            kept.discard(_address(line))  # once: a second line of the same address goes
            out.append(line.raw)
        if field not in placed:  # the CRM's lines where the client had the group
            placed.add(field)
            out += lines_of(field)
    for field in sorted(changed - placed):  # groups the client's card did not have
        out += lines_of(field)
    out += [raw for name, raw in crm if name == "REV"]
    return text(version, out)


def _address(line: Line) -> str:
    return normalize(unescape(line.value))


def version_of(text: str) -> str:
    found = re.search(r"^VERSION:(\S+)", text, re.MULTILINE)
    return found.group(1) if found else ""


def combine(kept: str | None, absorbed: str, uid: str) -> str:
    """The stored card of a contact another one was merged into (``crm.contacts.merge``): its own card, or without
    one the absorbed card under ``uid``, the survivor's; then each line of the absorbed card the CRM does not keep
    (or an EMAIL) and the card lacks (a phone number, an address), its group renamed where the card uses the same
    one — within :data:`MAX_CARD` and :data:`MAX_LINES`."""
    gone = parse(absorbed.encode("utf-8"), limits=False)
    if kept is None:
        lines = [f"UID:{export.escape(uid)}"] + [line.raw for line in gone.lines if line.name != "UID"]
        return text(gone.version, lines)
    card = parse(kept.encode("utf-8"), limits=False)
    lines = [line.raw for line in card.lines]
    have = {(line.name, line.params, line.value) for line in card.lines}
    groups = {_group(line.raw) for line in card.lines} - {""}
    renamed: dict[str, str] = {}
    size = len(text(card.version, lines).encode("utf-8"))
    for line in gone.lines:
        if (line.name in GROUPS and line.name != "EMAIL") or line.name in ("UID", "REV", "PRODID"):
            continue  # (its addresses are the kept contact's now: their lines stay as the client wrote them)
        if (line.name, line.params, line.value) in have:
            continue
        raw, group = line.raw, _group(line.raw)
        if group in groups:
            if group not in renamed:
                renamed[group] = next(f"merged{n}" for n in range(1, MAX_LINES + 2) if f"merged{n}" not in groups)
                groups.add(renamed[group])
            raw = renamed[group] + raw[len(group) :]
        size += len(export.fold(raw).encode("utf-8"))
        if len(lines) + 4 > MAX_LINES or size > MAX_CARD:  # + BEGIN, VERSION and END
            break
        lines.append(raw)
    return text(card.version, lines)


def _group(raw: str) -> str:
    found = _NAME.match(raw.partition(";")[0].partition(":")[0])
    return (found.group(1) or "") if found else ""


def text(version: str, lines: list[str]) -> str:
    """A card of these content lines (unfolded; BEGIN, VERSION and END added), folded and CRLF-terminated."""
    return "".join(export.fold(line) for line in ["BEGIN:VCARD", f"VERSION:{version}", *lines, "END:VCARD"])
