"""Contact files people bring from elsewhere — a vCard file (Google Contacts, iCloud, Outlook, Thunderbird) or a
CSV with a header row — read into one vCard per entry for ``relentad contacts import``. Pure: no store.

Every entry becomes a vCard 3.0 or 4.0 in UTF-8 that :func:`relentad.carddav.vcard.parse` accepts, the form a
CardDAV client PUTs, so an imported card and a phone's card take one path into the CRM (``crm.importing``). vCard
2.1 (Outlook, old phones) is converted to 3.0: quoted-printable values decoded (soft line breaks joined), CHARSET
values decoded, bare parameters (``TEL;WORK;VOICE``) written as ``TYPE=``, ``ENCODING=BASE64`` as ``b``. CSV rows are
written as a 3.0 card from the columns recognised by name (:func:`roles`); other columns are ignored.

Invariants: the whole file is read and checked before anything is imported; a file that is neither format, over
:data:`MAX_FILE` octets, :data:`MAX_ENTRIES` entries or (a vCard file) :data:`MAX_LINES` lines, or whose cards are
not nested BEGIN … END is a :class:`FileError` (one line, naming the card and line). Memory is bounded by those:
a card's lines are held only until its END. A problem of one entry (no address, a card too large)
makes it skipped with a reason, never the file. A card over :data:`vcard.MAX_CARD` octets loses its PHOTO, LOGO and
SOUND lines first.
"""

from __future__ import annotations

import csv
import io
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..carddav import vcard
from ..errors import InvalidInput
from .export import escape

MAX_FILE = 50 * 1024 * 1024
MAX_ENTRIES = 50_000
MAX_LINES = 2_000_000  # content lines of a vCard file: 40 an entry; a file of millions of short lines is refused
NO_ADDRESS = "no email address (a contact of relentad is made of addresses)"
_BULKY = ("PHOTO", "LOGO", "SOUND", "KEY")


class FileError(InvalidInput):
    """The file cannot be imported at all: nothing of it is."""


@dataclass
class Entry:
    where: str  # "card 3 (line 20)" or "line 5": for the report
    card: vcard.Card | None = None
    skip: str = ""  # why it cannot be imported ("" when it can)
    notes: list[str] = field(default_factory=list)  # what was changed on the way in


@dataclass
class Parsed:
    format: str  # "vcard" or "csv"
    entries: list[Entry]
    warnings: list[str]


def read(path: Path, fmt: str | None = None) -> Parsed:
    """The entries of the file at ``path``; ``fmt`` overrides detection by extension and content."""
    size = path.stat().st_size
    if size > MAX_FILE:
        raise FileError(f"{path.name} is over {MAX_FILE // (1024 * 1024)} MB: split it")
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise FileError(f"{path.name} is over {MAX_FILE // (1024 * 1024)} MB: split it")
    data = _transcode(data)
    return parse(data, fmt or detect(path.name, data))


def _transcode(data: bytes) -> bytes:
    """A UTF-16 file (Excel's "Unicode Text", some Windows address books) as UTF-8; others as they are."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise FileError("the file starts like UTF-16 but is not") from None
    return data


def detect(name: str, data: bytes) -> str:
    suffix = name.rpartition(".")[2].lower() if "." in name else ""
    if suffix in ("vcf", "vcard"):
        return "vcard"
    if suffix in ("csv", "tsv"):
        return "csv"
    head = data.removeprefix(b"\xef\xbb\xbf").lstrip()[:64].upper()
    if head.startswith(b"BEGIN:VCARD"):
        return "vcard"
    if suffix in ("ldif", "ldi") or re.match(rb"(?:VERSION: *1\s+)?DN:", head):  # Thunderbird's other export
        raise FileError(f"{name} is LDIF, which is not read: export the address book as vCard or CSV")
    lines = _decode(data.removeprefix(b"\xef\xbb\xbf")[:8192], []).splitlines()
    header = next(csv.reader([lines[0]], delimiter=max(",;\t", key=lines[0].count)), []) if lines else []
    if "email" in roles(header):
        return "csv"
    raise FileError(f"{name} is neither a vCard file nor a CSV file with a header row naming an email column")


def parse(data: bytes, fmt: str) -> Parsed:
    warnings: list[str] = []
    data = data.removeprefix(b"\xef\xbb\xbf")
    entries = _vcards(data, warnings) if fmt == "vcard" else _csv(_decode(data, warnings), warnings)
    return Parsed(fmt, entries, _fewer(warnings))


def _fewer(warnings: list[str]) -> list[str]:
    """Each warning once, and of the lines that were not UTF-8 only the first and how many more."""
    guessed = [w for w in dict.fromkeys(warnings) if "not UTF-8" in w]
    out = [w for w in dict.fromkeys(warnings) if w not in guessed[1:]]
    if len(guessed) > 1:
        out.append(f"{len(guessed) - 1} more line(s) not UTF-8: read as Windows-1252")
    return out


def _decode(data: bytes, warnings: list[str], where: str = "the file") -> str:
    """UTF-8, else Windows-1252 (what Excel and Outlook write on Windows) with a warning; bytes Windows-1252 leaves
    undefined are read as Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        warnings.append(f"{where} is not UTF-8: read as Windows-1252")
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:  # a byte Windows-1252 leaves undefined
        return data.decode("latin-1")


def _count(entries: int) -> None:
    if entries > MAX_ENTRIES:
        raise FileError(f"more than {MAX_ENTRIES} entries: split the file")


# -- vCard ---------------------------------------------------------------------------------------------------


def _physical_lines(data: bytes) -> Iterator[bytes]:
    """The lines of ``data`` (CR LF, LF or CR), one at a time: no list of millions of short lines in memory."""
    start = 0
    for found in re.finditer(rb"\r\n|\n|\r", data):
        yield data[start : found.start()]
        start = found.end()
    yield data[start:]


def _logical_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number, content line) with folds (§3.2), quoted-printable soft line breaks (a value ending in ``=``)
    and vCard 2.1's unindented base64 continuation lines joined; blank lines dropped. A line grows in place: a
    value folded into a million pieces costs no more than one long line."""
    line = bytearray()  # the line being read, which starts at line ``start``
    head: list[bytes] = []  # its name and parameters read so far (up to its colon)
    start = 0
    soft = base64 = named = False
    name = b""
    for number, raw in enumerate(_physical_lines(data), 1):
        if line and soft:
            del line[-1]
            piece = raw
        elif line and base64 and raw.strip() and (raw[:1] in (b" ", b"\t") or b":" not in raw):
            piece = raw.strip()  # Outlook indents base64 by several spaces
        elif line and raw[:1] in (b" ", b"\t"):
            piece = raw[1:]
        elif not raw.strip():
            soft = base64 = False
            continue
        else:
            if line:
                yield start, bytes(line)
            line, head, start, named, piece = bytearray(), [], number, False, raw
        line += piece
        if not named:  # bounded: a name and parameters folded 64 times, or 4 KiB long, are none of these
            head.append(piece.partition(b":")[0][:4096])
            named = b":" in piece or len(head) >= 64
            name = b"".join(head).upper()
        soft = b"QUOTED-PRINTABLE" in name and line.endswith(b"=")
        base64 = b"BASE64" in name
    if line:
        yield start, bytes(line)


def _vcards(data: bytes, warnings: list[str]) -> list[Entry]:
    entries: list[Entry] = []
    current: list[tuple[int, bytes]] | None = None
    number = start = 0
    for count, (line_no, line) in enumerate(_logical_lines(data), 1):
        if count > MAX_LINES:
            raise FileError(f"more than {MAX_LINES} lines: split the file")
        word = line.strip().upper()
        if word == b"BEGIN:VCARD":
            if current is not None:
                raise FileError(f"card {number} (line {start}): BEGIN:VCARD on line {line_no} before its END:VCARD")
            number, start, current = number + 1, line_no, []
        elif word == b"END:VCARD":
            if current is None:
                raise FileError(f"line {line_no}: END:VCARD without a BEGIN:VCARD (after card {number})")
            entries.append(_card(f"card {number} (line {start})", current, warnings))  # its lines let go
            _count(len(entries))
            current = None
        elif current is None:
            raise FileError(f"line {line_no}: text outside a card (after card {number}): not a vCard file")
        else:
            current.append((line_no, line))
    if current is not None:
        raise FileError(f"card {number} (line {start}): the file ends before its END:VCARD")
    if not entries:
        raise FileError("no BEGIN:VCARD in the file: not a vCard file")
    return entries


def _card(where: str, lines: list[tuple[int, bytes]], warnings: list[str]) -> Entry:
    entry = Entry(where)
    versions = [line.partition(b":")[2].strip() for _, line in lines if line.partition(b":")[0].upper() == b"VERSION"]
    source = versions[0].decode("ascii", "replace") if versions else "3.0"
    if source not in ("2.1", "3.0", "4.0"):
        entry.skip = f"vCard {source[:20]!r} is not read: 2.1, 3.0 or 4.0"
        return entry
    out: list[str] = []
    for line_no, raw in lines:
        text = _content_line(raw, source, warnings, f"{where}, line {line_no}")
        if text is not None and text.partition(":")[0].upper() != "VERSION":
            out.append(text)
    if not any(_name(line) == "FN" for line in out):  # 2.1 does not require it; the CRM reads the name from N then
        out.insert(0, "FN:")
    version = "3.0" if source == "2.1" else source
    text = vcard.text(version, out)
    if len(text.encode("utf-8")) > vcard.MAX_CARD and any(_name(line) in _BULKY for line in out):
        text = vcard.text(version, [line for line in out if _name(line) not in _BULKY])
        entry.notes.append(f"photo dropped (the card is over {vcard.MAX_CARD // 1024} KiB with it)")
    return _parsed(entry, text)


def _parsed(entry: Entry, text: str) -> Entry:
    """``entry`` with the card ``text`` parsed as a CardDAV PUT's would be, or why it is skipped."""
    try:
        entry.card = vcard.parse(text.encode("utf-8"))
    except vcard.BadCard as exc:
        entry.skip = str(exc)
        return entry
    if not vcard.fields(entry.card)["addresses"]:
        entry.skip = NO_ADDRESS
    return entry


def _name(line: str) -> str:
    return re.split(r"[;:]", line, maxsplit=1)[0].rpartition(".")[2].upper()


def _content_line(raw: bytes, version: str, warnings: list[str], where: str) -> str | None:
    """One content line as UTF-8 text in 3.0/4.0 form: quoted-printable and CHARSET values decoded, 2.1's bare
    parameters named; None for a line that is none (no colon)."""
    # the first colon outside a quoted parameter value, found as a PUT's card's is: Latin-1 keeps byte offsets
    found, colon, _ = vcard.split_value(raw.decode("latin-1"))
    if not colon:
        return None
    head, value = raw[: len(found)], raw[len(found) + 1 :]
    name, *params = _decode(head, warnings, where).split(";")
    kept, qp, charset = [], False, ""
    for param in params:
        key, equals, val = param.partition("=")
        upper = key.strip().upper()
        if upper == "CHARSET":
            charset = val.strip().strip('"')
        elif (upper == "ENCODING" and val.strip().upper() == "QUOTED-PRINTABLE") or (
            not equals and upper == "QUOTED-PRINTABLE"
        ):
            qp = True
        elif (upper == "ENCODING" and val.strip().upper() == "BASE64") or (not equals and upper == "BASE64"):
            kept.append("ENCODING=b")
        elif not equals and version == "2.1" and upper:
            kept.append(f"TYPE={key.strip()}")
        else:
            kept.append(param)
    if qp:
        value = quopri.decodestring(value)
    text = ""
    if charset and charset.lower().replace("_", "-") not in ("utf-8", "utf8"):
        try:
            text = value.decode(charset)
        except (LookupError, ValueError):  # no such codec, not its bytes, a NUL in its name
            text = _decode(value, warnings, f"{where} (CHARSET={charset[:40]!r})")
    else:
        text = _decode(value, warnings, where)
    if qp:  # decoded line breaks are escaped: a content line holds none
        text = re.sub(r"\r\n|\r|\n", r"\\n", text)
    return ";".join([name, *kept]) + ":" + text


# -- CSV -----------------------------------------------------------------------------------------------------

_ROLES = [
    (
        "email",
        r"e-?mail(?: \d+)?(?: - value| address)?|(?:primary|secondary|other|home|work|business) e-?mail"
        r"(?: address)?|e-?mails|e-?mail addresses|mail|addresses",
    ),
    ("name", r"name|full name|display name|contact name|fn"),
    ("given", r"given name|first name|first|given"),
    ("middle", r"additional name|middle name"),
    ("family", r"family name|last name|surname|last|family"),
    ("company", r"company|company name|organi[sz]ation(?: 1 - name| name)?|org"),
    ("tags", r"tags?|categories|category|labels?|group membership|groups?"),
    ("note", r"notes?|comments?"),
    (
        "phone",
        r"(?:(?:mobile|business|home|work|primary|other|company main|car|cell|assistant's) )?phone"
        r"(?: \d+)?(?: - value)?|(?:mobile|cell|work|home) number|mobile|cell|telephone|tel",
    ),
]
_SPLIT = re.compile(r"\s*(?::::|;|,)\s*")


def roles(header: list[str]) -> list[str]:
    """What each column of a header row holds ("" for a column not read): Google Contacts' ("Name", "Given
    Name", "E-mail 1 - Value", "Organization 1 - Name", "Group Membership"; the newer "First Name", "Labels"),
    Outlook's ("First Name", "E-mail Address", "E-mail 2 Address", "Company", "Categories"), Thunderbird's
    ("Display Name", "Primary Email"), ``relentad contacts export``'s (name, addresses, company, tags, notes) and plain
    names (name, email, company, tags, note, phone); any case, "_" as a space."""
    found = []
    for title in header:
        key = " ".join(title.replace("\ufeff", "").replace("_", " ").casefold().split())
        found.append(next((role for role, pattern in _ROLES if re.fullmatch(pattern, key)), ""))
    return found


def _csv(text: str, warnings: list[str]) -> list[Entry]:
    delimiter = max(",;\t", key=text.split("\n", 1)[0].count)
    csv.field_size_limit(MAX_FILE)  # a huge cell makes its row skipped (a card over 256 KiB), not the file
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    entries: list[Entry] = []
    try:
        header = next(reader, [])
        columns = roles(header)
        if "email" not in columns:
            raise FileError("the CSV header row names no email column (e.g. email, E-mail Address, E-mail 1 - Value)")
        line = reader.line_num + 1
        for row in reader:
            where, line = f"line {line}", reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            entries.append(_row(where, columns, row))
            _count(len(entries))
    except csv.Error as exc:
        raise FileError(f"line {reader.line_num}: not CSV: {exc}") from None
    return entries


def _row(where: str, columns: list[str], row: list[str]) -> Entry:
    values: dict[str, list[str]] = {}
    for role, cell in zip(columns, row, strict=False):
        if role and cell.strip():
            values.setdefault(role, []).append(cell.strip())
    given, middle, family = (" ".join(values.get(role, [])) for role in ("given", "middle", "family"))
    name = " ".join(values.get("name", [])[:1]) or " ".join(part for part in (given, middle, family) if part)
    lines = [f"FN:{escape(name)}"]
    if given or family:
        lines.append(f"N:{escape(family)};{escape(given)};{escape(middle)};;")
    lines += [f"EMAIL;TYPE=INTERNET:{escape(a)}" for cell in values.get("email", []) for a in _SPLIT.split(cell) if a]
    lines += [f"TEL:{escape(p.strip())}" for cell in values.get("phone", []) for p in cell.split(":::") if p.strip()]
    if values.get("company"):
        lines.append(f"ORG:{escape(values['company'][0])}")
    tags = [t for cell in values.get("tags", []) for t in _SPLIT.split(cell) if t and not t.startswith("*")]
    if tags:  # Google's own groups ("* myContacts", "* starred") are not the user's
        lines.append("CATEGORIES:" + ",".join(escape(t) for t in dict.fromkeys(tags)))
    if values.get("note"):
        lines.append(f"NOTE:{escape(chr(10).join(values['note']))}")
    entry = Entry(where)
    text = vcard.text("3.0", lines)
    return _parsed(entry, text)
