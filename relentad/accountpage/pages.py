"""The account pages as HTML: pure functions from what the store says to bytes.

Invariants: every value that came from outside (names, addresses, mailbox names, IPs, messages) goes through
:func:`esc`; the pages need no script and load nothing (the stylesheet is inline, allowed by the page's
Content-Security-Policy hash, :data:`STYLE_HASH`); numbers are the store's, formatted as the CLI formats them.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..auth.apppasswords import SCOPES, AppPassword
from ..crm.autoforward import AutoForward
from ..crm.autoforward import describe as describe_forward
from ..crm.autoreply import AutoReply, describe
from ..crm.pagefilters import FIELDS as FILTER_FIELDS
from ..crm.pagefilters import Filter
from ..lifecycle.activity import Day, Login, Month
from ..quota import Usage
from ..spam.senderlists import Entry as SenderEntry
from ..units import format_size

STYLE = (
    "body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#222}"
    "nav a{margin-right:1rem}nav a.here{font-weight:bold;text-decoration:none;color:#222}"
    "table{border-collapse:collapse;margin:.5rem 0 1.5rem}th,td{padding:.2rem .8rem .2rem 0;text-align:left}"
    "td.n,th.n{text-align:right}tr+tr td{border-top:1px solid #ddd}"
    ".note{padding:.5rem .8rem;background:#eef6ee}.error{padding:.5rem .8rem;background:#fbeaea}"
    "label{display:block;margin:.6rem 0 .2rem}input{font:inherit}small{color:#666}form.inline{display:inline}"
)
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

NAV = (
    ("", "Overview"),
    ("logins", "Logins"),
    ("activity", "Activity"),
    ("password", "Password"),
    ("app-passwords", "App passwords"),
    ("2fa", "Two-factor login"),
    ("autoreply", "Automatic reply"),
    ("senders", "Spam senders"),
    ("filters", "Filters"),
    ("forwarding", "Forwarding"),
    ("import", "Import mail"),
)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def notices(*notes: str, error: str = "") -> str:
    """A page's notes (what it says is so, what a form did) and a form's refusal, each its own paragraph."""
    out = "".join(f'<p class="note">{esc(note)}</p>' for note in notes if note)
    return out + (f'<p class="error">{esc(error)}</p>' if error else "")


def token_field(token: str) -> str:
    """The hidden CSRF field every form of these pages carries."""
    return f'<input type="hidden" name="token" value="{esc(token)}">'


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _limit(used: int, limit: int, size: bool = False) -> str:
    shown = format_size(used) if size else str(used)
    if not limit:
        return f"{shown} (no limit)"
    whole = format_size(limit) if size else str(limit)
    return f"{shown} of {whole} ({100.0 * used / limit:.1f} %)"


def table(head: Sequence[str], rows: Iterable[Sequence[object]], numeric: frozenset[int] = frozenset()) -> str:
    """A table of escaped cells (no header row when ``head`` is empty); columns in ``numeric`` right-aligned."""

    def cell(tag: str, index: int, value: object) -> str:
        kind = ' class="n"' if index in numeric else ""
        return f"<{tag}{kind}>{esc(value)}</{tag}>"

    lines = ["<table>" + ("<tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>" if head else "")]
    lines += ["<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows]
    return "\n".join(lines) + "</table>"


def page(title: str, email: str, display_name: str, here: str, content: str, logout: str = "") -> bytes:
    """A whole page: head, navigation (``here`` marked), ``content`` (already HTML); with a form token
    ``logout`` (a cookie session), a Log out button."""
    links = " ".join(
        f'<a href="/account/{path}"{" class=here" if path == here else ""}>{esc(name)}</a>' for path, name in NAV
    )
    who = f"{esc(display_name)} &lt;{esc(email)}&gt;" if display_name else esc(email)
    if logout:
        who += (
            f' <form method="post" action="/account/logout" class="inline"><input type="hidden" name="token" '
            f'value="{esc(logout)}"><button type="submit">Log out</button></form>'
        )
    return _document(
        f"{esc(title)} · {esc(email)}",
        f"<header><p>{who}</p><nav>{links} <a href=/account/export>Download my data</a></nav></header>\n"
        f"<main><h1>{esc(title)}</h1>\n{content}\n</main>",
    )


def _document(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n"
    ).encode()


def login_page(token: str, error: str = "", email: str = "", note: str = "") -> bytes:
    """The login form (address, password, code): what opens a cookie session, and the only way in with two-factor
    login on."""
    notes = f'<p class="note">{esc(note)}</p>' if note else ""
    notes += f'<p class="error">{esc(error)}</p>' if error else ""
    return _document(
        "Log in",
        f"<main><h1>Log in</h1>\n{notes}"
        '<form method="post" action="/account/login">'
        f'<input type="hidden" name="token" value="{esc(token)}">'
        '<label for="email">Mail address</label>'
        f'<input type="email" id="email" name="email" value="{esc(email)}" autocomplete="username" required>'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" autocomplete="current-password" required>'
        '<label for="code">Code from your authenticator app, or a recovery code (with two-factor login on)</label>'
        '<input id="code" name="code" autocomplete="one-time-code" maxlength="40">'
        '<p><button type="submit">Log in</button></p></form>'
        "<p><small>Without two-factor login your browser's own login prompt (HTTP Basic) works as well: open "
        '<a href="/account/">the account pages</a>.</small></p></main>',
    )


def login_needed() -> bytes:
    """The body of every 401 (a browser shows it when its prompt is cancelled): the same whether the password was
    missing, wrong, or right for an account with two-factor login on."""
    return _document(
        "Log in",
        "<main><h1>Log in</h1><p>Log in with your mail address and password. With two-factor login on, your "
        'browser\'s login prompt does not open these pages: <a href="/account/login">log in with the form</a> and a '
        "code from your authenticator app.</p></main>",
    )


@dataclass(frozen=True)
class TwoFactor:
    """What the two-factor page shows: on (recovery codes left) or a new secret to enroll, and the last form's
    outcome."""

    token: str
    enabled: bool
    recovery_left: int = 0
    secret: str = ""  # base32, when off: the one the enroll form confirms
    uri: str = ""
    qr: str = ""  # the URI as an inline SVG QR code (markup made from its bits only: not escaped)
    codes: Sequence[str] = ()  # recovery codes just made: shown this once
    error: str = ""
    note: str = ""


def two_factor(data: TwoFactor) -> str:
    hidden = f'<input type="hidden" name="token" value="{esc(data.token)}">'
    out = [
        "<p>With two-factor login on, these pages ask for a 6-digit code from an authenticator app on your phone "
        "(any TOTP app: Aegis, FreeOTP, Google Authenticator, 1Password…) as well as your password, so a stolen "
        "password alone cannot open them, make app passwords or change your password. Mail programs are not "
        "affected: they keep using your password or their app passwords (ask the administrator to turn on "
        "<strong>app passwords only</strong> so that your password works only here).</p>"
    ]
    if data.note:
        out.append(f'<p class="note">{esc(data.note)}</p>')
    if data.error:
        out.append(f'<p class="error">{esc(data.error)}</p>')
    if data.codes:
        out.append(
            '<p class="note">Your recovery codes: each logs in once in place of a code, should the phone be lost. '
            "Write them down or print this page now: they are not shown again.</p><ul>"
            + "".join(f"<li><code>{esc(code)}</code></li>" for code in data.codes)
            + "</ul>"
        )
    if data.enabled:
        out.append(
            f"<p>Two-factor login is <strong>on</strong>; {data.recovery_left} recovery codes left.</p>"
            '<h2>Turn it off</h2><form method="post" action="/account/2fa">'
            f'{hidden}<input type="hidden" name="action" value="disable">'
            '<label for="code">A current code or a recovery code</label>'
            '<input id="code" name="code" autocomplete="one-time-code" maxlength="40" required>'
            '<p><button type="submit">Turn two-factor login off</button></p></form>'
            "<h2>New recovery codes</h2><p>Ten new codes in place of those left, which stop working: for a lost "
            'printout, or when few are left.</p><form method="post" action="/account/2fa">'
            f'{hidden}<input type="hidden" name="action" value="recovery">'
            '<label for="renew-code">A current code or a recovery code</label>'
            '<input id="renew-code" name="code" autocomplete="one-time-code" maxlength="40" required>'
            '<p><button type="submit">Make new recovery codes</button></p></form>'
        )
        return "".join(out)
    out.append(
        "<p>Two-factor login is <strong>off</strong>.</p><h2>Turn it on</h2>"
        "<p>Scan the code with your authenticator app, or type the key into it (most apps take the link too):</p>"
        + (f'<p class="qr">{data.qr}</p>' if data.qr else "")
        + f'<p>Key: <code class="secret">{esc(data.secret)}</code><br>'
        f'Link: <a href="{esc(data.uri)}"><code>{esc(data.uri)}</code></a></p>'
        "<p>Then type the code the app shows, to prove the two agree:</p>"
        f'<form method="post" action="/account/2fa">{hidden}<input type="hidden" name="action" value="enable">'
        f'<input type="hidden" name="secret" value="{esc(data.secret)}">'
        '<label for="code">Code</label>'
        '<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="10" required>'
        '<p><button type="submit">Turn two-factor login on</button></p></form>'
        "<p><small>From then on these pages take the login form only (address, password, code); your browser's "
        "login prompt no longer opens them.</small></p>"
    )
    return "".join(out)


@dataclass(frozen=True)
class Overview:
    email: str
    display_name: str
    usage: Usage
    mailboxes: Sequence[tuple[str, int, int]]  # (name, messages, octets)
    autoreply: str = "off"  # describe() of the automatic reply: a reminder of one left on
    forwarding: str = "off"


def overview(data: Overview) -> str:
    usage = data.usage
    rows = [
        ("Address", data.email),
        ("Automatic reply", data.autoreply),
        ("Forwarding", data.forwarding),
        ("Disk used", _limit(usage.bytes, usage.limit, size=True)),
        ("Messages", _limit(usage.messages, usage.message_limit)),
        ("Recipients sent this hour", _limit(usage.sent_this_hour, usage.hourly_send)),
        ("Recipients sent today (UTC)", _limit(usage.sent_today, usage.daily_send)),
    ]
    boxes = [(name, count, format_size(size)) for name, count, size in data.mailboxes]
    return (
        table((), rows)
        + "<h2>Mailboxes</h2>\n"
        + table(("Mailbox", "Messages", "Size"), boxes, frozenset({1, 2}))
        + "<p><small>Deleted mail waiting in the retention period does not count against the quota.</small></p>"
        + "<h2>Set up a device</h2>"
        '<p><a href="/account/mobileconfig">Download the profile for an iPhone, iPad or Mac</a>: it sets up your '
        "mail and contacts, and asks for your password once. Thunderbird and Outlook find the settings themselves "
        "from your address.</p>"
    )


_REASONS = {
    "password-changed": "password changed",
    "app-password-added": "app password made",
    "app-password-revoked": "app password revoked",
    "2fa-ok": "code right",
    "2fa-failed": "code wrong or missing",
    "2fa-required": "password alone (two-factor login on)",
    "recovery-code-used": "recovery code used",
    "2fa-enabled": "two-factor login on",
    "2fa-disabled": "two-factor login off",
    "2fa-recovery-renewed": "new recovery codes",
    "2fa-reset-by-admin": "two-factor login off (administrator)",
    "forwarding-changed": "forwarding changed",
}
"""The login history's reasons the user is told on the Logins page (why a password failed is the admin's)."""


def logins(found: Sequence[Login], days: int) -> str:
    rows = [
        (when(login.time), login.protocol, login.ip, login.result, _REASONS.get(login.reason, ""), login.app_password)
        for login in found
    ]
    intro = (
        f"<p>Every login to your account of the last {days} days, successful or not, with the address it came "
        "from: IMAP, POP3, SMTP submission, ManageSieve, CardDAV and these pages (a password change is listed too), "
        "with the name of the app password a login used. A failed login you did not make means someone is guessing "
        "your password; a right password whose code was wrong means someone has it: change it.</p>"
    )
    head = ("Time", "Protocol", "IP address", "Result", "Note", "App password")
    return intro + (table(head, rows) if rows else "<p>None.</p>")


def activity(per_day: Sequence[Day], per_month: Sequence[Month], totals: dict[str, int]) -> str:
    head = ("Day", "Received", "Sent", "Stored", "Logins", "Failed logins")
    numeric = frozenset({1, 2, 3, 4, 5})
    day_rows = [
        (d.day, d.received, d.sent, format_size(d.bytes_stored), d.logins, d.failed_logins)
        for d in per_day
        if d.received or d.sent or d.bytes_stored or d.logins or d.failed_logins
    ]
    month_rows = [
        (m.month, m.received, m.sent, format_size(m.bytes_stored), m.logins, m.failed_logins) for m in per_month
    ]
    total = (
        "All time",
        totals["received"],
        totals["sent"],
        format_size(totals["bytes_stored"]),
        totals["logins"],
        totals["failed_logins"],
    )
    out = [
        f"<p>Mail received, recipients sent to and logins per UTC day, the last {len(per_day)} days "
        "(days without any are left out); older days are kept as monthly sums.</p>",
        table(head, [*day_rows, total], numeric),
    ]
    if month_rows:
        out += ["<h2>Earlier months</h2>", table(("Month", *head[1:]), month_rows, numeric)]
    return "\n".join(out)


def password_form(token: str, error: str = "", changed: bool = False) -> str:
    return (
        notices("Your password was changed." if changed else "", error=error)
        + '<form method="post" action="/account/password">'
        + token_field(token)
        + '<label for="current">Current password</label>'
        '<input type="password" id="current" name="current" autocomplete="current-password" required>'
        '<label for="new">New password (at least 8 characters)</label>'
        '<input type="password" id="new" name="new" autocomplete="new-password" minlength="8" required>'
        '<label for="again">New password again</label>'
        '<input type="password" id="again" name="again" autocomplete="new-password" minlength="8" required>'
        '<p><button type="submit">Change password</button></p></form>'
        "<p><small>The new password works at once for IMAP, POP3, SMTP, ManageSieve and CardDAV, and the old one "
        "stops working; mail programs logged in now stay logged in until they reconnect. Your browser asks for "
        "the new password on the next page.</small></p>"
    )


def filters(
    token: str, listed: Sequence[Filter], error: str = "", done: str = "", editing: Filter | None = None
) -> str:
    """The account's filters in running order, each with Edit, Move up and Remove, and a form to add one (or, with
    ``editing``, to change that one in its place)."""
    hidden = token_field(token)
    out = [
        "<p>Filters file incoming mail into a folder as it arrives, whatever program you read it with. The first "
        "filter that matches decides; the folder is made when it does not exist.</p>",
        notices(done, error=error),
    ]

    def button(action: str, filter_id: int, label: str) -> str:
        return (
            f'<form method="post" action="/account/filters" class="inline">{hidden}'
            f'<input type="hidden" name="action" value="{action}"><input type="hidden" name="id" value="{filter_id}">'
            f'<button type="submit">{label}</button></form>'
        )

    if listed:
        rows = [
            f"<tr><td>{esc(f.describe())}</td><td>"
            f'<a href="/account/filters?edit={f.id}">Edit</a> '
            + (button("up", f.id, "Move up") + " " if n else "")
            + button("remove", f.id, "Remove")
            + "</td></tr>"
            for n, f in enumerate(listed)
        ]
        out.append("<table><tr><th>Filter</th><th></th></tr>" + "\n".join(rows) + "</table>")
    else:
        out.append("<p>No filters yet.</p>")
    shown = editing or Filter(0, "from", "", "", False, 0.0)
    options = "".join(
        f'<option value="{key}"{" selected" if key == shown.field else ""}>{esc(label)}</option>'
        for key, (label, _) in FILTER_FIELDS.items()
    )
    if editing is None:
        heading, action, submit = "New filter", '<input type="hidden" name="action" value="add">', "Add filter"
    else:
        heading, submit = "Change the filter", "Save"
        action = f'<input type="hidden" name="action" value="edit"><input type="hidden" name="id" value="{editing.id}">'
    checked = " checked" if shown.seen else ""
    out.append(
        f'<h2>{heading}</h2><form method="post" action="/account/filters">{hidden}{action}'
        f'<label for="field">When</label><select id="field" name="field">{options}</select>'
        '<label for="value">contains</label>'
        f'<input id="value" name="value" size="40" maxlength="200" value="{esc(shown.value)}" required>'
        '<label for="folder">move it to the folder</label>'
        f'<input id="folder" name="folder" size="40" value="{esc(shown.folder)}" required>'
        f'<label><input type="checkbox" name="seen" value="on"{checked}> and mark it read</label>'
        f'<p><button type="submit">{submit}</button>'
        + (' <a href="/account/filters">Cancel</a>' if editing is not None else "")
        + "</p></form>"
        "<p><small>Filters run after the administrator's rules and before a Sieve script of your own; mail filed "
        "as Junk stays in Junk.</small></p>"
    )
    return "".join(out)


def forwarding_form(
    token: str, forward: AutoForward, error: str = "", saved: bool = False, allowed: bool = True
) -> str:
    """Forwarding to one address elsewhere; a change takes the account's password. Not ``allowed``: what the
    administrator decided, and no form."""
    if not allowed:
        return "<p>Forwarding your mail elsewhere is turned off by the administrator of this server.</p>"
    enabled = " checked" if forward.enabled else ""
    keep = " checked" if forward.keep else ""
    return (
        notices(f"Forwarding is {describe_forward(forward)}.", "Saved." if saved else "", error=error)
        + '<form method="post" action="/account/forwarding">'
        + token_field(token)
        + f'<label><input type="checkbox" name="enabled" value="on"{enabled}> Forward my mail</label>'
        '<label for="address">To the address</label>'
        f'<input type="email" id="address" name="address" size="40" value="{esc(forward.address)}">'
        f'<label><input type="checkbox" name="keep" value="on"{keep}> Keep a copy here too</label>'
        '<label for="current">Your password (to confirm the change)</label>'
        '<input type="password" id="current" name="current" autocomplete="current-password" required>'
        '<p><button type="submit">Save</button></p></form>'
        "<p><small>Mail filed as Junk is never forwarded. Forwarded mail counts against your sending limits. "
        "Someone who learned your password could forward your mail to themselves: the change is listed under "
        "Logins, and a forward you did not set up means you should change your password.</small></p>"
    )


def senders(token: str, listed: Sequence[SenderEntry], error: str = "", done: str = "") -> str:
    """The account's spam allow and block lists, each entry with a Remove button, and a form to add one."""
    hidden = token_field(token)
    out = [
        "<p><strong>Allow</strong>: mail from these senders never goes to Junk on its spam score (unless its sender "
        "is forged: DMARC fails). <strong>Block</strong>: their mail always goes to Junk. An address, or "
        "<code>@domain</code> for a whole domain and its subdomains; the most specific entry wins.</p>",
        notices(done, error=error),
    ]
    if listed:
        rows = [
            f"<tr><td>{esc(e.pattern)}</td><td>{esc(e.action)}</td><td>{esc(when(e.created))}</td>"
            f'<td><form method="post" action="/account/senders">{hidden}'
            f'<input type="hidden" name="action" value="remove"><input type="hidden" name="pattern" '
            f'value="{esc(e.pattern)}"><button type="submit">Remove</button></form></td></tr>'
            for e in listed
        ]
        out.append("<table><tr><th>Sender</th><th>List</th><th>Added</th><th></th></tr>" + "\n".join(rows) + "</table>")
    else:
        out.append("<p>Both lists are empty.</p>")
    out.append(
        '<h2>Add a sender</h2><form method="post" action="/account/senders">'
        f"{hidden}"
        '<label for="pattern">Address or @domain</label><input id="pattern" name="pattern" size="40" required>'
        '<p><label><input type="radio" name="action" value="allow" checked> Allow: never Junk</label>'
        '<label><input type="radio" name="action" value="block"> Block: always Junk</label></p>'
        '<p><button type="submit">Add</button></p></form>'
        "<p><small>Moving a message into Junk or out of it teaches the spam filter too; these lists decide "
        "at once.</small></p>"
    )
    return "".join(out)


def autoreply_form(token: str, reply: AutoReply, error: str = "", saved: bool = False) -> str:
    """The automatic reply's settings; its state in one line on top."""
    checked = " checked" if reply.enabled else ""
    return (
        notices(f"Your automatic reply is {describe(reply)}.", "Saved." if saved else "", error=error)
        + '<form method="post" action="/account/autoreply">'
        + token_field(token)
        + f'<label><input type="checkbox" name="enabled" value="on"{checked}> Answer mail automatically</label>'
        '<label for="subject">Subject (empty: "Auto: " and the subject of the mail answered)</label>'
        f'<input id="subject" name="subject" size="60" maxlength="200" value="{esc(reply.subject)}">'
        '<label for="message">Message</label>'
        f'<textarea id="message" name="message" rows="8" cols="70">{esc(reply.message)}</textarea>'
        '<label for="first_day">First day (optional)</label>'
        f'<input type="date" id="first_day" name="first_day" value="{esc(reply.first_day)}">'
        '<label for="last_day">Last day (optional)</label>'
        f'<input type="date" id="last_day" name="last_day" value="{esc(reply.last_day)}">'
        '<label for="days">Answer the same sender again after (days)</label>'
        f'<input type="number" id="days" name="days" min="1" max="90" value="{reply.days}">'
        '<p><button type="submit">Save</button></p></form>'
        "<p><small>Each sender gets the reply once in that many days. Mailing lists, automatic mail, mail filed as "
        "Junk and bounces get none. Days are the server's calendar days, both included.</small></p>"
    )


_SCOPE_NAMES = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP (sending)", "sieve": "ManageSieve", "dav": "CardDAV"}


@dataclass(frozen=True)
class AppPasswords:
    """What the app passwords page shows: the list, the account's setting, and what the last form did."""

    token: str
    listed: Sequence[AppPassword]
    only: bool
    created: tuple[str, str] | None = None  # (name, the password: shown this once)
    error: str = ""
    revoked: bool = False


def _used(entry: AppPassword) -> str:
    return f"{when(entry.last_used)}, {entry.last_protocol} from {entry.last_ip}" if entry.last_used else "never"


def app_passwords(data: AppPasswords) -> str:
    hidden = f'<input type="hidden" name="token" value="{esc(data.token)}">'
    out = [
        "<p>Give each mail program its own password: if a phone is lost, revoke its password here and the others, "
        "and your account password, go on working. An app password works for IMAP, POP3, SMTP, ManageSieve and "
        "CardDAV (or only those you tick), never for these pages.</p>"
    ]
    if data.only:
        out.append(
            "<p><strong>App passwords only</strong> is on: your mail programs must use an app password; your account "
            "password opens these pages only (the administrator sets this).</p>"
        )
    if data.created is not None:
        name, password = data.created
        out.append(
            f'<p class="note">The app password for {esc(name)}: <code>{esc(password)}</code><br>Type it into the '
            "program now (with or without the dashes); it is not shown again.</p>"
        )
    if data.revoked:
        out.append('<p class="note">The app password was revoked; programs using it are logged out.</p>')
    if data.error:
        out.append(f'<p class="error">{esc(data.error)}</p>')
    if data.listed:
        rows = [
            "<tr>"
            + "".join(f"<td>{esc(v)}</td>" for v in (p.name, ", ".join(p.scope), when(p.created), _used(p)))
            + f'<td><form method="post" action="/account/app-passwords">{hidden}'
            f'<input type="hidden" name="action" value="revoke"><input type="hidden" name="name" '
            f'value="{esc(p.name)}"><button type="submit">Revoke</button></form></td></tr>'
            for p in data.listed
        ]
        head = "<tr><th>Name</th><th>Scope</th><th>Created</th><th>Last used</th><th></th></tr>"
        out.append("<table>" + head + "\n".join(rows) + "</table>")
    else:
        out.append("<p>No app passwords yet.</p>")
    boxes = "".join(
        f'<label><input type="checkbox" name="scope" value="{scope}" checked> {esc(_SCOPE_NAMES[scope])}</label>'
        for scope in SCOPES
    )
    out.append(
        '<h2>New app password</h2><form method="post" action="/account/app-passwords">'
        f'{hidden}<input type="hidden" name="action" value="add">'
        '<label for="name">Name (the device or program)</label>'
        '<input id="name" name="name" maxlength="64" required>'
        f"<p>{boxes}</p>"
        '<p><button type="submit">Make app password</button></p></form>'
    )
    return "".join(out)
