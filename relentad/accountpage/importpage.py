"""``/account/import``: a user brings their mail over from their old server (lifecycle/importjobs.py runs it).

The page shows the account's last import (waiting, under way with its counts, finished, or stopped and why) and,
unless one is under way, the form: server, port, TLS or STARTTLS, user name and password. While an import is
under way the page asks the browser to load it again every few seconds (a ``Refresh`` header: the pages carry no
script). The password goes to the import's process and nowhere else.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from .. import httpserver
from ..auth.authenticator import Login
from ..errors import InvalidInput, RelentadError
from ..httpserver import Request, Response
from ..lifecycle import importjobs
from ..lifecycle.importjobs import Job
from .base import EXPIRED, HTML, sentence, single_fields
from .login import LoginPages
from .pages import esc, notices, page, token_field, when

log = logging.getLogger("relentad.accountpage.server")

REFRESH = 5
"""Seconds between the page's own reloads while an import is under way."""

OFF = "importing mail from another server is turned off by the administrator"


@dataclass(frozen=True)
class Typed:
    """What the form held, shown again with a refusal (never the password)."""

    host: str = ""
    port: str = "993"
    security: str = "tls"
    login: str = ""


def status(job: Job | None) -> str:
    """The last import, in a sentence or two."""
    if job is None:
        return ""
    source = esc(job.source)
    if job.state == "queued":
        return f'<p class="note">The import from <code>{source}</code> waits for another import to finish.</p>'
    counts = f"{job.done} of {job.total} message(s) done: {job.imported} copied"
    counts += f", {job.already} already here" if job.already else ""
    if job.state == "running":
        doing = counts if job.total else "reading its folders"  # the messages are counted before any is copied
        return f'<p class="note">Importing from <code>{source}</code>: {doing}. This page reloads itself.</p>'
    finished = esc(when(job.finished or job.queued))
    if job.state == "done":
        return (
            f'<p class="note">The import from <code>{source}</code> finished at {finished}: {counts}. Run it again '
            "later to bring over what arrived there since; what is here already is not copied twice.</p>"
        )
    return (
        f'<p class="error">The import from <code>{source}</code> stopped at {finished}: {esc(job.error)}. '
        f"{counts}; starting it again goes on from there.</p>"
    )


def form(token: str, job: Job | None, typed: Typed, error: str = "", started: bool = False) -> str:
    """The page's content: the last import's state and, unless one is under way, the form."""
    out = [
        "<p>Bring the mail of your old mailbox here: every folder with its messages, read and flagged marks and "
        "dates. Sent, Drafts, Junk and Trash go into yours, other folders keep their names. Nothing on the old "
        "server is changed.</p>",
        notices("The import has started." if started else "", error=error),
        status(job),
    ]
    if job is not None and job.active:
        return "".join(out)
    tls = " selected" if typed.security != "starttls" else ""
    starttls = " selected" if typed.security == "starttls" else ""
    out.append(
        '<form method="post" action="/account/import">'
        + token_field(token)
        + '<label for="host">Old server (its IMAP host name, such as imap.example.com)</label>'
        f'<input id="host" name="host" size="40" value="{esc(typed.host)}" required>'
        '<label for="security">Connection</label><select id="security" name="security">'
        f'<option value="tls"{tls}>TLS (port 993)</option>'
        f'<option value="starttls"{starttls}>STARTTLS (port 143)</option></select>'
        '<label for="port">Port</label>'
        f'<input id="port" name="port" size="6" inputmode="numeric" value="{esc(typed.port)}" required>'
        '<label for="login">User name there (often the mail address)</label>'
        f'<input id="login" name="login" size="40" value="{esc(typed.login)}" autocomplete="off" required>'
        '<label for="password">Password there</label>'
        '<input type="password" id="password" name="password" autocomplete="off" required>'
        '<p><button type="submit">Import</button></p></form>'
        "<p><small>The password is used for this import only and is not stored. Providers with two-step login "
        "(Gmail, Outlook.com, iCloud) want an app password made in their settings. A large mailbox takes a while; "
        "you can leave this page and come back.</small></p>"
    )
    return "".join(out)


class ImportPage(LoginPages):
    """The handlers of ``/account/import``."""

    imports: importjobs.Runner | None = None  # set by the web server; None: no import can run (the page says so)

    def _import_page(self, conn: sqlite3.Connection, login: Login, token: str, started: bool) -> tuple[str, bool]:
        """(content, whether an import is under way)."""
        if not self.get_config().web.user_import or self.imports is None:
            return f"<p>{esc(sentence(OFF))}</p>", False
        job = self.imports.shown(importjobs.get(conn, login.account_id))
        return form(token, job, Typed(login=login.email), started=started), job is not None and job.active

    async def _import(self, request: Request, login: Login, cookie: str | None) -> Response:
        """Start an import: checked as the CLI checks it, then queued (one per account at a time)."""
        runner = self.imports
        if not self.get_config().web.user_import or runner is None:
            return httpserver.text(403, OFF)
        fields_or_refusal = self._form(request, login.email, "import")
        if isinstance(fields_or_refusal, Response):
            return fields_or_refusal
        fields = single_fields(fields_or_refusal)
        typed = Typed(
            fields.get("host", ""), fields.get("port", ""), fields.get("security", ""), fields.get("login", "")
        )

        def again(status: int, error: str) -> Response:
            def content(conn: sqlite3.Connection, token: str) -> str:
                return form(token, runner.shown(importjobs.get(conn, login.account_id)), typed, error=error)

            return self._render(status, login, "Import mail", "import", content, cookie)

        if not self._token_ok(fields_or_refusal, login.account_id):
            return again(403, EXPIRED)
        password = fields.get("password", "")
        try:
            url = importjobs.url_of(typed.host, typed.port, typed.security, typed.login)
            if not password:
                raise InvalidInput("give the password of the old mailbox")
            await runner.submit(login.account_id, login.email, url, password)
        except InvalidInput as exc:
            return again(400, sentence(exc))
        except RelentadError as exc:
            log.error("account page: import for %s not started: %s", login.email, exc)
            return httpserver.text(503, "the import could not be started now; try again later")
        log.info("account page: import into %s from %s started", login.email, url)
        return httpserver.redirect(303, "/account/import?started")


def response(title: str, email: str, display_name: str, content: str, logout: str, refresh: bool) -> Response:
    headers = (("Refresh", str(REFRESH)),) if refresh else ()
    return Response(200, page(title, email, display_name, "import", content, logout), HTML, headers)
