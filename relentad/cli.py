"""The ``relentad`` command line: everything an admin does (DESIGN.md §5).

Errors are translated to one line on stderr with a non-zero exit here, at the edge, and nowhere else
(sqlite-utils' cli.py does the same); commands never print a traceback for bad input. Every list/show command
takes ``--json``. Passwords are read from stdin (``--password-stdin``) or generated, never taken from argv.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from . import config as config_mod
from . import devsetup
from .auth import passwords
from .config import Config, ConfigError
from .errors import RelentadError
from .store import accounts, db, mailboxes
from .units import format_size, parse_size

F = TypeVar("F", bound=Callable[..., Any])


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
        raise CLIError(f"{exc.filename or ''}: {exc.strerror}".lstrip(": ")) from None
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--daily-send", type=click.IntRange(min=0), help="Recipients per day (default from config).")
@click.option("--name", "display_name", default="", help="Display name.")
@pass_state
def user_add(
    state: State, email: str, password_stdin: bool, quota: str | None, daily_send: int | None, display_name: str
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
        aliases = [a["address"] for a in accounts.list_aliases(conn) if a["target"] == account.email]
    if as_json:
        print_json({**account_json(account, stats), "mailboxes": boxes, "aliases": aliases})
        return
    quota = format_size(account.quota_bytes) if account.quota_bytes else "unlimited"
    click.echo(f"{account.email} ({account.state})")
    click.echo(f"  name:       {account.display_name or '-'}")
    click.echo(f"  created:    {iso(account.created)}")
    click.echo(f"  quota:      {quota}, using {format_size(stats['bytes'])} in {stats['messages']} message(s)")
    click.echo(f"  daily send: {account.daily_send or 'unlimited'}")
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
    with errors_as_messages():
        password, generated = read_password(password_stdin)
        hashed = passwords.hash_password(password)
        with state.write() as conn:
            accounts.set_password(conn, email, hashed)
    click.echo(f"password of {email} changed")
    if generated:
        click.echo(f"password: {password}")


# -- aliases ----------------------------------------------------------------------------------------------


@main.group()
def alias() -> None:
    """Aliases: ADDR → account; @domain is a catch-all; user+tag@ always reaches user@."""


@alias.command("add")
@click.argument("address")
@click.argument("target")
@pass_state
def alias_add(state: State, address: str, target: str) -> None:
    """Deliver mail for ADDRESS (or @domain) to the account TARGET."""
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
        click.echo(f"{row['address']}\t{row['target']}")


@alias.command("remove")
@click.argument("address")
@click.argument("target", required=False)
@pass_state
def alias_remove(state: State, address: str, target: str | None) -> None:
    """Remove ADDRESS (only its route to TARGET when given)."""
    with errors_as_messages(), state.write() as conn:
        count = accounts.remove_alias(conn, address, target)
    click.echo(f"alias {address} removed ({count} route(s))")


# -- outbound queue ---------------------------------------------------------------------------------------


@main.group("queue")
def queue_group() -> None:
    """Outgoing mail waiting for delivery."""


@queue_group.command("list")
@json_option
@pass_state
def queue_list(state: State, as_json: bool) -> None:
    """List queued messages and the state of each recipient."""
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
        click.echo(f"{row['id']}\t{iso(row['created'])}\t<{row['mail_from']}>\t{format_size(row['size'])}")
        for recipient in row["recipients"]:
            next_try = f" next {iso(recipient['next_attempt'])}" if recipient["state"] == "queued" else ""
            reply = f" ({recipient['last_reply']})" if recipient["last_reply"] else ""
            attempts = f"{recipient['attempts']} attempt(s)"
            click.echo(f"\t<{recipient['address']}> {recipient['state']} after {attempts}{next_try}{reply}")


@queue_group.command("retry")
@click.argument("message_id", type=int)
@pass_state
def queue_retry(state: State, message_id: int) -> None:
    """Make message MESSAGE_ID due now (the daemon picks it up within [queue] scan_interval)."""
    from .queue import queue as outbound

    with errors_as_messages(), state.write() as conn:
        count = outbound.retry_now(conn, message_id)
    click.echo(f"message {message_id}: {count} recipient(s) due now")


@queue_group.command("delete")
@click.argument("message_id", type=int)
@pass_state
def queue_delete(state: State, message_id: int) -> None:
    """Drop message MESSAGE_ID from the queue without delivering or bouncing it."""
    from .queue import queue as outbound

    with errors_as_messages(), state.write() as conn:
        outbound.delete(conn, message_id)
    click.echo(f"message {message_id} deleted from the queue")


# -- DKIM -------------------------------------------------------------------------------------------------


@main.group()
def dkim() -> None:
    """DKIM signing keys for outgoing mail."""


@dkim.command("generate")
@click.argument("domain")
@click.option("--selector", default="relentad", show_default=True, help="DNS selector of the new key.")
@click.option("--ed25519", "with_ed25519", is_flag=True, help="Also make an ed25519 key (dual signing).")
@pass_state
def dkim_generate(state: State, domain: str, selector: str, with_ed25519: bool) -> None:
    """Make a key pair for DOMAIN under the data folder and print the DNS TXT record(s) to publish."""
    from .queue import dkimkeys

    with errors_as_messages():
        with state.read() as conn:
            if accounts.domain_id(conn, domain.strip().lower()) is None:
                raise CLIError(f"domain {domain} is not hosted here (relentad domain add {domain})")
        lines = dkimkeys.generate(state.config.data_dir, domain, selector, ed25519=with_ed25519)
    click.echo(f"DKIM key for {domain} with selector {selector} stored; publish:")
    for line in lines:
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    main()
