"""The CardDAV server: WebDAV methods over the address books of :mod:`relentad.carddav.book`, behind HTTP Basic.

Layout (RFC 6764 §5: ``/.well-known/carddav`` redirects to the context path ``/dav/``)::

    /dav/                                       context root: current-user-principal
    /dav/principals/<email>/                    the principal: addressbook-home-set
    /dav/addressbooks/<email>/                  the address book home
    /dav/addressbooks/<email>/contacts/         the one address book, "Contacts"
    /dav/addressbooks/<email>/contacts/<UID>.vcf  a card (or the name a client created it under)

Invariants:
- HTTP Basic only, and only on the TLS listener (the web module never routes here from plain HTTP), through
  :mod:`relentad.auth.basic` (login history as protocol "carddav"; a sync of many requests is one login).
- An account sees only its own paths: any other ``<email>`` is 403 whether that account exists or not.
- Cards are written with PUT and DELETE (:mod:`relentad.carddav.write`, in one transaction of the store's writer
  thread); PROPPATCH, MKCOL, COPY, MOVE, LOCK … answer 403 with DAV:need-privileges. The
  current-user-privilege-set says so up front: read everywhere, and write-content, bind and unbind on the book.
- The book is read, and its answer written, on a worker thread (:class:`ReaderPool`) in one read snapshot, never
  on the event loop: a book of thousands of cards takes most of a second.
- Every refusal is an HTTP status with a body (DAV:error for preconditions); handlers raise :class:`DavError`,
  :meth:`CardDav.respond` turns it into the reply.
"""

from __future__ import annotations

import email.utils
import logging
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

from .. import httpserver
from ..auth.authenticator import Login
from ..auth.basic import BasicLogin, Session
from ..crm.participants import CONTROLS
from ..errors import StoreUnavailable
from ..httpserver import Request, Response
from ..store.db import Store
from ..store.imapview import ReaderPool
from . import book, davxml, query, vcard, write
from .davxml import CARD, CS, DAV, XML_TYPE, DavError, Name, Node, Props, d, el

log = logging.getLogger(__name__)
T = TypeVar("T")

WELL_KNOWN = "/.well-known/carddav"
ROOT = "/dav/"
BOOK = "contacts"
METHODS = "OPTIONS, GET, HEAD, PROPFIND, REPORT, PUT, DELETE"
_REFUSED = {"PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "POST", "ACL"}
_VCARD = "text/vcard; charset=utf-8"
_MAX_HREFS = 5000  # hrefs in one addressbook-multiget
_UNSAFE_NAME = re.compile(rf"[/{CONTROLS}]")  # in a card's name a client chooses


def handles(request: Request) -> bool:
    """Whether a request is CardDAV's: its paths, and PROPFIND or OPTIONS of "/" (where iOS and vdirsyncer look
    for current-user-principal before trying the well-known URI)."""
    path = request.path
    if path == "/":
        return request.method in ("PROPFIND", "OPTIONS")
    return path in (WELL_KNOWN, WELL_KNOWN + "/", "/dav") or path.startswith(ROOT)


@dataclass(frozen=True)
class Resource:
    """What a path names: ``kind`` is root, principal, home, book or card; ``email`` the account in the path."""

    kind: str
    email: str = ""
    card: str = ""  # the card's file name


def resource(path: str) -> Resource | None:
    if path == "/":
        return Resource("root")
    parts = [unquote(part) for part in path.split("/") if part]
    if parts[:1] != ["dav"]:
        return None
    parts = parts[1:]
    if not parts:
        return Resource("root")
    if len(parts) == 2 and parts[0] == "principals":
        return Resource("principal", parts[1].lower())
    if parts[0] != "addressbooks" or len(parts) < 2 or len(parts) > 4:
        return None
    if len(parts) == 2:
        return Resource("home", parts[1].lower())
    if parts[2] != BOOK:
        return None
    if len(parts) == 3:
        return Resource("book", parts[1].lower())
    return Resource("card", parts[1].lower(), parts[3]) if parts[3].endswith(".vcf") else None


def _segment(email: str) -> str:
    return quote(email, safe="@+")


def principal_href(email: str) -> str:
    return f"{ROOT}principals/{_segment(email)}/"


def home_href(email: str) -> str:
    return f"{ROOT}addressbooks/{_segment(email)}/"


def book_href(email: str) -> str:
    return f"{home_href(email)}{BOOK}/"


Values = dict[Name, list[Node | str]]  # a resource's properties: name → the element's content


def _href(*targets: str) -> list[Node | str]:
    return [d("href", target) for target in targets]


_READ_PRIVILEGES = d("current-user-privilege-set", d("privilege", d("read")))
# on the book and its cards: RFC 3744 §3.1 (write-content: PUT to a card; bind, unbind: create, delete a card)
_WRITE_PRIVILEGES = d(
    "current-user-privilege-set", *(d("privilege", d(name)) for name in ("read", "write-content", "bind", "unbind"))
)
_REPORTS = d(
    "supported-report-set",
    *(
        d("supported-report", d("report", el(name)))
        for name in ((CARD, "addressbook-multiget"), (CARD, "addressbook-query"), (DAV, "sync-collection"))
    ),
)
_ADDRESS_DATA = el(
    (CARD, "supported-address-data"),
    *(el((CARD, "address-data-type"), **{"content-type": "text/vcard", "version": v}) for v in ("3.0", "4.0")),
)
# RFC 4918 §9.1: allprop is the dead properties and the live ones RFC 4918 defines (not the CardDAV ones)
_ALLPROP = frozenset(
    (DAV, name)
    for name in ("resourcetype", "displayname", "getetag", "getcontenttype", "getcontentlength", "getlastmodified")
)


class CardDav:
    """Answers CardDAV requests for the web listener. A request's reading and writing of the book runs on a worker
    thread (``readers``), in one snapshot: a book of thousands of cards takes a second to serve."""

    def __init__(self, basic: BasicLogin, readers: ReaderPool, store: Store) -> None:
        self.basic = basic
        self.readers = readers
        self.store = store

    async def respond(self, request: Request, session: Session) -> Response:
        try:
            return await self._respond(request, session)
        except DavError as exc:
            if exc.condition is None:
                return httpserver.text(exc.status, exc.message)
            return Response(exc.status, davxml.error(exc.condition, exc.message, exc.href), XML_TYPE)

    async def _respond(self, request: Request, session: Session) -> Response:
        if request.path in (WELL_KNOWN, WELL_KNOWN + "/", "/dav"):  # RFC 6764 §5; also before a login
            return httpserver.redirect(301, ROOT)
        target = resource(request.path)
        if target is None:
            return httpserver.text(404, "not found")
        if request.method == "OPTIONS":  # RFC 6352 §6.1: "addressbook" in DAV (no locking: no class 2)
            return Response(200, b"", headers=(("DAV", "1, 3, addressbook"), ("Allow", METHODS)))
        login = await self.basic.login(request, session, "carddav")
        if isinstance(login, Response):
            return login
        if target.email and target.email != login.email.lower():
            raise DavError(403, "not your address book", (DAV, "need-privileges"))
        if request.method in _REFUSED:
            raise DavError(403, "only cards are written here (PUT, DELETE)", (DAV, "need-privileges"))
        if request.method in ("PUT", "DELETE"):
            return await self._write(request, target, login)
        handler = {"PROPFIND": self._propfind, "REPORT": self._report, "GET": self._get, "HEAD": self._get}
        method = handler.get(request.method)
        if method is None:
            return httpserver.text(405, "not a CardDAV method here", ("Allow", METHODS))
        return await self.readers.run(lambda conn: method(conn, request, target, login))

    # -- PROPFIND (RFC 4918 §9.1) ---------------------------------------------------------------------------

    def _propfind(self, conn: sqlite3.Connection, request: Request, target: Resource, login: Login) -> Response:
        depth = (request.field("depth") or "infinity").strip().lower()
        if depth == "infinity":
            raise DavError(403, "Depth: infinity is not served; use 0 or 1", (DAV, "propfind-finite-depth"))
        if depth not in ("0", "1"):
            raise DavError(400, f"Depth: {depth}?")
        props = davxml.propfind(request.body)
        entries = self._entries(conn, target, login, props.vcard_version, members=depth == "1")
        if entries is None:
            return httpserver.text(404, "no such card")
        return _multistatus([_answer(href, values, props) for href, values in entries])

    def _entries(
        self, conn: sqlite3.Connection, target: Resource, login: Login, version: str, *, members: bool
    ) -> list[tuple[str, Values]] | None:
        """(href, properties) of the resource and, with ``members``, of its members; None: no such card."""
        email = login.email.lower()
        principal = _href(principal_href(email))
        common: Values = {
            (DAV, "current-user-principal"): principal,
            (DAV, "current-user-privilege-set"): list(_READ_PRIVILEGES.children),
        }
        writable: Values = {**common, (DAV, "current-user-privilege-set"): list(_WRITE_PRIVILEGES.children)}  # a card
        if target.kind == "card":
            found = book.by_name(conn, login.account_id, {target.card}, version).get(target.card)
            return None if found is None else [(book_href(email) + quote(found.name), _card_props(found, writable))]
        if target.kind == "root":
            return [(ROOT, {**common, (DAV, "resourcetype"): [d("collection")], (DAV, "displayname"): ["relentad"]})]
        if target.kind == "principal":
            values: Values = {
                **common,
                (DAV, "resourcetype"): [d("collection"), d("principal")],  # type: list[Node | str]
                (DAV, "displayname"): [email],
                (DAV, "principal-URL"): principal,
                (CARD, "addressbook-home-set"): _href(home_href(email)),
            }
            return [(principal_href(email), values)]
        owned: Values = {**common, (DAV, "owner"): principal}
        home_values: Values = {**owned, (DAV, "resourcetype"): [d("collection")], (DAV, "displayname"): [email]}
        state = book.token(book.counter(conn, login.account_id))
        book_values: Values = {
            **owned,
            (DAV, "current-user-privilege-set"): list(_WRITE_PRIVILEGES.children),
            (CARD, "max-resource-size"): [str(vcard.MAX_CARD)],
            (DAV, "resourcetype"): [d("collection"), el((CARD, "addressbook"))],
            (DAV, "displayname"): ["Contacts"],
            (CARD, "addressbook-description"): [f"Confirmed contacts of {email}"],
            (CARD, "supported-address-data"): list(_ADDRESS_DATA.children),
            (DAV, "supported-report-set"): list(_REPORTS.children),
            (DAV, "sync-token"): [state],
            (CS, "getctag"): [state],
        }
        if target.kind == "home":
            return [(home_href(email), home_values)] + ([(book_href(email), book_values)] if members else [])
        base = book_href(email)
        entries = [(base, book_values)]
        if members:
            cards = book.cards(conn, login.account_id, version)
            entries += [(base + quote(c.name), _card_props(c, writable)) for c in cards]
        return entries

    # -- REPORT (RFC 6352 §8.6, §8.7; RFC 6578 §3.2) ----------------------------------------------------------

    def _report(self, conn: sqlite3.Connection, request: Request, target: Resource, login: Login) -> Response:
        report = davxml.report(request.body)
        known = {(CARD, "addressbook-multiget"), (CARD, "addressbook-query"), (DAV, "sync-collection")}
        if report.name not in known or target.kind != "book":
            raise DavError(403, f"no {report.name[1]} report here", (DAV, "supported-report"))
        props, version = report.props, report.props.vcard_version
        email = login.email.lower()
        base = book_href(email)
        if report.name == (CARD, "addressbook-multiget"):
            hrefs = report.hrefs()
            if len(hrefs) > _MAX_HREFS:
                raise DavError(403, f"at most {_MAX_HREFS} hrefs at once", (DAV, "number-of-matches-within-limits"))
            wanted = {href: _card_name(href, base) for href in hrefs}
            found = book.by_name(conn, login.account_id, {u for u in wanted.values() if u}, version)
            out = []
            for href, name in wanted.items():
                card = found.get(name or "")
                out.append(davxml.gone(href) if card is None else _answer(href, _card_props(card, {}), props))
            return _multistatus(out)
        if report.name == (CARD, "addressbook-query"):
            matcher = query.parse_filter(report.child((CARD, "filter")))
            limit = _limit(report.child((CARD, "limit")), CARD)
            cards = [c for c in book.cards(conn, login.account_id, version) if matcher.test(c.values)]
            out = [_answer(base + quote(c.name), _card_props(c, {}), props) for c in cards[:limit]]
            if limit is not None and len(cards) > limit:  # §8.6.1: truncated, said with 507 on the collection
                out.append(davxml.gone(base, 507))
            return _multistatus(out)
        level = (report.text((DAV, "sync-level")) or "1").lower()
        if level not in ("1", "infinite", "infinity"):  # no sub-collections: infinite is the same as 1
            raise DavError(400, f"sync-level {level}?")
        sent = report.text((DAV, "sync-token")) or ""
        since = book.parse_token(sent) if sent else None
        delta = None if sent and since is None else book.changes(conn, login.account_id, since, version)
        if delta is None:
            raise DavError(403, "unknown sync token: sync from the start", (DAV, "valid-sync-token"))
        limit = _limit(report.child((DAV, "limit")), DAV)
        if limit is not None and len(delta.changed) + len(delta.removed) > limit:
            raise DavError(507, "more changes than the limit", (DAV, "number-of-matches-within-limits"))
        out = [_answer(base + quote(c.name), _card_props(c, {}), props) for c in delta.changed]
        out += [davxml.gone(base + quote(name)) for name in delta.removed]
        return Response(207, davxml.multistatus(out, book.token(delta.counter)), XML_TYPE)

    # -- GET / HEAD ---------------------------------------------------------------------------------------

    def _get(self, conn: sqlite3.Connection, request: Request, target: Resource, login: Login) -> Response:
        version = "4.0" if "version=4.0" in (request.field("accept") or "").replace(" ", "") else "3.0"
        if target.kind == "book":  # the whole book as one file, for curl and import dialogs
            data = b"".join(c.data for c in book.cards(conn, login.account_id, version))
            return Response(200, data, _VCARD)
        if target.kind != "card":
            return httpserver.text(405, "a collection: use PROPFIND", ("Allow", "OPTIONS, PROPFIND"))
        found = book.by_name(conn, login.account_id, {target.card}, version).get(target.card)
        if found is None:
            return httpserver.text(404, "no such card")
        headers = [("ETag", found.etag)]
        if found.changed is not None:
            headers.append(("Last-Modified", email.utils.formatdate(found.changed, usegmt=True)))
        none_match = request.field("if-none-match")
        if none_match is not None and write.matches(none_match, found.etag, weak=True):  # RFC 7232 §3.2, §4.1
            return Response(304, b"", headers=headers)
        return Response(200, found.data, _VCARD, headers)

    # -- PUT / DELETE (RFC 6352 §6.3.2, RFC 4918 §9.6, §9.7, RFC 7232) ------------------------------------------

    async def _write(self, request: Request, target: Resource, login: Login) -> Response:
        if target.kind != "card":
            raise DavError(405 if request.method == "PUT" else 403, "only cards of the address book are written")
        if len(target.card.encode("utf-8")) > 255:
            raise DavError(403, "a card's name is at most 255 octets", (DAV, "need-privileges"))
        if request.method == "PUT" and _UNSAFE_NAME.search(target.card):
            # a "/" (sent as %2F) would be served as a path below the book, a control character in a log line
            raise DavError(403, "a card's name has no '/' and no control characters", (DAV, "need-privileges"))
        if_match, if_none_match = request.field("if-match"), request.field("if-none-match")
        account_id, base = login.account_id, book_href(login.email.lower())
        if request.method == "DELETE":
            await self._in_store(lambda conn: write.delete(conn, account_id, target.card, if_match, if_none_match))
            log.info("carddav %s deleted %s", login.email, target.card)
            return Response(204, b"")
        kind = (request.field("content-type") or "text/vcard").split(";")[0].strip().lower()
        if kind not in ("text/vcard", "text/x-vcard", "text/directory"):
            raise DavError(415, f"{kind} is no vCard: text/vcard", (CARD, "supported-address-data"))
        body = request.body
        done = await self._in_store(
            lambda conn: write.put(conn, account_id, target.card, body, if_match, if_none_match, base)
        )
        log.info("carddav %s %s %s", login.email, "created" if done.created else "changed", target.card)
        # RFC 6352 §6.3.2.3: the ETag only when the stored card is octet for octet the one sent
        headers = [("ETag", done.etag)] if done.data == body else []
        return Response(201 if done.created else 204, b"", headers=headers)

    async def _in_store(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in a transaction of the store's writer thread; a store that cannot write is a 503, not a crash."""
        try:
            return await self.store.write(fn)
        except StoreUnavailable as exc:
            raise DavError(503, f"{exc}; try again later") from None


def _card_props(card: book.Card, common: Values) -> Values:
    values: Values = {
        **common,
        (DAV, "resourcetype"): [],
        (DAV, "getetag"): [card.etag],
        (DAV, "getcontenttype"): [_VCARD],
        (DAV, "getcontentlength"): [str(len(card.data))],
        davxml.ADDRESS_DATA: [card.data.decode("utf-8")],
    }
    if card.changed is not None:
        values[(DAV, "getlastmodified")] = [email.utils.formatdate(card.changed, usegmt=True)]
    return values


def _answer(href: str, values: Values, props: Props) -> Node:
    """One DAV:response: the properties asked for (404 for those the resource lacks), all of them, or names."""
    if props.kind == "propname":
        return davxml.response(href, [el(name) for name in values])
    if props.kind == "allprop":
        return davxml.response(href, [el(name, *values[name]) for name in values if name in _ALLPROP])
    found = [el(name, *values[name]) for name in props.names if name in values]
    return davxml.response(href, found, [name for name in props.names if name not in values])


def _multistatus(responses: list[Node]) -> Response:
    return Response(207, davxml.multistatus(responses), XML_TYPE)


def _card_name(href: str, base: str) -> str | None:
    """The resource name a multiget href names when it is a card of this book (path or absolute URL,
    percent-encoded)."""
    try:
        path = unquote(urlsplit(href).path)
    except ValueError:  # "http://[::1": not a URL
        return None
    folder, _, name = path.rpartition("/")
    if folder + "/" != unquote(base) or not name.endswith(".vcf"):
        return None
    return name


def _limit(element: ET.Element | None, namespace: str) -> int | None:
    """The nresults of a CARDDAV:limit or DAV:limit element (RFC 6352 §10.6, RFC 6578 §6.5)."""
    if element is None:
        return None
    for child in element:
        if davxml.name_of(child) == (namespace, "nresults"):
            text = (child.text or "").strip()
            if not text.isascii() or not text.isdigit() or len(text) > 9:
                raise DavError(400, f"nresults {text!r}?")
            return int(text)
    raise DavError(400, "a limit needs nresults")
