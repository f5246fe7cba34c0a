"""The old server, read over IMAP, for ``relentad import EMAIL imaps://LOGIN@HOST``.

A business moving to relentad usually has its mail at a provider that offers IMAP and nothing else: no shell, no
Maildir to copy. This module is the client side of that move, built on IMAPClient (literals, modified UTF-7
names and the response grammar of every server it has met). It only reads: each folder is EXAMINEd (read-only)
and bodies are fetched with ``BODY.PEEK[]``, so nothing on the old server changes, not even ``\\Seen``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from .. import __version__
from ..errors import InvalidInput, RelentadError
from ..store import flags as flagmod

TIMEOUT = 120.0
"""Seconds a read from the old server may take: a large message on a slow link, never a hung import."""


FETCH_CHUNK = 1000
"""UIDs named in one FETCH of summaries (a command line of a few kilobytes)."""


class SourceError(RelentadError):
    """The old server could not be reached, refused the login or a command, or broke off (``broken``: the
    connection is gone, so nothing more can be read)."""

    def __init__(self, message: str, *, broken: bool = False) -> None:
        super().__init__(message)
        self.broken = broken


_BROKEN = (IMAPClientAbortError, OSError, ssl.SSLError)


@dataclass(frozen=True)
class SourceURL:
    """``imaps://LOGIN@HOST[:PORT]`` (TLS from the first byte) or ``imap://…`` (STARTTLS, required)."""

    implicit_tls: bool
    login: str
    host: str
    port: int

    @property
    def key(self) -> str:
        """What the import state is kept under: the same mailbox whichever port or TLS mode reached it."""
        return f"{self.login}@{self.host.lower()}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'imaps' if self.implicit_tls else 'imap'}://{self.login}@{host}:{self.port}"


def is_url(text: str) -> bool:
    return text.lower().startswith(("imap://", "imaps://"))


def parse_url(text: str) -> SourceURL:
    """The source URL; the login may be an address (``imaps://old@example.org@imap.example.org``: the host is
    after the last ``@``) or percent-encoded."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{text}: not an IMAP URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("imap", "imaps"):
        raise InvalidInput(f"{text}: the source must be imaps://LOGIN@HOST or imap://LOGIN@HOST")
    if not parts.username or not parts.hostname:
        raise InvalidInput(f"{text}: name the login and the host, as in imaps://LOGIN@HOST[:PORT]")
    if parts.password is not None:  # not echoed: the message may be logged
        raise InvalidInput("the URL holds a password: give imaps://LOGIN@HOST[:PORT]; the password is asked for")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidInput(f"{text}: only imaps://LOGIN@HOST[:PORT], without a folder or options")
    implicit = scheme == "imaps"
    return SourceURL(implicit, unquote(parts.username), parts.hostname, port or (993 if implicit else 143))


@dataclass(frozen=True)
class RemoteFolder:
    """A folder of the old server's personal namespace."""

    name: str  # as the server names it, decoded: the key of its import state
    levels: tuple[str, ...]  # below the namespace prefix, split at the server's delimiter
    attributes: frozenset[str]  # LIST attributes, lower-cased (``\\sent``, ``\\noselect``)
    delimiter: str = ""  # the server's hierarchy delimiter ("" for a flat server)


@dataclass(frozen=True)
class Summary:
    """What FETCH says of a message before its bytes are read: enough to order, batch and plan."""

    uid: int
    flags: tuple[str, ...]
    internaldate: float
    zone: int  # minutes east of UTC
    size: int


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def clean_flags(values: Iterable[bytes | str]) -> tuple[str, ...]:
    """FETCH flags as relentad stores them: system flags in their canonical case (``\\Recent`` and unknown ones
    left out), keywords as they are when they are atoms (anything else could not be served to a client again)."""
    out: list[str] = []
    for value in values:
        text = _text(value)
        if text.startswith("\\"):
            canonical = text[:2].upper() + text[2:].lower()
            if canonical in flagmod.SYSTEM_FLAGS:
                out.append(canonical)
        elif flagmod.is_keyword(text):
            out.append(text)
    return tuple(out)


class Source:
    """One logged-in connection to the old server."""

    def __init__(self, client: imapclient.IMAPClient, url: SourceURL) -> None:
        self.client = client
        self.url = url
        self.folder: str | None = None
        self.uidvalidity = 0

    def _call(self, what: str, call: Callable[..., Any], *args: object) -> Any:
        """Run one IMAPClient call; a dropped connection or a server error is a one-line SourceError."""
        try:
            return call(*args)
        except (IMAPClientError, OSError, ssl.SSLError) as exc:
            raise SourceError(f"{self.url.host}: {what}: {_reason(exc)}", broken=isinstance(exc, _BROKEN)) from None

    def folders(self) -> list[RemoteFolder]:
        """The personal namespace's folders (not other users' or shared ones), in the server's order."""
        prefix, delimiter = "", ""
        others: tuple[str, ...] = ()
        if self.client.has_capability("NAMESPACE"):
            spaces = self._call("NAMESPACE", self.client.namespace)
            personal = spaces.personal or ()
            if personal:
                prefix, delimiter = _text(personal[0][0]), _text(personal[0][1] or "")
            others = tuple(_text(space[0]) for space in (*(spaces.other or ()), *(spaces.shared or ())) if space[0])
        found: list[RemoteFolder] = []
        for attributes, sep, raw_name in self._call("LIST", self.client.list_folders):
            name = _text(raw_name)
            if others and name.startswith(others) and not (prefix and name.startswith(prefix)):
                continue  # another user's or a shared folder: not this mailbox's own mail
            sep_text = _text(sep) if sep else delimiter
            inside = name[len(prefix) :] if prefix and name.startswith(prefix) else name
            if prefix and inside is name and name.upper() != "INBOX":
                continue  # another namespace's folder listed anyway
            if not inside:
                continue  # the prefix itself ("INBOX." as a \Noselect parent)
            levels = tuple(inside.split(sep_text)) if sep_text else (inside,)
            found.append(RemoteFolder(name, levels, frozenset(_text(a).lower() for a in attributes), sep_text))
        return found

    def server_name(self) -> str:
        """The server's name by ID (RFC 2971), lower-cased; "" when it gives none."""
        if not self.client.has_capability("ID"):
            return ""
        try:
            answer = self.client.id_({"name": "relentad", "version": __version__})
        except (IMAPClientError, OSError, ssl.SSLError):
            return ""
        fields = answer[0] if answer and isinstance(answer[0], tuple) else ()  # ((name, value, name, value …),)
        pairs = {_text(key).lower(): value for key, value in zip(fields[::2], fields[1::2], strict=False)}
        return _text(pairs.get("name") or b"").lower()

    def examine(self, folder: str) -> int:
        """Open ``folder`` read-only; returns its UIDVALIDITY."""
        if folder != self.folder:
            info = self._call(f"EXAMINE {folder}", self.client.select_folder, folder, True)
            self.folder, self.uidvalidity = folder, int(info.get(b"UIDVALIDITY", 0))
        return self.uidvalidity

    def summaries(self, after_uid: int) -> list[Summary]:
        """Flags, internal date and size of each message of the open folder with a UID above ``after_uid``."""
        found = self._call(f"SEARCH in {self.folder}", self.client.search, ["UID", f"{after_uid + 1}:*"])
        # "n:*" names the last message even when its UID is below n (RFC 3501 §6.4.8)
        uids = sorted(int(uid) for uid in found if int(uid) > after_uid)
        response: dict[int, dict[bytes, Any]] = {}
        for start in range(0, len(uids), FETCH_CHUNK):
            response.update(
                self._call(
                    f"FETCH in {self.folder}",
                    self.client.fetch,
                    uids[start : start + FETCH_CHUNK],
                    ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE"],
                )
            )
        out: list[Summary] = []
        for uid, data in response.items():
            moment = data.get(b"INTERNALDATE")
            when, zone = _moment(moment)
            flags = clean_flags(data.get(b"FLAGS", ()))
            out.append(Summary(int(uid), flags, when, zone, int(data.get(b"RFC822.SIZE", 0))))
        out.sort(key=lambda s: s.uid)
        return out

    def bodies(self, uids: list[int]) -> dict[int, bytes]:
        """The exact bytes of these messages of the open folder; a message expunged meanwhile is left out."""
        response = self._call(f"FETCH in {self.folder}", self.client.fetch, uids, ["BODY.PEEK[]"])
        return {int(uid): bytes(data[b"BODY[]"]) for uid, data in response.items() if b"BODY[]" in data}

    def close(self) -> None:
        try:
            self.client.logout()
        except (IMAPClientError, OSError, ssl.SSLError):
            self.client.shutdown()


def _moment(value: object) -> tuple[float, int]:
    if not isinstance(value, datetime):
        return 0.0, 0
    offset = value.utcoffset()
    if offset is None:  # no zone (IMAPClient's fallback): read as UTC
        return value.replace(tzinfo=UTC).timestamp(), 0
    return value.timestamp(), int(offset.total_seconds()) // 60


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}); --cafile names a private CA"
    if isinstance(exc, socket.timeout):
        return f"no answer within {TIMEOUT:.0f} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip() or type(exc).__name__
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    return text


def _context(cafile: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_public(host: str, port: int) -> None:
    """Refuse a host any of whose addresses is not on the internet (loopback, private, link-local, reserved):
    what a user names on the account page must not make this server reach into its own network. The TLS
    handshake that follows checks the name's certificate, so a name re-pointed after this check reaches no
    plaintext service."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise SourceError(f"cannot connect to {host}:{port}: {_reason(exc)}") from None
    for *_, address in found:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
        if not ip.is_global:
            raise SourceError(f"{host} is at {ip}, not an address on the internet: imports reach public servers only")


def _oauth2_login(client: imapclient.IMAPClient, url: SourceURL, token: str) -> None:
    if client.has_capability("AUTH=XOAUTH2"):
        client.oauth2_login(url.login, token)
    elif client.has_capability("AUTH=OAUTHBEARER"):
        client.oauthbearer_login(url.login, token)
    else:
        raise SourceError(f"{url.host} offers neither XOAUTH2 nor OAUTHBEARER: log in with a password instead")


def connect(
    url: SourceURL,
    password: str,
    *,
    cafile: str | None = None,
    timeout: float = TIMEOUT,
    public_only: bool = False,
    oauth2: bool = False,
) -> Source:
    """Connect with TLS (implicit, or STARTTLS, which a plain connection must offer: the password never goes in
    clear) and log in: AUTHENTICATE PLAIN when offered, which carries any UTF-8 password, LOGIN otherwise; with
    ``oauth2`` the secret is an OAuth 2.0 access token, sent with XOAUTH2 (Gmail, Microsoft 365) or OAUTHBEARER
    (RFC 7628), for providers that take no passwords over IMAP."""
    where = f"{url.host}:{url.port}"
    if public_only:
        check_public(url.host, url.port)
    context = _context(cafile)
    try:
        client = imapclient.IMAPClient(
            url.host, url.port, ssl=url.implicit_tls, ssl_context=context if url.implicit_tls else None, timeout=timeout
        )
    except (IMAPClientError, OSError, ssl.SSLError) as exc:
        raise SourceError(f"cannot connect to {where}: {_reason(exc)}") from None
    client.normalise_times = False  # INTERNALDATE keeps its zone
    source = Source(client, url)
    try:
        if not url.implicit_tls:
            if not client.has_capability("STARTTLS"):
                raise SourceError(f"{where} offers no STARTTLS: the password would go in clear; use imaps://")
            source._call("STARTTLS", client.starttls, context)
        try:
            if oauth2:
                _oauth2_login(client, url, password)
            elif client.has_capability("AUTH=PLAIN"):
                client.plain_login(url.login, password)
            else:
                client.login(url.login, password)
        except LoginError as exc:
            raise SourceError(f"{url.host} refused the login of {url.login}: {_reason(exc)}") from None
        except (IMAPClientError, OSError, ssl.SSLError) as exc:
            raise SourceError(f"{url.host}: login: {_reason(exc)}") from None
    except BaseException:
        client.shutdown()
        raise
    return source
