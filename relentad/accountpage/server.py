"""``https://<host>/account/``: the pages where a user sees what the privacy policy says is kept about them
(README "Quotas and the account lifecycle") and changes their own password, without asking the admin.

Routes (any host name the server answers for: ``[server] hostname``, a hosted domain or a name one label under
one; HTTPS only)::

    /account/            overview: disk used and limits (quota.get, as ``quota show``), mailboxes with sizes
    /account/logins      the login history the store keeps (``[retention] activity_days``)
    /account/activity    per-day counters, rolled-up months, all-time totals (as ``relentad activity``)
    /account/password    GET the form, POST a change (303 back to the form)
    /account/app-passwords  GET the list and form, POST add (200: the new password, shown once) or revoke (303)
    /account/export      GET: everything ``relentad export`` writes, as one zip, streamed
    /account/2fa         GET: two-factor login on (turn off) or off (a new secret to enroll); POST enable/disable
    /account/login       GET the login form, POST it (303 to the overview with a session cookie)
    /account/logout      POST: end the cookie session

Invariants:
- Everything but the redirect from ``/account`` and the login form is behind a login: a cookie session
  (:mod:`relentad.accountpage.sessions`, opened by the form with password and, when two-factor login is on, a
  code: :mod:`relentad.auth.totp`) or HTTP Basic through :mod:`relentad.auth.basic` for an account without
  two-factor login (login history protocol "web"; terminated accounts cannot log in); a known path with another
  method is 405 with Allow, anything else under ``/account/`` 404.
- A wrong code is a failed login (the ``[auth]`` throttle, a login history row ``2fa-failed``), checked only
  after the password; the form's answer is the same whichever of the two was wrong.
- Every answer carries :data:`SECURITY_HEADERS`: no script, no framing, no caching, no referrer to other sites
  (``same-origin``, not ``no-referrer``: under that, a browser without Sec-Fetch-Site — Safari before 16.4 —
  sends ``Origin: null`` for the page's own form, indistinguishable from a sandboxed attacker's).
- A POST needs a CSRF token for the logged-in account (:mod:`relentad.accountpage.csrf`) and no cross-origin
  sign from the browser; the current password is checked through the authenticator (throttled, recorded), the
  new one by the CLI's rules and hashed alike; the stored hash changes in one transaction with a login history
  row, which drops every cached credential for the old password (the cache is keyed to the hash).
- These pages take only the account's password, never an app password (the authenticator refuses one for
  "web"), so a device's password cannot make or revoke app passwords or change the account's password.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from .. import httpserver
from ..auth import apppasswords, history, passwords, totp
from ..auth.authenticator import Login, LoginFailed
from ..auth.basic import BasicLogin, Session, throttled
from ..config import Config
from ..errors import AlreadyExists, InvalidInput, NotFound, RelentadError
from ..httpserver import Request, Response
from ..lifecycle import activity
from ..quota import get as get_usage
from ..store.db import Store
from ..store.imapview import ReaderPool
from . import csrf, export, pages, qr, sessions

log = logging.getLogger(__name__)

PREFIX = "/account"
_HTML = "text/html; charset=utf-8"
_MAX_LOGINS = 1000  # rows shown on the logins page
_ACTIVITY_DAYS = 30
_EXPIRED = "The form had expired or came from elsewhere: please try again."
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        f"default-src 'none'; style-src '{pages.STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)
_ROUTES = {
    "/account/": ("", "GET, HEAD"),
    "/account/logins": ("logins", "GET, HEAD"),
    "/account/activity": ("activity", "GET, HEAD"),
    "/account/password": ("password", "GET, HEAD, POST"),
    "/account/app-passwords": ("app-passwords", "GET, HEAD, POST"),
    "/account/export": ("export", "GET, HEAD"),
    "/account/2fa": ("2fa", "GET, HEAD, POST"),
    "/account/login": ("login", "GET, HEAD, POST"),
    "/account/logout": ("logout", "POST"),
}
_REFUSED = "The address, password or code is not right."
_ANONYMOUS = 0  # the account id the login form's token is made for


def handles(request: Request) -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def _secured(response: Response) -> Response:
    return Response(
        response.status,
        response.body,
        response.content_type,
        (*response.headers, *SECURITY_HEADERS),
        response.stream,
    )


class AccountPages:
    """Answers ``/account/…`` for the HTTPS listener."""

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

    def serves(self, host: str) -> bool:
        """A name the server answers for: its host name, a hosted domain, or a name right under one."""
        if not host:
            return False
        if host == self.get_config().server.hostname.rstrip(".").lower():
            return True
        return self.is_hosted(host) or ("." in host and self.is_hosted(host.partition(".")[2]))

    async def respond(self, request: Request, session: Session) -> Response:
        return _secured(await self._respond(request, session))

    async def _respond(self, request: Request, session: Session) -> Response:
        if not self.get_config().web.account_page or not self.serves(request.host):
            return httpserver.text(404, "not found")
        if request.path == PREFIX:
            return httpserver.redirect(301, PREFIX + "/")
        found = _ROUTES.get(request.path)
        if found is None:
            return httpserver.text(404, "not found")
        name, allowed = found
        if request.method not in allowed.split(", "):
            return httpserver.text(405, f"{allowed} only", ("Allow", allowed))
        if name == "login":
            return await self._login_form(request, session)
        opened = await self._authenticate(request, session)
        if isinstance(opened, Response):
            return opened
        login, cookie = opened
        if request.method == "POST":
            if login.app_password_id is not None:  # never: "web" takes no app password; kept should that change
                return httpserver.text(403, "log in with your account password to change it or app passwords")
            if name == "password":
                return await self._change_password(request, session, login, cookie)
            if name == "2fa":
                return await self._two_factor(request, session, login, cookie)
            if name == "logout":
                return await self._logout(request, login, cookie)
            return await self._app_passwords(request, session, login)
        if name == "export":
            return export.response(self.get_config().database_path, login)
        # the form token on the loop: the secret is made by one thread
        token = self._token(login)
        logout = token if cookie else ""
        return await self.readers.run(lambda conn: self._page(conn, name, login, request, token, logout))

    # -- logins ---------------------------------------------------------------------------------------------

    async def _authenticate(self, request: Request, session: Session) -> tuple[Login, str | None] | Response:
        """The login of a live cookie session (and its token), else of HTTP Basic for an account without
        two-factor login (token None), else the refusal: a stale cookie without Basic is sent to the form."""
        cookie = sessions.cookie_of(request)
        if cookie is not None:
            found = self.store.read(lambda conn: sessions.lookup(conn, cookie))
            if found is not None:
                login, due = found
                if due:
                    try:
                        await self.store.write(lambda conn: sessions.touch(conn, cookie))
                    except RelentadError as exc:  # a full disk: the session goes on, its idle time from before
                        log.warning("account page: session of %s not touched: %s", login.email, exc)
                return login, cookie
            if request.field("authorization") is None:
                return Response(
                    303, b"/account/login\n", headers=(("Location", "/account/login"), sessions.clear_cookie())
                )
        basic = await self.basic.login(request, session, "web")
        if isinstance(basic, Response):
            return self._challenge() if basic.status == 401 else basic
        if self.store.read(lambda conn: totp.state(conn, basic.account_id)).enabled:
            # the same answer as a wrong password: the prompt is no oracle for it; one row says why
            session.logins.pop("web", None)
            attempt = history.Attempt(basic.email, session.ip, "web", "failure", basic.account_id, "2fa-required")
            try:
                await self.store.write(lambda conn: history.record(conn, attempt))
            except RelentadError as exc:
                log.error("account page: login history not recorded for %s: %s", basic.email, exc)
            log.info("web login %s from %s refused: two-factor login is on (HTTP Basic)", basic.email, session.ip)
            return self._challenge()
        return basic, None

    def _challenge(self) -> Response:
        """Every 401 of these pages, whatever the reason (no login, a wrong password, the right one of an
        account with two-factor login on): the Basic challenge and a page pointing to the login form."""
        return Response(401, pages.login_needed(), _HTML, self.basic.challenge("").headers)

    async def _login_form(self, request: Request, session: Session) -> Response:
        """GET: the form. POST: the password (the authenticator: throttle, history), then with two-factor login on
        the code (a failure counts for the throttle and is a ``2fa-failed`` row; a success ``2fa-ok`` or
        ``recovery-code-used``), then a new session: 303 to the overview with its cookie."""
        token = csrf.make_token(self.secret(), _ANONYMOUS, time.time())
        if request.method != "POST":
            return Response(200, pages.login_page(token), _HTML)
        form = self._form(request, "(login form)", "login")
        if isinstance(form, Response):
            return form
        fields = {key: values[0] for key, values in form.items() if len(values) == 1}
        email = fields.get("email", "").strip()
        if not self._token_ok(form, _ANONYMOUS):
            return Response(403, pages.login_page(token, _EXPIRED, email), _HTML)
        authenticator = self.basic.authenticator
        try:
            login = await authenticator.verify(email, fields.get("password", ""), session.ip, "web")
        except LoginFailed as exc:
            if exc.throttled:
                return throttled(exc)
            return Response(403, pages.login_page(token, _REFUSED, email), _HTML)
        if self.store.read(lambda conn: totp.state(conn, login.account_id)).enabled:
            outcome = await self._second_factor(login, session, fields.get("code", ""))
            if isinstance(outcome, Response):
                return outcome
            if outcome is None:
                return Response(403, pages.login_page(token, _REFUSED, email), _HTML)
        try:
            cookie = await self.store.write(lambda conn: sessions.create(conn, login.account_id, session.ip))
        except RelentadError as exc:
            log.error("account page: no session for %s: %s", login.email, exc)
            return httpserver.text(503, "you cannot log in now; try again later")
        log.info("web login %s from %s (form)", login.email, session.ip)
        return Response(303, b"/account/\n", headers=(("Location", "/account/"), sessions.set_cookie(cookie)))

    async def _second_factor(self, login: Login, session: Session, code: str) -> str | Response | None:
        """Check and use up a code (TOTP or recovery) with its login history row; None when it was not right (a
        failed login for the throttle), the 429 when the throttle already refuses."""
        authenticator = self.basic.authenticator
        config = authenticator.get_config()
        blocked = authenticator.throttle.blocked(
            session.ip,
            login.email,
            per_ip=config.failures_per_ip,
            per_account=config.failures_per_account,
            window=config.failure_window,
        )
        if blocked is not None:
            return throttled(LoginFailed(throttled=True))
        now = time.time()

        def job(conn: sqlite3.Connection) -> str | None:
            outcome = totp.use(conn, login.account_id, code, now)
            result: history.Result = "failure" if outcome is None else "success"
            attempt = history.Attempt(
                login.email, session.ip, "web", result, login.account_id, outcome or "2fa-failed", now
            )
            history.record(conn, attempt)
            return outcome

        try:
            outcome = await self.store.write(job)
        except RelentadError as exc:
            log.error("account page: code of %s not checked: %s", login.email, exc)
            return httpserver.text(503, "you cannot log in now; try again later")
        if outcome is None:
            authenticator.throttle.failed(session.ip, login.email, config.failure_window)
            log.warning("login failed protocol=web ip=%s login=%r reason=2fa-failed", session.ip, login.email)
        elif outcome == "recovery-code-used":
            log.info("recovery code of %s used from %s", login.email, session.ip)
        return outcome

    async def _logout(self, request: Request, login: Login, cookie: str | None) -> Response:
        form = self._form(request, login.email, "logout")
        if isinstance(form, Response):
            return form
        if not self._token_ok(form, login.account_id):
            return httpserver.text(403, _EXPIRED)
        if cookie is None:
            return httpserver.text(400, "HTTP Basic has no logout: close the browser")
        await self.store.write(lambda conn: sessions.end(conn, cookie))
        log.info("web logout %s", login.email)
        note = "/account/login?out"
        return Response(303, (note + "\n").encode(), headers=(("Location", note), sessions.clear_cookie()))

    # -- pages ----------------------------------------------------------------------------------------------

    def _page(
        self, conn: sqlite3.Connection, name: str, login: Login, request: Request, token: str, logout: str
    ) -> Response:
        display_name = _display_name(conn, login.account_id)
        if name == "":
            title, content = "Your account", pages.overview(_overview(conn, login, display_name))
        elif name == "logins":
            days = self.get_config().retention.activity_days
            found = activity.logins(conn, login.account_id, time.time() - days * 86400)[:_MAX_LOGINS]
            title, content = "Logins", pages.logins(found, days)
        elif name == "activity":
            per_day = activity.days(conn, login.account_id, _ACTIVITY_DAYS)
            per_month = activity.months(conn, login.account_id)
            title = "Activity"
            content = pages.activity(per_day, per_month, activity.totals(conn, login.account_id))
        elif name == "2fa":
            title, content = "Two-factor login", pages.two_factor(self._two_factor_data(conn, login, token))
        elif name == "app-passwords":
            revoked = "revoked" in urllib.parse.parse_qs(request.query, keep_blank_values=True)
            title, content = "App passwords", pages.app_passwords(_app_passwords(conn, login, token, revoked=revoked))
        else:
            changed = "changed" in urllib.parse.parse_qs(request.query, keep_blank_values=True)
            title, content = "Password", pages.password_form(token, changed=changed)
        return Response(200, pages.page(title, login.email, display_name, name, content, logout), _HTML)

    def _token(self, login: Login) -> str:
        return csrf.make_token(self.secret(), login.account_id, time.time())

    def _form_page(self, status: int, login: Login, error: str) -> Response:
        display_name = self.store.read(lambda conn: _display_name(conn, login.account_id))
        content = pages.password_form(self._token(login), error=error)
        return Response(status, pages.page("Password", login.email, display_name, "password", content), _HTML)

    # -- password change ------------------------------------------------------------------------------------

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

    async def _change_password(self, request: Request, session: Session, login: Login, cookie: str | None) -> Response:
        form = self._form(request, login.email, "password change")
        if isinstance(form, Response):
            return form
        if not self._token_ok(form, login.account_id):
            return self._form_page(403, login, _EXPIRED)
        fields = {key: values[0] for key, values in form.items() if len(values) == 1}
        current, new, again = fields.get("current", ""), fields.get("new", ""), fields.get("again", "")
        problem = passwords.check_strength(new)
        if new != again:
            problem = "the two new passwords differ"
        elif new == current and not problem:
            problem = "the new password is the one you have"
        if problem:
            return self._form_page(400, login, problem[:1].upper() + problem[1:] + ".")
        try:
            await self.basic.authenticator.verify(login.email, current, session.ip, "web")
        except LoginFailed as exc:
            if exc.throttled:
                return throttled(exc)
            return self._form_page(403, login, "The current password is not right.")
        hashed = await asyncio.to_thread(passwords.hash_password, new)

        def change(conn: sqlite3.Connection) -> bool:
            done = conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE id = ? AND state = 'active'", (hashed, login.account_id)
            ).rowcount
            if done:
                attempt = history.Attempt(
                    login.email, session.ip, "web", "success", login.account_id, "password-changed"
                )
                history.record(conn, attempt)
                sessions.end_all(conn, login.account_id, keep=cookie)  # whoever else had the old one is out
            return bool(done)

        try:
            changed = await self.store.write(change)
        except RelentadError as exc:
            log.error("account page: password of %s not changed: %s", login.email, exc)
            return httpserver.text(503, "the password could not be changed now; try again later")
        if not changed:
            return httpserver.text(403, "this account can no longer log in")
        session.logins.clear()
        log.info("password of %s changed on the account page from %s", login.email, session.ip)
        return httpserver.redirect(303, "/account/password?changed")

    # -- app passwords --------------------------------------------------------------------------------------

    def _app_page(self, status: int, login: Login, **shown: Any) -> Response:
        token = self._token(login)

        def read(conn: sqlite3.Connection) -> tuple[str, pages.AppPasswords]:
            return _display_name(conn, login.account_id), _app_passwords(conn, login, token, **shown)

        display_name, data = self.store.read(read)
        content = pages.app_passwords(data)
        return Response(status, pages.page("App passwords", login.email, display_name, "app-passwords", content), _HTML)

    async def _app_passwords(self, request: Request, session: Session, login: Login) -> Response:
        """Add (the new password shown once, in this answer only) or revoke one; each a login history row
        (protocol web, reason ``app-password-added``/``-revoked``, its name), as a password change is."""
        form = self._form(request, login.email, "app password change", max_fields=16)
        if isinstance(form, Response):
            return form
        if not self._token_ok(form, login.account_id):
            return self._app_page(403, login, error=_EXPIRED)
        action, name = (form.get(key, [""])[0] for key in ("action", "name"))
        done = {"add": "added", "revoke": "revoked"}.get(action)
        if done is None:
            return httpserver.text(400, "unknown action")
        shown = normalized = hashed = ""
        scope: tuple[str, ...] = ()
        try:
            if action == "add":
                name = apppasswords.check_name(name)
                if not form.get("scope"):
                    raise InvalidInput("tick at least one protocol the app password is for")
                scope = apppasswords.parse_scope(",".join(form["scope"]))
                shown = apppasswords.generate()
                normalized = apppasswords.normalize(shown) or ""
                hashed = await asyncio.to_thread(passwords.hash_password, normalized)

            def job(conn: sqlite3.Connection) -> None:
                if action == "add":
                    apppasswords.add(conn, login.account_id, name, scope, hashed, normalized)
                else:
                    apppasswords.revoke(conn, login.account_id, name)
                reason = f"app-password-{done}"
                history.record(
                    conn,
                    history.Attempt(login.email, session.ip, "web", "success", login.account_id, reason, 0.0, name),
                )

            await self.store.write(job)
        except (InvalidInput, AlreadyExists, NotFound) as exc:
            return self._app_page(400, login, error=str(exc)[:1].upper() + str(exc)[1:] + ".")
        except RelentadError as exc:
            log.error("account page: app passwords of %s not changed: %s", login.email, exc)
            return httpserver.text(503, "the change could not be made now; try again later")
        log.info("app password %r of %s %s on the account page from %s", name, login.email, done, session.ip)
        if action == "revoke":
            return httpserver.redirect(303, "/account/app-passwords?revoked")
        return self._app_page(200, login, created=(name, shown))

    # -- two-factor login -----------------------------------------------------------------------------------

    def _two_factor_data(self, conn: sqlite3.Connection, login: Login, token: str, **shown: Any) -> pages.TwoFactor:
        """The page's data: its state, and when off a secret to enroll (a new one unless ``secret`` is given)."""
        state = totp.state(conn, login.account_id)
        if state.enabled:
            return pages.TwoFactor(token, True, state.recovery_left, **shown)
        key = shown.pop("key", None) or totp.new_secret()
        issuer = self.get_config().server.hostname.rstrip(".")
        link = totp.uri(key, login.email, issuer)
        return pages.TwoFactor(token, False, secret=totp.b32(key), uri=link, qr=qr.svg(link), **shown)

    def _two_factor_page(self, status: int, login: Login, cookie: str | None, **shown: Any) -> Response:
        token = self._token(login)

        def read(conn: sqlite3.Connection) -> tuple[str, pages.TwoFactor]:
            return _display_name(conn, login.account_id), self._two_factor_data(conn, login, token, **shown)

        display_name, data = self.store.read(read)
        logout = token if cookie else ""
        body = pages.page("Two-factor login", login.email, display_name, "2fa", pages.two_factor(data), logout)
        return Response(status, body, _HTML)

    async def _two_factor(self, request: Request, session: Session, login: Login, cookie: str | None) -> Response:
        """Enable (the secret the page showed and a code of it: recovery codes shown once, every other session
        of the account ended, this browser given a session) or disable (a current or recovery code, checked as
        at login: a wrong one is a failed login)."""
        form = self._form(request, login.email, "two-factor change")
        if isinstance(form, Response):
            return form
        if not self._token_ok(form, login.account_id):
            return self._two_factor_page(403, login, cookie, error=_EXPIRED)
        fields = {key: values[0] for key, values in form.items() if len(values) == 1}
        action, code = fields.get("action", ""), fields.get("code", "")
        if action == "disable":
            outcome = await self._second_factor(login, session, code)
            if isinstance(outcome, Response):
                return outcome
            if outcome is None:
                return self._two_factor_page(403, login, cookie, error="The code is not right.")

            def disable(conn: sqlite3.Connection) -> None:
                totp.disable(conn, login.account_id)
                self._changed(conn, login, session, "2fa-disabled", cookie, create=False)

            await self.store.write(disable)
            log.info("two-factor login of %s turned off on the account page from %s", login.email, session.ip)
            return self._two_factor_page(200, login, cookie, note="Two-factor login is off.")
        if action != "enable":
            return httpserver.text(400, "unknown action")
        key = totp.from_b32(fields.get("secret", ""))
        if key is None or len(key) != totp.SECRET_BYTES:
            return httpserver.text(400, "bad secret")
        step = totp.match(key, code, time.time(), 0)
        if step is None:
            error = "The code is not right: check the phone's clock and type the code the app shows now."
            return self._two_factor_page(400, login, cookie, key=key, error=error)
        codes = totp.recovery_codes()

        def enable(conn: sqlite3.Connection) -> str | None:
            if totp.state(conn, login.account_id).enabled:
                return None
            totp.enable(conn, login.account_id, key, step, codes)
            return self._changed(conn, login, session, "2fa-enabled", cookie)

        try:
            cookie = await self.store.write(enable)
        except RelentadError as exc:
            log.error("account page: two-factor login of %s not turned on: %s", login.email, exc)
            return httpserver.text(503, "the change could not be made now; try again later")
        if cookie is None:
            return self._two_factor_page(400, login, None, error="Two-factor login is on already.")
        session.logins.clear()  # HTTP Basic no longer opens these pages for the account
        log.info("two-factor login of %s turned on on the account page from %s", login.email, session.ip)
        response = self._two_factor_page(200, login, cookie, codes=codes, note="Two-factor login is on.")
        return Response(response.status, response.body, _HTML, (sessions.set_cookie(cookie),))

    @staticmethod
    def _changed(
        conn: sqlite3.Connection, login: Login, session: Session, reason: str, keep: str | None, create: bool = True
    ) -> str | None:
        """After turning two-factor login on or off: a login history row, every other session of the account
        ended, and the session this browser goes on with (``keep``, or with ``create`` a new one)."""
        history.record(conn, history.Attempt(login.email, session.ip, "web", "success", login.account_id, reason))
        sessions.end_all(conn, login.account_id, keep=keep)
        return keep or (sessions.create(conn, login.account_id, session.ip) if create else None)


def _display_name(conn: sqlite3.Connection, account_id: int) -> str:
    row = conn.execute("SELECT display_name FROM accounts WHERE id = ?", (account_id,)).fetchone()
    return "" if row is None else str(row[0])


def _overview(conn: sqlite3.Connection, login: Login, display_name: str) -> pages.Overview:
    boxes = conn.execute(
        """SELECT b.name, count(m.id), coalesce(sum(m.size), 0) FROM mailboxes b
           LEFT JOIN messages m ON m.mailbox_id = b.id WHERE b.account_id = ?
           GROUP BY b.id ORDER BY b.name = 'INBOX' DESC, b.name""",
        (login.account_id,),
    ).fetchall()
    return pages.Overview(
        login.email, display_name, get_usage(conn, login.account_id), [(str(n), int(c), int(s)) for n, c, s in boxes]
    )


def _app_passwords(conn: sqlite3.Connection, login: Login, token: str, **shown: Any) -> pages.AppPasswords:
    only = conn.execute("SELECT app_passwords_only FROM accounts WHERE id = ?", (login.account_id,)).fetchone()
    return pages.AppPasswords(token, apppasswords.listed(conn, login.account_id), bool(only and only[0]), **shown)
