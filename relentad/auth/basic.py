"""HTTP Basic logins (RFC 7617) for the HTTPS listener: CardDAV and the account pages share this one path into
the :class:`Authenticator` (throttle, cache, argon2, login history, terminated accounts refused).

A connection (:class:`Session`) remembers the Authorization it verified for each protocol, re-checked against the
stored hash on each request, so a CardDAV sync or a browser's page views are one login (one history row), as an
IMAP session is; a new password, a termination or revoking the app password it used ends it at the next request.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import httpserver
from ..httpserver import Request, Response
from ..store.db import Store
from .authenticator import Authenticator, Login, LoginFailed, credential_hash
from .history import Protocol

log = logging.getLogger(__name__)


@dataclass
class Session:
    """One connection's state: the client's address and, per protocol, the login it proved (Authorization,
    login, hash then)."""

    ip: str
    logins: dict[str, tuple[str, Login, str]] = field(default_factory=dict)


def throttled(exc: LoginFailed) -> Response:
    """The answer to a login refused while its address or account has too many failures (RFC 6585 §4)."""
    return httpserver.text(429, str(exc), ("Retry-After", "60"))


class BasicLogin:
    """Checks a request's Authorization; ``get_realm`` gives the realm of the challenge (the host name)."""

    def __init__(self, store: Store, authenticator: Authenticator, get_realm: Callable[[], str]) -> None:
        self.store = store
        self.authenticator = authenticator
        self.get_realm = get_realm

    def challenge(self, message: str) -> Response:
        realm = self.get_realm().replace("\\", "").replace('"', "")
        return httpserver.text(401, message, ("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'))

    async def login(self, request: Request, session: Session, protocol: Protocol) -> Login | Response:
        """The account the request's credentials open, or the response refusing it (401, 429 when throttled)."""
        header = request.field("authorization")
        if header is None:
            return self.challenge("log in with your mail address and password")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return self.challenge("HTTP Basic only")
        known = session.logins.get(protocol)
        if known is not None and known[0] == header:
            if self.store.read(lambda conn: credential_hash(conn, known[1])) == known[2]:
                return known[1]
            del session.logins[protocol]
        try:
            user, colon, password = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return self.challenge("bad credentials")
        if not colon or not user:
            return self.challenge("bad credentials")
        try:
            login = await self.authenticator.verify(user, password, session.ip, protocol)
        except LoginFailed as exc:
            if exc.throttled:
                return throttled(exc)
            return self.challenge(str(exc))
        stored = self.store.read(lambda conn: credential_hash(conn, login))
        if stored is not None:
            session.logins[protocol] = (header, login, stored)
        log.info("%s login %s from %s%s", protocol, login.email, session.ip, login.via)
        return login
