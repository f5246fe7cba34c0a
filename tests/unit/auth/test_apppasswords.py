"""App passwords: generation and parsing, and the authenticator's rules for them against a real store (one argon2
per login however many there are, the cache dropped at revocation, scopes, ``app_passwords_only``, last use)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from relentad import config as config_mod
from relentad.auth import apppasswords, passwords
from relentad.auth.authenticator import Authenticator, Login, LoginFailed, credential_hash, session_ended
from relentad.auth.history import Protocol
from relentad.errors import InvalidInput
from relentad.store.db import Store
from tests.support.store import database_with

ALICE = "alice@example.test"
MAIN = "the account password"


def test_a_generated_password_is_four_groups_of_four_easy_characters() -> None:
    made = {apppasswords.generate() for _ in range(200)}
    assert len(made) == 200
    for password in made:
        assert re.fullmatch(r"([a-km-z2-9]{4}-){3}[a-km-z2-9]{4}", password), password
        assert not set(password) & set("01l")
        assert apppasswords.normalize(password) == password.replace("-", "")


@pytest.mark.parametrize(
    ("typed", "normalized"),
    [
        ("abcd-efgh-jkmn-pqrs", "abcdefghjkmnpqrs"),
        ("Abcdefghjkmnpqrs", "abcdefghjkmnpqrs"),  # a phone capitalised it
        ("abcd efgh jkmn pqrs", "abcdefghjkmnpqrs"),
        ("ABCD-EFGH-JKMN-PQRS", "abcdefghjkmnpqrs"),
        ("abcd-efgh-jkmn-pqr", None),  # too short
        ("abcd-efgh-jkmn-pqrst", None),
        ("abcd-efgh-jkmn-pqr0", None),  # 0, 1 and l are never generated
        ("abcd-efgh-jklm-pqrs", None),
        ("correct horse battery", None),
        ("-" * 40 + "abcdefghjkmnpqrs", None),
        ("", None),
    ],
)
def test_normalize(typed: str, normalized: str | None) -> None:
    assert apppasswords.normalize(typed) == normalized


def test_scope_and_name_rules() -> None:
    assert apppasswords.parse_scope(None) == apppasswords.SCOPES
    assert apppasswords.parse_scope(" SMTP, imap ,") == ("imap", "smtp")
    with pytest.raises(InvalidInput, match="unknown scope web"):
        apppasswords.parse_scope("imap,web")
    assert [apppasswords.scope_of(p) for p in ("imap", "pop3", "smtp", "managesieve", "carddav", "web")] == [
        "imap",
        "pop3",
        "smtp",
        "sieve",
        "dav",
        None,
    ]
    assert apppasswords.check_name("  Phone ") == "Phone"
    for bad in ("", "   ", "x" * 65, "tab\there"):
        with pytest.raises(InvalidInput):
            apppasswords.check_name(bad)
    assert apppasswords.check_name("Téléphone 📱") == "Téléphone 📱"


@pytest.mark.parametrize(
    "name",
    [
        "phone\x9b31m",  # C1 CSI: a terminal that reads it runs the escape sequence when the admin lists names
        "phone\u202egnp.exe",  # right-to-left override: the page and the terminal show another name
        "pho\u200bne",  # zero width space: two names that look the same
        "line\u2028break",
        "bad \udcff octet",  # an undecodable octet on the CLI's command line (surrogateescape)
    ],
)
def test_a_name_refuses_invisible_and_terminal_controlling_characters(name: str) -> None:
    """Names come from users (the account pages) and are printed on the admin's terminal by ``app-password list``."""
    with pytest.raises(InvalidInput, match="control or formatting characters"):
        apppasswords.check_name(name)


def test_an_explicitly_empty_scope_is_refused_not_every_scope() -> None:
    """``--scope ""`` (an unset shell variable) or a form with an empty box must not make an all-protocol password."""
    for empty in ("", " ", ",", " , "):
        with pytest.raises(InvalidInput, match="at least one"):
            apppasswords.parse_scope(empty)


def _distinct_tags(count: int) -> list[str]:
    made: dict[int, str] = {}
    while len(made) < count:
        password = apppasswords.generate()
        made.setdefault(apppasswords.tag(apppasswords.normalize(password) or ""), password)
    return list(made.values())


class Harness:
    """A store with Alice (password MAIN) and an authenticator over it, with argon2 calls counted."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
        conn = database_with(path, ALICE)
        conn.execute("UPDATE accounts SET password_hash = ?", (passwords.hash_password(MAIN),))
        conn.close()
        self.store = Store(path)
        settings = config_mod.from_dict({"server": {"hostname": "mx.example.test"}})
        self.auth = Authenticator(self.store, lambda: settings.auth)
        self.argon2 = 0
        real = passwords.verify_password

        def counted(password_hash: str, password: str) -> bool:
            self.argon2 += 1
            return real(password_hash, password)

        monkeypatch.setattr(passwords, "verify_password", counted)

    def add(self, name: str, password: str, scope: tuple[str, ...] = apppasswords.SCOPES) -> None:
        normalized = apppasswords.normalize(password) or ""
        hashed = passwords.hash_password(normalized)
        self.run(lambda conn: apppasswords.add(conn, 1, name, scope, hashed, normalized))

    def run(self, job: Callable[[sqlite3.Connection], object]) -> None:
        async def write() -> None:
            await self.store.write(job)

        asyncio.get_event_loop().run_until_complete(write())

    def login(self, password: str, protocol: Protocol = "imap", ip: str = "192.0.2.1") -> Login:
        return asyncio.get_event_loop().run_until_complete(self.auth.verify(ALICE, password, ip, protocol))

    def refused(self, password: str, protocol: Protocol = "imap") -> str:
        """The login history reason of a refused login."""
        with pytest.raises(LoginFailed):
            self.login(password, protocol)
        return str(
            self.store.read(lambda c: c.execute("SELECT reason FROM login_history ORDER BY id DESC").fetchone()[0])
        )


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    made = Harness(tmp_path / "r.db", monkeypatch)
    made.store.start(loop)
    yield made
    made.store.close()
    loop.close()
    asyncio.set_event_loop(None)


def test_one_argon2_per_login_however_many_app_passwords(harness: Harness) -> None:
    made = _distinct_tags(5)
    for index, password in enumerate(made):
        harness.add(f"device {index}", password)
    login = harness.login(made[4].upper())
    assert (login.app_password, harness.argon2) == ("device 4", 1)
    assert harness.login(made[4].upper()).app_password_id == login.app_password_id and harness.argon2 == 1, "cached"
    assert harness.login(MAIN).app_password_id is None and harness.argon2 == 2
    assert harness.refused("abcd-efgh-jkmn-pqrs") == "bad-password"


def test_revoking_drops_the_cached_login_and_ends_sessions(harness: Harness) -> None:
    (phone,) = _distinct_tags(1)
    harness.add("phone", phone)
    login = harness.login(phone)
    assert harness.store.read(lambda c: (session_ended(c, login), credential_hash(c, login) is not None)) == (
        None,
        True,
    )
    harness.run(lambda conn: apppasswords.revoke(conn, 1, "phone"))
    assert harness.refused(phone) == "bad-password", "the cached entry does not outlive the row"
    harness.add("phone", _distinct_tags(1)[0])  # a new one of the same name gets a new id, never the old one's
    assert harness.store.read(lambda c: session_ended(c, login)) == "the app password was revoked"
    assert harness.store.read(lambda c: credential_hash(c, login)) is None


def test_scope_web_and_app_passwords_only(harness: Harness) -> None:
    (reader,) = _distinct_tags(1)
    harness.add("reader", reader, ("imap",))
    harness.login(reader)
    assert harness.refused(reader, "smtp") == "app-password-scope"
    assert harness.refused(reader, "web") == "bad-password", "the account pages never take an app password"
    harness.run(lambda conn: apppasswords.set_only(conn, 1, True))
    assert harness.refused(MAIN, "pop3") == "main-password-refused"
    assert harness.login(MAIN, "web").email == ALICE
    assert harness.login(reader).app_password == "reader"


def test_last_use_is_written_once_a_minute_per_protocol_and_address(harness: Harness) -> None:
    (phone,) = _distinct_tags(1)
    harness.add("phone", phone)

    def last() -> tuple[object, ...]:
        return tuple(harness.store.read(lambda c: c.execute("SELECT last_used, last_ip FROM app_passwords").fetchone()))

    harness.login(phone)
    first = last()
    harness.login(phone)
    assert last() == first, "the same client again within the minute: no write"
    harness.login(phone, ip="192.0.2.2")
    assert last()[1] == "192.0.2.2"


def _same_tag_as(password: str) -> str:
    """Another app-password-shaped password whose lookup tag is that of ``password`` (a wrong guess that hits)."""
    wanted = apppasswords.tag(apppasswords.normalize(password) or "")
    while True:
        guess = apppasswords.generate()
        if guess != password and apppasswords.tag(apppasswords.normalize(guess) or "") == wanted:
            return guess


def test_a_wrong_guess_costs_the_same_whether_or_not_its_tag_points_at_an_app_password(harness: Harness) -> None:
    """The reply's timing must not tell an attacker that a guess's tag is one of the account's (16 of the 81 bits)
    nor that the account has app passwords at all, nor whether the account exists."""
    (phone,) = _distinct_tags(1)
    harness.add("phone", phone)
    costs = []
    for guess in (_same_tag_as(phone), apppasswords.generate()):  # the tag hits; (almost surely) it does not
        harness.argon2 = 0
        assert harness.refused(guess) == "bad-password"
        costs.append(harness.argon2)
    harness.argon2 = 0
    with pytest.raises(LoginFailed):
        asyncio.get_event_loop().run_until_complete(
            harness.auth.verify("nobody@example.test", apppasswords.generate(), "192.0.2.1", "imap")
        )
    costs.append(harness.argon2)
    assert costs == [2, 2, 2], "one argon2 for the app password slot, one for the account's password"


def test_a_revocation_while_the_password_is_checked_refuses_the_login(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI (another process) revokes the app password while argon2 runs: the login must not open a session
    (which would go on until its next account check) on a password that no longer exists."""
    (phone,) = _distinct_tags(1)
    harness.add("phone", phone)
    checking = passwords.verify_password

    def revoked_meanwhile(password_hash: str, password: str) -> bool:
        other = sqlite3.connect(tmp_path / "r.db")
        with other:
            other.execute("DELETE FROM app_passwords")
        other.close()
        return checking(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password", revoked_meanwhile)
    assert harness.refused(phone) == "ended-during-login"


def test_the_account_pages_never_use_the_credential_cache(harness: Harness) -> None:
    """With two-factor login on, a right password is refused there like a wrong one; a cache hit (no argon2) would
    tell it apart by its speed, so "web" neither reads the cache nor fills it for the mail protocols."""
    harness.login(MAIN)
    assert harness.argon2 == 1
    assert harness.login(MAIN, "web").email == ALICE and harness.argon2 == 2, "not the IMAP login's entry"
    assert harness.login(MAIN, "web").email == ALICE and harness.argon2 == 3, "nor one of its own"
    harness.login(MAIN)
    assert harness.argon2 == 3, "the mail protocols keep theirs"
    harness.run(lambda conn: apppasswords.set_only(conn, 1, True))
    harness.auth.cache = type(harness.auth.cache)()
    harness.login(MAIN, "web")
    assert harness.refused(MAIN, "pop3") == "main-password-refused" and harness.argon2 == 5, "argon2 as a wrong one"
    rows = harness.store.read(lambda c: c.execute("SELECT reason FROM login_history WHERE protocol = 'web'").fetchall())
    assert [row[0] for row in rows] == ["", "", ""]
