"""The ``relentad`` command line: everything an admin does (DESIGN.md §5).

Errors are translated to one line on stderr with a non-zero exit here, at the edge, and nowhere else
(sqlite-utils' cli.py does the same); commands never print a traceback for bad input. Every list/show command
takes ``--json``. Passwords are read from stdin (``--password-stdin``) or generated, never taken from argv.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from . import addrspec, devsetup
from . import config as config_mod
from .auth import apppasswords, history, passwords, totp
from .config import Config, ConfigError, SpamConfig
from .errors import RelentadError
from .store import accounts, db, mailboxes
from .units import MAX_INTEGER, format_size, parse_size

if TYPE_CHECKING:
    from .lifecycle.archive import Query
    from .lifecycle.imapimport import Outcome
    from .queue.mtasts import Policy

F = TypeVar("F", bound=Callable[..., Any])

COUNT = click.IntRange(min=0, max=MAX_INTEGER)
"""A count option (recipients, messages): SQLite stores at most a 64-bit integer."""
MAX_DAYS = 36_500
"""``activity --days``: a hundred years of history is more than any account has."""


class CLIError(click.ClickException):
    """A one-line error; click prints ``Error: <message>`` and exits 1."""


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """Turn expected failures into one-line messages (the only place that does)."""
    try:
        yield
    except ConfigError as exc:
        raise CLIError("; ".join(exc.problems)) from None
    except RelentadError as exc:
        raise CLIError(str(exc)) from None
    except sqlite3.Error as exc:
        raise CLIError(f"database: {exc}") from None
    except OSError as exc:
        if exc.strerror is None:  # raised with a message only (gzip and the like)
            raise CLIError(str(exc)) from None
        raise CLIError(f"{exc.filename or ''}: {exc.strerror}".lstrip(": ")) from None
    except OverflowError:  # a number beyond what SQLite or the clock holds: the options' bounds should catch it first
        raise CLIError("a number is too large") from None
    except ValueError as exc:  # unit parsing and the like: messages are written for users
        raise CLIError(str(exc)) from None


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


class State:
    """What every subcommand needs: the config path, and the loaded config and database on demand."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = config_mod.load(self.config_path)
        return self._config

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the database (safe while the daemon runs: SQLite serialises writers)."""
        conn = db.open_database(self.config.database_path)
        try:
            with db.transaction(conn):
                yield conn
        finally:
            conn.close()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        path = self.config.database_path
        if not path.exists():
            raise RelentadError(f"no database at {path} (run `relentad init` first)")
        conn = db.connect(path)
        try:
            yield conn
        finally:
            conn.close()


pass_state = click.make_pass_decorator(State)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def read_password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated?): one line from stdin with --password-stdin, else a new random one."""
    if not from_stdin:
        return passwords.generate_password(), True
    line = sys.stdin.readline().rstrip("\r\n")
    problem = passwords.check_strength(line)
    if problem:
        raise CLIError(problem)
    return line, False


class OneLineUsage(click.Group):
    """The top command group: a usage error (an unknown command or option, a missing argument, a value out of
    range) is one line, ``Error: ...`` with exit code 2, like every other error of the CLI, instead of click's
    usage line and help hint before it. Everything below runs inside this group's parsing and invoke."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with _one_line_usage():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage():
            return super().invoke(ctx)


@contextmanager
def _one_line_usage() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:  # a group named without a command: its help is the answer
        raise
    except click.UsageError as exc:
        exc.ctx = None  # without a context, click shows only ``Error: <message>``
        raise


@click.group(cls=OneLineUsage, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Configuration file (default: $RELENTAD_CONFIG or ./relentad.toml).",
)
@click.version_option(package_name="relentad")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """relentad: a self-hosted email CRM mail server."""
    ctx.obj = State(config_mod.config_path(config_file))


# -- init, serve, config ----------------------------------------------------------------------------------


@main.command()
@click.option("--dev", is_flag=True, help="Loopback, high ports, self-signed cert, demo domain and user.")
@click.option("--hostname", help="This server's host name (default: the machine's FQDN; dev: localhost).")
@click.option("--data-dir", help="Data folder (default: data/ beside the configuration file).")
@pass_state
def init(state: State, dev: bool, hostname: str | None, data_dir: str | None) -> None:
    """Write the configuration, make the data folder and create the database."""
    with errors_as_messages():
        result = devsetup.initialise(state.config_path, dev=dev, hostname=hostname, data_dir=data_dir)
    for line in result.messages:
        click.echo(line)


@main.command()
@pass_state
def serve(state: State) -> None:
    """Run the daemon in the foreground (systemd runs this)."""
    from .daemon import serve as run_daemon

    try:
        code = run_daemon(state.config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"config: {problem}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"Error: cannot start: {exc.strerror or exc}", err=True)
        sys.exit(1)
    sys.exit(code)


@main.group("config")
def config_group() -> None:
    """Check or print the configuration."""


@config_group.command("check")
@pass_state
def config_check(state: State) -> None:
    """Validate the configuration file; print one line per problem."""
    try:
        config_mod.load(state.config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"config: {problem}", err=True)
        sys.exit(1)
    click.echo(f"{state.config_path}: OK")


@config_group.command("example")
def config_example() -> None:
    """Print the documented example configuration (every setting with its default)."""
    click.echo(config_mod.example_toml(), nl=False)


# -- search index ------------------------------------------------------------------------------------------


@main.group("search-index")
def search_index_group() -> None:
    """SEARCH's full-text index ([imap] search_index): how far it is, or build it anew."""


def _index_line(conn: sqlite3.Connection, enabled: bool) -> str:
    from .imap import searchindex

    indexed, total, size = searchindex.status(conn)
    raw = int(conn.execute("SELECT coalesce(sum(size), 0) FROM blobs").fetchone()[0])
    share = f" ({100 * size / raw:.0f} % of the mail's {format_size(raw)})" if raw else ""
    state = "on" if enabled else "off ([imap] search_index = false: SEARCH scans)"
    return f"search index {state}: indexed {indexed} of {total} message(s), {format_size(size)}{share}"


def _merge_search_index(state: State) -> None:
    """After a purge removed blobs: merge the search index, a transaction per step, so nothing of them stays."""
    from .imap import indexer

    with state.read() as conn:
        indexer.merge_now(conn)


@search_index_group.command("status")
@pass_state
def search_index_status(state: State) -> None:
    """One line: messages indexed of all stored, and the index's size."""
    with errors_as_messages(), state.read() as conn:
        click.echo(_index_line(conn, state.config.imap.search_index))


@search_index_group.command("rebuild")
@pass_state
def search_index_rebuild(state: State) -> None:
    """Empty the index and build it again here, a batch per transaction (a running daemon keeps serving)."""
    from .imap import indexer, searchindex

    with errors_as_messages():
        with state.write() as conn:
            searchindex.reset(conn)
        with state.read() as reader, state.read() as writer:
            while indexer.step(reader, writer):
                pass
            click.echo(_index_line(writer, state.config.imap.search_index))


# -- domains ----------------------------------------------------------------------------------------------


@main.group()
def domain() -> None:
    """Hosted domains."""


@domain.command("add")
@click.argument("name")
@pass_state
def domain_add(state: State, name: str) -> None:
    """Host mail for the domain NAME."""
    with errors_as_messages(), state.write() as conn:
        added = accounts.add_domain(conn, name)
    click.echo(f"domain {added} added")


@domain.command("list")
@json_option
@pass_state
def domain_list(state: State, as_json: bool) -> None:
    """List hosted domains."""
    with errors_as_messages(), state.read() as conn:
        rows = accounts.list_domains(conn)
    if as_json:
        print_json([{**row, "created": iso(row["created"])} for row in rows])  # type: ignore[arg-type]
        return
    for row in rows:
        click.echo(f"{row['name']}\t{row['accounts']} account(s)\t{row['aliases']} alias(es)")


@domain.command("remove")
@click.argument("name")
@pass_state
def domain_remove(state: State, name: str) -> None:
    """Stop hosting NAME (it must have no accounts left)."""
    with errors_as_messages(), state.write() as conn:
        accounts.remove_domain(conn, name)
    click.echo(f"domain {name} removed")


@domain.command("footer")
@click.argument("name")
@click.option("--text-file", type=click.Path(exists=True, dir_okay=False), help="The footer as plain text (UTF-8).")
@click.option("--html-file", type=click.Path(exists=True, dir_okay=False), help="Its HTML version (else made from it).")
@click.option("--off", is_flag=True, help="Remove the domain's footer.")
@json_option
@pass_state
def domain_footer(
    state: State, name: str, text_file: str | None, html_file: str | None, off: bool, as_json: bool
) -> None:
    """Show, set (--text-file) or remove (--off) the footer added to every message NAME's users send."""
    from . import footer

    with errors_as_messages():
        if off and (text_file or html_file):
            raise CLIError("--off takes no file")
        if html_file and not text_file:
            raise CLIError("--html-file goes with --text-file (the plain version every message needs)")
        if off:
            with state.write() as conn:
                removed = footer.remove(conn, name)
            click.echo(f"footer of {name} removed" if removed else f"{name} had no footer")
            return
        if text_file:
            text = Path(text_file).read_text("utf-8")
            markup = Path(html_file).read_text("utf-8") if html_file else ""
            with state.write() as conn:
                footer.put(conn, name, text, markup)
        with state.read() as conn:
            if accounts.domain_id(conn, addrspec.normalize_domain(name)) is None:
                raise CLIError(f"domain {name} is not hosted here")
            found = footer.get(conn, name)
    if as_json:
        print_json(None if found is None else {"text": found.text, "html": found.html})
        return
    if found is None:
        click.echo(f"{name} has no footer")
        return
    click.echo(f"footer of {name}, added to every message its users send:")
    for line in found.text.splitlines():
        click.echo(f"  | {line}")


@domain.command("dns")
@click.argument("name")
@json_option
@pass_state
def domain_dns(state: State, name: str, as_json: bool) -> None:
    """Print every DNS record NAME should publish (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, SRV)."""
    from . import dnsrecords

    with errors_as_messages():
        config = state.config
        found = dnsrecords.records(config, name)
        if as_json:
            print_json(
                {
                    "records": [record.as_json() for record in found],
                    "mta_sts_policy": dnsrecords.mta_sts_policy(config),
                }
            )
        else:
            click.echo(dnsrecords.render(config, name), nl=False)


@main.command()
@click.argument("domains", nargs=-1)
@json_option
@pass_state
def doctor(state: State, domains: tuple[str, ...], as_json: bool) -> None:
    """Check DNS records, reverse DNS, the certificate, the listeners, [server] postmaster and the spam model; say how
    to fix what is wrong.

    DOMAINS default to every hosted domain. Exits 1 when a check fails (warnings do not).
    """
    import asyncio
    import time

    from . import doctor as doctor_mod
    from .authreports import summary
    from .spam import storage as spam_storage

    with errors_as_messages():
        config = state.config
        with state.read() as conn:
            names = list(domains) or [str(row["name"]) for row in accounts.list_domains(conn)]
            spam_models = spam_storage.stats(conn)
            postmaster = accounts.postmaster_account(conn, config.server.postmaster) is not None
            since = time.time() - doctor_mod.REPORT_DAYS * summary.DAY
            ours = tuple(names)
            reports = doctor_mod.check_reports(
                [s for s in summary.dmarc(conn, since=since) if _within(s.domain, ours)],
                [s for s in summary.tls(conn, since=since) if _within(s.domain, ours)],
            )
            forwarding = [d for d in forwarding_domains(conn) if d in names]
        findings = asyncio.run(doctor_mod.run(config, names, spam_models, postmaster, reports, forwarding))
    if as_json:
        print_json([finding.as_json() for finding in findings])
    else:
        for finding in findings:
            click.echo(finding.line())
    if doctor_mod.failed(findings):
        bad = sum(1 for finding in findings if finding.status == "fail")
        click.echo(f"{bad} problem(s) found", err=True)
        sys.exit(1)


def forwarding_domains(conn: sqlite3.Connection) -> list[str]:
    """Hosted domains whose mail may be forwarded elsewhere (SRS senders there): an alias with a target elsewhere,
    or an account whose rules or active script mention redirect, or whose account page forwards."""
    rows = conn.execute(
        """SELECT substr(address, instr(address, '@') + 1) FROM alias_forwards
           UNION SELECT d.name FROM accounts a JOIN domains d ON d.id = a.domain_id
           WHERE a.id IN (SELECT account_id FROM crm_rules WHERE script LIKE '%redirect%'
                          UNION SELECT account_id FROM sieve_scripts WHERE active = 1 AND script LIKE '%redirect%'
                          UNION SELECT account_id FROM autoforward WHERE enabled = 1)
           ORDER BY 1"""
    )
    return [str(r[0]) for r in rows]


def _within(domain: str, names: tuple[str, ...]) -> bool:
    """``domain`` is one of ``names`` or a subdomain of one."""
    return any(domain == name or domain.endswith(f".{name}") for name in names)


# -- users ------------------------------------------------------------------------------------------------


def account_json(account: accounts.Account, stats: dict[str, int] | None = None) -> dict[str, Any]:
    data = asdict(account)
    data["created"] = iso(account.created)
    if stats is not None:
        data.update(stats)
    return data


@main.group()
def user() -> None:
    """Accounts (mail users)."""


@user.command("add")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--quota", help="Disk quota, e.g. 5GB (default from [quota] disk; 0 = unlimited).")
@click.option("--daily-send", type=COUNT, help="Recipients per day (default from config).")
@click.option("--messages", type=COUNT, help="Most messages held (default from [quota] messages; 0 = unlimited).")
@click.option("--name", "display_name", default="", help="Display name.")
@pass_state
def user_add(
    state: State,
    email: str,
    password_stdin: bool,
    quota: str | None,
    daily_send: int | None,
    messages: int | None,
    display_name: str,
) -> None:
    """Create the account EMAIL (its domain must be hosted)."""
    with errors_as_messages():
        quota_bytes = parse_size(quota) if quota is not None else state.config.quota.disk
        password, generated = read_password(password_stdin)
        hashed = passwords.hash_password(password)
        with state.write() as conn:
            account = accounts.add_account(
                conn,
                email,
                hashed,
                quota_bytes=quota_bytes,
                daily_send=state.config.quota.daily_send if daily_send is None else daily_send,
                display_name=display_name,
            )
            most = state.config.quota.messages if messages is None else messages
            if state.config.quota.hourly_send or most:
                from . import quota as quota_mod

                quota_mod.set_limits(conn, account.id, hourly_send=state.config.quota.hourly_send, messages=most)
    click.echo(f"user {account.email} added")
    if generated:
        click.echo(f"password: {password}")


@user.command("list")
@click.option("--domain", "domain_name", help="Only accounts of this domain.")
@json_option
@pass_state
def user_list(state: State, domain_name: str | None, as_json: bool) -> None:
    """List accounts."""
    with errors_as_messages(), state.read() as conn:
        found = accounts.list_accounts(conn, domain_name)
    if as_json:
        print_json([account_json(a) for a in found])
        return
    for account in found:
        quota = format_size(account.quota_bytes) if account.quota_bytes else "unlimited"
        click.echo(f"{account.email}\t{account.state}\tquota {quota}")


@user.command("show")
@click.argument("email")
@json_option
@pass_state
def user_show(state: State, email: str, as_json: bool) -> None:
    """Show one account: settings, mailboxes, usage."""
    with errors_as_messages(), state.read() as conn:
        account = accounts.get_account(conn, email)
        stats = accounts.account_stats(conn, account.id)
        boxes = mailboxes.list_for_account(conn, account.id)
        aliases = [
            str(a["address"]) for a in accounts.list_aliases(conn) if a["target"] == account.email and not a["external"]
        ]
        apps = [entry.name for entry in apppasswords.listed(conn, account.id)]
        two_factor = totp.state(conn, account.id).enabled
    if as_json:
        shown = {"mailboxes": boxes, "aliases": aliases, "app_passwords": apps, "two_factor": two_factor}
        print_json({**account_json(account, stats), **shown})
        return
    quota = format_size(account.quota_bytes) if account.quota_bytes else "unlimited"
    click.echo(f"{account.email} ({account.state})")
    click.echo(f"  name:       {account.display_name or '-'}")
    click.echo(f"  created:    {iso(account.created)}")
    click.echo(f"  quota:      {quota}, using {format_size(stats['bytes'])} in {stats['messages']} message(s)")
    click.echo(f"  daily send: {account.daily_send or 'unlimited'}")
    only = " (only these log in to mail)" if account.app_passwords_only else ""
    click.echo(f"  app passwords: {', '.join(apps) or '-'}{only}")
    click.echo(f"  two-factor login: {'on' if two_factor else 'off'} (account pages)")
    click.echo(f"  aliases:    {', '.join(aliases) or '-'}")
    for box in boxes:
        special = f" {box['special_use']}" if box["special_use"] else ""
        click.echo(f"  {box['name']}{special}: {box['messages']} message(s)")


@user.command("passwd")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from the first line of stdin.")
@pass_state
def user_passwd(state: State, email: str, password_stdin: bool) -> None:
    """Set a new password for EMAIL (generated and printed unless --password-stdin)."""
    from .accountpage import sessions  # here, not at the top: the CLI starts without the web modules

    with errors_as_messages():
        password, generated = read_password(password_stdin)
        hashed = passwords.hash_password(password)
        with state.write() as conn:
            accounts.set_password(conn, email, hashed)
            sessions.end_all(conn, accounts.active_account(conn, email).id)  # the account pages' logins too
    click.echo(f"password of {email} changed")
    if generated:
        click.echo(f"password: {password}")


@user.command("set")
@click.argument("email")
@click.option(
    "--app-passwords-only/--no-app-passwords-only",
    "app_only",
    default=None,
    help="Refuse the account's password on IMAP, POP3, SMTP, ManageSieve and CardDAV (app passwords only; the "
    "account pages still take it).",
)
@pass_state
def user_set(state: State, email: str, app_only: bool | None) -> None:
    """Change an account's settings."""
    if app_only is None:
        raise CLIError("nothing to set: give --app-passwords-only or --no-app-passwords-only")
    with errors_as_messages(), state.write() as conn:
        account = accounts.active_account(conn, email)
        apppasswords.set_only(conn, account.id, app_only)
    click.echo(f"{account.email}: app passwords only {'on' if app_only else 'off'}")


@user.group("app-password")
def app_password() -> None:
    """Per-device passwords: each mail client its own, revocable on its own (see README)."""


@app_password.command("add")
@click.argument("email")
@click.argument("name")
@click.option("--scope", help=f"Protocols it may log in to: {','.join(apppasswords.SCOPES)} (default all).")
@pass_state
def app_password_add(state: State, email: str, name: str, scope: str | None) -> None:
    """Make a new app password NAME for EMAIL and print it (once: only its hash is kept)."""
    with errors_as_messages():
        scopes = apppasswords.parse_scope(scope)
        name = apppasswords.check_name(name)
        shown = apppasswords.generate()
        normalized = apppasswords.normalize(shown)
        assert normalized is not None
        hashed = passwords.hash_password(normalized)
        with state.write() as conn:
            account = accounts.active_account(conn, email)
            apppasswords.add(conn, account.id, name, scopes, hashed, normalized)
    click.echo(f"app password {name!r} of {account.email} added (scope {','.join(scopes)})")
    click.echo(f"password: {shown}")


@app_password.command("list")
@click.argument("email")
@json_option
@pass_state
def app_password_list(state: State, email: str, as_json: bool) -> None:
    """List EMAIL's app passwords: name, scope, created, last use."""
    with errors_as_messages(), state.read() as conn:
        account = accounts.get_account(conn, email)
        found = apppasswords.listed(conn, account.id)
    rows = [
        {
            "name": p.name,
            "scope": list(p.scope),
            "created": iso(p.created),
            "last_used": iso(p.last_used),
            "last_protocol": p.last_protocol or None,
            "last_ip": p.last_ip or None,
        }
        for p in found
    ]
    if as_json:
        print_json(rows)
        return
    for p in found:
        used = f"last used {iso(p.last_used)} ({p.last_protocol} from {p.last_ip})" if p.last_used else "never used"
        click.echo(f"{p.name}\t{','.join(p.scope)}\tcreated {iso(p.created)}\t{used}")


@app_password.command("revoke")
@click.argument("email")
@click.argument("name")
@pass_state
def app_password_revoke(state: State, email: str, name: str) -> None:
    """Revoke EMAIL's app password NAME: logins with it fail at once, sessions end at their next command."""
    with errors_as_messages(), state.write() as conn:
        account = accounts.get_account(conn, email)
        apppasswords.revoke(conn, account.id, name)
    click.echo(f"app password {name.strip()!r} of {account.email} revoked")


@user.group("2fa")
def two_factor() -> None:
    """Two-factor login of the account pages (the user turns it on there; see README)."""


@two_factor.command("status")
@click.argument("email")
@json_option
@pass_state
def two_factor_status(state: State, email: str, as_json: bool) -> None:
    """Whether EMAIL has two-factor login on, since when, recovery codes left, live sessions (never the secret)."""
    from .accountpage import sessions  # here, not at the top: the CLI starts without the web modules

    with errors_as_messages(), state.read() as conn:
        account = accounts.get_account(conn, email)
        found = totp.state(conn, account.id)
        live = sessions.count(conn, account.id)
    if as_json:
        print_json(
            {
                "email": account.email,
                "enabled": found.enabled,
                "since": iso(found.since) if found.enabled else None,
                "recovery_codes_left": found.recovery_left,
                "sessions": live,
            }
        )
    elif found.enabled:
        click.echo(
            f"{account.email}: two-factor login on since {iso(found.since)}, {found.recovery_left} recovery codes "
            f"left, {live} browser sessions"
        )
    else:
        click.echo(f"{account.email}: two-factor login off, {live} browser sessions")


@two_factor.command("disable")
@click.argument("email")
@pass_state
def two_factor_disable(state: State, email: str) -> None:
    """Turn EMAIL's two-factor login off (a lost phone): the secret and recovery codes are deleted and the
    account pages' sessions end; the user logs in with the password and can turn it on again."""
    from .accountpage import sessions  # here, not at the top: the CLI starts without the web modules

    with errors_as_messages(), state.write() as conn:
        account = accounts.get_account(conn, email)
        was_on = totp.disable(conn, account.id)
        ended = sessions.end_all(conn, account.id)
        if was_on:
            attempt = history.Attempt(account.email, "", "web", "success", account.id, "2fa-reset-by-admin")
            history.record(conn, attempt)
    if not was_on:
        click.echo(f"{account.email}: two-factor login was off ({ended} browser sessions ended)")
        return
    click.echo(f"{account.email}: two-factor login off ({ended} browser sessions ended)")


# -- aliases ----------------------------------------------------------------------------------------------


@main.group()
def alias() -> None:
    """Aliases: ADDR → account or an address elsewhere (forwarded); @domain is a catch-all; user+tag@ always
    reaches user@."""


@alias.command("add")
@click.argument("address")
@click.argument("target")
@pass_state
def alias_add(state: State, address: str, target: str) -> None:
    """Deliver mail for ADDRESS (or @domain) to the account TARGET, or forward it to TARGET elsewhere."""
    with errors_as_messages(), state.write() as conn:
        added = accounts.add_alias(conn, address, target)
    click.echo(f"alias {added} → {target} added")


@alias.command("list")
@json_option
@pass_state
def alias_list(state: State, as_json: bool) -> None:
    """List aliases."""
    with errors_as_messages(), state.read() as conn:
        rows = accounts.list_aliases(conn)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['address']}\t{row['target']}" + ("\t(forwarded)" if row["external"] else ""))


@alias.command("remove")
@click.argument("address")
@click.argument("target", required=False)
@pass_state
def alias_remove(state: State, address: str, target: str | None) -> None:
    """Remove ADDRESS (only its route to TARGET when given)."""
    with errors_as_messages(), state.write() as conn:
        count = accounts.remove_alias(conn, address, target)
    click.echo(f"alias {address} removed ({count} route(s))")


# -- quotas (issue 7) -------------------------------------------------------------------------------------


def _usage_json(email: str, usage: Any) -> dict[str, Any]:
    return {"email": email, **asdict(usage), "percent": round(usage.percent, 1)}


@main.group("quota")
def quota_group() -> None:
    """Disk and send quotas of accounts."""


@quota_group.command("show")
@click.argument("email")
@click.option("--recount", is_flag=True, help="Count the stored messages again and correct the usage counters.")
@json_option
@pass_state
def quota_show(state: State, email: str, recount: bool, as_json: bool) -> None:
    """Show an account's disk use and limits, and recipients sent this hour and today."""
    from . import quota

    drift = (0, 0)
    opened = state.write if recount else state.read
    with errors_as_messages(), opened() as conn:
        account = accounts.get_account(conn, email)
        if recount:
            drift = quota.recount(conn, account.id)
        usage = quota.get(conn, account.id)
    if as_json:
        print_json({**_usage_json(account.email, usage), "drift": {"bytes": drift[0], "messages": drift[1]}})
        return
    if drift != (0, 0):
        click.echo(f"recount: the counters were off by {drift[0]} octets, {drift[1]} message(s); corrected")
    limit = format_size(usage.limit) if usage.limit else "unlimited"
    percent = f" ({usage.percent:.1f} %)" if usage.limit else ""
    click.echo(f"{account.email}")
    click.echo(f"  disk:   {format_size(usage.bytes)} of {limit}{percent} in {usage.messages} message(s)")
    click.echo(f"  messages: {usage.messages} of {usage.message_limit or 'unlimited'}")
    click.echo(f"  hourly: {usage.sent_this_hour} of {usage.hourly_send or 'unlimited'} recipients this hour")
    click.echo(f"  daily:  {usage.sent_today} of {usage.daily_send or 'unlimited'} recipients today")


@quota_group.command("set")
@click.argument("email")
@click.option("--disk", help="Disk quota, e.g. 5GB (0 = unlimited).")
@click.option("--daily-send", type=COUNT, help="Recipients per day (0 = unlimited).")
@click.option("--hourly-send", type=COUNT, help="Recipients per hour (0 = unlimited).")
@click.option("--messages", type=COUNT, help="Most messages the account may hold (0 = unlimited).")
@pass_state
def quota_set(
    state: State,
    email: str,
    disk: str | None,
    daily_send: int | None,
    hourly_send: int | None,
    messages: int | None,
) -> None:
    """Change an account's limits (options not given stay as they are)."""
    from . import quota

    with errors_as_messages():
        if disk is None and daily_send is None and hourly_send is None and messages is None:
            raise CLIError("nothing to set: give --disk, --messages, --daily-send and/or --hourly-send")
        disk_bytes = parse_size(disk) if disk is not None else None
        with state.write() as conn:
            account = accounts.active_account(conn, email)
            quota.set_limits(
                conn,
                account.id,
                disk=disk_bytes,
                daily_send=daily_send,
                hourly_send=hourly_send,
                messages=messages,
            )
    click.echo(f"quota of {account.email} updated")


def _moment(text: str | None) -> float | None:
    """``--at``: a Unix time or an ISO 8601 date/time (UTC when no zone is given)."""
    if text is None:
        return None
    problem = f"not a time: {text!r} (give Unix seconds or an ISO 8601 date)"
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        try:  # finite and within the years a date can name (1-9999)
            datetime.fromtimestamp(seconds, UTC)
        except (ValueError, OverflowError, OSError):
            raise ValueError(problem) from None
        return seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(problem) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@user.command("terminate")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--now", "purge_now", is_flag=True, help="Purge the account's data at once instead of after retention.")
@pass_state
def user_terminate(state: State, email: str, yes: bool, purge_now: bool) -> None:
    """Terminate EMAIL: no more logins or mail (550 5.1.1); its data is purged after [retention] deleted_days."""
    from .lifecycle import retention

    if not yes:
        click.confirm(f"Terminate {email}? It can no longer log in or receive mail", abort=True)
    with errors_as_messages(), state.write() as conn:
        account = accounts.get_account(conn, email)
        if account.state == "terminated":  # terminated earlier: --now purges it before its retention is over
            if not purge_now:
                raise CLIError(f"{account.email} is already terminated (add --now to purge it at once)")
            moved = conn.execute("SELECT count(*) FROM expunged WHERE account_id = ?", (account.id,)).fetchone()[0]
        else:
            moved = retention.terminate(conn, account.id)
        if purge_now:
            retention.purge_account(conn, account.id)
    if purge_now:
        with errors_as_messages():
            _merge_search_index(state)
        click.echo(f"user {account.email} terminated and purged ({moved} message(s))")
    else:
        days = state.config.retention.deleted_days
        click.echo(f"user {account.email} terminated; {moved} message(s) kept for {days} days, then purged")


@main.command("share")
@click.argument("email")
@click.argument("mailbox")
@click.option("--with", "other", required=True, help="The account to share with (an address of this server).")
@click.option("--rights", default="lrs", show_default=True, help="RFC 4314 rights, e.g. lrs (read) or lrswite.")
@pass_state
def share(state: State, email: str, mailbox: str, other: str, rights: str) -> None:
    """Share EMAIL's MAILBOX with another account; it sees it as Shared/EMAIL/MAILBOX (README: Shared mailboxes)."""
    from .store import acl  # here, not at the top: the CLI starts without the IMAP store modules

    with errors_as_messages(), state.write() as conn:
        owner = accounts.active_account(conn, email)
        wanted = acl.parse_rights(rights)
        if not wanted:
            raise CLIError("--rights names no right (relentad unshare removes a share)")
        mailbox_id = acl.own_mailbox(conn, owner.id, mailbox)
        held = acl.set_rights(conn, mailbox_id, acl.grantee(conn, owner.id, other), wanted)
    click.echo(f"{owner.email} {mailbox} shared with {addrspec.normalize(other)}: {held}")


@main.command("unshare")
@click.argument("email")
@click.argument("mailbox")
@click.option("--with", "other", required=True, help="The account that loses access.")
@pass_state
def unshare(state: State, email: str, mailbox: str, other: str) -> None:
    """Stop sharing EMAIL's MAILBOX with an account (its open sessions lose access at their next command)."""
    from .store import acl  # here, not at the top: the CLI starts without the IMAP store modules

    with errors_as_messages(), state.write() as conn:
        owner = accounts.get_account(conn, email)
        mailbox_id = acl.own_mailbox(conn, owner.id, mailbox)
        grantee = accounts.get_account(conn, other)
        if not acl.remove(conn, mailbox_id, grantee.id):
            raise CLIError(f"{owner.email} {mailbox} is not shared with {grantee.email}")
    click.echo(f"{owner.email} {mailbox} no longer shared with {grantee.email}")


@main.command("shares")
@click.argument("email")
@json_option
@pass_state
def shares(state: State, email: str, as_json: bool) -> None:
    """What EMAIL shares with others and what others share with it."""
    from .store import acl  # here, not at the top: the CLI starts without the IMAP store modules

    with errors_as_messages(), state.read() as conn:
        account = accounts.get_account(conn, email)
        rows = acl.shares_of(conn, account.id)
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"{account.email} shares nothing and nothing is shared with it")
    for row in rows:
        if "with" in row:
            click.echo(f"{row['mailbox']}  shared with {row['with']}  {row['rights']}")
        else:
            click.echo(f"{row['mailbox']}  from {row['from']}  {row['rights']}")


@main.command("purge")
@click.option("--at", "at", help="Purge as if it were this time (Unix seconds or ISO 8601; default: now).")
@json_option
@pass_state
def purge_command(state: State, at: str | None, as_json: bool) -> None:
    """Expunge Junk and Trash mail older than [retention] junk_days and trash_days; remove expunged mail and
    terminated accounts older than [retention] deleted_days, and unused bodies."""
    from .lifecycle import retention

    with errors_as_messages():
        now = _moment(at)
        with state.write() as conn:
            settings = state.config.retention
            result = retention.purge(
                conn,
                settings.deleted_days,
                now,
                activity_days=settings.activity_days,
                junk_days=settings.junk_days,
                reports_days=settings.reports_days,
                trash_days=settings.trash_days,
                archive_days=settings.archive_days,
            )
        if result.blobs:
            _merge_search_index(state)
        db.truncate_wal(state.config.database_path)  # the purged pages must not stay in the -wal file either
    if as_json:
        print_json(asdict(result))
        return
    click.echo(
        f"expired {result.junk} Junk and {result.trash} Trash message(s) into retention; "
        f"purged {result.expunged} expunged message(s), {result.accounts} account(s), "
        f"{result.blobs} message body(ies) ({format_size(result.bytes)})"
        + (f"; {result.archived} archived message(s) past [retention] archive_days" if result.archived else "")
    )
    if state.config.retention.archive:  # written down, the head pins the archive as of now (lifecycle/archive.py)
        from .lifecycle import archive

        with state.read() as conn:
            click.echo(f"archive chain head {archive.head(conn).hex()}")


# -- the archive ------------------------------------------------------------------------------------------


@main.group("archive")
def archive_group() -> None:
    """Every message received and sent, kept for [retention] archive_days whatever users delete."""


def _archive_query(
    account: str | None,
    sender: str | None,
    recipient: str | None,
    subject: str | None,
    since: str | None,
    until: str | None,
) -> Query:
    from .lifecycle import archive

    return archive.Query(
        account=addrspec.normalize(account) if account else "",
        sender=sender or "",
        recipient=recipient or "",
        subject=subject or "",
        since=_moment(since) if since else None,
        until=_moment(until) if until else None,
    )  # fmt: skip


def archive_filters(f: F) -> F:
    for option in reversed(
        [
            click.option("--account", help="Only this account's messages (its address)."),
            click.option("--from", "sender", help="Envelope senders containing this text."),
            click.option("--to", "recipient", help="Recipients containing this text."),
            click.option("--subject", help="Subjects containing this text."),
            click.option("--since", help="Archived at or after this time (ISO 8601, e.g. 2026-01-01)."),
            click.option("--until", help="Archived before this time."),
        ]
    ):
        f = option(f)
    return f


@archive_group.command("search")
@archive_filters
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1, max=1_000_000))
@json_option
@pass_state
def archive_search(
    state: State,
    account: str | None,
    sender: str | None,
    recipient: str | None,
    subject: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List archived messages (oldest first): time, account, in or out, sender, recipients, subject."""
    from .lifecycle import archive

    with errors_as_messages():
        query = _archive_query(account, sender, recipient, subject, since, until)
        with state.read() as conn:
            found = archive.search(conn, query, limit)
    if as_json:
        print_json([entry.as_json() for entry in found])
        return
    for entry in found:
        shown = entry.as_json()
        click.echo(
            f"{entry.id}  {shown['archived']}  {entry.account}  {entry.direction}  <{entry.mail_from}> -> "
            f"{entry.recipients}  {entry.subject}"
        )
    if not found:
        click.echo("no archived message matches")


@archive_group.command("export")
@click.argument("path", type=click.Path(file_okay=False))
@archive_filters
@pass_state
def archive_export(
    state: State,
    path: str,
    account: str | None,
    sender: str | None,
    recipient: str | None,
    subject: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """Write the matching messages to PATH (a new or empty folder): archive.mbox and index.csv (with each
    message's SHA-256), for an auditor."""
    from .lifecycle import archive

    with errors_as_messages():
        query = _archive_query(account, sender, recipient, subject, since, until)
        with state.read() as conn:
            count = archive.export(conn, query, Path(path))
    click.echo(f"exported {count} archived message(s) to {path} (archive.mbox, index.csv)")


@archive_group.command("verify")
@pass_state
def archive_verify(state: State) -> None:
    """Check every archived message's bytes against its digest and every link of the chain; exit 1 at the
    first entry that does not hold."""
    from .lifecycle import archive

    with errors_as_messages(), state.read() as conn:
        verdict = archive.verify(conn)
    if verdict.problem:
        raise CLIError(f"archive NOT intact ({verdict.rows} good before it): {verdict.problem}")
    click.echo(f"archive intact: {verdict.rows} message(s), every message and link verified; head {verdict.head.hex()}")


@main.command("activity")
@click.argument("email")
@click.option("--days", default=30, show_default=True, type=click.IntRange(min=1, max=MAX_DAYS), help="Days to show.")
@json_option
@pass_state
def activity_command(state: State, email: str, days: int, as_json: bool) -> None:
    """Show EMAIL's logins (time, IP, protocol, result), per-day mail received, sent and bytes stored, the
    rolled-up months and all-time totals."""
    import time

    from .lifecycle import activity

    with errors_as_messages(), state.read() as conn:
        account = accounts.get_account(conn, email)
        per_day = activity.days(conn, account.id, days)
        logins = activity.logins(conn, account.id, time.time() - days * 86400)
        per_month = activity.months(conn, account.id)
        totals = activity.totals(conn, account.id)
    if as_json:
        print_json(
            {
                "email": account.email,
                "logins": [{**asdict(login), "time": iso(login.time)} for login in logins],
                "days": [asdict(day) for day in per_day],
                "months": [asdict(month) for month in per_month],
                "totals": totals,
            }
        )
        return
    click.echo(f"{account.email}: the last {days} day(s)")
    click.echo("day         received  sent  stored  logins  failed")
    for day in per_day:
        click.echo(
            f"{day.day}  {day.received:8}  {day.sent:4}  {format_size(day.bytes_stored):>6}  "
            f"{day.logins:6}  {day.failed_logins:6}"
        )
    for month in per_month:
        click.echo(
            f"{month.month}     {month.received:8}  {month.sent:4}  {format_size(month.bytes_stored):>6}  "
            f"{month.logins:6}  {month.failed_logins:6}  (rolled up)"
        )
    click.echo(
        f"total       {totals['received']:8}  {totals['sent']:4}  {format_size(totals['bytes_stored']):>6}  "
        f"{totals['logins']:6}  {totals['failed_logins']:6}"
    )
    for login in logins:
        via = f"\tapp password {login.app_password}" if login.app_password else ""
        click.echo(f"{iso(login.time)}\t{login.ip}\t{login.protocol}\t{login.result}{via}")


@main.command("announce")
@click.option("--subject", required=True, help="Subject of the announcement.")
@click.option("--body-file", required=True, type=click.Path(dir_okay=False, exists=True), help="Text of the body.")
@click.option("--domain", "domain_name", help="Only the accounts of this domain (default: every account).")
@pass_state
def announce_command(state: State, subject: str, body_file: str, domain_name: str | None) -> None:
    """Deliver one mandatory announcement into every (matching) INBOX, from [quota] notices_from; stored once."""
    import time

    from .lifecycle import announce

    with errors_as_messages():
        config = state.config
        body = Path(body_file).read_text(encoding="utf-8")
        sender = config.quota.notices_from or f"postmaster@{config.server.hostname}"
        raw = announce.build(
            sender=sender, subject=subject, body=body, hostname=config.server.hostname, now=time.time()
        )
        with state.write() as conn:
            targets = announce.recipients(conn, domain_name)
            announce.deliver(conn, raw, targets)
    click.echo(f"announced to {len(targets)} account(s)")


@main.group("backup")
def backup_group() -> None:
    """Database snapshots: create (online, verified, rotated), list, restore."""


@backup_group.command("create")
@pass_state
def backup_create(state: State) -> None:
    """Take a consistent snapshot while the daemon runs, gzip it, verify it, encrypt it ([backup] recipients),
    rotate old ones; then copy it off-site ([backup] offsite)."""
    from .lifecycle import backup, offsite

    with errors_as_messages():
        snapshot = backup.create(state.config)
    state_word = "verified, encrypted" if snapshot.path.name.endswith(backup.AGE_SUFFIX) else "verified"
    click.echo(f"{snapshot.path}\t{format_size(snapshot.size)}\t{state_word}")
    if state.config.backup.offsite:
        with errors_as_messages():
            removed = offsite.copy(state.config, snapshot)
        destination = offsite.parse_url(state.config.backup.offsite)
        click.echo(f"copied to {destination}; {len(removed)} old copy(ies) removed there")


@backup_group.command("keygen")
@click.argument("file", type=click.Path(dir_okay=False))
def backup_keygen(file: str) -> None:
    """Write a new age identity (secret key) to FILE (mode 0600) and print its recipient for [backup] recipients."""
    from .lifecycle import agefile

    identity = agefile.Identity.generate()
    created = datetime.now(UTC).isoformat(timespec="seconds")
    text = f"# created: {created}\n# public key: {identity.recipient}\n{identity}\n"
    with errors_as_messages():  # O_EXCL: an existing key file (maybe the only copy of one) is never overwritten
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(text)
    click.echo(f"Public key: {identity.recipient}")
    click.echo(f'Add it to [backup] recipients = ["{identity.recipient}"] in the configuration.')
    click.echo(
        f"Keep {file} OFF this server (a password manager, an offline disk): whoever has it can read every "
        "backup, and without it no one can; `relentad backup restore FILE --identity KEYFILE` and "
        "`age -d -i KEYFILE` decrypt.",
        err=True,
    )


@backup_group.command("list")
@click.option("--offsite", is_flag=True, help="List the copies at [backup] offsite instead (sftp).")
@json_option
@pass_state
def backup_list(state: State, offsite: bool, as_json: bool) -> None:
    """List the stored snapshots, newest first."""
    from .lifecycle import backup
    from .lifecycle import offsite as remote

    if offsite:
        if not state.config.backup.offsite:
            raise CLIError("no [backup] offsite destination is configured")
        with errors_as_messages():
            copies = remote.list_remote(state.config)
        if as_json:
            print_json(
                [{"name": f.name, "taken": f.taken.isoformat() if f.taken else None, "size": f.size} for f in copies]
            )
            return
        for copy in copies:
            taken = copy.taken.isoformat(timespec="seconds") if copy.taken else "incomplete upload"
            click.echo(f"{copy.name}\t{taken}\t{format_size(copy.size)}")
        return
    with errors_as_messages():
        found = backup.list_snapshots(state.config)
    if as_json:
        print_json([{"path": str(s.path), "taken": s.taken.isoformat(), "size": s.size} for s in found])
        return
    for snapshot in found:
        click.echo(f"{snapshot.path}\t{snapshot.taken.isoformat(timespec='seconds')}\t{format_size(snapshot.size)}")


@backup_group.command("restore")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--identity", type=click.Path(dir_okay=False), help="age key file for an encrypted (.age) backup.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def backup_restore(state: State, file: str, identity: str | None, yes: bool) -> None:
    """Replace the database with FILE (the server must be stopped)."""
    from .lifecycle import backup

    if not yes:
        click.confirm(f"Replace {state.config.database_path} with {file}?", abort=True)
    with errors_as_messages():
        backup.restore(state.config, Path(file), Path(identity) if identity else None)
    click.echo(f"restored {file}")


@main.command("export")
@click.argument("email")
@click.argument("path", type=click.Path(file_okay=False))
@pass_state
def export_command(state: State, email: str, path: str) -> None:
    """Export everything of EMAIL into PATH: mail as mbox per folder, contacts as vCard, activity as CSV, the user's
    Sieve scripts and shares."""
    from .lifecycle import transfer
    from .store import acl  # here, not at the top: the CLI starts without the IMAP store modules

    target = Path(path)
    with errors_as_messages(), state.read() as conn:
        account = accounts.get_account(conn, email)
        count, contacts_written = transfer.export_to(conn, account.id, target)
        scripts = conn.execute("SELECT count(*) FROM sieve_scripts WHERE account_id = ?", (account.id,)).fetchone()
        shares = acl.shares_of(conn, account.id)
    extra = ", contacts.vcf" if contacts_written else ""
    extra += ", sieve/*.sieve" if scripts[0] else ""
    extra += ", shares.json" if shares else ""
    kept = " (terminated: the mail it held then, kept until the purge)" if account.state == "terminated" else ""
    click.echo(
        f"exported {count} message(s) of {account.email}{kept} to {target} "
        f"(mail/*.mbox, flags.json{extra}, activity.csv)"
    )


@main.command("import")
@click.argument("email")
@click.argument("source")
@click.option("--password-stdin", is_flag=True, help="IMAP: read the old server's password from stdin.")
@click.option(
    "--cafile", type=click.Path(exists=True, dir_okay=False), help="IMAP: a CA (PEM) to trust for the old server."
)
@click.option("--exclude", multiple=True, metavar="FOLDER", help="IMAP: leave out this folder (and those below it).")
@click.option("--dry-run", is_flag=True, help="IMAP: show the folders and what is new; copy nothing.")
@click.option("--xoauth2", is_flag=True, help="IMAP: the secret is an OAuth 2.0 access token (Gmail, Microsoft 365).")
@click.option("--public-only", is_flag=True, hidden=True)  # the account page's jobs: no loopback or private hosts
@click.option("--job", "as_job", is_flag=True, hidden=True)  # the account page's jobs: progress in imap_import_jobs
@pass_state
def import_command(
    state: State,
    email: str,
    source: str,
    password_stdin: bool,
    cafile: str | None,
    exclude: tuple[str, ...],
    dry_run: bool,
    xoauth2: bool,
    public_only: bool,
    as_job: bool,
) -> None:
    """Import into EMAIL from SOURCE: an mbox file, a folder of .mbox files (relentad export), a Maildir, or
    another server over IMAP (imaps://LOGIN@HOST[:PORT], or imap:// with STARTTLS): folders, flags and bytes
    kept, quota checked, filed in the CRM (contacts, threads; no rules, no spam check). Over IMAP, running it
    again copies only what is new."""
    from .lifecycle import imapsource, transfer

    def write(job: Callable[[sqlite3.Connection], int]) -> int:
        with state.write() as conn:
            accounts.refuse_terminated(accounts.account_by_id(conn, account.id))  # terminated while importing
            return job(conn)

    with errors_as_messages():
        with state.read() as conn:
            account = accounts.active_account(conn, email)
        if imapsource.is_url(source):
            options = ImapImport(password_stdin, cafile, exclude, dry_run, public_only, xoauth2)
            if as_job:
                _import_job(state, account, source, write, options)
            else:
                _import_imap(state, account, source, write, options)
            return
        if password_stdin or cafile or exclude or dry_run or as_job or public_only or xoauth2:
            raise CLIError("--password-stdin, --cafile, --exclude, --dry-run and --xoauth2 are for an imap:// source")
        if not Path(source).exists():
            raise CLIError(f"{source}: no such file or folder")
        found = transfer.items(Path(source))
        with click.progressbar(length=len(found), label="importing", file=sys.stderr) as bar:
            count = transfer.import_all(
                write,
                account.id,
                found,
                bar.update,
                crm=state.config.crm.enabled,
                sent_folder=state.config.submission.sent_folder,
            )
    click.echo(f"imported {count} message(s) into {account.email}")


@dataclasses.dataclass(frozen=True)
class ImapImport:
    """The options of ``import EMAIL imap[s]://…``."""

    password_stdin: bool
    cafile: str | None
    exclude: tuple[str, ...]
    dry_run: bool
    public_only: bool
    xoauth2: bool = False


def _import_job(
    state: State,
    account: accounts.Account,
    url_text: str,
    write: Callable[[Callable[[sqlite3.Connection], int]], int],
    options: ImapImport,
) -> None:
    """An import the account page started (lifecycle/importjobs.py): the same import, its progress and its end
    written to the account's job row as it goes, the error too (also printed, for the daemon's log)."""
    from .lifecycle import importjobs

    def report(**fields: object) -> None:
        with state.write() as conn:
            importjobs.report(conn, account.id, **fields)

    report(state="running")
    try:
        outcome = _import_imap(state, account, url_text, write, options, report)
    except (CLIError, RelentadError) as exc:
        report(state="failed", error=exc.message if isinstance(exc, CLIError) else str(exc))
        raise
    except BaseException:
        report(state="failed", error="the import stopped on an unexpected error (see the server's log)")
        raise
    error = f"{len(outcome.failed)} folder(s) could not be read: {outcome.failed[0]}" if outcome.failed else ""
    report(state="failed" if error else "done", error=error)


def _import_imap(
    state: State,
    account: accounts.Account,
    url_text: str,
    write: Callable[[Callable[[sqlite3.Connection], int]], int],
    options: ImapImport,
    report: Callable[..., None] | None = None,
) -> Outcome:
    """``import EMAIL imaps://…``: plan the folders, show them (--dry-run) or copy what is new; with ``report``
    (a job), the counts as they change."""
    from .lifecycle import imapimport, imapsource

    url = imapsource.parse_url(url_text)
    if options.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        what = "Access token" if options.xoauth2 else "Password"
        password = click.prompt(f"{what} of {url.login} at {url.host}", hide_input=True, err=True)
    source = imapsource.connect(
        url, password, cafile=options.cafile, public_only=options.public_only, oauth2=options.xoauth2
    )
    try:
        remote = source.folders()
        with state.read() as conn:
            special = imapimport.own_special_folders(conn, account.id)
            known = imapimport.import_state(conn, account.id, url.key)
        views = imapimport.RELENTAD_VIEWS if source.server_name() == "relentad" else ()
        outcome = imapimport.Outcome(imapimport.plan_folders(remote, special, options.exclude, views))
        imapimport.survey(source, outcome.plans, known, outcome)
        if report is not None:
            report(total=outcome.pending)
        if options.dry_run:
            for plan in outcome.plans:
                if plan.target is None:
                    click.echo(f"{plan.remote.name}: skipped, {plan.skipped}")
                else:
                    size = format_size(plan.pending_bytes)
                    click.echo(f"{plan.remote.name} -> {plan.target}: {len(plan.pending)} new message(s), {size}")
            click.echo(f"would import {outcome.pending} message(s) into {account.email} from {url}")
            return outcome
        with click.progressbar(length=outcome.pending, label=f"importing from {url.host}", file=sys.stderr) as bar:

            def progress(done: int) -> None:
                bar.update(done)
                if report is not None:
                    report(done=bar.pos, imported=outcome.imported, already=outcome.already_there)

            imapimport.copy_all(
                source,
                write,
                account.id,
                outcome,
                progress,
                crm=state.config.crm.enabled,
                sent_folder=state.config.submission.sent_folder,
            )
    finally:
        source.close()
    folders = sum(1 for plan in outcome.plans if plan.target is not None)
    there = f", {outcome.already_there} already there" if outcome.already_there else ""
    click.echo(f"imported {outcome.imported} message(s) into {account.email} from {url} ({folders} folder(s){there})")
    if outcome.failed and report is None:
        raise CLIError(f"{len(outcome.failed)} folder(s) could not be read, the rest was imported: {outcome.failed[0]}")
    return outcome


# -- ACME ---------------------------------------------------------------------------------------------------


@main.group("acme")
def acme_group() -> None:
    """The certificate the daemon gets and renews by ACME ([acme] enabled)."""


def _acme_config(state: State) -> Config:
    config = state.config
    if not config.acme.enabled:
        raise CLIError("ACME is off: set [acme] enabled = true (see the README's ACME section)")
    return config


@acme_group.command("status")
@json_option
@pass_state
def acme_status(state: State, as_json: bool) -> None:
    """Names, expiry, the last attempt and its error, the next renewal."""
    from .acme import store as acme_store

    with errors_as_messages():
        config = _acme_config(state)
        status = acme_store.load_state(config.acme_dir)
    has_cert = config.cert_files()[0].is_file() and status.not_after > 0
    data = {
        "directory": config.acme.directory,
        "names": status.names,
        "certificate": str(config.cert_files()[0]) if has_cert else None,
        "not_after": iso(status.not_after) if has_cert else None,
        "renew_at": iso(status.renew_at) if has_cert and status.renew_at else None,
        "last_attempt": iso(status.last_attempt) if status.last_attempt else None,
        "last_success": iso(status.last_success) if status.last_success else None,
        "last_error": status.last_error or None,
        "failures": status.failures,
        "next_attempt": iso(status.next_attempt) if status.failures else None,
        "left_out": status.left_out,
    }
    if as_json:
        print_json(data)
        return
    click.echo(f"directory: {data['directory']}")
    click.echo(f"names: {', '.join(status.names) or '-'}")
    if has_cert:
        left = (status.not_after - time.time()) / 86400
        click.echo(f"expires: {data['not_after']} ({left:.0f} days)")
        click.echo(f"renewal from: {data['renew_at'] or '-'}")
    else:
        click.echo("certificate: none yet")
    click.echo(
        f"last attempt: {data['last_attempt'] or 'never'}"
        + (" (succeeded)" if not status.last_error and status.last_attempt else "")
    )
    if status.last_error:
        click.echo(f"last error: {status.last_error}")
        click.echo(f"failures in a row: {status.failures}; next attempt {data['next_attempt']}")
    if status.left_out:
        click.echo(f"left out (the CA could not validate them): {', '.join(status.left_out)}")


@acme_group.command("renew")
@click.option("--force", is_flag=True, help="Renew even when the certificate is not due.")
@pass_state
def acme_renew(state: State, force: bool) -> None:
    """Ask the running daemon to get a certificate now if one is due (--force: regardless) and wait for the result.

    The daemon answers the CA's challenges on its HTTP and HTTPS listeners, so it must be running.
    """
    import uuid

    from .acme import store as acme_store
    from .lifecycle import backup

    with errors_as_messages():
        config = _acme_config(state)
        # first: the lock below would be made by this process (root, say) when missing, and the daemon, running
        # as its own user, could then not open it; the daemon makes its lock before the folder
        if not config.acme_dir.is_dir():  # made by the daemon (as its user) at its first check
            raise CLIError(f"no {config.acme_dir} yet: the daemon has not run with [acme] on; restart it")
        try:
            backup.hold_daemon_lock(config.data_dir).close()
        except backup.BackupError:
            pass  # the daemon holds it: it is running
        else:
            raise CLIError(
                "relentad is not running: start it (it gets a certificate at start and answers the challenges)"
            )
        request_id = uuid.uuid4().hex
        acme_store.write_request(config.acme_dir, request_id, force)
        deadline = time.monotonic() + acme_store.REQUEST_WAIT
        while (answer := acme_store.load_state(config.acme_dir).answers.get(request_id)) is None:
            if time.monotonic() > deadline:
                wait = acme_store.REQUEST_WAIT
                raise CLIError(f"no answer from the daemon within {wait:.0f} s; see `relentad acme status` later")
            time.sleep(0.2)
    if not isinstance(answer, dict) or not answer.get("ok"):
        raise CLIError(str(answer.get("result") if isinstance(answer, dict) else answer))
    click.echo(str(answer.get("result")))


# -- outbound queue ---------------------------------------------------------------------------------------


@main.group("queue")
def queue_group() -> None:
    """Outgoing mail waiting for delivery."""


@queue_group.command("list")
@json_option
@pass_state
def queue_list(state: State, as_json: bool) -> None:
    """List queued messages and the state of each recipient, with the DSN parameters (RET, ENVID, NOTIFY, ORCPT)."""
    from .queue import queue as outbound

    with errors_as_messages(), state.read() as conn:
        rows = outbound.list_queue(conn)
    if as_json:
        for row in rows:
            row["created"] = iso(row["created"])
            for recipient in row["recipients"]:
                recipient["next_attempt"] = iso(recipient["next_attempt"])
                recipient["last_attempt"] = iso(recipient["last_attempt"])
        print_json(rows)
        return
    for row in rows:
        dsn = _dsn_shown(row, ("ret", "envid"))
        click.echo(f"{row['id']}\t{iso(row['created'])}\t<{row['mail_from']}>\t{format_size(row['size'])}{dsn}")
        for recipient in row["recipients"]:
            next_try = f" next {iso(recipient['next_attempt'])}" if recipient["state"] == "queued" else ""
            reply = f" ({recipient['last_reply']})" if recipient["last_reply"] else ""
            attempts = f"{recipient['attempts']} attempt(s)"
            dsn = _dsn_shown(recipient, ("notify", "orcpt"))
            click.echo(f"\t<{recipient['address']}>{dsn} {recipient['state']} after {attempts}{next_try}{reply}")


def _dsn_shown(row: dict[str, Any], names: tuple[str, ...]) -> str:
    """The DSN parameters a queued message or recipient has, as `` NAME=value`` (decoded), for ``queue list``."""
    return "".join(f" {name.upper()}={row[name]}" for name in names if row[name] is not None)


@queue_group.command("retry")
@click.argument("message_id", type=click.IntRange(min=1, max=MAX_INTEGER))
@pass_state
def queue_retry(state: State, message_id: int) -> None:
    """Make message MESSAGE_ID due now (the daemon picks it up within [queue] scan_interval)."""
    from .queue import queue as outbound

    with errors_as_messages(), state.write() as conn:
        count = outbound.retry_now(conn, message_id)
    click.echo(f"message {message_id}: {count} recipient(s) due now")


@queue_group.command("delete")
@click.argument("message_id", type=click.IntRange(min=1, max=MAX_INTEGER))
@pass_state
def queue_delete(state: State, message_id: int) -> None:
    """Drop message MESSAGE_ID from the queue without delivering or bouncing it."""
    from .queue import queue as outbound

    with errors_as_messages(), state.write() as conn:
        outbound.delete(conn, message_id)
    click.echo(f"message {message_id} deleted from the queue")


# -- MTA-STS ----------------------------------------------------------------------------------------------


@main.group("mta-sts")
def mta_sts() -> None:
    """The recipient domains' MTA-STS policies the queue has cached (RFC 8461)."""


def _policy_line(policy: Policy, now: float) -> str:
    state = "valid" if policy.expires > now else "expired"
    return (
        f"{policy.domain}\tid={policy.id}\tmode={policy.mode}\tmx={','.join(policy.mx) or '-'}\t"
        f"fetched {iso(policy.fetched)}\texpires {iso(policy.expires)} ({state})"
    )


def _policy_json(policy: Policy) -> dict[str, Any]:
    return {
        "domain": policy.domain,
        "id": policy.id,
        "mode": policy.mode,
        "mx": list(policy.mx),
        "max_age": policy.max_age,
        "fetched": iso(policy.fetched),
        "expires": iso(policy.expires),
        "policy": policy.text,
    }


@mta_sts.command("list")
@json_option
@pass_state
def mta_sts_list(state: State, as_json: bool) -> None:
    """Every cached policy: domain, TXT id, mode, mx patterns, when it was fetched and when it expires."""
    import time

    from .queue import mtasts

    with errors_as_messages(), state.read() as conn:
        policies = mtasts.cached_all(conn)
    if as_json:
        print_json([_policy_json(p) for p in policies])
        return
    now = time.time()
    for policy in policies:
        click.echo(_policy_line(policy, now))


@mta_sts.command("show")
@click.argument("domain")
@json_option
@pass_state
def mta_sts_show(state: State, domain: str, as_json: bool) -> None:
    """Look DOMAIN's policy up now (TXT record, HTTPS fetch; nothing stored) and show it beside the cached one."""
    import asyncio
    import time

    from .dns import make_resolver
    from .queue import mtasts

    with errors_as_messages():
        name = addrspec.normalize_domain(domain)
        with state.read() as conn:
            known = mtasts.cached(conn, name)
        config = state.config
        resolver = make_resolver(config.dns.nameservers, config.dns.timeout)
        ca_file = config.resolve(config.queue.ca_file) if config.queue.ca_file else None
        found = asyncio.run(mtasts.discover(name, resolver, mtasts.verified_context(ca_file), known))
    if as_json:
        print_json(
            {
                "domain": name,
                "lookup": found.how,
                "detail": found.detail,
                "txt_id": found.txt_id,
                "applies": _policy_json(found.policy) if found.policy else None,
                "cached": _policy_json(known) if known else None,
            }
        )
        return
    detail = f": {found.detail}" if found.detail else ""
    click.echo(f"lookup: {found.how}{detail}")
    click.echo(f"applies: {_policy_line(found.policy, time.time()) if found.policy else 'no policy'}")
    click.echo(f"cached: {_policy_line(known, time.time()) if known else 'none'}")
    if found.policy is not None:
        click.echo(found.policy.text.rstrip("\n"))


@mta_sts.command("forget")
@click.argument("domain")
@pass_state
def mta_sts_forget(state: State, domain: str) -> None:
    """Drop DOMAIN's cached policy: the next delivery looks it up again (with no live policy, none applies)."""
    from .queue import mtasts

    with errors_as_messages():
        name = addrspec.normalize_domain(domain)
        with state.write() as conn:
            if not mtasts.forget(conn, name):
                raise CLIError(f"no cached MTA-STS policy for {name}")
    click.echo(f"cached MTA-STS policy of {name} dropped")


@main.group("dane")
def dane_group() -> None:
    """DANE (RFC 7672): recipient domains' TLSA records as deliveries see them."""


@dane_group.command("check")
@click.argument("domain")
@json_option
@pass_state
def dane_check(state: State, domain: str, as_json: bool) -> None:
    """Look DOMAIN's MX hosts and TLSA records up through [dns] nameservers and try each host's certificate
    (connects to port 25, sends nothing). Exits 1 when DANE would hold mail to DOMAIN back."""
    import asyncio

    from .dns import make_resolver
    from .queue import danecheck

    with errors_as_messages():
        name = addrspec.normalize_domain(domain)
        config = state.config
        resolver = make_resolver(config.dns.nameservers, config.dns.timeout)
        timeout = min(config.queue.timeout, 30.0)
        result = asyncio.run(
            danecheck.check_domain(resolver, name, hostname=config.server.hostname, time_limit=timeout)
        )
    if as_json:
        print_json(result.as_json())
    else:
        click.echo(danecheck.render(result), nl=False)
    if result.failed:
        sys.exit(1)


# -- DKIM -------------------------------------------------------------------------------------------------


@main.group()
def srs() -> None:
    """The secret that signs SRS senders of forwarded mail (see README, Forwarding)."""


@srs.command("rotate")
@click.option("--revoke", is_flag=True, help="Remove every old secret now (it leaked): older bounces fail.")
@pass_state
def srs_rotate(state: State, revoke: bool) -> None:
    """Make a new SRS secret; old ones still verify bounces for 21 days after they were replaced."""
    from . import srs as srs_mod

    with errors_as_messages(), state.write() as conn:
        removed = srs_mod.rotate(conn, revoke=revoke)
    click.echo(f"new SRS secret in use; {removed} old one(s) removed")


@main.group()
def dkim() -> None:
    """DKIM signing keys for outgoing mail."""


@dkim.command("generate")
@click.argument("domain")
@click.option("--selector", default="relentad", show_default=True, help="DNS selector of the new key.")
@click.option("--ed25519", "with_ed25519", is_flag=True, help="Also make an ed25519 key (dual signing).")
@click.option("--activate", is_flag=True, help="Sign with the new key at once, even if the domain has one already.")
@pass_state
def dkim_generate(state: State, domain: str, selector: str, with_ed25519: bool, activate: bool) -> None:
    """Make a key pair for DOMAIN under the data folder and print the DNS TXT record(s) to publish.

    A domain's first key is used at once; a later one only after `relentad dkim activate DOMAIN SELECTOR`
    (publish its record first), unless --activate is given.
    """
    from .queue import dkimkeys

    with errors_as_messages():
        with state.read() as conn:
            name = addrspec.normalize_domain(domain)
            if accounts.domain_id(conn, name) is None:
                raise CLIError(f"domain {name} is not hosted here (relentad domain add {domain})")
        lines = dkimkeys.generate(state.config.data_dir, name, selector, ed25519=with_ed25519, activate=activate)
        keys = dkimkeys.load(state.config.data_dir, name)
    if keys is not None and keys.selector == selector:
        click.echo(f"DKIM key for {name} with selector {selector} stored and in use; publish:")
    else:
        click.echo(f"DKIM key for {name} with selector {selector} stored, not in use yet; publish:")
    for line in lines:
        click.echo(line)
    if keys is not None and keys.selector != selector:
        click.echo(f"then, once DNS answers it: relentad dkim activate {name} {selector}")


@dkim.command("activate")
@click.argument("domain")
@click.argument("selector")
@pass_state
def dkim_activate(state: State, domain: str, selector: str) -> None:
    """Sign DOMAIN's mail with the key of SELECTOR from now on (publish its DNS record first).

    The key it replaces stays listed by `relentad domain dns` until `relentad dkim retire DOMAIN`.
    """
    from .queue import dkimkeys

    with errors_as_messages():
        name = addrspec.normalize_domain(domain)
        previous = dkimkeys.activate(state.config.data_dir, name, selector)
    click.echo(f"DKIM key {selector} of {name} in use")
    if previous:
        click.echo(f"keep {previous}'s DNS record until mail it signed is delivered, then: relentad dkim retire {name}")


@dkim.command("retire")
@click.argument("domain")
@pass_state
def dkim_retire(state: State, domain: str) -> None:
    """Stop listing DOMAIN's previous DKIM key in `relentad domain dns` (its record may then be removed)."""
    from .queue import dkimkeys

    with errors_as_messages():
        name = addrspec.normalize_domain(domain)
        retired = dkimkeys.retire(state.config.data_dir, name)
    click.echo(f"DKIM key {retired} of {name} retired; its DNS record may be removed")


# -- CRM: contacts and rules ------------------------------------------------------------------------------


def _account_id(conn: sqlite3.Connection, email: str) -> int:
    return accounts.get_account(conn, email).id


def _contact_line(contact: dict[str, Any]) -> str:
    kind = "" if contact["kind"] == "person" else f" [{contact['kind']}]"
    company = f" ({contact['company']})" if contact["company"] else ""
    tags = f" tags={','.join(contact['tags'])}" if contact["tags"] else ""
    return (
        f"#{contact['id']}\t{contact['name'] or '-'}{kind}{company}\t{', '.join(contact['addresses'])}\t"
        f"in={contact['count_in']} out={contact['count_out']} last={iso(contact['last_contact']) or '-'}{tags}"
    )


def _contact_json(contact: dict[str, Any]) -> dict[str, Any]:
    data = dict(contact)
    data["first_contact"], data["last_contact"] = iso(contact["first_contact"]), iso(contact["last_contact"])
    for thread in data.get("threads", []):
        thread["first_message"], thread["last_message"] = iso(thread["first_message"]), iso(thread["last_message"])
    for message in data.get("messages", []):
        message["time"] = iso(message["time"])
    return data


@main.group()
def contacts() -> None:
    """The CRM: contacts filed from every message an account receives or sends."""


@contacts.command("list")
@click.argument("email")
@click.option("--tag", help="Only contacts with this tag.")
@click.option("--company", help="Only contacts of this company (its name, or a domain of it: mail.acme.example).")
@click.option("--kind", type=click.Choice(["person", "list", "bulk"]), help="Only people, lists or bulk senders.")
@json_option
@pass_state
def contacts_list(
    state: State, email: str, tag: str | None, company: str | None, kind: str | None, as_json: bool
) -> None:
    """List the contacts of account EMAIL, most recent first."""
    from .crm import views

    with errors_as_messages(), state.read() as conn:
        found = views.list_contacts(conn, _account_id(conn, email), tag=tag, company=company, kind=kind)
    if as_json:
        print_json([_contact_json(c) for c in found])
        return
    for contact in found:
        click.echo(_contact_line(contact))


@contacts.command("show")
@click.argument("email")
@click.argument("contact")
@json_option
@pass_state
def contacts_show(state: State, email: str, contact: str, as_json: bool) -> None:
    """Show CONTACT (an address, #id or name) of EMAIL: addresses, counts, threads, last messages."""
    from .crm import contacts as crm_contacts
    from .crm import views

    with errors_as_messages(), state.read() as conn:
        card = views.show(conn, crm_contacts.resolve(conn, _account_id(conn, email), contact))
    if as_json:
        print_json(_contact_json(card))
        return
    click.echo(_contact_line(card))
    click.echo(
        f"  first contact: {iso(card['first_contact']) or '-'}   confirmed: {'yes' if card['confirmed'] else 'no'}"
    )
    for line in card["notes"].splitlines():
        click.echo(f"  note: {line}")
    click.echo(f"  threads ({len(card['threads'])}):")
    for thread in card["threads"]:
        click.echo(
            f"    {iso(thread['last_message'])}  {thread['messages']:>4} msg  {thread['subject'] or '(no subject)'}"
        )
    click.echo(f"  last messages ({len(card['messages'])}):")
    for message in card["messages"]:
        arrow = "<-" if message["direction"] == "in" else "->"
        folder = message["folder"] or "(gone)"
        click.echo(f"    {iso(message['time'])} {arrow} {folder}: {message['subject'] or '(no subject)'}")


def _edit_contact(state: State, email: str, contact: str, edit: Callable[[sqlite3.Connection, int, int], Any]) -> Any:
    from .crm import contacts as crm_contacts

    with errors_as_messages(), state.write() as conn:
        account_id = _account_id(conn, email)
        return edit(conn, account_id, crm_contacts.resolve(conn, account_id, contact))


@contacts.command("tag")
@click.argument("email")
@click.argument("contact")
@click.argument("tags", nargs=-1, required=True)
@pass_state
def contacts_tag(state: State, email: str, contact: str, tags: tuple[str, ...]) -> None:
    """Add TAGS to CONTACT of EMAIL."""
    from .crm import contacts as crm_contacts

    _edit_contact(state, email, contact, lambda conn, _a, cid: crm_contacts.tag(conn, cid, list(tags)))
    click.echo(f"{contact}: tagged {', '.join(tags)}")


@contacts.command("untag")
@click.argument("email")
@click.argument("contact")
@click.argument("tags", nargs=-1, required=True)
@pass_state
def contacts_untag(state: State, email: str, contact: str, tags: tuple[str, ...]) -> None:
    """Remove TAGS from CONTACT of EMAIL."""
    from .crm import contacts as crm_contacts

    removed = _edit_contact(state, email, contact, lambda conn, _a, cid: crm_contacts.untag(conn, cid, list(tags)))
    click.echo(f"{contact}: {removed} tag(s) removed")


@contacts.command("note")
@click.argument("email")
@click.argument("contact")
@click.argument("text")
@pass_state
def contacts_note(state: State, email: str, contact: str, text: str) -> None:
    """Add a dated note to CONTACT of EMAIL."""
    from .crm import contacts as crm_contacts

    _edit_contact(state, email, contact, lambda conn, _a, cid: crm_contacts.add_note(conn, cid, text))
    click.echo(f"{contact}: note added")


@contacts.command("add-address")
@click.argument("email")
@click.argument("contact")
@click.argument("address")
@pass_state
def contacts_add_address(state: State, email: str, contact: str, address: str) -> None:
    """Give CONTACT of EMAIL another ADDRESS."""
    from .crm import contacts as crm_contacts

    added = _edit_contact(
        state, email, contact, lambda conn, account_id, cid: crm_contacts.add_address(conn, account_id, cid, address)
    )
    click.echo(f"{contact}: address {added} added")


@contacts.command("merge")
@click.argument("email")
@click.argument("contact")
@click.argument("other")
@pass_state
def contacts_merge(state: State, email: str, contact: str, other: str) -> None:
    """Merge OTHER into CONTACT (both of EMAIL): addresses, tags, notes, messages and threads move."""
    from .crm import contacts as crm_contacts

    def merge(conn: sqlite3.Connection, account_id: int, keep: int) -> None:
        crm_contacts.merge(conn, account_id, keep, crm_contacts.resolve(conn, account_id, other))

    _edit_contact(state, email, contact, merge)
    click.echo(f"{other} merged into {contact}")


@contacts.command("rename")
@click.argument("email")
@click.argument("contact")
@click.argument("name")
@pass_state
def contacts_rename(state: State, email: str, contact: str, name: str) -> None:
    """Give CONTACT of EMAIL the NAME you know them by (mail never replaces it)."""
    from .crm import contacts as crm_contacts

    given = _edit_contact(
        state, email, contact, lambda conn, account_id, cid: crm_contacts.rename(conn, account_id, cid, name)
    )
    click.echo(f"{contact}: renamed {given}")


@contacts.command("export")
@click.argument("email")
@click.option("--format", "fmt", type=click.Choice(["vcard", "csv"]), required=True, help="vCard 4.0 or CSV.")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of stdout.")
@pass_state
def contacts_export(state: State, email: str, fmt: str, output: str | None) -> None:
    """Export the contacts of EMAIL as vCard 4.0 (RFC 6350; a card a phone wrote as CardDAV serves it) or CSV."""
    from .carddav import book
    from .crm import export, views

    with errors_as_messages():
        with state.read() as conn:
            account_id = _account_id(conn, email)
            found = views.list_contacts(conn, account_id)
            text = book.export_vcards(conn, account_id, found) if fmt == "vcard" else export.csv_text(found)
        if output:
            Path(output).write_text(text, encoding="utf-8", newline="")
        else:
            sys.stdout.write(text)


IMPORT_BATCH = 500
"""Entries per transaction of ``contacts import``: the daemon's writers wait at most one batch."""


class _DryRun(Exception):
    """Rolls back a dry run's transaction."""


@contacts.command("import")
@click.argument("email")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["vcard", "csv"]), help="Override detection by name and content.")
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--overwrite", is_flag=True, help="The file's name, note, company and card replace the contact's.")
@click.option("-v", "--verbose", is_flag=True, help="One line per created, updated or skipped entry.")
@json_option
@pass_state
def contacts_import(
    state: State, email: str, file: str, fmt: str | None, dry_run: bool, overwrite: bool, verbose: bool, as_json: bool
) -> None:
    """Import contacts into EMAIL from FILE: a vCard file (2.1, 3.0, 4.0) or a CSV with a header row (Google,
    Outlook, or name/email/company/tags/note columns). Each becomes a confirmed contact; see README "The CRM"."""
    from .crm import contactfile, importing

    outcomes: list[importing.Outcome] = []
    with errors_as_messages():
        with state.read() as conn:
            account = accounts.active_account(conn, email)
        parsed = contactfile.read(Path(file), fmt)
        importer = importing.Importer(account.id, overwrite)

        def batch(conn: sqlite3.Connection, entries: list[contactfile.Entry]) -> None:
            accounts.refuse_terminated(accounts.account_by_id(conn, account.id))
            outcomes.extend(importer.run(conn, entries))

        with click.progressbar(length=len(parsed.entries), label="importing contacts", file=sys.stderr) as bar:
            if dry_run:  # one transaction, rolled back: later entries see what earlier ones would have made
                try:
                    with state.write() as conn:
                        for start in range(0, len(parsed.entries), IMPORT_BATCH):
                            batch(conn, parsed.entries[start : start + IMPORT_BATCH])
                            bar.update(min(IMPORT_BATCH, len(parsed.entries) - start))
                        raise _DryRun
                except _DryRun:
                    pass
            else:
                for start in range(0, len(parsed.entries), IMPORT_BATCH):
                    with state.write() as conn:
                        batch(conn, parsed.entries[start : start + IMPORT_BATCH])
                    bar.update(min(IMPORT_BATCH, len(parsed.entries) - start))
    counts = dict.fromkeys((importing.CREATED, importing.UPDATED, importing.UNCHANGED, importing.SKIPPED), 0)
    for outcome in outcomes:
        counts[outcome.result] += 1
    if as_json:
        print_json(
            {
                "account": account.email,
                "file": file,
                "format": parsed.format,
                "dry_run": dry_run,
                **counts,
                "warnings": parsed.warnings,
                "entries": [o.as_json() for o in outcomes if o.result != importing.UNCHANGED],
            }
        )
        return
    for warning in parsed.warnings:
        click.echo(f"warning: {warning}", err=True)
    if verbose:
        for o in outcomes:
            if o.result != importing.UNCHANGED:
                who = f" #{o.contact_id} {o.name or '-'}" if o.contact_id is not None else ""
                click.echo(f"{o.where}: {o.result}{who}: {'; '.join(o.changes)}".rstrip(": "))
    summary = ", ".join(f"{n} {result}" for result, n in counts.items())
    click.echo(
        f"{'dry run, nothing changed: would import' if dry_run else 'imported'} {parsed.format} {file} into "
        f"{account.email}: {summary}"
    )


@contacts.command("unassigned")
@click.argument("email")
@json_option
@pass_state
def contacts_unassigned(state: State, email: str, as_json: bool) -> None:
    """Mail of EMAIL from senders who are not (yet) confirmed contacts, to review."""
    from .crm import sorter, views

    with errors_as_messages(), state.read() as conn:
        keyword = state.config.crm.unassigned_keyword or sorter.UNASSIGNED
        rows = views.unassigned(conn, _account_id(conn, email), keyword)
    if as_json:
        print_json([{**row, "internaldate": iso(row["internaldate"])} for row in rows])
        return
    for row in rows:
        who = f"{row['name']} <{row['sender']}>" if row["name"] else f"<{row['sender']}>"
        click.echo(f"{iso(row['internaldate'])}\t{row['folder']} uid {row['uid']}\t{who}\t{row['subject']}")


@main.group()
def companies() -> None:
    """The CRM's companies: one per organisational domain of an account's contacts."""


@companies.command("list")
@click.argument("email")
@json_option
@pass_state
def companies_list(state: State, email: str, as_json: bool) -> None:
    """List the companies of account EMAIL with their contacts (confirmed ones in brackets)."""
    from .crm import companies as crm_companies

    with errors_as_messages(), state.read() as conn:
        found = crm_companies.list_companies(conn, _account_id(conn, email))
    if as_json:
        print_json(found)
        return
    for company in found:
        click.echo(
            f"#{company['id']}\t{company['name']}\t{company['domain']}\t{company['contacts']} ({company['confirmed']})"
        )


@companies.command("rename")
@click.argument("email")
@click.argument("company")
@click.argument("name")
@pass_state
def companies_rename(state: State, email: str, company: str, name: str) -> None:
    """Give COMPANY (a domain of it, #id or name) of EMAIL the NAME it goes by."""
    from .crm import companies as crm_companies

    with errors_as_messages(), state.write() as conn:
        account_id = _account_id(conn, email)
        given = crm_companies.rename(conn, account_id, crm_companies.resolve(conn, account_id, company), name)
    click.echo(f"{company}: renamed {given}")


@main.group("crm")
def crm_group() -> None:
    """The CRM's follow-ups: threads where the account wrote to someone and nobody has answered."""


def _followup_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "thread": row["thread_id"],
        "subject": row["thread_subject"],
        "message_subject": row["subject"],
        "contacts": row["contacts"],
        "sent": iso(row["sent"]),
        "days_waiting": row["days_waiting"],
        "folder_uid": row["crm_id"],
    }


@crm_group.command("followups")
@click.argument("email")
@click.option("--days", type=click.IntRange(0, 365), help="Delay in days for this listing (default: the account's).")
@json_option
@pass_state
def crm_followups(state: State, email: str, days: int | None, as_json: bool) -> None:
    """List the threads of EMAIL awaiting a reply: the newest message is one EMAIL sent to a person, at least the
    follow-up delay ago (and within [crm] followup_window), and nobody answered since (oldest first)."""
    from .crm import followups

    with errors_as_messages(), state.read() as conn:
        account_id = _account_id(conn, email)
        delay = followups.days(conn, account_id, state.config.crm.followup_days) if days is None else days
        found = followups.due(conn, account_id, delay, time.time(), state.config.crm.followup_window)
    if as_json:
        print_json([_followup_json(row) for row in found])
        return
    for row in found:
        who = ", ".join(c["name"] or c["address"] for c in row["contacts"]) or "-"
        subject = row["thread_subject"] or row["subject"] or "(no subject)"
        click.echo(f"{iso(row['sent'])}\t{row['days_waiting']}d\t{who}\t{subject}")


@crm_group.command("followup-days")
@click.argument("email")
@click.argument("days")
@pass_state
def crm_followup_days(state: State, email: str, days: str) -> None:
    """Set the follow-up delay of EMAIL to DAYS (0-365), or "default" for [crm] followup_days."""
    from .crm import followups

    value: int | None = None
    if days.strip().lower() != "default":
        if not days.strip().isdigit() or int(days) > followups.MAX_DAYS:
            raise click.UsageError(f"DAYS must be a number of days from 0 to {followups.MAX_DAYS}, or default")
        value = int(days)
    with errors_as_messages(), state.write() as conn:
        followups.set_days(conn, _account_id(conn, email), value)
    shown = f"{value} days" if value is not None else f"the default ({state.config.crm.followup_days} days)"
    click.echo(f"{email}: follow-up after {shown}")


@main.group()
def rules() -> None:
    """Filing rules per account, in the Sieve language (RFC 5228 subset; see README)."""


@rules.command("list")
@click.argument("email")
@json_option
@pass_state
def rules_list(state: State, email: str, as_json: bool) -> None:
    """List the rules of EMAIL in the order they run, then the user's own ManageSieve scripts (the active one runs
    after the rules; the others are stored only); what the user set on the account page first, as one line each."""
    from .crm import autoforward, autoreply, pagefilters, userscripts
    from .crm import rules as crm_rules

    with errors_as_messages(), state.read() as conn:
        account_id = _account_id(conn, email)
        found = crm_rules.list_rules(conn, account_id)
        own = userscripts.rows(conn, account_id)
        page = [
            ("automatic reply", autoreply.describe(autoreply.get(conn, account_id))),
            ("forwarding", autoforward.describe(autoforward.get(conn, account_id))),
            *((f"filter {f.id}", f.describe()) for f in pagefilters.listed(conn, account_id)),
        ]
    page = [(name, what) for name, what in page if what != "off"]
    if as_json:
        listed: list[dict[str, Any]] = [{"owner": "page", "name": name, "setting": what} for name, what in page]
        listed += [{**row, "owner": "admin", "created": iso(row["created"])} for row in found]  # type: ignore[arg-type]
        listed += [
            {**row, "owner": "user", "created": iso(row["created"]), "updated": iso(row["updated"])} for row in own
        ]
        print_json(listed)
        return
    for name, what in page:
        click.echo(f"account page: {name}: {what}")
    for row in found:
        click.echo(f"{row['position']}. {row['name']}")
        for line in str(row["script"]).splitlines():
            click.echo(f"    {line}")
    for row in own:
        click.echo(f"user's script {row['name']} ({'active: runs last' if row['active'] else 'inactive'})")
        for line in str(row["script"]).splitlines():
            click.echo(f"    {line}")


@rules.command("add")
@click.argument("email")
@click.argument("name")
@click.argument("script", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--position", type=click.IntRange(min=1), help="Run at this place (1 = first; default: last).")
@pass_state
def rules_add(state: State, email: str, name: str, script: Any, position: int | None) -> None:
    """Add rule NAME to EMAIL from the Sieve SCRIPT file (default: stdin)."""
    from .crm import rules as crm_rules

    with errors_as_messages():
        text = script.read()
        with state.write() as conn:
            crm_rules.add(conn, _account_id(conn, email), name, text, position)
    click.echo(f"rule {name} added")


@rules.command("remove")
@click.argument("email")
@click.argument("name")
@click.option("--user", "user_script", is_flag=True, help="Remove the user's own (ManageSieve) script NAME instead.")
@pass_state
def rules_remove(state: State, email: str, name: str, user_script: bool) -> None:
    """Remove rule NAME of EMAIL (with --user: the user's script NAME, even the active one)."""
    from .crm import rules as crm_rules
    from .crm import userscripts

    with errors_as_messages(), state.write() as conn:
        if user_script:
            userscripts.delete(conn, _account_id(conn, email), name, even_active=True)
        else:
            crm_rules.remove(conn, _account_id(conn, email), name)
    click.echo(f"{'user script' if user_script else 'rule'} {name} removed")


@rules.command("test")
@click.argument("email")
@click.argument("message", type=click.Path(exists=True, dir_okay=False))
@click.option("--mail-from", default="", help="Envelope sender to assume (default: none).")
@json_option
@pass_state
def rules_test(state: State, email: str, message: str, mail_from: str, as_json: bool) -> None:
    """Show what the rules of EMAIL would do to the MESSAGE file if it arrived now (nothing is changed)."""
    from .crm import sorter

    with errors_as_messages():
        raw = Path(message).read_bytes()
        with state.read() as conn:
            account = accounts.get_account(conn, email)
            forwarding = state.config.web.user_forwarding
            result = sorter.preview(conn, account.id, account.email, raw, mail_from, user_forwarding=forwarding)
    if as_json:
        print_json(result)
        return
    click.echo(f"direction: {result['direction']}  sender: <{result['sender']}> ({result['contact']})")
    for copy in result["copies"]:  # type: ignore[attr-defined]
        click.echo(f"file into {copy['folder']}  flags: {' '.join(copy['flags']) or '-'}")
    for target in result["redirects"]:  # type: ignore[attr-defined]
        click.echo(f"redirect to <{target}>")
    if result["reject"]:
        click.echo(f"reject (550 5.7.1 at SMTP time when it is the only recipient): {result['reject']}")
    if result["tags"]:
        click.echo(f"tag the contact: {' '.join(result['tags'])}")  # type: ignore[arg-type]
    if result["header"] is not None:
        click.echo("header as the rules leave it (editheader):")
        for line in str(result["header"]).splitlines():
            click.echo(f"  | {line}")
    reply = result["vacation"]
    if isinstance(reply, dict):
        if "to" in reply:
            click.echo(f"vacation reply to <{reply['to']}> from <{reply['from']}>")
        else:
            click.echo(f"no vacation reply: {reply['none']}")
    for step in result["trace"]:  # type: ignore[attr-defined]
        click.echo(f"  {step}")
    if result["unassigned"]:
        click.echo(f"  unassigned ({state.config.crm.unassigned_keyword or 'no keyword'}): not a confirmed contact")


@user.command("mobileconfig")
@click.argument("email")
@pass_state
def user_mobileconfig(state: State, email: str) -> None:
    """Print EMAIL's Apple configuration profile (.mobileconfig: mail and contacts on an iPhone, iPad or Mac)."""
    from . import clientconfig

    with errors_as_messages():
        with state.read() as conn:
            account = accounts.get_account(conn, email)
        profile = clientconfig.mobileconfig(state.config, account.email, account.display_name)
    click.echo(profile.decode(), nl=False)


@main.command("greylist")
@json_option
@pass_state
def greylist_show(state: State, as_json: bool) -> None:
    """Show what greylisting ([greylist]) holds: triplets waiting or let through, client networks let through."""
    from . import greylist as grey

    config = state.config.greylist
    with errors_as_messages(), state.read() as conn:
        found = grey.counts(conn, time.time(), config)
    if as_json:
        print_json({"enabled": config.enabled, **found})
        return
    click.echo(
        f"greylisting {'on' if config.enabled else 'off'}: {found['waiting']} triplet(s) waiting for a retry, "
        f"{found['passed']} let through, {found['clients']} client network(s) let through for everyone"
    )


@main.command("imports")
@json_option
@pass_state
def imports_show(state: State, as_json: bool) -> None:
    """The imports over IMAP users started on the account page: each account's last one, its state and counts."""
    from .lifecycle import importjobs

    with errors_as_messages(), state.read() as conn:
        found = importjobs.listed(conn)
    if as_json:
        print_json([{"email": email, **dataclasses.asdict(job)} for email, job in found])
        return
    if not found:
        click.echo("no imports started on the account page")
    for email, job in found:
        counts = f"{job.done}/{job.total} done, {job.imported} copied, {job.already} already there"
        when = iso(job.finished or job.queued)
        error = f": {job.error}" if job.error else ""
        click.echo(f"{email}  {job.state}  {job.source}  {counts}  {when}{error}")


# -- automatic reply --------------------------------------------------------------------------------------


@main.group()
def autoreply() -> None:
    """An account's automatic reply ("out of office"), as its user sets it on the account page."""


def _show_autoreply(email: str, reply: Any) -> None:
    from .crm import autoreply as auto

    click.echo(f"{email}: automatic reply {auto.describe(reply)}")
    if reply.message:
        click.echo(f"  subject: {reply.subject or 'Auto: <their subject>'}; once per sender every {reply.days} day(s)")
        for line in reply.message.splitlines():
            click.echo(f"  | {line}")


@autoreply.command("show")
@click.argument("email")
@json_option
@pass_state
def autoreply_show(state: State, email: str, as_json: bool) -> None:
    """Show EMAIL's automatic reply."""
    from .crm import autoreply as auto

    with errors_as_messages(), state.read() as conn:
        reply = auto.get(conn, accounts.get_account(conn, email).id)
    if as_json:
        print_json(dataclasses.asdict(reply))
        return
    _show_autoreply(email, reply)


@autoreply.command("set")
@click.argument("email")
@click.option("--message-file", type=click.File("r", encoding="utf-8"), help="The reply's text ('-' for stdin).")
@click.option("--subject", help="The reply's subject (default: Auto: <their subject>).")
@click.option("--first-day", "first_day", help="First day it answers (YYYY-MM-DD, the server's time zone).")
@click.option("--last-day", "last_day", help="Last day it answers (YYYY-MM-DD).")
@click.option("--days", type=int, help="Days before the same sender is answered again (1-90; default 7).")
@pass_state
def autoreply_set(
    state: State,
    email: str,
    message_file: Any,
    subject: str | None,
    first_day: str | None,
    last_day: str | None,
    days: int | None,
) -> None:
    """Turn EMAIL's automatic reply on; options not given keep what the account had."""
    from .crm import autoreply as auto

    with errors_as_messages(), state.write() as conn:
        account_id = accounts.get_account(conn, email).id
        reply = auto.get(conn, account_id)
        changes: dict[str, Any] = {"enabled": True}
        if message_file is not None:
            changes["message"] = message_file.read()
        for name, value in (("subject", subject), ("first_day", first_day), ("last_day", last_day), ("days", days)):
            if value is not None:
                changes[name] = value
        reply = auto.save(conn, account_id, dataclasses.replace(reply, **changes))
    _show_autoreply(email, reply)


@autoreply.command("off")
@click.argument("email")
@pass_state
def autoreply_off(state: State, email: str) -> None:
    """Turn EMAIL's automatic reply off (its text is kept for next time)."""
    from .crm import autoreply as auto

    with errors_as_messages(), state.write() as conn:
        account_id = accounts.get_account(conn, email).id
        auto.save(conn, account_id, dataclasses.replace(auto.get(conn, account_id), enabled=False))
    click.echo(f"{email}: automatic reply off")


# -- spam filter ------------------------------------------------------------------------------------------


def _mail_files(folder: str) -> list[Path]:
    """Every message file under ``folder`` (any depth; hidden files skipped), in a stable order."""
    root = Path(folder)
    if not root.is_dir():
        raise CLIError(f"{folder}: not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


@main.group()
def spam() -> None:
    """The spam filter: bulk training, scoring files, statistics."""


@spam.command("train")
@click.argument("email", required=False)
@click.option("--global", "to_global", is_flag=True, help="Train the global model every account falls back on.")
@click.option("--ham", "ham_dir", help="Folder of ham messages (one file each, any depth).")
@click.option("--spam", "spam_dir", help="Folder of spam messages (one file each, any depth).")
@click.option(
    "--mailboxes",
    is_flag=True,
    help="Instead of folders: EMAIL's own stored mail, Junk (or $Junk) as spam and the other folders but Trash, "
    "Sent and Drafts (or $NotJunk) as ham, the newest 5,000 of each.",
)
@pass_state
def spam_train(
    state: State, email: str | None, to_global: bool, ham_dir: str | None, spam_dir: str | None, mailboxes: bool
) -> None:
    """Train EMAIL's model (or --global) on folders of ham and spam, or on EMAIL's mailboxes; training the same
    messages again changes nothing, and one moved from one side to the other is unlearned and learned anew."""
    from .spam import storage
    from .spam.tokenize import tokenize

    if bool(email) == to_global:
        raise CLIError("name an account EMAIL or --global (not both)")
    if mailboxes and (to_global or ham_dir or spam_dir):
        raise CLIError("--mailboxes trains an account EMAIL from its own mail, without --ham/--spam")
    if not mailboxes and not (ham_dir and spam_dir):
        raise CLIError("give --ham DIR and --spam DIR, or --mailboxes")
    hosts = (state.config.server.hostname,)
    items = []
    with errors_as_messages():
        if mailboxes:
            items = _mailbox_items(state, email or "")
        else:
            files = [(path, False) for path in _mail_files(ham_dir or "")]
            files += [(path, True) for path in _mail_files(spam_dir or "")]
            with click.progressbar(files, label="tokenizing", file=sys.stderr) as bar:
                for path, is_spam in bar:
                    raw = path.read_bytes()
                    items.append((storage.digest(raw), tokenize(raw, own_hosts=hosts), is_spam))
        with state.write() as conn:
            scope = storage.GLOBAL if to_global else accounts.get_account(conn, email or "").id
            click.echo(f"training on {len(items)} messages…", err=True)
            result = storage.train_corpus(conn, scope, items, source="mailboxes" if mailboxes else "cli")
            result.pruned = storage.prune(conn, scope, state.config.spam.max_tokens, state.config.spam.max_age_days)
            recorded = storage.StoredCounts(conn, scope).recorded()
    click.echo(
        f"{'global' if to_global else email}: {result.messages} messages, {result.learned} learned, "
        f"{result.unchanged} already trained, {result.flipped} relearned as the other class, {result.pruned} "
        "tokens pruned" + (f", {result.refreshed} retrained with the current tokenizer" if result.refreshed else "")
    )
    _note_training_size(recorded, state.config.spam)


def _mailbox_items(state: State, email: str) -> list[tuple[bytes, frozenset[str], bool]]:
    """(key, tokens, is_spam) of EMAIL's stored mail as ``spam train --mailboxes`` learns it."""
    from .spam.tokenize import tokenize
    from .spam.training import mailbox_corpus, stored_copy

    hosts = (state.config.server.hostname,)
    with state.read() as conn:
        chosen = mailbox_corpus(
            conn, accounts.get_account(conn, email).id, sent_folder=state.config.submission.sent_folder
        )
        spam = sum(is_spam for _, _, is_spam in chosen)
        click.echo(f"{email}: {len(chosen) - spam} ham and {spam} spam in the mailboxes", err=True)
        with click.progressbar(chosen, label="tokenizing", file=sys.stderr) as bar:
            return [(key, tokenize(stored_copy(conn, row), own_hosts=hosts), is_spam) for key, row, is_spam in bar]


def _by_source(sources: object) -> str:
    """ "; 400 by cli; 3 by reply": how a model's recorded messages came to be trained."""
    return "".join(f"; {count} by {source}" for source, count in sources.items()) if isinstance(sources, dict) else ""


def _note_training_size(recorded: tuple[int, int], spam: SpamConfig) -> None:
    """Say on stderr when a model (with the global one, for an account) files no mail yet (``[spam] min_trained``),
    or files it with a raised or lowered spam cut-off (``[spam] confident_after``)."""
    from .spam.verdicts import short_of_training, size_note

    if short_of_training(recorded, spam.min_trained):
        click.echo(
            f"the model has learned {recorded[0]} spam and {recorded[1]} ham, fewer than [spam] min_trained "
            f"({spam.min_trained}) of each: the daemon files nothing by its verdicts yet",
            err=True,
        )
        return
    note = size_note(spam, recorded)
    if note:
        click.echo(f"the model: {note}", err=True)


PRELOAD_FILES = 50
"""``spam score`` of more files than this loads the whole model into memory first (``storage.load_models``): one
query instead of one per file, and in-memory scoring, on every usable core for a few hundred files or more
(``spam.parallel``)."""


@spam.command("score")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--user", "email", help="Score with this account's model (plus the global one).")
@click.option("--explain", is_flag=True, help="Also list each file's strongest spam and ham clues, per model.")
@json_option
@pass_state
def spam_score(state: State, files: tuple[str, ...], email: str | None, explain: bool, as_json: bool) -> None:
    """Score FILEs with the global model (or --user's): one line per file, score and verdict."""
    from .spam import parallel, storage
    from .spam.tokenize import through_discussion_list, tokenize
    from .spam.verdicts import cut_offs, gated_verdict, message_cut_offs
    from .spam.views import score_stored, strongest_clues

    hosts = (state.config.server.hostname,)
    preload = len(files) > PRELOAD_FILES and not explain
    clues: list[list[tuple[str, str, float]]] = []
    with errors_as_messages():
        with state.read() as conn:
            scope = accounts.get_account(conn, email).id if email else storage.GLOBAL
            counts = storage.StoredCounts(conn, scope)
            recorded = counts.recorded()
            if preload:
                models = storage.load_models(conn, scope)
            else:
                tokens = [tokenize(Path(name).read_bytes(), own_hosts=hosts) for name in files]
                scored = [score_stored(one, counts) for one in tokens]
                values = [(one.score, through_discussion_list(t)) for one, t in zip(scored, tokens, strict=True)]
                clues = [strongest_clues(one.clues) for one in scored]
        if preload:  # the database is closed before the workers fork
            values = parallel.score_files(files, models, hosts)
    spam_config = state.config.spam
    _note_training_size(recorded, spam_config)
    cut = cut_offs(spam_config, recorded)
    judged = []
    for name, (v, through_list) in zip(files, values, strict=True):
        band = message_cut_offs(spam_config, cut, recorded, through_list)
        judged.append((name, v, band != cut, gated_verdict(v, band, recorded, spam_config.min_trained)))
    if as_json:
        results: list[dict[str, object]] = [
            {"file": name, "score": round(v, 6), "verdict": verdict, "list_mail": list_mail}
            for name, v, list_mail, verdict in judged
        ]
        if explain:
            for entry, strongest in zip(results, clues, strict=True):
                entry["clues"] = [{"model": model, "token": token, "f": round(f, 4)} for model, token, f in strongest]
        print_json(results)
        return
    for index, (name, v, _, verdict) in enumerate(judged):
        click.echo(f"{name}\t{v:.4f}\t{verdict}")
        for model, token, f in clues[index] if explain else ():
            click.echo(f"\t{f:.4f}\t{model}\t{token!r}")


@spam.command("allow")
@click.argument("email")
@click.argument("senders", nargs=-1, required=True)
@pass_state
def spam_allow(state: State, email: str, senders: tuple[str, ...]) -> None:
    """Never file mail from SENDERS (address or @domain) into Junk on its score (unless DMARC fails)."""
    _list_senders(state, email, senders, "allow")


@spam.command("block")
@click.argument("email")
@click.argument("senders", nargs=-1, required=True)
@pass_state
def spam_block(state: State, email: str, senders: tuple[str, ...]) -> None:
    """Always file mail from SENDERS (address or @domain, subdomains included) into Junk."""
    _list_senders(state, email, senders, "block")


def _list_senders(state: State, email: str, senders: tuple[str, ...], action: Literal["allow", "block"]) -> None:
    from .spam import senderlists

    with errors_as_messages():
        patterns = [senderlists.normalize_pattern(sender) for sender in senders]
        with state.write() as conn:
            account_id = accounts.get_account(conn, email).id
            for pattern in patterns:
                senderlists.put(conn, account_id, pattern, action)
    click.echo(f"{email}: {action} {' '.join(patterns)}")


@spam.command("unlist")
@click.argument("email")
@click.argument("senders", nargs=-1, required=True)
@pass_state
def spam_unlist(state: State, email: str, senders: tuple[str, ...]) -> None:
    """Take SENDERS off EMAIL's allow and block lists."""
    from .spam import senderlists

    with errors_as_messages():
        patterns = [senderlists.normalize_pattern(sender) for sender in senders]
        with state.write() as conn:
            account_id = accounts.get_account(conn, email).id
            missing = [pattern for pattern in patterns if not senderlists.remove(conn, account_id, pattern)]
        if missing:
            raise CLIError(f"{email}: not listed: {' '.join(missing)}")
    click.echo(f"{email}: unlisted {' '.join(patterns)}")


@spam.command("senders")
@click.argument("email")
@json_option
@pass_state
def spam_senders(state: State, email: str, as_json: bool) -> None:
    """EMAIL's allow and block lists."""
    from .spam import senderlists

    with errors_as_messages(), state.read() as conn:
        entries = senderlists.entries(conn, accounts.get_account(conn, email).id)
    if as_json:
        print_json([{"sender": e.pattern, "action": e.action, "created": iso(e.created)} for e in entries])
        return
    if not entries:
        click.echo(f"{email}: no senders listed (relentad spam allow / block)")
    for entry in entries:
        click.echo(f"{entry.action:5}  {entry.pattern}")


@spam.command("digest")
@json_option
@pass_state
def spam_digest(state: State, as_json: bool) -> None:
    """Send the Junk digests due now (what each account's Junk got since its last one), as [spam] junk_digest does
    daily."""
    from .spam import digest

    config = state.config
    sender = config.quota.notices_from or f"postmaster@{config.server.hostname}"
    with errors_as_messages(), state.write() as conn:
        sent = digest.send(conn, sender=sender, hostname=config.server.hostname)
    if as_json:
        print_json(sent)
        return
    for address, count in sent.items():
        click.echo(f"{address}: {count} message(s) listed")
    if not sent:
        click.echo("no Junk mail since the last digests")


@spam.command("rebuild")
@click.argument("email", required=False)
@click.option("--all", "every", is_flag=True, help="Every account that has recorded lessons.")
@pass_state
def spam_rebuild(state: State, email: str | None, every: bool) -> None:
    """Rebuild EMAIL's model (or every account's) from all its recorded lessons, the way spam train builds one: what
    the daemon does once a day for accounts that learned something ([spam] rebuild_daily)."""
    from .spam import rebuild

    if bool(email) == every:
        raise CLIError("name an account EMAIL or --all (not both)")
    with errors_as_messages():
        with state.read() as conn:
            if every:
                scopes = conn.execute(
                    "SELECT email, id FROM accounts WHERE id IN (SELECT scope FROM spam_trained) ORDER BY email"
                ).fetchall()
            else:
                scopes = [(email, accounts.get_account(conn, email or "").id)]
        for name, scope in scopes:
            with state.read() as conn:
                prepared = rebuild.prepare(conn, int(scope))
            with state.write() as conn:
                result = rebuild.swap(conn, prepared, state.config.spam)
            if result is None:
                raise CLIError(f"{name} learned something while its model was rebuilt; run the command again")
            click.echo(
                f"{name}: {result.lessons} lessons relearned, {result.learned} learn operations ({result.before} "
                f"before), {result.tokens} tokens, {result.pruned} pruned"
            )


@spam.command("stats")
@json_option
@pass_state
def spam_stats(state: State, as_json: bool) -> None:
    """Per model (global, each account): messages trained as spam and ham, token rows, messages recorded, and the
    spam cut-off mail to it gets (raised while the model, an account's with the global one, is short of ``[spam]
    confident_after`` messages, lowered past them)."""
    from .spam import storage
    from .spam.verdicts import cut_offs

    with errors_as_messages(), state.read() as conn:
        rows = storage.stats(conn)

    def recorded(row: dict[str, object]) -> tuple[int, int]:
        return int(str(row["recorded_spam"])), int(str(row["recorded_ham"]))

    base = next((recorded(row) for row in rows if row["scope"] == "global"), (0, 0))
    for row in rows:
        own = recorded(row)
        summed = own if row["scope"] == "global" else (own[0] + base[0], own[1] + base[1])
        row["spam_above"] = round(cut_offs(state.config.spam, summed).spam_above, 4)
    if as_json:
        print_json(
            [
                {**row, "updated": iso(float(str(row["updated"]))), "rebuilt": iso(float(str(row["rebuilt"])) or None)}
                for row in rows
            ]
        )
        return
    if not rows:
        click.echo("no spam training yet (relentad spam train)")
    for row in rows:
        click.echo(
            f"{row['scope']}: {row['nspam']} spam, {row['nham']} ham learned; {row['tokens']} tokens; "
            f"{row['recorded']} messages recorded ({row['recorded_spam']} spam, {row['recorded_ham']} ham"
            + _by_source(row["sources"])
            + f"); spam cut-off {row['spam_above']:g}"
            + (f"; rebuilt from its lessons {iso(float(str(row['rebuilt'])))}" if row["rebuilt"] else "")
            + (
                f"; trained with tokenizer {row['tokenizer']}, older than the current one: retraining advised"
                " (relentad spam train again)"
                if row["stale"]
                else ""
            )
        )


# -- reports ----------------------------------------------------------------------------------------------


@main.group()
def reports() -> None:
    """DMARC aggregate and TLS-RPT reports received about hosted domains, and sending ours."""


def _report_days(f: F) -> F:
    return click.option(
        "--days",
        default=7,
        show_default=True,
        type=click.IntRange(min=1, max=MAX_DAYS),
        help="Reports whose period ended in the last N days.",
    )(f)


def _report_domain(domain_name: str | None) -> str | None:
    return addrspec.normalize_domain(domain_name) if domain_name else None


@reports.command("dmarc")
@click.option("--domain", "domain_name", help="Only this domain (and its subdomains).")
@_report_days
@json_option
@pass_state
def reports_dmarc(state: State, domain_name: str | None, days: int, as_json: bool) -> None:
    """Sum up DMARC reports per domain and source IP: messages, DMARC pass and fail, SPF or DKIM not aligned."""
    import time

    from .authreports import summary

    with errors_as_messages():
        domain = _report_domain(domain_name)
        with state.read() as conn:
            found = summary.dmarc(conn, since=time.time() - days * summary.DAY, domain=domain)
    if as_json:
        print_json([s.as_json() for s in found])
        return
    for line in summary.dmarc_text(found, days):
        click.echo(line)


@reports.command("tls")
@click.option("--domain", "domain_name", help="Only this domain (and its subdomains).")
@_report_days
@json_option
@pass_state
def reports_tls(state: State, domain_name: str | None, days: int, as_json: bool) -> None:
    """Sum up TLS-RPT reports per domain: sessions that succeeded and failed, failures by kind and MX host."""
    import time

    from .authreports import summary

    with errors_as_messages():
        domain = _report_domain(domain_name)
        with state.read() as conn:
            found = summary.tls(conn, since=time.time() - days * summary.DAY, domain=domain)
    if as_json:
        print_json([s.as_json() for s in found])
        return
    for line in summary.tls_text(found, days):
        click.echo(line)


@reports.command("send")
@click.option("--dmarc", "only_dmarc", is_flag=True, help="Only the DMARC aggregate reports.")
@click.option("--tls", "only_tls", is_flag=True, help="Only the SMTP TLS reports.")
@pass_state
def reports_send(state: State, only_dmarc: bool, only_tls: bool) -> None:
    """Send the reports due now, DMARC ([dmarc] send_reports) and TLS ([tlsrpt] send_reports); the daemon does it
    daily: queue one per domain and delete what they cover."""
    import asyncio

    from .authreports import sending
    from .dns import make_resolver
    from .queue.dkimkeys import KeyRing

    with errors_as_messages():
        config = state.config
        if only_dmarc and only_tls:
            raise CLIError("--dmarc and --tls exclude each other (neither: both kinds)")
        if only_dmarc and not config.dmarc.send_reports:
            raise CLIError("[dmarc] send_reports is off: no DMARC evaluations are recorded, none to report")
        if only_tls and not config.tlsrpt.send_reports:
            raise CLIError("[tlsrpt] send_reports is off: no TLS sessions are recorded, none to report")
        kinds = [
            (n, f)
            for n, f in sending.kinds(config)
            if (n == "DMARC" or not only_dmarc) and (n == "TLS" or not only_tls)
        ]
        if not kinds:
            raise CLIError("[dmarc] and [tlsrpt] send_reports are off: nothing is recorded, none to report")
        resolver = make_resolver(config.dns.nameservers, config.dns.timeout)
        keyring = KeyRing(config.data_dir)

        def read(fn: Callable[[sqlite3.Connection], Any]) -> Any:
            with state.read() as conn:
                return fn(conn)

        def write(fn: Callable[[sqlite3.Connection], Any]) -> Any:
            with state.write() as conn:
                return fn(conn)

        for name, send in kinds:
            sent = asyncio.run(send(read, write, config, resolver, keyring))
            for mail in sent:
                click.echo(f"{name} report for {mail.domain} queued to {', '.join(mail.recipients)}")
            if not sent:
                click.echo(f"no {name} report to send")


if __name__ == "__main__":  # pragma: no cover
    main()
