"""The web listeners: ``[listen] https`` serves what ``relentad domain dns`` points at — the MTA-STS policy
(RFC 8461), Thunderbird autoconfig and Outlook Autodiscover — and ``[listen] http`` (plain) serves autoconfig only.

Routes, by the Host the client asked for (case-insensitive, port and final dot stripped) and the path:
- ``mta-sts.D`` ``GET /.well-known/mta-sts.txt``: :func:`dnsrecords.mta_sts_policy`, byte for byte what ``domain
  dns`` prints and hashes into the policy id; over HTTPS only (RFC 8461 §3.3), ``text/plain`` (§3.2).
- ``autoconfig.D`` ``GET /mail/config-v1.1.xml`` and ``D`` ``GET /.well-known/autoconfig/mail/config-v1.1.xml``:
  :func:`clientconfig.autoconfig`.
- ``autodiscover.D`` or ``D`` ``POST /autodiscover/autodiscover.xml`` (path in any case):
  :func:`clientconfig.autodiscover` for the request's EMailAddress, whose domain must be hosted too; over plain
  HTTP a 302 to the same path on the HTTPS listener (Outlook's redirect step), never the settings.
- any Host, over plain HTTP only, with ``[acme] enabled``: ``GET /.well-known/acme-challenge/TOKEN``, the key
  authorization of a pending http-01 challenge (:mod:`relentad.acme.challenges`), else 404.
- any Host, over HTTPS only: ``/.well-known/carddav`` and ``/dav/…``, the CardDAV address books
  (:mod:`relentad.carddav.server`; it logs in through the shared authenticator).
- any Host the server answers for, over HTTPS only, unless ``[web] account_page = false``: ``/account/…``, a
  user's own usage, logins, activity, password and export (:mod:`relentad.accountpage.server`).
D must be a hosted domain (one indexed read of the store); anything else is 404, a known path with another method
405 with Allow.

Invariants: a connection counts against ``[web] connections_per_ip`` and ``max_connections`` from accept to close,
the TLS handshake included (over a limit: closed without a word, as 993 does); requests are read by
:mod:`relentad.httpserver` within its limits (16 KiB heads, 1 MiB bodies for a CardDAV multiget of a few thousand
hrefs, 10 s per request, 100 per connection; each 64 KiB of an answer taken within 10 s); an address book or
an account page is read on a worker thread (:attr:`WebServer.readers`, two at a time), never on the loop; nothing
here writes to the store but the login history and a password changed on the account pages; each request is one
DEBUG line and one count in ``relentad_http_requests_total``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable

from . import clientconfig, dnsrecords, httpserver, metrics, tls
from .accountpage import server as account_page
from .accountpage.server import AccountPages
from .acme.challenges import HTTP_PREFIX
from .auth.authenticator import Authenticator
from .auth.basic import BasicLogin, Session
from .carddav import server as carddav
from .config import Config, parse_address
from .errors import RelentadError
from .httpserver import Request, Response
from .lifecycle import importjobs
from .listener import Slots
from .store import accounts
from .store.db import Store
from .store.imapview import ReaderPool

log = logging.getLogger(__name__)

LIMITS = httpserver.Limits(head=16384, fields=64, body=1 << 20, timeout=10.0, requests=100)
MTA_STS_PATH = "/.well-known/mta-sts.txt"
AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
WELL_KNOWN_AUTOCONFIG_PATH = "/.well-known/autoconfig/mail/config-v1.1.xml"
AUTODISCOVER_PATH = "/autodiscover/autodiscover.xml"
_READ = ("Allow", "GET, HEAD")
_XML = "application/xml; charset=utf-8"


def route(host: str, path: str, *, secure: bool) -> tuple[str, str] | None:
    """(route name, domain asked about) for a request, before the domain is checked; None: nothing here."""
    if secure and path == MTA_STS_PATH and host.startswith("mta-sts."):
        return "mta-sts", host.removeprefix("mta-sts.")
    if path == AUTOCONFIG_PATH and host.startswith("autoconfig."):
        return "autoconfig", host.removeprefix("autoconfig.")
    if path == WELL_KNOWN_AUTOCONFIG_PATH:
        return "autoconfig", host
    if path.lower() == AUTODISCOVER_PATH:  # over plain HTTP: the redirect Outlook looks for
        return "autodiscover", host.removeprefix("autodiscover.")
    return None


class Site:
    """Answers one request from the configuration and the hosted domains."""

    def __init__(
        self,
        get_config: Callable[[], Config],
        is_hosted: Callable[[str], bool],
        *,
        secure: bool,
        dav: carddav.CardDav | None = None,
        account: AccountPages | None = None,
        acme_answer: Callable[[str], str | None] | None = None,
    ) -> None:
        self.get_config = get_config
        self.acme_answer = acme_answer if not secure else None  # http-01 is plain HTTP (RFC 8555 §8.3)
        self.is_hosted = is_hosted
        self.secure = secure
        self.listener = "https" if secure else "http"
        self.dav = dav if secure else None  # passwords only inside TLS
        self.account = account if secure else None

    async def respond(self, request: Request, session: Session) -> Response:
        found = route(request.host, request.path, secure=self.secure)
        if self.acme_answer is not None and request.path.startswith(HTTP_PREFIX):
            answer = self.acme_answer(request.path) if request.method in ("GET", "HEAD") else None
            response = (
                httpserver.text(404, "not found") if answer is None else Response(200, answer.encode(), "text/plain")
            )
            name = "acme"
            if answer is not None:
                log.info("http-01 challenge answered for %s", request.host or "-")
        elif self.dav is not None and carddav.handles(request):
            response, name = await self.dav.respond(request, session), "carddav"
        elif self.account is not None and account_page.handles(request):
            response, name = await self.account.respond(request, session), "account"
        elif found is None or not found[1] or not self.is_hosted(found[1]):
            response, name = httpserver.text(404, "not found"), "other"
        else:
            name, domain = found
            response = self._answer(name, domain, request)
        log.debug("%s %s %s %s → %d", self.listener, request.method, request.host or "-", request.path, response.status)
        metrics.http_request(self.listener, name, response.status)
        return response

    def _answer(self, name: str, domain: str, request: Request) -> Response:
        config = self.get_config()
        if name == "autodiscover" and not self.secure:
            return self._to_https(config, request)
        if name == "autodiscover":
            if request.method != "POST":
                return httpserver.text(405, "POST an Autodiscover request", ("Allow", "POST"))
            try:
                email = clientconfig.autodiscover_address(request.body)
            except clientconfig.BadRequest as exc:
                return httpserver.text(400, str(exc))
            if not self.is_hosted(email.rpartition("@")[2]):
                return httpserver.text(404, "not a hosted domain")
            log.info("autodiscover for %s", email)
            return Response(200, clientconfig.autodiscover(config, email), _XML)
        if request.method not in ("GET", "HEAD"):
            return httpserver.text(405, "GET only", _READ)
        if name == "mta-sts":
            return Response(200, dnsrecords.mta_sts_policy(config).encode(), "text/plain")
        return Response(200, clientconfig.autoconfig(config, domain), _XML)

    def _to_https(self, config: Config, request: Request) -> Response:
        """Outlook asks http://autodiscover.D/autodiscover/autodiscover.xml for a redirect to where it may POST
        ([MS-OXDSCLI] §3.1.5.2, "HTTP redirect method"); only to our own HTTPS listener."""
        address = parse_address(config.listen.https)
        if address is None:
            return httpserver.text(404, "not found")
        port = "" if address[1] == 443 else f":{address[1]}"
        location = f"https://{request.host}{port}{AUTODISCOVER_PATH}"
        return httpserver.redirect(302, location)

    def refused(self, error: httpserver.HTTPError) -> None:
        log.debug("%s request refused: %d %s", self.listener, error.status, error.reason)
        metrics.http_request(self.listener, "other", error.status)


class WebServer:
    """Both web listeners, their connection counts and open connections (closed at shutdown)."""

    def __init__(
        self,
        store: Store,
        get_config: Callable[[], Config],
        get_tls: Callable[[], ssl.SSLContext | None],
        authenticator: Authenticator | None = None,
        acme_answer: Callable[[str], str | None] | None = None,
    ) -> None:
        self.store = store
        self.acme_answer = acme_answer
        self.readers = ReaderPool(store.path, size=2)  # an address book or a page of a big account, off the loop
        self.dav = None
        self.account = None
        if authenticator is not None:
            basic = BasicLogin(store, authenticator, lambda: get_config().server.hostname.rstrip("."))
            self.dav = carddav.CardDav(basic, self.readers, store)
            self.account = AccountPages(store, basic, self.readers, get_config, self.is_hosted)
            self.account.imports = importjobs.Runner(store, get_config)
        self.get_config = get_config
        self.get_tls = get_tls
        self.slots = Slots("web")
        self.writers: set[asyncio.StreamWriter] = set()

    async def recover_imports(self) -> None:
        """The imports a stop cut off are marked so (lifecycle/importjobs.py); a store that cannot write now is a
        warning: the page shows them as cut off anyway."""
        if self.account is None or self.account.imports is None:
            return
        try:
            await self.account.imports.recover()
        except RelentadError as exc:
            log.warning("imports cut off by the last stop not marked: %s", exc)

    def is_hosted(self, domain: str) -> bool:
        return self.store.read(lambda conn: accounts.domain_id(conn, domain)) is not None

    async def listen(self, host: str | None, port: int, *, secure: bool) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        site = Site(
            self.get_config,
            self.is_hosted,
            secure=secure,
            dav=self.dav,
            account=self.account,
            acme_answer=self.acme_answer,
        )
        if secure:

            def factory() -> asyncio.BaseProtocol:
                serve = functools.partial(self.serve, site=site)
                return tls.ImplicitTLS("https", self.get_tls, self.admit, self.release, serve, LIMITS.head * 2)

        else:

            def factory() -> asyncio.BaseProtocol:
                reader = asyncio.StreamReader(limit=LIMITS.head * 2, loop=loop)
                return asyncio.StreamReaderProtocol(reader, functools.partial(self._plain, site), loop=loop)

        return await loop.create_server(factory, host, port, reuse_address=True, start_serving=True)

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip`` (until :meth:`release`); False when it is over a limit."""
        limits = self.get_config().web
        return self.slots.admit(ip, limits.connections_per_ip, limits.max_connections) is None

    def release(self, ip: str) -> None:
        self.slots.release(ip)

    async def _plain(self, site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = tls.peer_ip(writer.transport)
        if not self.admit(ip):
            writer.close()
            return
        await self.serve(reader, writer, ip, site)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ip: str, site: Site) -> None:
        """The requests of one admitted connection; its slot is given back when it ends."""
        self.writers.add(writer)
        try:
            session = Session(ip)
            await httpserver.serve(
                reader, writer, functools.partial(site.respond, session=session), LIMITS, site.refused
            )
        finally:
            self.writers.discard(writer)
            self.release(ip)

    def close_all(self) -> None:
        """Shutdown: drop every open connection at once (a kept-alive client asks again later). Aborted, not
        closed: a TLS close waits for the client's close_notify, which an idle client never sends."""
        for writer in list(self.writers):
            writer.transport.abort()
        if self.account is not None and self.account.imports is not None:
            self.account.imports.stop()  # the imports users started: each goes on from its last batch next time

    def close(self) -> None:
        self.readers.close()
