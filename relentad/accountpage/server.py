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
    /account/2fa         GET: two-factor login on or off (a new secret to enroll); POST enable, disable, recovery
    /account/autoreply   GET the automatic reply's form, POST it (303 back to the form)
    /account/mobileconfig  GET: the Apple configuration profile that sets the account up on an iPhone, iPad or Mac
    /account/senders     GET the spam allow and block lists, POST add or remove (303 back to the list)
    /account/forwarding  GET forwarding's form, POST it with the account's password (303 back to the form)
    /account/filters     GET the filters, POST add or remove one (303 back to the list)
    /account/login       GET the login form, POST it (303 to the overview with a session cookie)
    /account/logout      POST: end the cookie session

Who a request is logged in as, the login form, logout and the two-factor page are :mod:`.login`'s (the
:class:`AccountPages` base class); the form reading and tokens they share, :mod:`.base`'s.

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
import sqlite3
import time
import urllib.parse
from typing import Any

from .. import clientconfig, httpserver
from ..auth import apppasswords, history, passwords
from ..auth.authenticator import Login, LoginFailed
from ..auth.basic import Session, throttled
from ..crm import autoforward, autoreply, pagefilters
from ..errors import AlreadyExists, InvalidInput, NotFound, RelentadError
from ..httpserver import Request, Response
from ..lifecycle import activity
from ..quota import get as get_usage
from ..spam import senderlists
from . import export, importpage, pages, sessions
from .base import EXPIRED, HTML, display_name_of, done_note, query_flags, sentence, single_fields
from .importpage import ImportPage

log = logging.getLogger(__name__)

PREFIX = "/account"
_MAX_LOGINS = 1000  # rows shown on the logins page
_ACTIVITY_DAYS = 30
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
    "/account/autoreply": ("autoreply", "GET, HEAD, POST"),
    "/account/mobileconfig": ("mobileconfig", "GET, HEAD"),
    "/account/senders": ("senders", "GET, HEAD, POST"),
    "/account/forwarding": ("forwarding", "GET, HEAD, POST"),
    "/account/filters": ("filters", "GET, HEAD, POST"),
    "/account/import": ("import", "GET, HEAD, POST"),
    "/account/login": ("login", "GET, HEAD, POST"),
    "/account/logout": ("logout", "POST"),
}


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


_FILTER_DONE = {"add": "added", "edit": "changed", "up": "moved", "remove": "removed"}
"""The filters form's actions and the word the page's redirect says each did."""


class AccountPages(ImportPage):
    """Answers ``/account/…`` for the HTTPS listener."""

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
            if name == "autoreply":
                return await self._autoreply(request, session, login, cookie)
            if name == "senders":
                return await self._senders(request, session, login, cookie)
            if name == "forwarding":
                return await self._forwarding(request, session, login, cookie)
            if name == "filters":
                return await self._filters(request, session, login, cookie)
            if name == "import":
                return await self._import(request, login, cookie)
            return await self._app_passwords(request, session, login, cookie)
        if name == "export":
            return export.response(self.get_config().database_path, login)
        if name == "mobileconfig":
            return await self.readers.run(lambda conn: self._profile(conn, login))
        # the form token on the loop: the secret is made by one thread
        token = self._token(login)
        logout = token if cookie else ""
        return await self.readers.run(lambda conn: self._page(conn, name, login, request, token, logout))

    # -- pages ----------------------------------------------------------------------------------------------

    def _page(
        self, conn: sqlite3.Connection, name: str, login: Login, request: Request, token: str, logout: str
    ) -> Response:
        display_name = display_name_of(conn, login.account_id)
        if name == "import":
            started = "started" in query_flags(request.query)
            content, active = self._import_page(conn, login, token, started)
            return importpage.response("Import mail", login.email, display_name, content, logout, active)
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
        elif name == "filters":
            done = done_note(request.query)
            wanted = urllib.parse.parse_qs(request.query).get("edit", [""])[0]
            editing = pagefilters.get(conn, login.account_id, int(wanted)) if wanted.isdigit() else None
            listed = pagefilters.listed(conn, login.account_id)
            title, content = "Filters", pages.filters(token, listed, done=done, editing=editing)
        elif name == "forwarding":
            saved = "saved" in query_flags(request.query)
            forward = autoforward.get(conn, login.account_id)
            allowed = self.get_config().web.user_forwarding
            title, content = "Forwarding", pages.forwarding_form(token, forward, saved=saved, allowed=allowed)
        elif name == "senders":
            done = done_note(request.query)
            title, content = (
                "Spam senders",
                pages.senders(token, senderlists.entries(conn, login.account_id), done=done),
            )
        elif name == "autoreply":
            saved = "saved" in query_flags(request.query)
            reply = autoreply.get(conn, login.account_id)
            title, content = "Automatic reply", pages.autoreply_form(token, reply, saved=saved)
        elif name == "app-passwords":
            revoked = "revoked" in query_flags(request.query)
            title, content = "App passwords", pages.app_passwords(_app_passwords(conn, login, token, revoked=revoked))
        else:
            changed = "changed" in query_flags(request.query)
            title, content = "Password", pages.password_form(token, changed=changed)
        return Response(200, pages.page(title, login.email, display_name, name, content, logout), HTML)

    def _profile(self, conn: sqlite3.Connection, login: Login) -> Response:
        """The account's Apple configuration profile (clientconfig.mobileconfig), as a download."""
        try:
            body = clientconfig.mobileconfig(self.get_config(), login.email, display_name_of(conn, login.account_id))
        except InvalidInput as exc:
            return httpserver.text(404, str(exc))
        local, _, domain = login.email.partition("@")
        filename = "".join(c if c.isalnum() or c in ".-_" else "-" for c in f"{local}-at-{domain}")
        disposition = ("Content-Disposition", f'attachment; filename="{filename}.mobileconfig"')
        return Response(200, body, clientconfig.PROFILE_TYPE, (disposition,))

    def _form_page(self, status: int, login: Login, error: str, cookie: str | None) -> Response:
        return self._render(
            status, login, "Password", "password", lambda _, token: pages.password_form(token, error=error), cookie
        )

    # -- password change ------------------------------------------------------------------------------------

    async def _change_password(self, request: Request, session: Session, login: Login, cookie: str | None) -> Response:
        form = self._form(request, login.email, "password change")
        if isinstance(form, Response):
            return form
        if not self._token_ok(form, login.account_id):
            return self._form_page(403, login, EXPIRED, cookie)
        fields = single_fields(form)
        current, new, again = fields.get("current", ""), fields.get("new", ""), fields.get("again", "")
        problem = passwords.check_strength(new)
        if new != again:
            problem = "the two new passwords differ"
        elif new == current and not problem:
            problem = "the new password is the one you have"
        if problem:
            return self._form_page(400, login, problem[:1].upper() + problem[1:] + ".", cookie)
        try:
            await self.basic.authenticator.verify(login.email, current, session.ip, "web")
        except LoginFailed as exc:
            if exc.throttled:
                return throttled(exc)
            return self._form_page(403, login, "The current password is not right.", cookie)
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

        changed = await self._write(
            change, f"password of {login.email} not changed", "the password could not be changed now; try again later"
        )
        if isinstance(changed, Response):
            return changed
        if not changed:
            return httpserver.text(403, "this account can no longer log in")
        session.logins.clear()
        log.info("password of %s changed on the account page from %s", login.email, session.ip)
        return httpserver.redirect(303, "/account/password?changed")

    # -- filters --------------------------------------------------------------------------------------------

    async def _filters(self, request: Request, session: Session, login: Login, cookie: str | None) -> Response:
        """Add, change, move up or remove a filter (crm/pagefilters.py); 303 back to the list, or the list with the
        reason (and, for a change, the form as it was sent)."""
        form = self._form(request, login.email, "filter change")
        if isinstance(form, Response):
            return form

        fields = single_fields(form)
        action = fields.get("action", "")
        raw_id = fields.get("id", "")
        filter_id = int(raw_id) if raw_id.isdigit() and len(raw_id) < 19 else 0
        typed = pagefilters.Filter(
            filter_id, fields.get("field", ""), fields.get("value", ""), fields.get("folder", ""),
            fields.get("seen") == "on", 0.0,
        )  # fmt: skip

        def again(status: int, error: str) -> Response:
            def content(conn: sqlite3.Connection, token: str) -> str:
                editing = typed if action == "edit" and typed.field in pagefilters.FIELDS else None
                return pages.filters(token, pagefilters.listed(conn, login.account_id), error=error, editing=editing)

            return self._render(status, login, "Filters", "filters", content, cookie)

        if not self._token_ok(form, login.account_id):
            return again(403, EXPIRED)
        if action not in _FILTER_DONE:
            return httpserver.text(400, "unknown action")

        def change(conn: sqlite3.Connection) -> None:
            account = login.account_id
            if action == "add":
                pagefilters.add(conn, account, typed.field, typed.value, typed.folder, typed.seen)
            elif action == "edit":
                pagefilters.update(conn, account, filter_id, typed.field, typed.value, typed.folder, typed.seen)
            elif action == "up":
                pagefilters.move_up(conn, account, filter_id)
            else:
                pagefilters.remove(conn, account, filter_id)

        try:
            await self.store.write(change)
        except (InvalidInput, NotFound) as exc:
            return again(400, sentence(exc))
        except RelentadError as exc:
            log.error("account page: filters of %s not changed: %s", login.email, exc)
            return httpserver.text(503, "the change could not be made now; try again later")
        log.info("filter %s for %s on the account page from %s", action, login.email, session.ip)
        return httpserver.redirect(303, "/account/filters?" + _FILTER_DONE[action])

    # -- forwarding -----------------------------------------------------------------------------------------

    async def _forwarding(self, request: Request, session: Session, login: Login, cookie: str | None) -> Response:
        """Turn forwarding on, off or elsewhere (crm/autoforward.py). It sends the account's mail away, so it takes
        the account's password (checked as at login: throttled, a wrong one a failed login) and leaves a login
        history row (``forwarding-changed``) the user sees on the Logins page."""
        if not self.get_config().web.user_forwarding:
            return httpserver.text(403, "forwarding elsewhere is turned off by the administrator")
        form = self._form(request, login.email, "forwarding change")
        if isinstance(form, Response):
            return form
        fields = single_fields(form)
        typed = autoforward.AutoForward(
            enabled=fields.get("enabled") == "on", address=fields.get("address", ""), keep=fields.get("keep") == "on"
        )

        def again(status: int, error: str) -> Response:
            def content(_: sqlite3.Connection, token: str) -> str:
                return pages.forwarding_form(token, typed, error=error)

            return self._render(status, login, "Forwarding", "forwarding", content, cookie)

        if not self._token_ok(form, login.account_id):
            return again(403, EXPIRED)
        try:
            self.store.read(lambda conn: autoforward.checked(conn, typed))
        except InvalidInput as exc:
            return again(400, sentence(exc))
        try:
            await self.basic.authenticator.verify(login.email, fields.get("current", ""), session.ip, "web")
        except LoginFailed as exc:
            if exc.throttled:
                return throttled(exc)
            return again(403, "The password is not right.")

        def change(conn: sqlite3.Connection) -> autoforward.AutoForward:
            saved = autoforward.save(conn, login.account_id, typed)
            attempt = history.Attempt(login.email, session.ip, "web", "success", login.account_id, "forwarding-changed")
            history.record(conn, attempt)
            return saved

        saved = await self._write(
            change, f"forwarding of {login.email} not changed", "the change could not be made now; try again later"
        )
        if isinstance(saved, Response):
            return saved
        log.info(
            "forwarding of %s %s on the account page from %s", login.email, autoforward.describe(saved), session.ip
        )
        return httpserver.redirect(303, "/account/forwarding?saved")

    # -- spam sender lists ----------------------------------------------------------------------------------

    async def _senders(self, request: Request, session: Session, login: Login, cookie: str | None) -> Response:
        """Add a sender to the allow or block list, or remove one (spam/senderlists.py, as ``relentad spam
        allow|block|unlist`` does); 303 back to the list."""
        form = self._form(request, login.email, "sender list change")
        if isinstance(form, Response):
            return form

        def again(status: int, error: str) -> Response:
            def content(conn: sqlite3.Connection, token: str) -> str:
                return pages.senders(token, senderlists.entries(conn, login.account_id), error=error)

            return self._render(status, login, "Spam senders", "senders", content, cookie)

        if not self._token_ok(form, login.account_id):
            return again(403, EXPIRED)
        action, written = (form.get(key, [""])[0] for key in ("action", "pattern"))
        if action not in ("allow", "block", "remove"):
            return httpserver.text(400, "unknown action")
        try:
            pattern = senderlists.normalize_pattern(written)
        except InvalidInput as exc:
            return again(400, sentence(exc))

        def change(conn: sqlite3.Connection) -> bool:
            if action == "remove":
                return senderlists.remove(conn, login.account_id, pattern)
            senderlists.put(conn, login.account_id, pattern, "block" if action == "block" else "allow")
            return True

        changed = await self._write(
            change, f"sender lists of {login.email} not changed", "the change could not be made now; try again later"
        )
        if isinstance(changed, Response):
            return changed
        if not changed:
            return again(400, f"{pattern} is on neither list.")
        log.info("sender %s of %s: %s on the account page from %s", pattern, login.email, action, session.ip)
        return httpserver.redirect(303, "/account/senders?" + ("removed" if action == "remove" else "added"))

    # -- automatic reply ------------------------------------------------------------------------------------

    async def _autoreply(self, request: Request, session: Session, login: Login, cookie: str | None) -> Response:
        """Save the automatic reply (crm/autoreply.py: its script runs at delivery from then on); a refused form
        comes back with what was typed and the reason."""
        form = self._form(request, login.email, "automatic reply change")
        if isinstance(form, Response):
            return form
        fields = single_fields(form)
        typed = autoreply.AutoReply(
            enabled=fields.get("enabled") == "on",
            message=fields.get("message", ""),
            subject=fields.get("subject", ""),
            first_day=fields.get("first_day", ""),
            last_day=fields.get("last_day", ""),
            days=int(fields["days"]) if fields.get("days", "").strip().isdigit() else 0,
        )

        def again(status: int, error: str) -> Response:
            return self._render(
                status,
                login,
                "Automatic reply",
                "autoreply",
                lambda _, token: pages.autoreply_form(token, typed, error=error),
                cookie,
            )

        if not self._token_ok(form, login.account_id):
            return again(403, EXPIRED)
        try:
            autoreply.checked(typed)
        except InvalidInput as exc:
            return again(400, sentence(exc))
        saved = await self._write(
            lambda conn: autoreply.save(conn, login.account_id, typed),
            f"automatic reply of {login.email} not saved",
            "the automatic reply could not be saved now; try again later",
        )
        if isinstance(saved, Response):
            return saved
        log.info(
            "automatic reply of %s %s on the account page from %s", login.email, autoreply.describe(saved), session.ip
        )
        return httpserver.redirect(303, "/account/autoreply?saved")

    # -- app passwords --------------------------------------------------------------------------------------

    def _app_page(self, status: int, login: Login, cookie: str | None, **shown: Any) -> Response:
        def content(conn: sqlite3.Connection, token: str) -> str:
            return pages.app_passwords(_app_passwords(conn, login, token, **shown))

        return self._render(status, login, "App passwords", "app-passwords", content, cookie)

    async def _app_passwords(self, request: Request, session: Session, login: Login, cookie: str | None) -> Response:
        """Add (the new password shown once, in this answer only) or revoke one; each a login history row
        (protocol web, reason ``app-password-added``/``-revoked``, its name), as a password change is."""
        form = self._form(request, login.email, "app password change", max_fields=16)
        if isinstance(form, Response):
            return form
        if not self._token_ok(form, login.account_id):
            return self._app_page(403, login, cookie, error=EXPIRED)
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
            return self._app_page(400, login, cookie, error=sentence(exc))
        except RelentadError as exc:
            log.error("account page: app passwords of %s not changed: %s", login.email, exc)
            return httpserver.text(503, "the change could not be made now; try again later")
        log.info("app password %r of %s %s on the account page from %s", name, login.email, done, session.ip)
        if action == "revoke":
            return httpserver.redirect(303, "/account/app-passwords?revoked")
        return self._app_page(200, login, cookie, created=(name, shown))


def _overview(conn: sqlite3.Connection, login: Login, display_name: str) -> pages.Overview:
    boxes = conn.execute(
        """SELECT b.name, count(m.id), coalesce(sum(m.size), 0) FROM mailboxes b
           LEFT JOIN messages m ON m.mailbox_id = b.id WHERE b.account_id = ?
           GROUP BY b.id ORDER BY b.name = 'INBOX' DESC, b.name""",
        (login.account_id,),
    ).fetchall()
    return pages.Overview(
        login.email,
        display_name,
        get_usage(conn, login.account_id),
        [(str(n), int(c), int(s)) for n, c, s in boxes],
        autoreply.describe(autoreply.get(conn, login.account_id)),
        autoforward.describe(autoforward.get(conn, login.account_id)),
    )


def _app_passwords(conn: sqlite3.Connection, login: Login, token: str, **shown: Any) -> pages.AppPasswords:
    only = conn.execute("SELECT app_passwords_only FROM accounts WHERE id = ?", (login.account_id,)).fetchone()
    return pages.AppPasswords(token, apppasswords.listed(conn, login.account_id), bool(only and only[0]), **shown)
