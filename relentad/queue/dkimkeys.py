"""DKIM private keys on disk, per domain, and the signing of outgoing mail with them.

Layout under the data folder (made by ``relentad dkim generate``)::

    dkim/<domain>/<selector>.pem            RSA-2048 key (PEM)
    dkim/<domain>/<selector>-ed25519.pem    optional ed25519 key for dual signing (RFC 8463)
    dkim/<domain>/selector                  the selector in use (one line)

Invariants: keys are written mode 600 and never overwritten (a new key means a new selector, so the old DNS
record keeps verifying mail in flight); the daemon re-reads a domain's keys when its ``selector`` file changes,
so a key made by the CLI is used without a restart; signing is CPU-bound and runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import addrspec
from ..errors import AlreadyExists, InvalidInput
from . import dkim

_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
SELECTOR_FILE = "selector"


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


def generate(data_dir: Path, domain: str, selector: str, *, ed25519: bool = False) -> list[str]:
    """Make and store new keys for ``domain`` under ``selector``, make it the one in use; the zone lines."""
    name = addrspec.normalize_domain(domain)
    if not _SELECTOR.match(selector):
        raise InvalidInput(f"not a DKIM selector: {selector!r} (letters, digits and '-')")
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
    temporary = where / f".{SELECTOR_FILE}.tmp"
    temporary.write_text(selector + "\n", encoding="ascii")
    temporary.replace(where / SELECTOR_FILE)
    return lines


def load(data_dir: Path, domain: str) -> DomainKeys | None:
    """The keys in use for ``domain``, None when it has none."""
    try:
        name = addrspec.normalize_domain(domain)
    except InvalidInput:
        return None
    where = folder(data_dir, name)
    try:
        selector = (where / SELECTOR_FILE).read_text(encoding="ascii").strip()
        rsa = (where / f"{selector}.pem").read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    ed_path = where / f"{dkim.default_ed25519_selector(selector)}.pem"
    return DomainKeys(name, selector, rsa, ed_path.read_bytes() if ed_path.exists() else None)


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

    async def sign(self, raw: bytes, domain: str) -> bytes:
        """``raw`` with DKIM-Signature field(s) prepended when ``domain`` has a key, else ``raw`` unchanged."""
        keys = self.get(domain)
        if keys is None:
            return raw
        signature = await asyncio.to_thread(keys.sign, raw)
        return signature + raw
