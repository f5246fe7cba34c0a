"""The session's dispatch over an in-memory connection: per-state tables, the one place that renders errors,
NO [SERVERBUG] with the session living on, and the BAD counter."""

from __future__ import annotations

from typing import Any, cast

from relentad.config import Config
from relentad.imap.commands import HANDLERS
from relentad.imap.errors import no
from relentad.imap.session import Services, Session, State


class FakeConnection:
    """Collects what the session writes; no network."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.tls = False
        self.compressed = False
        self.closed = False

    def peer_ip(self) -> str:
        return "127.0.0.1"

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        return None

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data


def session(handlers: dict[str, Any] | None = None) -> tuple[Session, FakeConnection]:
    conn = FakeConnection()
    services = Services(
        store=cast(Any, None),
        bus=cast(Any, None),
        readers=cast(Any, None),
        authenticator=cast(Any, None),
        get_config=Config,
        get_tls=lambda: None,
    )
    return Session(services, cast(Any, conn), {**HANDLERS, **(handlers or {})}), conn


async def test_unexpected_exception_answers_serverbug_and_session_lives_on() -> None:
    async def boom(session: Session, command: object) -> None:
        raise RuntimeError("bug")

    s, conn = session({"NOOP": boom})
    await s.execute(b"a NOOP\r\n")
    assert conn.take() == b"a NO [SERVERBUG] internal server error; the session goes on\r\n"
    await s.execute(b"b CAPABILITY\r\n")
    reply = conn.take()
    assert reply.startswith(b"* CAPABILITY IMAP4rev1 ") and reply.endswith(b"b OK CAPABILITY completed\r\n")
    assert b"LOGINDISABLED" in reply and b"STARTTLS" not in reply  # no TLS configured, no loopback plaintext


async def test_errors_carry_their_reply() -> None:
    async def refuse(session: Session, command: object) -> None:
        raise no("not today", "CANNOT")

    s, conn = session({"NOOP": refuse})
    await s.execute(b"a NOOP\r\n")
    assert conn.take() == b"a NO [CANNOT] not today\r\n"


async def test_state_tables_and_bad_counter() -> None:
    s, conn = session()
    await s.execute(b"a SELECT INBOX\r\n")
    assert conn.take() == b"a BAD SELECT is not allowed in the not authenticated state\r\n"
    await s.execute(b"b FROB\r\n")
    assert conn.take().startswith(b"b BAD unknown command FROB")
    await s.execute(b"(garbage\r\n")
    assert conn.take().startswith(b"* BAD")
    assert s.bad_count == 3
    await s.execute(b"c NOOP\r\n")
    assert conn.take() == b"c OK NOOP completed\r\n" and s.bad_count == 0
    await s.execute(b"d LOGIN a b\r\n")
    assert conn.take().startswith(b"d NO [PRIVACYREQUIRED]")
    await s.execute(b"e LOGOUT\r\n")
    assert conn.take() == b"* BYE relentad IMAP signing off\r\ne OK LOGOUT completed\r\n"
    assert s.state is State.LOGOUT


async def test_command_pacing_waits_instead_of_refusing(monkeypatch: Any) -> None:
    import dataclasses

    from relentad.imap import session as session_module

    config = Config()
    config = dataclasses.replace(config, imap=dataclasses.replace(config.imap, commands_per_second=2))
    s, _ = session()
    s.services.get_config = lambda: config
    s.tokens = 4.0
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(session_module.asyncio, "sleep", fake_sleep)
    for _ in range(4):
        await s.pace()
    assert waits == []
    await s.pace()
    assert len(waits) == 1 and 0 < waits[0] <= 0.5
