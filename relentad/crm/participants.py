"""Who a message involves, for the CRM: pure extraction from a parsed message, no database.

Given a :class:`relentad.message.ParsedMessage`, the account's own addresses and the direction, this yields the
people (and lists, and automatic senders) the message is filed against, with their role and kind.

Invariants:
- Addresses come out normalised as everywhere in relentad (:func:`relentad.addrspec.normalize`): local part in
  lower case and NFC, domain in lower case as IDNA A-labels (``jo@Bücher.example`` is ``jo@xn--bcher-kva.example``,
  so an account's own address in either form is its own), surrounding spaces and a trailing dot of the domain
  removed; an entry without ``local@domain`` (garbage, a bare group name, a domain no IDNA label can spell) is
  never a participant.
- The account's own addresses never appear: its address, its aliases, the recipient address the copy came in on,
  and their subaddresses (``user+tag@``) are all "own".
- Mailing-list mail is filed against the list (kind ``list``), not against the people posting to it; mail from
  automatic senders (no-reply local parts, ``Auto-Submitted``, ``Precedence: bulk``, ``List-Unsubscribe``
  newsletters) gets kind ``bulk``. Such senders are never mixed with people and never make mail "unassigned".
- Incoming mail involves From, Reply-To, To and Cc; outgoing mail involves To, Cc and Bcc (submitted mail has
  no Bcc field left: :func:`blind_copies` finds those recipients in the envelope). One address appears once, with
  its first role in that order; at most :data:`MAX_PARTICIPANTS` of them.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from ..addrspec import a_label
from ..errors import InvalidInput
from ..message import Address, ParsedMessage

PERSON, LIST, BULK = "person", "list", "bulk"
KINDS = (PERSON, LIST, BULK)
IN, OUT = "in", "out"
# A message is filed against at most this many correspondents (the first ones: authors, then To, Cc, Bcc). A
# header can name hundreds of thousands of addresses: each would be a contact and a company, made in the delivery's
# transaction (seconds of the store's writer), and such a list is a mass mailing, not a conversation.
MAX_PARTICIPANTS = 500

# Local parts of addresses that no human reads (compared after removing a +tag).
_AUTOMATIC_LOCAL = re.compile(
    r"(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|dont[-_.]?reply|mailer[-_.]?daemon|postmaster|bounces?|"
    r"notifications?|notify|newsletters?|alerts?|automated|auto[-_.]?confirm|daemon)(?:[-_.+].*)?",
    re.IGNORECASE,
)
# The control characters no name, note, tag or address the CRM keeps has: C0, DEL and C1 (whose CSI a terminal
# obeys as ESC [). ``CONTROLS`` for a character class of its own, ``CONTROL`` to find one.
CONTROLS = r"\x00-\x1f\x7f-\x9f"
CONTROL = re.compile(f"[{CONTROLS}]")
_LIST_ID = re.compile(r"<([^<>\s]+)>")
# What an address the CRM keeps looks like (quoted local parts with spaces and the like are not kept; no control
# characters, which would reach a terminal through the CLI).
_ATOM = rf'[^\s<>(),;:"\[\]@\\{CONTROLS}]'
_ADDRESS = re.compile(rf"({_ATOM}{{1,64}})@({_ATOM}{{1,253}})")


@dataclass(frozen=True, slots=True)
class Participant:
    """One correspondent of a message as the CRM sees it."""

    address: str
    name: str
    role: str  # from, reply-to, to, cc, bcc, list
    kind: str  # person, list, bulk


def normalize(address: str) -> str:
    """``Local@Example.COM.`` → ``local@example.com``; "" when it is not ``local@domain``."""
    found = _ADDRESS.fullmatch(address)
    if found is None:
        address = address.strip().strip("<>").strip()
        found = _ADDRESS.fullmatch(address)
        if found is None:
            return ""
    local, domain = found.group(1), found.group(2).rstrip(".").lower()
    if not local.isascii():
        local = unicodedata.normalize("NFC", local)
    if not domain.isascii():
        domain = _a_label(domain)
        if not domain:
            return ""
    return f"{local.lower()}@{domain}"


@functools.lru_cache(maxsize=1024)
def _a_label(domain: str) -> str:
    return a_label(domain) or ""


def display_name(name: str) -> str:
    """A decoded display name as one line: controls (an encoded ``=0D=0A``, a NUL) become spaces, runs of white
    space one space, so a name never breaks a CLI line, a CSV row or a folder name."""
    return " ".join(CONTROL.sub(" ", name).split())


MAX_NAME = 200  # what a virtual folder name keeps of a name (relentad.crm.folders)


def check_name(name: str) -> str:
    """A name the owner gives a contact or company: one line, 1-200 characters."""
    clean = display_name(name)
    if not clean or len(clean) > MAX_NAME:
        raise InvalidInput(f"not a name: {name!r} (1-{MAX_NAME} characters)")
    return clean


def base_address(address: str) -> str:
    """The address without its subaddress tag: ``user+tag@d`` → ``user@d``."""
    local, _, domain = address.rpartition("@")
    plus = local.find("+")
    return f"{local[:plus]}@{domain}" if plus > 0 else address


def is_own(address: str, own: frozenset[str]) -> bool:
    return address in own or base_address(address) in own


def is_automatic(address: str) -> bool:
    """A no-reply style local part (``noreply@``, ``mailer-daemon@``, ``bounces+x@`` …)."""
    local = address.rpartition("@")[0]
    return _AUTOMATIC_LOCAL.fullmatch(local) is not None


def list_contact(parsed: ParsedMessage) -> Participant | None:
    """The mailing list a message came through (RFC 2919 List-Id), as a participant, or None.

    The list address is the To/Cc address whose ``local.domain`` equals the list identifier (most list managers
    name lists so); otherwise the identifier's first label becomes the local part (``dev.lists.x.org`` →
    ``dev@lists.x.org``), which is what a reply to the list would use in the common case.
    """
    if not parsed.list_id:
        return None
    found = _LIST_ID.search(parsed.list_id)
    ident = (found.group(1) if found else parsed.list_id).strip().lower()
    phrase = parsed.list_id[: found.start()].strip().strip('"') if found else ""
    for entry in (*parsed.to, *parsed.cc):
        address = normalize(entry.address)
        if address and address.replace("@", ".", 1) == ident:
            return Participant(address, display_name(phrase or entry.name), "list", LIST)
    label, dot, rest = ident.partition(".")
    if not dot or not label or not rest:
        return None
    return Participant(normalize(f"{label}@{rest}"), display_name(phrase), "list", LIST)


def _entries(parsed: ParsedMessage, direction: str) -> Iterable[tuple[str, Address]]:
    groups: list[tuple[str, list[Address]]]
    if direction == IN:
        groups = [("from", parsed.from_), ("reply-to", parsed.reply_to), ("to", parsed.to), ("cc", parsed.cc)]
    else:
        groups = [("to", parsed.to), ("cc", parsed.cc), ("bcc", parsed.bcc)]
    for role, addresses in groups:
        for entry in addresses:
            yield role, entry


def participants(parsed: ParsedMessage, own: frozenset[str], direction: str) -> list[Participant]:
    """Everyone the message involves besides the account itself (see the module invariants)."""
    out: list[Participant] = []
    seen: set[str] = set()
    listed = list_contact(parsed) if direction == IN else None
    if listed is not None and listed.address and not is_own(listed.address, own):
        out.append(listed)
        seen.add(listed.address)
    automatic = parsed.is_bulk
    for role, entry in _entries(parsed, direction):
        if len(out) >= MAX_PARTICIPANTS:
            break
        address = normalize(entry.address)
        if not address or address in seen or is_own(address, own):
            continue
        if listed is not None and role in ("from", "reply-to", "to", "cc"):
            continue  # list traffic is filed against the list, not against everyone who posts to it
        kind = BULK if is_automatic(address) or (automatic and role in ("from", "reply-to")) else PERSON
        seen.add(address)
        out.append(Participant(address, display_name(entry.name), role, kind))
    return out


def blind_copies(people: list[Participant], recipients: Iterable[str], own: frozenset[str]) -> list[Participant]:
    """The envelope recipients of mail the account sent that its To and Cc do not name: its Bcc recipients, whose
    field submission removes before the Sent copy is stored (role ``bcc``, no name known)."""
    seen = {p.address for p in people}
    out: list[Participant] = []
    for recipient in recipients:
        if len(people) + len(out) >= MAX_PARTICIPANTS:
            break
        address = normalize(recipient)
        if address and address not in seen and not is_own(address, own):
            seen.add(address)
            out.append(Participant(address, "", "bcc", BULK if is_automatic(address) else PERSON))
    return out


def sender(parsed: ParsedMessage) -> str:
    """The first From address, normalised ("" when there is none)."""
    for entry in parsed.from_:
        address = normalize(entry.address)
        if address:
            return address
    return ""
