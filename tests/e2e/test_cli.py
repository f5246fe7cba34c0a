"""The admin CLI as an admin runs it: a subprocess, one-line errors, --json everywhere it lists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from relentad import config as config_mod
from relentad.auth.passwords import verify_password
from relentad.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(config: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relentad", "--config", str(config), *args],
        input=input, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def ok(config: Path, *args: str, input: str | None = None) -> str:
    result = run(config, *args, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(config: Path, *args: str, input: str | None = None) -> str:
    result = run(config, *args, input=input)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "relentad.toml"
    ok(path, "init", "--hostname", "mx.example.test")
    return path


def test_init_writes_config_data_and_database_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "srv" / "relentad.toml"
    out = ok(path, "init", "--hostname", "mx.example.test")
    assert "wrote" in out
    assert (tmp_path / "srv" / "data" / "relentad.db").exists()
    loaded = config_mod.load(path)
    assert loaded.server.hostname == "mx.example.test"
    assert loaded.data_dir == tmp_path / "srv" / "data"
    assert loaded.listen.pop3 == "*:110" and loaded.listen.pop3s == "", "no certificate yet: no implicit TLS"
    assert "exists" in fails(path, "init")
    assert ok(path, "config", "check").strip() == f"{path}: OK"


def test_init_dev_creates_demo_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "var" / "relentad.toml"
    first = ok(path, "init", "--dev")
    password = next(line.split()[-1] for line in first.splitlines() if line.strip().startswith("password"))
    assert "swaks --server 127.0.0.1:2525" in first
    assert f"relentad --config {path} spam train --global --ham DIR --spam DIR" in first
    loaded = config_mod.load(path)
    assert loaded.listen.smtp == "127.0.0.1:2525"
    assert loaded.listen.imap == "127.0.0.1:2143"
    assert loaded.listen.pop3 == "127.0.0.1:2110" and "POP3S     127.0.0.1:2995" in first
    assert "curl -k 'pop3s://127.0.0.1:2995/1' -u demo@example.test" in first
    assert "Submit    127.0.0.1:2587" in first and "Submits   127.0.0.1:2465" in first, "a client must send too"
    assert "https://localhost:2443/account/" in first and "https://127.0.0.1:2443/.well-known/carddav" in first
    assert loaded.tls_enabled and loaded.resolve(loaded.tls.cert).exists()
    assert loaded.server.postmaster == "demo@example.test", "postmaster@ reaches the user init created"
    second = ok(path, "init", "--dev")
    assert f"password  {password}" in second, "a second run shows the same password"
    users = json.loads(ok(path, "user", "list", "--json"))
    assert [u["email"] for u in users] == ["demo@example.test"]
    conn_hash = subprocess.run(
        [sys.executable, "-c", f"import sqlite3;print(sqlite3.connect('{loaded.database_path}').execute("
         "'select password_hash from accounts').fetchone()[0])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert conn_hash.startswith("$argon2id$")
    assert verify_password(conn_hash, password)


def test_domains_users_and_aliases(config: Path) -> None:
    assert ok(config, "domain", "add", "Example.TEST").strip() == "domain example.test added"
    ok(config, "domain", "add", "other.test")
    assert "already exists" in fails(config, "domain", "add", "example.test")
    assert "not a domain name" in fails(config, "domain", "add", "bad..domain")

    out = ok(config, "user", "add", "alice@example.test", "--password-stdin", "--quota", "2GB", input="s3cret-pass\n")
    assert out.strip() == "user alice@example.test added"
    generated = ok(config, "user", "add", "bob@example.test", "--daily-send", "5", "--name", "Bob B")
    assert generated.splitlines()[1].startswith("password: ")
    assert "not hosted" in fails(config, "user", "add", "x@nowhere.test", "--password-stdin", input="longenough\n")
    assert "too short" in fails(config, "user", "add", "c@example.test", "--password-stdin", input="short\n")
    assert "already exists" in fails(config, "user", "add", "ALICE@example.test")
    assert "not a size" in fails(config, "user", "add", "d@example.test", "--quota", "lots")

    users = {u["email"]: u for u in json.loads(ok(config, "user", "list", "--json"))}
    assert users["alice@example.test"]["quota_bytes"] == 2_000_000_000
    assert users["bob@example.test"]["daily_send"] == 5
    assert users["bob@example.test"]["display_name"] == "Bob B"

    ok(config, "alias", "add", "sales@example.test", "alice@example.test")
    ok(config, "alias", "add", "sales@example.test", "bob@example.test")
    ok(config, "alias", "add", "@other.test", "bob@example.test")
    assert "is an account" in fails(config, "alias", "add", "alice@example.test", "bob@example.test")
    assert "no such account" in fails(config, "alias", "add", "x@example.test", "ghost@example.test")
    aliases = json.loads(ok(config, "alias", "list", "--json"))
    assert aliases == [
        {"address": "@other.test", "target": "bob@example.test", "external": False},
        {"address": "sales@example.test", "target": "alice@example.test", "external": False},
        {"address": "sales@example.test", "target": "bob@example.test", "external": False},
    ]
    shown = json.loads(ok(config, "user", "show", "bob@example.test", "--json"))
    assert shown["aliases"] == ["@other.test", "sales@example.test"]
    assert [m["name"] for m in shown["mailboxes"]] == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    assert {m["name"]: m["special_use"] for m in shown["mailboxes"]}["Junk"] == "\\Junk"
    text = ok(config, "user", "show", "alice@example.test")
    assert "quota:      2GB" in text

    ok(config, "alias", "remove", "sales@example.test", "alice@example.test")
    assert len(json.loads(ok(config, "alias", "list", "--json"))) == 2
    assert "still has 2 account(s)" in fails(config, "domain", "remove", "example.test")
    domains = json.loads(ok(config, "domain", "list", "--json"))
    assert [(d["name"], d["accounts"]) for d in domains] == [("example.test", 2), ("other.test", 0)]
    ok(config, "domain", "remove", "other.test")
    assert "no such domain" in fails(config, "domain", "remove", "other.test")


def test_passwd_replaces_the_hash(config: Path) -> None:
    ok(config, "domain", "add", "example.test")
    ok(config, "user", "add", "alice@example.test", "--password-stdin", input="first-password\n")
    ok(config, "user", "passwd", "alice@example.test", "--password-stdin", input="second-password\n")
    path = config_mod.load(config).database_path
    import sqlite3

    stored = sqlite3.connect(path).execute("SELECT password_hash FROM accounts").fetchone()[0]
    assert verify_password(stored, "second-password")
    assert not verify_password(stored, "first-password")
    assert "no such account" in fails(
        config, "user", "passwd", "ghost@example.test", "--password-stdin", input="whatever-pass\n"
    )


def test_commands_without_a_config_fail_with_one_line(tmp_path: Path) -> None:
    line = fails(tmp_path / "missing.toml", "domain", "list")
    assert "no such file" in line and "relentad init" in line


def test_config_example_is_the_checked_in_documented_configuration() -> None:
    checked_in = (ROOT / "config" / "relentad.toml").read_text(encoding="utf-8")
    assert checked_in == config_mod.example_toml(), "regenerate with: relentad config example > config/relentad.toml"
    config_mod.load(ROOT / "config" / "relentad.toml")


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((prefix + name, command))
        if isinstance(command, click.Group):
            found += _commands(command, prefix + name + " ")
    return found


def test_every_command_has_help_text() -> None:
    for name, command in _commands(main):
        assert command.help, f"relentad {name} has no help text"


def refused(config: Path, *args: str) -> str:
    """A refusal with no traceback, also of click's own (usage line, then ``Error: ...``); its last line."""
    result = run(config, *args)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    return result.stderr.strip().splitlines()[-1]


def set_setting(config: Path, section: str, key: str, value: str) -> None:
    """Replace ``key = ...`` in ``[section]`` of the configuration file with ``key = value`` (TOML text)."""
    text, current = [], ""
    for line in config.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        text.append(f"{key} = {value}" if current == section and line.startswith(f"{key} = ") else line)
    assert f"{key} = {value}" in text
    config.write_text("\n".join(text) + "\n", encoding="utf-8")


NEGATIVE = "must not be negative"


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [("quota", "daily_send", "-1", NEGATIVE), ("quota", "messages", "-4", NEGATIVE),
     ("quota", "hourly_send", "-2", NEGATIVE), ("retention", "deleted_days", "-3", NEGATIVE),
     ("retention", "activity_days", "-1", NEGATIVE), ("backup", "keep_daily", "-1", NEGATIVE),
     ("retention", "junk_days", "-1", NEGATIVE), ("imap", "commands_per_second", "-5", NEGATIVE),
     ("spam", "ham_below", "nan", "must be a finite number"), ("queue", "lifetime", "nan", "not a finite duration"),
     ("limits", "command_timeout", "inf", "not a finite duration"),
     ("quota", "disk", '"99999999999999999999999TB"', "too large a size")],
)  # fmt: skip
def test_config_check_refuses_negative_and_non_finite_numbers(
    config: Path, section: str, key: str, value: str, problem: str
) -> None:
    set_setting(config, section, key, value)
    line = fails(config, "config", "check")
    assert line.startswith(f"config: [{section}] {key}:") and problem in line
    assert refused(config, "user", "list").startswith(f"Error: [{section}] {key}:")


def test_config_check_refuses_a_backup_rotation_keeping_nothing(config: Path) -> None:
    set_setting(config, "backup", "keep_daily", "0")
    ok(config, "config", "check")  # weekly snapshots alone are fine
    set_setting(config, "backup", "keep_weekly", "0")
    assert "[backup] keep_daily and keep_weekly cannot both be 0" in fails(config, "config", "check")


def test_the_server_hostname_must_be_a_domain_name(tmp_path: Path, config: Path) -> None:
    path = tmp_path / "other" / "relentad.toml"
    assert "--hostname: not a domain name: 'bad host!'" in fails(path, "init", "--hostname", "bad host!")
    assert not path.exists(), "nothing is written for a bad host name"
    set_setting(config, "server", "hostname", '"bad host!"')
    assert fails(config, "config", "check") == "config: [server] hostname: not a domain name: 'bad host!'"
    set_setting(config, "server", "hostname", '"mail.bücher.example"')
    assert "as its A-label 'mail.xn--bcher-kva.example'" in fails(config, "config", "check")


def test_a_config_file_that_is_not_utf8_is_one_line_for_check_and_serve(tmp_path: Path) -> None:
    path = tmp_path / "relentad.toml"
    path.write_bytes(b'[server]\nhostname = "mx.\xff.test"\n')
    assert fails(path, "config", "check") == f"config: {path}: not UTF-8 text (line 2, byte 24)"
    result = run(path, "serve")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"config: {path}: not UTF-8 text (line 2, byte 24)"


def test_numbers_beyond_what_the_database_holds_are_refused(config: Path) -> None:
    ok(config, "domain", "add", "example.test")
    ok(config, "user", "add", "u@example.test")
    huge = "99999999999999999999999"
    assert "too large a size" in fails(config, "quota", "set", "u@example.test", "--disk", f"{huge}TB")
    assert "too large a size" in fails(config, "user", "add", "v@example.test", "--quota", "99999999999TB")
    for option in ("--daily-send", "--hourly-send", "--messages"):
        assert "not in the range" in refused(config, "quota", "set", "u@example.test", option, huge)
    assert "not in the range" in refused(config, "user", "add", "w@example.test", "--daily-send", huge)
    assert "not in the range" in refused(config, "queue", "retry", huge)
    assert "not in the range" in refused(config, "queue", "delete", huge)
    for moment in ("1e20", "nan", "inf", "-inf"):
        assert fails(config, "purge", "--at", moment).startswith(f"Error: not a time: '{moment}'")
    assert "not in the range" in refused(config, "activity", "u@example.test", "--days", "99999999999")
    assert "no such queued message" in fails(config, "queue", "retry", "12")
    ok(config, "purge", "--at", "2e11")  # the year 8307 is a time
    users = {u["email"]: u for u in json.loads(ok(config, "user", "list", "--json"))}
    assert set(users) == {"u@example.test"} and users["u@example.test"]["quota_bytes"] == 5_000_000_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("activity", "u@example.test", "--days", "0"), "Error: Invalid value for '--days': 0 is not in the range"),
        (("quota", "set", "u@example.test", "--messages", "-1"), "Error: Invalid value for '--messages': -1 is not"),
        (("queue", "retry", "0"), "Error: Invalid value for 'MESSAGE_ID': 0 is not in the range"),
        (("contacts", "list", "u@example.test", "--kind", "robot"), "Error: Invalid value for '--kind': 'robot' is"),
        (("user", "add"), "Error: Missing argument 'EMAIL'."),
        (("user", "list", "--bogus"), "Error: No such option '--bogus'."),
        (("nosuch",), "Error: No such command 'nosuch'."),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(config: Path, args: tuple[str, ...], message: str) -> None:
    """Like every other error of the CLI: ``Error: ...`` alone. Click's own began with the usage line and a help
    hint (three lines)."""
    result = run(config, *args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr


def test_terminated_accounts_take_no_writes_and_terminate_now_purges_them(config: Path, tmp_path: Path) -> None:
    ok(config, "domain", "add", "example.test")
    ok(config, "user", "add", "u@example.test")
    ok(config, "user", "add", "keep@example.test")
    ok(config, "user", "terminate", "--yes", "u@example.test")
    mbox = tmp_path / "one.mbox"
    mbox.write_bytes(b"From a@b.test Thu Jan  1 00:00:00 2026\nSubject: hi\n\nhello\n")
    assert "account u@example.test is terminated" in fails(config, "import", "u@example.test", str(mbox))
    assert "is terminated" in fails(config, "alias", "add", "x@example.test", "u@example.test")
    assert "is terminated" in fails(config, "quota", "set", "u@example.test", "--messages", "5")
    assert "is terminated" in fails(
        config, "user", "passwd", "u@example.test", "--password-stdin", input="a-new-password\n"
    )
    assert "add --now to purge it" in fails(config, "user", "terminate", "--yes", "u@example.test")
    ok(config, "user", "terminate", "--yes", "keep@example.test")
    ok(config, "user", "add", "live@example.test")
    line = fails(config, "domain", "remove", "example.test")
    assert "still has 1 account(s); terminate them first" in line
    assert "2 terminated account(s) not purged yet (keep@example.test, u@example.test)" in line
    assert "relentad user terminate --yes --now ADDRESS" in line
    ok(config, "user", "terminate", "--yes", "live@example.test")
    assert "u@example.test terminated and purged" in ok(config, "user", "terminate", "--yes", "--now", "u@example.test")
    assert "no such account" in fails(config, "user", "terminate", "--yes", "--now", "u@example.test")
    for address in ("keep@example.test", "live@example.test"):
        ok(config, "user", "terminate", "--yes", "--now", address)
    ok(config, "domain", "remove", "example.test")


def test_an_alias_cannot_take_a_subaddress(config: Path) -> None:
    ok(config, "domain", "add", "example.test")
    ok(config, "user", "add", "bob@example.test")
    ok(config, "user", "add", "demo@example.test")
    line = fails(config, "alias", "add", "bob+tag@example.test", "demo@example.test")
    assert "'+' is reserved for subaddresses" in line
    assert json.loads(ok(config, "alias", "list", "--json")) == []


def test_domains_given_as_u_labels_are_the_hosted_a_labels(config: Path) -> None:
    assert ok(config, "domain", "add", "bücher.example").strip() == "domain xn--bcher-kva.example added"
    ok(config, "user", "add", "leser@bücher.example")
    out = ok(config, "dkim", "generate", "Bücher.example")
    assert "DKIM key for xn--bcher-kva.example" in out and "xn--bcher-kva.example" in out.splitlines()[1]
    body = config.parent / "body.txt"
    body.write_text("hello\n", encoding="utf-8")
    args = ("announce", "--subject", "Hi", "--body-file", str(body))
    assert "announced to 1 account(s)" in ok(config, *args, "--domain", "bücher.example")
    assert "no account to announce to" in fails(config, *args, "--domain", "other.example")
    assert "mta-sts.xn--bcher-kva.example" in ok(config, "domain", "dns", "bücher.example")


def test_dkim_rotation_new_key_waits_for_activate_and_the_old_one_stays_listed(config: Path) -> None:
    """A second key is not used before its DNS record can exist; the old record stays listed until retired."""
    ok(config, "domain", "add", "example.test")
    assert "stored and in use" in ok(config, "dkim", "generate", "example.test", "--selector", "s1")
    out = ok(config, "dkim", "generate", "example.test", "--selector", "s2")
    assert "not in use yet" in out and "relentad dkim activate example.test s2" in out
    data = config.parent / "data" / "dkim" / "example.test"
    assert (data / "selector").read_text().strip() == "s1", "still signing with s1"
    listed = ok(config, "domain", "dns", "example.test")
    assert "s1._domainkey.example.test." in listed and "s2._domainkey.example.test." in listed
    assert "activate example.test s2" in listed
    assert "already in use" in fails(config, "dkim", "activate", "example.test", "s1")
    assert "no DKIM key with selector s9" in fails(config, "dkim", "activate", "example.test", "s9")
    assert "relentad dkim retire example.test" in ok(config, "dkim", "activate", "example.test", "s2")
    assert (data / "selector").read_text().strip() == "s2"
    listed = ok(config, "domain", "dns", "example.test")
    assert "s1._domainkey.example.test." in listed and "previous" in listed and "pending" not in listed
    assert "s1 of example.test retired" in ok(config, "dkim", "retire", "example.test")
    assert "s1._domainkey" not in ok(config, "domain", "dns", "example.test")
    assert "no previous DKIM key" in fails(config, "dkim", "retire", "example.test")
    assert "stored and in use" in ok(config, "dkim", "generate", "example.test", "--selector", "s3", "--activate")
    assert (data / "selector").read_text().strip() == "s3" and (data / "previous").read_text().strip() == "s2"


def test_announce_folds_with_crlf_and_refuses_control_characters(config: Path) -> None:
    import sqlite3

    ok(config, "domain", "add", "example.test")
    ok(config, "user", "add", "u@example.test")
    body = config.parent / "body.txt"
    body.write_text("hello\n", encoding="utf-8")
    for subject in ("Hi\r\nBcc: victim@example.test", "Hi\nX-Injected: 1", "tab\there", "bell\x07"):
        line = fails(config, "announce", "--subject", subject, "--body-file", str(body))
        assert "the subject must be one line without control characters" in line
    subject = "Wartungsarbeiten am Mailserver für alle Konten " * 4
    ok(config, "announce", "--subject", subject, "--body-file", str(body))
    conn = sqlite3.connect(config_mod.load(config).database_path)
    [(raw,)] = conn.execute("SELECT data FROM blobs").fetchall()
    head = bytes(raw).split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b""), "every header line ends in CRLF"
    assert head.count(b"\r\n ") >= 1, "the long subject is folded"
    from email import message_from_bytes
    from email.header import decode_header, make_header

    assert str(make_header(decode_header(message_from_bytes(raw)["Subject"]))) == subject
