"""The age file format (age-encryption.org/v1, C2SP age.md) with X25519 recipients, for encrypted backups.

Why our own: a backup must be readable with the standard ``age`` tool anywhere (``age -d -i key.txt``), and the
format is small enough to build on ``cryptography``'s primitives (X25519, HKDF-SHA-256, HMAC-SHA-256,
ChaCha20-Poly1305) instead of shelling out.

Invariants:
- Streaming: the payload is encrypted and decrypted 64 KiB at a time (:data:`CHUNK`); nothing holds a whole file.
- Each file has a fresh 16-byte file key, a fresh 16-byte payload nonce and one fresh ephemeral X25519 share per
  recipient stanza; the header MAC covers the header up to ``---``.
- Decryption trusts nothing before it is authenticated: the header is parsed strictly (canonical unpadded
  base64, 64-column stanza bodies, an X25519 body of exactly 32 bytes), the file key must pass the header MAC,
  and every chunk its Poly1305 tag. The last chunk carries the final flag; a file that ends without one, has data
  after it, or has an empty last chunk (but for an empty payload) is refused (:class:`AgeError`, one line).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import RelentadError

MAGIC = b"age-encryption.org/v1\n"
CHUNK = 64 * 1024
TAG = 16
X25519_LABEL = b"age-encryption.org/v1/X25519"
RECIPIENT_HRP, IDENTITY_HRP = "age", "age-secret-key-"
MAX_HEADER = 64 * 1024  # far above what any number of stanzas we would accept needs; bounds a hostile file


class AgeError(RelentadError):
    """An age key or file that cannot be used: malformed, for another key, tampered with or truncated."""


# --- Bech32 (BIP 173, without its 90-character limit, as age uses it) ------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Iterable[int]) -> int:
    check = 1
    for value in values:
        top = check >> 25
        check = (check & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            check ^= gen if (top >> i) & 1 else 0
    return check


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup(data: Iterable[int], source: int, target: int, pad: bool) -> list[int] | None:
    acc = bits = 0
    out = []
    for value in data:
        acc = (acc << source) | value
        bits += source
        while bits >= target:
            bits -= target
            out.append((acc >> bits) & ((1 << target) - 1))
    if pad and bits:
        out.append((acc << (target - bits)) & ((1 << target) - 1))
    elif not pad and (bits >= source or (acc << (target - bits)) & ((1 << target) - 1)):
        return None  # more than 4 bits of padding, or padding that is not zero: not canonical
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    words = _regroup(data, 8, 5, pad=True) or []
    checksum = _polymod([*_hrp_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    tail = [(checksum >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words + tail)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """(hrp, data) of an all-lowercase or all-uppercase Bech32 string (the hrp lowercased); AgeError otherwise."""
    if text.lower() != text and text.upper() != text:
        raise AgeError("mixed-case Bech32 string")
    lowered = text.lower()
    hrp, sep, rest = lowered.rpartition("1")
    if not sep or not hrp or len(rest) < 6 or any(not 33 <= ord(c) <= 126 for c in hrp):
        raise AgeError("not a Bech32 string")
    if any(c not in _CHARSET for c in rest):
        raise AgeError("not a Bech32 string (bad character)")
    words = [_CHARSET.index(c) for c in rest]
    if _polymod([*_hrp_expand(hrp), *words]) != 1:
        raise AgeError("Bech32 checksum mismatch")
    data = _regroup(words[:-6], 5, 8, pad=False)
    if data is None:
        raise AgeError("not a Bech32 string (bad padding)")
    return hrp, bytes(data)


# --- keys ------------------------------------------------------------------------------------------------------


def parse_recipient(text: str) -> bytes:
    """The 32-byte X25519 public key of an ``age1…`` recipient; AgeError naming what is wrong (a secret key is
    never repeated: the message goes to the terminal and the daemon's log)."""
    if text.strip().upper().startswith(IDENTITY_HRP.upper()):
        raise AgeError("a secret key (AGE-SECRET-KEY-1…) where its public key (age1…) belongs: remove it from here")
    try:
        hrp, key = bech32_decode(text.strip())
    except AgeError as exc:
        raise AgeError(f"{text!r} is not an age recipient ({exc})") from None
    if hrp != RECIPIENT_HRP or len(key) != 32 or text.strip() != text.strip().lower():
        raise AgeError(f"{text!r} is not an age X25519 recipient (age1…)")
    try:  # a low-order point gives every sender the all-zero shared secret; age refuses to encrypt to it too
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(key))
    except ValueError:
        raise AgeError(f"{text!r} is a low-order X25519 point, not a public key") from None
    return key


@dataclass(frozen=True)
class Identity:
    """An X25519 identity (``AGE-SECRET-KEY-1…``)."""

    secret: bytes

    @classmethod
    def generate(cls) -> Identity:
        return cls(os.urandom(32))

    @classmethod
    def parse(cls, text: str) -> Identity:
        try:
            hrp, secret = bech32_decode(text.strip())
        except AgeError as exc:
            raise AgeError(f"not an age identity ({exc})") from None
        if hrp != IDENTITY_HRP or len(secret) != 32 or text.strip() != text.strip().upper():
            raise AgeError("not an age X25519 identity (AGE-SECRET-KEY-1…)")
        return cls(secret)

    def __str__(self) -> str:
        return bech32_encode(IDENTITY_HRP, self.secret).upper()

    def public(self) -> bytes:
        return X25519PrivateKey.from_private_bytes(self.secret).public_key().public_bytes_raw()

    @property
    def recipient(self) -> str:
        return bech32_encode(RECIPIENT_HRP, self.public())


def read_identities(path: Path) -> list[Identity]:
    """The identities of a key file as ``age-keygen`` writes it (``#`` comments, one key a line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgeError(f"{path}: cannot read identity file ({getattr(exc, 'strerror', None) or exc})") from None
    found = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found.append(Identity.parse(line))
        except AgeError as exc:
            raise AgeError(f"{path} line {number}: {exc}") from None
    if not found:
        raise AgeError(f"{path}: no age identity (AGE-SECRET-KEY-1…) in it")
    return found


# --- primitives ------------------------------------------------------------------------------------------------


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    """Canonical unpadded base64 only (the spec: reject padding and non-canonical trailing bits)."""
    if b"=" in text or len(text) % 4 == 1:
        raise AgeError("malformed header (bad base64)")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise AgeError("malformed header (bad base64)") from None
    if _b64(data) != text:
        raise AgeError("malformed header (non-canonical base64)")
    return data


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


# --- encryption ------------------------------------------------------------------------------------------------


def _x25519_stanza(file_key: bytes, recipient: bytes) -> bytes:
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    wrap_key = _hkdf(shared, share + recipient, X25519_LABEL)
    body = ChaCha20Poly1305(wrap_key).encrypt(bytes(12), file_key, None)
    return b"-> X25519 " + _b64(share) + b"\n" + _body_lines(_b64(body))


def _body_lines(encoded: bytes) -> bytes:
    """A stanza body wrapped at 64 columns; its last line is shorter than 64 (empty when it would be full)."""
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")
    return b"".join(line + b"\n" for line in lines)


class Encryptor(io.RawIOBase):
    """A writable stream that encrypts what is written to ``sink`` as an age file; :meth:`close` writes the last
    chunk (it does not close ``sink``)."""

    def __init__(self, sink: IO[bytes], recipients: list[bytes]) -> None:
        super().__init__()
        if not recipients:
            raise AgeError("no recipients")
        self._sink = sink
        file_key = os.urandom(16)
        header = MAGIC + b"".join(_x25519_stanza(file_key, r) for r in recipients) + b"---"
        mac = hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()
        nonce = os.urandom(16)
        sink.write(header + b" " + _b64(mac) + b"\n" + nonce)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._buffer = bytearray()
        self._counter = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a closed age stream")
        self._buffer += data
        # keep at least one byte back: the final chunk must be known as final when it is sealed
        while len(self._buffer) > CHUNK:
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def _seal(self, chunk: bytes, last: bool) -> None:
        self._sink.write(self._aead.encrypt(_nonce(self._counter, last), chunk, None))
        self._counter += 1

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._buffer), last=True)  # empty only when the whole payload is
            self._buffer.clear()
        super().close()


def encrypt_file(source: Path, target: Path, recipients: list[bytes]) -> None:
    with source.open("rb") as src, target.open("wb") as dst:
        encryptor = Encryptor(dst, recipients)
        while block := src.read(CHUNK):
            encryptor.write(block)
        encryptor.close()


# --- decryption ------------------------------------------------------------------------------------------------


ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"


def is_age(path: Path) -> bool:
    """Whether ``path`` is a binary age file; AgeError for an ASCII-armored one (``age -a``), which restore does
    not read (``age -d`` it first)."""
    with path.open("rb") as handle:
        start = handle.read(len(ARMOR))
    if start == ARMOR:
        raise AgeError(f"{path}: an ASCII-armored age file (age -a): decrypt it with age -d first")
    return start.startswith(MAGIC)


def _read_header(source: IO[bytes]) -> tuple[list[tuple[list[bytes], bytes]], bytes, bytes]:
    """(stanzas as (args, body), the header bytes the MAC covers, the MAC) of an age v1 file."""
    covered = bytearray()

    def line() -> bytes:
        text = source.readline(MAX_HEADER)
        if not text.endswith(b"\n"):
            raise AgeError("truncated or malformed header")
        covered.extend(text)
        if len(covered) > MAX_HEADER:
            raise AgeError("header too long")
        return text[:-1]

    if line() + b"\n" != MAGIC:
        raise AgeError("not an age-encryption.org/v1 file")
    stanzas: list[tuple[list[bytes], bytes]] = []
    current = line()
    while current.startswith(b"-> "):
        args = current[3:].split(b" ")
        if not args or any(not a or any(not 33 <= c <= 126 for c in a) for a in args):
            raise AgeError("malformed header (bad stanza arguments)")
        body = bytearray()
        while True:
            body_line = line()
            if len(body_line) > 64:
                raise AgeError("malformed header (stanza line longer than 64 columns)")
            body += body_line
            if len(body_line) < 64:
                break
        stanzas.append((args, _unb64(bytes(body))))
        current = line()
    if not current.startswith(b"--- ") or not stanzas:
        raise AgeError("malformed header (no stanza or no MAC line)")
    mac = _unb64(current[4:])
    del covered[-(len(current) + 1) + 3 :]  # the MAC covers the header up to and including "---"
    if len(mac) != 32:
        raise AgeError("malformed header (bad MAC length)")
    return stanzas, bytes(covered), mac


def _unwrap(stanzas: list[tuple[list[bytes], bytes]], identities: list[Identity]) -> bytes | None:
    for args, body in stanzas:
        if args[0] != b"X25519":
            continue  # another recipient type (or grease): not ours to read
        if len(args) != 2:
            raise AgeError("malformed X25519 stanza")
        share = _unb64(args[1])
        if len(share) != 32 or len(body) != 32:
            raise AgeError("malformed X25519 stanza")
        for identity in identities:
            secret = X25519PrivateKey.from_private_bytes(identity.secret)
            try:
                shared = secret.exchange(X25519PublicKey.from_public_bytes(share))
            except ValueError:  # an all-zero shared secret (a low-order share): the spec says abort
                raise AgeError("malformed X25519 stanza (low-order share)") from None
            wrap_key = _hkdf(shared, share + identity.public(), X25519_LABEL)
            try:
                return ChaCha20Poly1305(wrap_key).decrypt(bytes(12), body, None)
            except InvalidTag:
                continue
    return None


class Decryptor(io.RawIOBase):
    """A readable stream of the plaintext of the age file ``source``; the header is checked when it is made."""

    def __init__(self, source: IO[bytes], identities: list[Identity]) -> None:
        super().__init__()
        stanzas, covered, mac = _read_header(source)
        file_key = _unwrap(stanzas, identities)
        if file_key is None:
            raise AgeError("no identity matches this file (encrypted to another key)")
        expected = hmac.new(_hkdf(file_key, b"", b"header"), covered, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, mac):
            raise AgeError("header MAC mismatch: the file was tampered with")
        nonce = source.read(16)
        if len(nonce) != 16:
            raise AgeError("truncated file (no payload)")
        self._source = source
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._counter = 0
        self._pending = source.read(CHUNK + TAG)
        self._plain = b""
        self._offset = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        sealed = self._pending
        self._pending = self._source.read(CHUNK + TAG) if len(sealed) == CHUNK + TAG else b""
        last = not self._pending
        if len(sealed) < TAG or (last and len(sealed) == TAG and self._counter > 0):
            raise AgeError("truncated file (no final chunk)" if len(sealed) < TAG else "empty last chunk")
        try:
            self._plain = self._aead.decrypt(_nonce(self._counter, last), sealed, None)
            self._offset = 0
        except InvalidTag:
            what = "the file was tampered with or truncated"
            raise AgeError(f"chunk {self._counter} does not authenticate: {what}") from None
        self._counter += 1
        self._done = last

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._offset == len(self._plain) and not self._done:
            self._next_chunk()
        count = min(len(buffer), len(self._plain) - self._offset)
        buffer[:count] = self._plain[self._offset : self._offset + count]
        self._offset += count
        return count
