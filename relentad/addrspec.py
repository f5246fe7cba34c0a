"""addr-spec syntax (``local@domain``) for envelopes and administration: split, normalise, validate.

Invariants: domains are compared in lower case and as IDNA A-labels, so ``Bücher.example`` and
``xn--bcher-kva.example`` are one domain; local parts keep their case on the wire but are matched in lower case
(what every real mail server does). Anything odd — quoted local parts with '@', source routes, '%' hacks,
trailing dots — is either normalised to something exact or refused; it is never guessed at.
"""

from __future__ import annotations

import re

from .errors import InvalidInput

_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL_ATOM = re.compile(r"^[A-Za-z0-9!#$&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+$")
SUBADDRESS_SEPARATOR = "+"


def normalize_domain(domain: str) -> str:
    """``domain`` in lower case as an A-label; InvalidInput when it is not a host name."""
    text = domain.strip().lower()
    if not text or text.endswith(".") or ".." in text:
        raise InvalidInput(f"not a domain name: {domain!r}")
    try:
        ascii_name = text if text.isascii() else text.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidInput(f"not a domain name: {domain!r}") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise InvalidInput(f"not a domain name: {domain!r}")
    return ascii_name


def split(address: str) -> tuple[str, str]:
    """(local part, normalised domain) of ``local@domain``; InvalidInput for anything else."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local or not domain:
        raise InvalidInput(f"not an email address: {address!r}")
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        local = local[1:-1]
        if not local or '"' in local or "\\" in local or "@" in local:
            raise InvalidInput(f"unsupported quoted local part: {address!r}")
    if not _LOCAL_ATOM.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidInput(f"not an email address: {address!r}")
    if len(local) > 64:
        raise InvalidInput(f"local part too long: {address!r}")
    return local, normalize_domain(domain)


def normalize(address: str) -> str:
    """The canonical form used as a key: lower-case local part @ A-label domain."""
    local, domain = split(address)
    return f"{local.lower()}@{domain}"


def base_address(address: str) -> str | None:
    """``user@d`` for a subaddress ``user+tag@d`` (already normalised), None when there is no tag."""
    local, _, domain = address.rpartition("@")
    base, sep, _tag = local.partition(SUBADDRESS_SEPARATOR)
    if not sep or not base:
        return None
    return f"{base}@{domain}"
