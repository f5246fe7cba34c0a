"""The account pages' logins and two-factor login: HTTP Basic or a cookie session for each request, the login form
(password, then the code: :mod:`relentad.auth.totp`), logout, and ``/account/2fa`` (enroll, turn off).

Invariants (besides those of :mod:`relentad.accountpage.server`):
- An account with two-factor login on is opened by a cookie session only (:mod:`relentad.accountpage.sessions`);
  HTTP Basic with its right password gets the same ``401`` as a wrong one.
- The code is checked only after the password, through the same throttle; a wrong one is a failed login.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from .. import httpserver
from ..auth import history, totp
from ..auth.authenticator import Login, LoginFailed
from ..auth.basic import Session, throttled
from ..errors import RelentadError
from ..httpserver import Request, Response
from . import csrf, pages, qr, sessions
from .base import EXPIRED, HTML, PagesBase, log, query_flags, single_fields

LATER = "the change could not be made now; try again later"

_REFUSED = "The address, password or code is not right."
_ANONYMOUS = 0  # the account id the login form's token is made for


class LoginPages(PagesBase):
    """Who a request is logged in as, the login form, logout and the two-factor page."""

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
        return Response(401, pages.login_needed(), HTML, self.basic.challenge("").headers)

    async def _login_form(self, request: Request, session: Session) -> Response:
        """GET: the form. POST: the password (the authenticator: throttle, history), then with two-factor login on
        the code (a failure counts for the throttle and is a ``2fa-failed`` row; a success ``2fa-ok`` or
        ``recovery-code-used``), then a new session: 303 to the overview with its cookie."""
        token = csrf.make_token(self.secret(), _ANONYMOUS, time.time())
        if request.method != "POST":
            out = "out" in query_flags(request.query)  # where logout sends it
            return Response(200, pages.login_page(token, note="You are logged out." if out else ""), HTML)
        form = self._form(request, "(login form)", "login")
        if isinstance(form, Response):
            return form
        fields = single_fields(form)
        email = fields.get("email", "").strip()
        if not self._token_ok(form, _ANONYMOUS):
            return Response(403, pages.login_page(token, EXPIRED, email), HTML)
        authenticator = self.basic.authenticator
        try:
            login = await authenticator.verify(email, fields.get("password", ""), session.ip, "web")
        except LoginFailed as exc:
            if exc.throttled:
                return throttled(exc)
            return Response(403, pages.login_page(token, _REFUSED, email), HTML)
        if self.store.read(lambda conn: totp.state(conn, login.account_id)).enabled:
            outcome = await self._second_factor(login, session, fields.get("code", ""))
            if isinstance(outcome, Response):
                return outcome
            if outcome is None:
                return Response(403, pages.login_page(token, _REFUSED, email), HTML)
        cookie = await self._write(
            lambda conn: sessions.create(conn, login.account_id, session.ip),
            f"no session for {login.email}",
            "you cannot log in now; try again later",
        )
        if isinstance(cookie, Response):
            return cookie
        log.info("web login %s from %s (form)", login.email, session.ip)
        return Response(303, b"/account/\n", headers=(("Location", "/account/"), sessions.set_cookie(cookie)))

    async def _second_factor(self, login: Login, session: Session, code: str) -> str | Response | None:
        """Check and use up a code (TOTP or recovery) with its login history row; None when it was not right (a
        failed login for the throttle), the 429 when the throttle already refuses."""
        authenticator = self.basic.authenticator
        if authenticator.blocked(session.ip, login.email) is not None:
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

        outcome = await self._write(job, f"code of {login.email} not checked", "you cannot log in now; try again later")
        if isinstance(outcome, Response):
            return outcome
        if outcome is None:
            authenticator.failed(session.ip, login.email, "web", "2fa-failed")
        elif outcome == "recovery-code-used":
            log.info("recovery code of %s used from %s", login.email, session.ip)
        return outcome

    async def _logout(self, request: Request, login: Login, cookie: str | None) -> Response:
        form = self._form(request, login.email, "logout")
        if isinstance(form, Response):
            return form
        if not self._token_ok(form, login.account_id):
            return httpserver.text(403, EXPIRED)
        if cookie is None:
            return httpserver.text(400, "HTTP Basic has no logout: close the browser")
        ended = await self._write(
            lambda conn: sessions.end(conn, cookie),
            f"session of {login.email} not ended",
            "you could not be logged out now; try again later",
        )
        if isinstance(ended, Response):  # the cookie stays: the session is not over
            return ended
        log.info("web logout %s", login.email)
        note = "/account/login?out"
        return Response(303, (note + "\n").encode(), headers=(("Location", note), sessions.clear_cookie()))

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
        def content(conn: sqlite3.Connection, token: str) -> str:
            return pages.two_factor(self._two_factor_data(conn, login, token, **shown))

        return self._render(status, login, "Two-factor login", "2fa", content, cookie)

    async def _two_factor(self, request: Request, session: Session, login: Login, cookie: str | None) -> Response:
        """Enable (the secret the page showed and a code of it: recovery codes shown once, every other session
        of the account ended, this browser given a session), disable or make new recovery codes (either for a
        current or recovery code, checked as at login: a wrong one is a failed login)."""
        form = self._form(request, login.email, "two-factor change")
        if isinstance(form, Response):
            return form
        if not self._token_ok(form, login.account_id):
            return self._two_factor_page(403, login, cookie, error=EXPIRED)
        fields = single_fields(form)
        action, code = fields.get("action", ""), fields.get("code", "")
        if action in ("disable", "recovery"):
            outcome = await self._second_factor(login, session, code)
            if isinstance(outcome, Response):
                return outcome
            if outcome is None:
                return self._two_factor_page(403, login, cookie, error="The code is not right.")
            if action == "recovery":
                return await self._renew_recovery(session, login, cookie)

            def disable(conn: sqlite3.Connection) -> None:
                totp.disable(conn, login.account_id)
                self._changed(conn, login, session, "2fa-disabled", cookie, create=False)

            disabled = await self._write(disable, f"two-factor login of {login.email} not turned off", LATER)
            if isinstance(disabled, Response):
                return disabled
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

        opened = await self._write(enable, f"two-factor login of {login.email} not turned on", LATER)
        if isinstance(opened, Response):
            return opened
        if opened is None:
            return self._two_factor_page(400, login, None, error="Two-factor login is on already.")
        session.logins.clear()  # HTTP Basic no longer opens these pages for the account
        log.info("two-factor login of %s turned on on the account page from %s", login.email, session.ip)
        response = self._two_factor_page(200, login, opened, codes=codes, note="Two-factor login is on.")
        return Response(response.status, response.body, HTML, (sessions.set_cookie(opened),))

    async def _renew_recovery(self, session: Session, login: Login, cookie: str | None) -> Response:
        """New recovery codes (the caller checked a code), shown once; the old ones stop working. Sessions stay:
        the second factor itself did not change."""
        codes = totp.recovery_codes()

        def renew(conn: sqlite3.Connection) -> bool:
            if not totp.renew_recovery(conn, login.account_id, codes):
                return False
            attempt = history.Attempt(
                login.email, session.ip, "web", "success", login.account_id, "2fa-recovery-renewed"
            )
            history.record(conn, attempt)
            return True

        renewed = await self._write(renew, f"recovery codes of {login.email} not renewed", LATER)
        if isinstance(renewed, Response):
            return renewed
        if not renewed:
            return self._two_factor_page(400, login, cookie, error="Two-factor login is off.")
        log.info("new recovery codes for %s made on the account page from %s", login.email, session.ip)
        return self._two_factor_page(200, login, cookie, codes=codes, note="New recovery codes: the old ones are void.")

    @staticmethod
    def _changed(
        conn: sqlite3.Connection, login: Login, session: Session, reason: str, keep: str | None, create: bool = True
    ) -> str | None:
        """After turning two-factor login on or off: a login history row, every other session of the account
        ended, and the session this browser goes on with (``keep``, or with ``create`` a new one)."""
        history.record(conn, history.Attempt(login.email, session.ip, "web", "success", login.account_id, reason))
        sessions.end_all(conn, login.account_id, keep=keep)
        return keep or (sessions.create(conn, login.account_id, session.ip) if create else None)
