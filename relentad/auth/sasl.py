"""SASL PLAIN (RFC 4616) as IMAP, ManageSieve and POP3 receive it: base64, then authzid NUL authcid NUL password.

Pure decoding, one set of rules and messages for the three: each protocol turns :class:`SaslError` into its own
reply (IMAP BAD or NO, ManageSieve NO, POP3 -ERR). SMTP's submission keeps its own (aiosmtpd hands it the answer).
"""

from __future__ import annotations

import base64
import binascii


class SaslError(Exception):
    """A malformed answer; ``authorization``: well-formed, but it asks to act as another user."""

    def __init__(self, text: str, *, authorization: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.authorization = authorization


def decode_base64(answer: bytes | str) -> bytes:
    """The client's base64 answer, strictly (no stray characters)."""
    try:
        return base64.b64decode(answer, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError("the SASL response is not valid base64") from None


def plain(response: bytes) -> tuple[str, str]:
    """(authcid, password) of a decoded PLAIN response; an authzid other than the authcid (case aside) is refused."""
    parts = response.split(b"\0")
    if len(parts) != 3:
        raise SaslError("a PLAIN response is authzid NUL authcid NUL password")
    try:
        authzid, authcid, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError:
        raise SaslError("PLAIN credentials must be UTF-8") from None
    if authzid and authzid.lower() != authcid.lower():
        raise SaslError("acting as another user is not allowed", authorization=True)
    return authcid, password
