"""The age format pieces (relentad.lifecycle.agefile): Bech32 keys (the spec's vector), the STREAM payload's chunk
boundaries and last-chunk flag, and what decryption refuses: a tampered, reordered or truncated chunk, a final
chunk without the flag or an empty one, data after the end, a header that is not canonical or was changed."""

from __future__ import annotations

import hashlib
import hmac
import io

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from relentad.lifecycle import agefile
from relentad.lifecycle.agefile import CHUNK, AgeError, Identity

# the example identity and recipient of the age specification (C2SP age.md, "The X25519 recipient type")
SPEC_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"
FILE_KEY = NONCE = b"\x01" * 16


def encrypt(plain: bytes, identity: Identity) -> bytes:
    sink = io.BytesIO()
    encryptor = agefile.Encryptor(sink, [identity.public()])
    for start in range(0, len(plain), 10_000):  # writes that straddle chunk boundaries
        encryptor.write(plain[start : start + 10_000])
    encryptor.close()
    return sink.getvalue()


def decrypt(sealed: bytes, identity: Identity) -> bytes:
    reader = agefile.Decryptor(io.BytesIO(sealed), [identity])
    out = bytearray()
    while block := reader.read(7_000):
        out += block
    return bytes(out)


@pytest.fixture
def fixed_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file key and payload nonce as known values, so a test can seal chunks (and MACs) of its own."""
    monkeypatch.setattr(agefile.os, "urandom", lambda n: b"\x01" * n)


def header_and_chunks(sealed: bytes) -> tuple[bytes, list[bytes]]:
    end = sealed.index(b"\n---") + 4
    end = sealed.index(b"\n", end) + 1 + 16  # the MAC line, then the payload nonce
    body = sealed[end:]
    return sealed[:end], [body[i : i + CHUNK + 16] for i in range(0, len(body), CHUNK + 16)]


def seal(counter: int, plain: bytes, last: bool) -> bytes:
    key = agefile._hkdf(FILE_KEY, NONCE, b"payload")
    return ChaCha20Poly1305(key).encrypt(agefile._nonce(counter, last), plain, None)


def test_bech32_keys_match_the_spec_vector() -> None:
    identity = Identity.parse(SPEC_IDENTITY)
    assert identity.recipient == SPEC_RECIPIENT and str(identity) == SPEC_IDENTITY
    assert agefile.parse_recipient(SPEC_RECIPIENT) == identity.public()
    generated = Identity.generate()
    assert Identity.parse(str(generated)) == generated and str(generated).startswith("AGE-SECRET-KEY-1")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (SPEC_RECIPIENT[:10] + SPEC_RECIPIENT[10:].upper(), "mixed-case"),
        (SPEC_RECIPIENT[:-1] + "q", "checksum"),
        (SPEC_RECIPIENT.replace("z", "b", 1), "bad character"),
        (SPEC_RECIPIENT.upper(), "not an age X25519 recipient"),  # valid Bech32, but recipients are lowercase
        (SPEC_IDENTITY, "^a secret key"),  # where the public one belongs: said without repeating it (see below)
        (SPEC_IDENTITY.lower(), "^a secret key"),
        ("age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "checksum"),
        # low-order points (all zero; u = 1; a point of order 8): the shared secret would be all zero, so the
        # snapshot could never be encrypted (`age -r` refuses them too: "bad input point: low order point")
        (agefile.bech32_encode("age", bytes(32)), "low-order"),
        (agefile.bech32_encode("age", b"\x01" + bytes(31)), "low-order"),
        (
            agefile.bech32_encode(
                "age", bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
            ),
            "low-order",
        ),
    ],
)
def test_bad_recipients_are_refused(text: str, says: str) -> None:
    with pytest.raises(AgeError, match=says) as refused:
        agefile.parse_recipient(text)
    if "SECRET" in text.upper():  # config check printed it, and the daemon's log kept it
        assert text[20:40].lower() not in str(refused.value).lower()


def test_an_identity_is_only_a_secret_key() -> None:
    with pytest.raises(AgeError, match="not an age X25519 identity"):
        Identity.parse(SPEC_RECIPIENT)
    with pytest.raises(AgeError, match="not an age X25519 identity"):
        Identity.parse(SPEC_IDENTITY.lower())


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5])
def test_round_trip_at_every_chunk_boundary(size: int) -> None:
    identity = Identity.generate()
    plain = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sealed = encrypt(plain, identity)
    chunks = max(1, -(-size // CHUNK))  # a full last chunk is sealed as the last: no empty chunk after it
    assert len(sealed) == len(header_and_chunks(sealed)[0]) + size + 16 * chunks
    assert decrypt(sealed, identity) == plain


def test_two_recipients_either_decrypts_another_key_does_not() -> None:
    first, second, stranger = Identity.generate(), Identity.generate(), Identity.generate()
    sink = io.BytesIO()
    encryptor = agefile.Encryptor(sink, [first.public(), second.public()])
    encryptor.write(b"secret")
    encryptor.close()
    assert decrypt(sink.getvalue(), second) == decrypt(sink.getvalue(), first) == b"secret"
    with pytest.raises(AgeError, match="no identity matches"):
        decrypt(sink.getvalue(), stranger)


def test_changed_truncated_or_reordered_chunks_are_refused() -> None:
    identity = Identity.generate()
    sealed = encrypt(b"a" * (2 * CHUNK + 100), identity)
    header, chunks = header_and_chunks(sealed)
    flipped = bytearray(chunks[1])
    flipped[5] ^= 0x80
    for name, broken in (
        ("a changed byte", header + chunks[0] + bytes(flipped) + chunks[2]),
        ("reordered", header + chunks[1] + chunks[0] + chunks[2]),
        ("the last chunk dropped at a chunk boundary", header + chunks[0] + chunks[1]),
        ("cut inside the last chunk", sealed[:-1]),
        ("data after the end", sealed + b"\x00"),
    ):
        with pytest.raises(AgeError, match="does not authenticate"):
            decrypt(broken, identity)
        assert name
    with pytest.raises(AgeError, match="truncated"):
        decrypt(header, identity)  # no payload at all


def test_the_last_chunk_flag(fixed_keys: None) -> None:
    """A full chunk without the final flag and nothing after it is a truncated file; a final chunk may be full but
    not empty (unless the whole payload is); a final-flagged chunk in the middle is refused."""
    identity = Identity.generate()
    header, _ = header_and_chunks(encrypt(b"", identity))
    full = b"f" * CHUNK
    assert decrypt(header + seal(0, full, last=True), identity) == full
    assert decrypt(header + seal(0, b"", last=True), identity) == b""
    with pytest.raises(AgeError, match="does not authenticate"):
        decrypt(header + seal(0, full, last=False), identity)
    with pytest.raises(AgeError, match="empty last chunk"):
        decrypt(header + seal(0, full, last=False) + seal(1, b"", last=True), identity)
    with pytest.raises(AgeError, match="does not authenticate"):
        decrypt(header + seal(0, full, last=True) + seal(1, b"more", last=True), identity)


def test_header_mac_and_strict_parsing(fixed_keys: None) -> None:
    identity = Identity.generate()
    sealed = encrypt(b"payload", identity)
    header, chunks = header_and_chunks(sealed)
    lines = header[:-16].split(b"\n")  # version, stanza args, stanza body, MAC line, ""
    mac_key = agefile._hkdf(FILE_KEY, b"", b"header")

    def with_mac(*middle: bytes) -> bytes:
        covered = b"\n".join([lines[0], *middle, b"---"])
        mac = agefile._b64(hmac.new(mac_key, covered, hashlib.sha256).digest())
        return covered + b" " + mac + b"\n" + NONCE + b"".join(chunks)

    # an unknown stanza (another recipient type, or grease) is skipped; the MAC covers it
    grease = b"-> example.org/grease x+y\n" + agefile._b64(b"z" * 70)[:64] + b"\n" + b"abc"
    assert decrypt(with_mac(grease, lines[1], lines[2]), identity) == b"payload"
    with pytest.raises(AgeError, match="header MAC mismatch"):  # the same stanza added, the MAC not recomputed
        decrypt(b"\n".join([lines[0], grease, *lines[1:]]) + NONCE + b"".join(chunks), identity)
    for middle, says in (
        ((lines[1], lines[2] + b"="), "bad base64"),  # padding
        ((lines[1], lines[2][:-1] + b"B"), "non-canonical"),  # trailing bits set
        ((lines[1], b"A" * 65), "longer than 64"),
        ((lines[1] + b"  extra", lines[2]), "bad stanza arguments"),  # an empty argument
        ((lines[1] + b" extra", lines[2]), "malformed X25519 stanza"),  # three arguments
        ((), "no stanza"),
    ):
        with pytest.raises(AgeError, match=says):
            decrypt(with_mac(*middle), identity)
    with pytest.raises(AgeError, match=r"not an age-encryption\.org/v1 file"):
        decrypt(b"age-encryption.org/v2\n" + sealed[len(agefile.MAGIC) :], identity)
