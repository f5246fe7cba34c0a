"""JSON Web Signatures for ACME requests (RFC 8555 §6.2, RFC 7515): flattened JSON serialization, ES256 or RS256.

Pure functions over ``cryptography`` keys; nothing here does I/O. The account key is ECDSA P-256 (ES256) unless an
RSA one was stored; the JWK thumbprint (RFC 7638) goes into every key authorization (RFC 8555 §8.1).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

AccountKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(value: int, length: int | None = None) -> bytes:
    return value.to_bytes(length or max(1, (value.bit_length() + 7) // 8), "big")


def jwk(key: AccountKey) -> dict[str, str]:
    """The public key as a JWK with only the required members, in RFC 7638's lexicographic order."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url(_int_bytes(numbers.x, 32)),
            "y": b64url(_int_bytes(numbers.y, 32)),
        }
    public = key.public_key().public_numbers()
    return {"e": b64url(_int_bytes(public.e)), "kty": "RSA", "n": b64url(_int_bytes(public.n))}


def jwk_thumbprint(public: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of a public JWK's required members, base64url."""
    canonical = json.dumps(public, sort_keys=True, separators=(",", ":")).encode()
    return b64url(hashlib.sha256(canonical).digest())


def thumbprint(key: AccountKey) -> str:
    return jwk_thumbprint(jwk(key))


def key_authorization(token: str, key: AccountKey) -> str:
    """What a challenge proves: ``token.thumbprint`` (RFC 8555 §8.1)."""
    return f"{token}.{thumbprint(key)}"


def algorithm(key: AccountKey) -> str:
    return "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"


def sign(key: AccountKey, data: bytes) -> bytes:
    """The JWS signature of ``data``: ES256 as the raw 64-octet r||s (RFC 7518 §3.4), not DER; RS256 PKCS#1 v1.5."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return _int_bytes(r, 32) + _int_bytes(s, 32)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def request(key: AccountKey, url: str, nonce: str, payload: Any, kid: str | None = None) -> bytes:
    """The body of an ACME POST: ``payload`` None is POST-as-GET (empty payload, RFC 8555 §6.3); with ``kid``
    the account URL names the key, else the JWK itself (newAccount, revocation by certificate key)."""
    protected: dict[str, Any] = {"alg": algorithm(key), "nonce": nonce, "url": url}
    if kid:
        protected["kid"] = kid
    else:
        protected["jwk"] = jwk(key)
    protected_b64 = b64url(json.dumps(protected, separators=(",", ":")).encode())
    payload_b64 = "" if payload is None else b64url(json.dumps(payload, separators=(",", ":")).encode())
    signature = sign(key, f"{protected_b64}.{payload_b64}".encode("ascii"))
    return json.dumps({"protected": protected_b64, "payload": payload_b64, "signature": b64url(signature)}).encode()


def new_key(key_type: str) -> AccountKey:
    """A fresh private key: ``ec256`` or ``rsaBITS`` (config.ACME_KEY_TYPES)."""
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.removeprefix("rsa")))


def key_pem(key: AccountKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> AccountKey:
    """A stored private key; ValueError when it is not an EC P-256 or RSA key."""
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    raise ValueError("not an ECDSA P-256 or RSA key")
