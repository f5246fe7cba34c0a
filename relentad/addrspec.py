"""addr-spec syntax (``local@domain``) for envelopes and administration: split, normalise, validate.

Invariants: domains are compared in lower case and as IDNA A-labels, so ``Bücher.example`` and
``xn--bcher-kva.example`` are one domain; local parts keep their case on the wire but are matched in lower case
and in Unicode NFC (what every real mail server does; an NFD ``müller`` is the NFC one). A quoted local part
(RFC 5321 §4.1.2) is valid in an envelope and comes out in one canonical form: bare when its content is a
dot-atom (``"alice"`` is ``alice``), else quoted with only ``\\`` and ``"`` escaped. Anything odd — source routes,
'%' hacks, trailing dots — is either normalised to something exact or refused; it is never guessed at.
"""

from __future__ import annotations

import re
import unicodedata

import idna

from .errors import InvalidInput

_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_ASCII_LABEL = re.compile(r"^[^.\s]+$")
_LOCAL_ATOM = re.compile(r"^[A-Za-z0-9!#$&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+$")
# RFC 5321 §4.1.2 Quoted-string: qtextSMTP (and UTF-8, RFC 6531) or quoted-pairSMTP ("\\" and a printable)
_QUOTED_LOCAL = re.compile(r'^"((?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])+)"$')
_QUOTED_PAIR = re.compile(r"\\([\x20-\x7e])")
SUBADDRESS_SEPARATOR = "+"


def normalize_domain(domain: str) -> str:
    """``domain`` in lower case as A-labels (:func:`a_label`); InvalidInput when it is not a host name."""
    text = domain.strip().lower()
    if not text or text.endswith(".") or ".." in text:
        raise InvalidInput(f"not a domain name: {domain!r}")
    ascii_name = a_label(text)
    if ascii_name is None or len(ascii_name) > 253 or not all(map(_DOMAIN_LABEL.match, ascii_name.split("."))):
        raise InvalidInput(f"not a domain name: {domain!r}")
    return ascii_name


def a_label(domain: str) -> str | None:
    """``domain`` with its non-ASCII labels as A-labels, by UTS #46 non-transitional processing (IDNA 2008, what
    browsers and current MTAs do), or None when a label has none. The one rule for every domain relentad reads:
    administration, envelopes (SPF, RFC 7208 §4.3), From (DMARC), links (DNSBL).

    A label is mapped to lower case and its compatibility forms (NFKC: fullwidth ``Ｂ`` is ``b``), but ``ß`` and
    ``ς`` stay what they are: ``faß`` is ``xn--fa-hia``, never IDNA 2003's ``fass``, another domain. Only ``.``
    separates labels (``。`` and other dots IDNA 2003 splits at are no dots in an SMTP domain); an absolute name
    keeps its final dot; ASCII labels are left as they are."""
    labels = domain.split(".")
    trailing = "." if len(labels) > 1 and not labels[-1] else ""
    converted: list[str] = []
    for label in labels[:-1] if trailing else labels:
        ace = label if label.isascii() else _a_label(label)
        if ace is None or not 0 < len(ace) <= 63:
            return None
        converted.append(ace)
    return ".".join(converted) + trailing


def _a_label(label: str) -> str | None:
    """One non-ASCII label by the ``idna`` package (the reference IDNA 2008 implementation: PVALID code points,
    Bidi and joiner rules, RFC 5891 hyphen rules), after its UTS #46 mapping without the final-sigma rule."""
    try:
        mapped = idna.uts46_remap(label, std3_rules=True, transitional=False)
        if "." in mapped:  # a fullwidth or ideographic full stop: no label separator in an SMTP domain
            return None
        if mapped.isascii():  # fullwidth ASCII and the like: the ASCII label it stands for
            return mapped if mapped and _ASCII_LABEL.match(mapped) else None
        return idna.alabel(mapped).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


MAX_LOCAL = 64  # RFC 5321 §4.5.3.1.1
MAX_PATH = 256  # RFC 5321 §4.5.3.1.3: a reverse- or forward-path, angle brackets included


def split(address: str, max_local: int = MAX_LOCAL) -> tuple[str, str]:
    """(local part, normalised domain) of ``local@domain``; InvalidInput for anything else (a local part over
    ``max_local`` octets too)."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local or not domain:
        raise InvalidInput(f"not an email address: {address!r}")
    if local.startswith('"'):
        local = _unquoted(local, address)
    elif not _is_dot_atom(local):
        raise InvalidInput(f"not an email address: {address!r}")
    if len(local) > max_local:
        raise InvalidInput(f"local part too long: {address!r}")
    return local, normalize_domain(domain)


def split_path(address: str) -> tuple[str, str]:
    """:func:`split` for a reverse-path, whose local part may pass 64 octets up to the 256-octet path (RFC 5321
    §4.5.3.1: a forwarder's SRS sender often does), and for what an SRS address of ours decodes to."""
    if len(address.strip()) > MAX_PATH - 2:
        raise InvalidInput(f"path too long: {address[:64]!r}…")
    return split(address, max_local=MAX_PATH)


def _is_dot_atom(local: str) -> bool:
    return bool(_LOCAL_ATOM.match(local)) and not (local.startswith(".") or local.endswith(".") or ".." in local)


def _unquoted(local: str, address: str) -> str:
    """A quoted local part in its canonical form: the bare content when it is a dot-atom, else re-quoted."""
    match = _QUOTED_LOCAL.match(local)
    if match is None:
        raise InvalidInput(f"not an email address: {address!r}")
    content = _QUOTED_PAIR.sub(r"\1", match[1])
    if _is_dot_atom(content):
        return content
    return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_quoted(local: str) -> bool:
    """``local`` (as :func:`split` returns it) is a quoted string: never an account's or alias's name."""
    return local.startswith('"')


def normalize(address: str) -> str:
    """The canonical form used as a key: NFC lower-case local part @ A-label domain."""
    local, domain = split(address)
    return f"{unicodedata.normalize('NFC', local).lower()}@{domain}"


def base_address(address: str) -> str | None:
    """``user@d`` for a subaddress ``user+tag@d`` (already normalised), None when there is no tag."""
    local, _, domain = address.rpartition("@")
    base, sep, _tag = local.partition(SUBADDRESS_SEPARATOR)
    if not sep or not base or is_quoted(local):
        return None
    return f"{base}@{domain}"
