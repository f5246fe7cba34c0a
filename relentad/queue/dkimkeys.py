"""DKIM private keys on disk, per domain, and the signing of outgoing mail with them.

Layout under the data folder (made by ``relentad dkim generate``)::

    dkim/<domain>/<selector>.pem            RSA-2048 key (PEM)
    dkim/<domain>/<selector>-ed25519.pem    optional ed25519 key for dual signing (RFC 8463)
    dkim/<domain>/selector                  the selector in use (one line)
    dkim/<domain>/pending                   a newer key made but not in use yet (its DNS record may not exist)
    dkim/<domain>/previous                  the key in use before, until retired (mail it signed may be queued)

Key rotation: the first key of a domain is in use at once; a later one is *pending* until ``activate`` (after its
DNS record is published), which makes the old one *previous*; ``retire`` forgets the previous one (its key file
stays). ``relentad domain dns`` lists all three, so no record is withdrawn while mail signed with it is in flight.

Invariants: keys are written mode 600 and never overwritten (a new key means a new selector, so the old DNS
record keeps verifying mail in flight); the daemon re-reads a domain's keys when its ``selector`` file changes,
so a key activated by the CLI is used without a restart; signing is CPU-bound and runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import addrspec, mailauth
from ..atomicfile import write_atomic
from ..errors import AlreadyExists, InvalidInput, NotFound
from . import dkim

_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
SELECTOR_FILE = "selector"
PENDING_FILE = "pending"
PREVIOUS_FILE = "previous"


@dataclass(frozen=True)
class DomainKeys:
    domain: str
    selector: str
    rsa: bytes
    ed25519: bytes | None = None

    def sign(self, raw: bytes) -> bytes:
        """The DKIM-Signature field(s) for ``raw`` (CPU-bound)."""
        return dkim.sign(
            raw,
            self.domain,
            self.selector,
            self.rsa,
            ed25519_key=self.ed25519,
            ed25519_selector=dkim.default_ed25519_selector(self.selector) if self.ed25519 else None,
        )


def folder(data_dir: Path, domain: str) -> Path:
    return data_dir / "dkim" / addrspec.normalize_domain(domain)


def _write_private(path: Path, pem: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _check_selector(selector: str) -> None:
    if not _SELECTOR.match(selector):
        raise InvalidInput(f"not a DKIM selector: {selector!r} (letters, digits and '-')")


def _read_pointer(where: Path, file: str) -> str | None:
    try:
        return (where / file).read_text(encoding="ascii").strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def _write_pointer(where: Path, file: str, selector: str) -> None:
    write_atomic(where / file, (selector + "\n").encode("ascii"))


def _make_active(where: Path, selector: str) -> None:
    """``selector`` in use; the one in use until now becomes the previous one (written first: never unlisted)."""
    current = _read_pointer(where, SELECTOR_FILE)
    if current is not None and current != selector:
        _write_pointer(where, PREVIOUS_FILE, current)
    _write_pointer(where, SELECTOR_FILE, selector)
    if _read_pointer(where, PENDING_FILE) == selector:
        (where / PENDING_FILE).unlink()


def generate(data_dir: Path, domain: str, selector: str, *, ed25519: bool = False, activate: bool = False) -> list[str]:
    """Make and store new keys for ``domain`` under ``selector``; the zone lines.

    The key is in use at once when the domain has no key yet or with ``activate``; otherwise it is pending until
    :func:`activate` (its DNS record must be published first, or receivers cannot verify the signatures).
    """
    name = addrspec.normalize_domain(domain)
    _check_selector(selector)
    where = folder(data_dir, name)
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    rsa_path = where / f"{selector}.pem"
    ed_selector = dkim.default_ed25519_selector(selector)
    ed_path = where / f"{ed_selector}.pem"
    if rsa_path.exists() or (ed25519 and ed_path.exists()):
        raise AlreadyExists(f"a DKIM key with selector {selector} exists for {name}; choose another --selector")
    pem, _ = dkim.generate_key("rsa")
    _write_private(rsa_path, pem)
    lines = [dkim.zone_line(selector, name, pem)]
    if ed25519:
        ed_pem, _ = dkim.generate_key("ed25519")
        _write_private(ed_path, ed_pem)
        lines.append(dkim.zone_line(ed_selector, name, ed_pem))
    if activate or _read_pointer(where, SELECTOR_FILE) is None:
        _make_active(where, selector)
    else:
        _write_pointer(where, PENDING_FILE, selector)
    return lines


def activate(data_dir: Path, domain: str, selector: str) -> str | None:
    """Sign ``domain``'s mail with the key of ``selector`` from now on; the selector it replaces (now previous)."""
    name = addrspec.normalize_domain(domain)
    _check_selector(selector)
    where = folder(data_dir, name)
    if not (where / f"{selector}.pem").exists():
        raise NotFound(f"no DKIM key with selector {selector} for {name} (relentad dkim generate {name})")
    current = _read_pointer(where, SELECTOR_FILE)
    if current == selector:
        raise InvalidInput(f"the DKIM key {selector} of {name} is already in use")
    _make_active(where, selector)
    return current


def retire(data_dir: Path, domain: str) -> str:
    """Stop listing ``domain``'s previous key (its mail has been delivered); the selector retired."""
    name = addrspec.normalize_domain(domain)
    where = folder(data_dir, name)
    previous = _read_pointer(where, PREVIOUS_FILE)
    if previous is None:
        raise NotFound(f"{name} has no previous DKIM key to retire")
    (where / PREVIOUS_FILE).unlink()
    return previous


def load_selector(data_dir: Path, domain: str, selector: str) -> DomainKeys | None:
    """The keys stored for ``domain`` under ``selector``, None when there are none."""
    try:
        name = addrspec.normalize_domain(domain)
    except InvalidInput:
        return None
    if not _SELECTOR.match(selector):
        return None
    where = folder(data_dir, name)
    try:
        rsa = (where / f"{selector}.pem").read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    ed_path = where / f"{dkim.default_ed25519_selector(selector)}.pem"
    return DomainKeys(name, selector, rsa, ed_path.read_bytes() if ed_path.exists() else None)


def load(data_dir: Path, domain: str) -> DomainKeys | None:
    """The keys in use for ``domain``, None when it has none."""
    try:
        name = addrspec.normalize_domain(domain)
    except InvalidInput:
        return None
    selector = _read_pointer(folder(data_dir, name), SELECTOR_FILE)
    return None if selector is None else load_selector(data_dir, name, selector)


def rotation(data_dir: Path, domain: str) -> tuple[DomainKeys | None, DomainKeys | None]:
    """``domain``'s pending and previous keys (each None when there is none)."""
    name = addrspec.normalize_domain(domain)
    where = folder(data_dir, name)
    found: list[DomainKeys | None] = []
    for file in (PENDING_FILE, PREVIOUS_FILE):
        selector = _read_pointer(where, file)
        found.append(None if selector is None else load_selector(data_dir, name, selector))
    return found[0], found[1]


class KeyRing:
    """The daemon's view of the keys: loaded once per domain, re-read when the selector file changes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._cache: dict[str, tuple[float | None, DomainKeys | None]] = {}

    def get(self, domain: str) -> DomainKeys | None:
        try:
            name = addrspec.normalize_domain(domain)
        except InvalidInput:
            return None
        try:
            stamp: float | None = (folder(self.data_dir, name) / SELECTOR_FILE).stat().st_mtime
        except OSError:
            stamp = None
        cached = self._cache.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        keys = load(self.data_dir, name) if stamp is not None else None
        self._cache[name] = (stamp, keys)
        return keys

    def aligned(self, domain: str) -> DomainKeys | None:
        """The keys for mail From ``domain`` that this server writes itself (reports from MAILER-DAEMON@<hostname>):
        ``domain``'s own, else the nearest parent's up to the organisational domain, whose signature DMARC's relaxed
        alignment (RFC 7489 §3.1.1, the default) accepts: mail from mx.example.org signed as example.org."""
        name = domain.lower().rstrip(".")
        top = mailauth.organizational_domain(name)
        while True:
            keys = self.get(name)
            if keys is not None or name == top or "." not in name:
                return keys
            name = name.split(".", 1)[1]

    async def sign(self, raw: bytes, domain: str, *, aligned: bool = False) -> bytes:
        """``raw`` with DKIM-Signature field(s) prepended when ``domain`` has a key (or, with ``aligned``, a parent
        domain in its alignment: :meth:`aligned`), else ``raw`` unchanged."""
        keys = self.aligned(domain) if aligned else self.get(domain)
        if keys is None:
            return raw
        signature = await asyncio.to_thread(keys.sign, raw)
        return signature + raw
