"""What every account page handler shares: the daemon's parts it answers with, the form tokens' secret, and the
reading of a POSTed form (same origin, urlencoded, its CSRF token: :mod:`relentad.accountpage.csrf`)."""

from __future__ import annotations

import logging
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from typing import TypeVar

from .. import httpserver
from ..auth.authenticator import Login
from ..auth.basic import BasicLogin
from ..config import Config
from ..errors import RelentadError
from ..httpserver import Request, Response
from ..store.db import Store
from ..store.imapview import ReaderPool
from . import csrf, pages

log = logging.getLogger("relentad.accountpage.server")
T = TypeVar("T")

HTML = "text/html; charset=utf-8"
EXPIRED = "The form had expired or came from elsewhere: please try again."


class PagesBase:
    """The state and form handling the account pages' handlers (:mod:`.login`, :mod:`.server`) share."""

    def __init__(
        self,
        store: Store,
        basic: BasicLogin,
        readers: ReaderPool,
        get_config: Callable[[], Config],
        is_hosted: Callable[[str], bool],
    ) -> None:
        self.store = store
        self.basic = basic
        self.readers = readers  # the pages' reads (a sum over every message of the account) off the loop
        self.get_config = get_config
        self.is_hosted = is_hosted
        self._secret: bytes | None = None

    def secret(self) -> bytes:
        """The form tokens' key: ``<data_dir>/web-secret``; if it cannot be read or made, one for this process
        (forms then last until a restart), with one ERROR line."""
        if self._secret is None:
            path = self.get_config().data_dir / "web-secret"
            try:
                self._secret = csrf.load_secret(path)
            except OSError as exc:
                log.error("account page: %s unusable (%s); form tokens end with this process", path, exc)
                self._secret = secrets.token_bytes(32)
        return self._secret

    async def _write(self, job: Callable[[sqlite3.Connection], T], failed: str, answer: str) -> T | Response:
        """``job``'s result once durably written; when the store cannot write, ``failed`` logged as an error and
        a ``503`` saying ``answer`` (a disk full must never show the user a traceback, nor half a change)."""
        try:
            return await self.store.write(job)
        except RelentadError as exc:
            log.error("account page: %s: %s", failed, exc)
            return httpserver.text(503, answer)

    def _token(self, login: Login) -> str:
        return csrf.make_token(self.secret(), login.account_id, time.time())

    def _render(
        self,
        status: int,
        login: Login,
        title: str,
        here: str,
        content: Callable[[sqlite3.Connection, str], str],
        cookie: str | None = None,
    ) -> Response:
        """A page answering a form: the display name and ``content(conn, form token)`` in one read; with a cookie
        session, a Log out button."""
        token = self._token(login)

        def read(conn: sqlite3.Connection) -> tuple[str, str]:
            return display_name_of(conn, login.account_id), content(conn, token)

        display_name, body = self.store.read(read)
        return Response(status, pages.page(title, login.email, display_name, here, body, token if cookie else ""), HTML)

    def _form(self, request: Request, who: str, what: str, max_fields: int = 8) -> dict[str, list[str]] | Response:
        """A POSTed form of the account's own page (same origin, urlencoded), or the refusal; the caller checks
        its token (:meth:`_token_ok`) and answers a bad one with its own page."""
        why = csrf.cross_origin(request)
        if why is not None:
            log.warning("account page: cross-site %s for %s refused (%s)", what, who, why)
            return httpserver.text(403, "refused: this form must be sent from its own page")
        kind = (request.field("content-type") or "").partition(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return httpserver.text(415, "send the form as application/x-www-form-urlencoded")
        try:
            form = urllib.parse.parse_qs(
                request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=max_fields
            )
        except (UnicodeDecodeError, ValueError):
            return httpserver.text(400, "bad form")
        return form

    def _token_ok(self, form: dict[str, list[str]], account_id: int) -> bool:
        token = form.get("token", [])
        return len(token) == 1 and csrf.check_token(self.secret(), account_id, token[0], time.time())


def single_fields(form: dict[str, list[str]]) -> dict[str, str]:
    """The fields a form sent once (one given twice is as if not given: no page's form names a field twice)."""
    return {key: values[0] for key, values in form.items() if len(values) == 1}


def sentence(problem: object) -> str:
    """A refusal's one-line text as the page shows it: a capital first, a full stop last."""
    text = str(problem)
    return text[:1].upper() + text[1:] + "."


def query_flags(query: str) -> set[str]:
    """The bare words of a page's query (``?saved``, ``?changed``): where the redirect after a change says what it
    did."""
    return set(urllib.parse.parse_qs(query, keep_blank_values=True))


def done_note(query: str) -> str:
    """What the redirect after a list page's change says it did (``?added``, ``?removed``, ``?changed``,
    ``?moved``)."""
    flags = query_flags(query)
    for flag, note in (("added", "Added."), ("removed", "Removed."), ("changed", "Changed."), ("moved", "Moved up.")):
        if flag in flags:
            return note
    return ""


def display_name_of(conn: sqlite3.Connection, account_id: int) -> str:
    row = conn.execute("SELECT display_name FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return "" if row is None else str(row[0])
