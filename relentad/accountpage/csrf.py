"""Cross-site request forgery defence for the account pages' forms (OWASP's "signed double-submit" minus the
cookie: Basic auth has none; the login form's session cookie is ``SameSite=Strict`` besides).

A form carries a token: the time it was made and an HMAC-SHA256 over (account id, time) under a server secret,
so it is good for one account and :data:`MAX_AGE` seconds, and another site cannot make one (it cannot read our
pages, the same-origin policy). The secret is 32 random octets in ``<data_dir>/web-secret`` (mode 0600, made on
first use), so tokens survive a restart and never leave the server. A POST must also not come from another
origin as far as the browser says (:func:`cross_origin`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from pathlib import Path

from ..atomicfile import write_atomic
from ..httpserver import Request

MAX_AGE = 4 * 3600  # a form left open this long must be loaded again
_SECRET_SIZE = 32


def load_secret(path: Path) -> bytes:
    """The secret in ``path``, made (atomically, 0600) when there is none or it is unreadable as one."""
    try:
        data = path.read_bytes()
        if len(data) == _SECRET_SIZE:
            return data
    except FileNotFoundError:
        pass
    data = secrets.token_bytes(_SECRET_SIZE)
    write_atomic(path, data, 0o600)
    return data


def _mac(secret: bytes, account_id: int, made: int) -> bytes:
    return hmac.new(secret, b"account-form\0" + struct.pack(">QQ", account_id, made), hashlib.sha256).digest()


def make_token(secret: bytes, account_id: int, now: float) -> str:
    made = int(now)
    raw = struct.pack(">Q", made) + _mac(secret, account_id, made)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def check_token(secret: bytes, account_id: int, token: str, now: float) -> bool:
    """The token was made by :func:`make_token` for this account, at most :data:`MAX_AGE` seconds ago."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, UnicodeEncodeError):
        return False
    if len(raw) != 8 + 32:
        return False
    (made,) = struct.unpack(">Q", raw[:8])
    if not made <= now + 60 or now - made > MAX_AGE:  # a minute's slack for a clock stepped back
        return False
    return hmac.compare_digest(raw[8:], _mac(secret, account_id, made))


def _origin_of(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return ""
    return f"{scheme.lower()}://{rest.split('/', 1)[0].split('?', 1)[0].lower()}"


def own_origin(request: Request) -> str:
    """``https://`` and the Host field as sent (port included, the default one dropped), lower case."""
    host = (request.field("host") or "").lower().removesuffix(":443")
    return f"https://{host}"


def cross_origin(request: Request) -> str | None:
    """Why the browser says this request comes from another site, or None. In order: Sec-Fetch-Site (every
    current browser sends it; "same-origin" only), Origin (our pages' ``Referrer-Policy: same-origin`` lets a
    browser send the real one for their own forms; "null" counts only alongside Sec-Fetch-Site, from a browser
    that still treats the policy as ``no-referrer``), then Referer. A client sending none of them is no browser,
    and the token alone decides."""
    site = request.field("sec-fetch-site")
    if site is not None and site.strip().lower() != "same-origin":
        return f"Sec-Fetch-Site: {site}"
    ours = own_origin(request)
    origin = request.field("origin")
    if origin is not None:
        origin = origin.strip()
        if origin == "null" and site is not None:
            return None
        if _origin_of(origin).removesuffix(":443") != ours:
            return f"Origin: {origin}"
        return None
    referer = request.field("referer")
    if referer is not None and _origin_of(referer.strip()).removesuffix(":443") != ours:
        return "Referer from another site"
    return None
