"""A scriptable, recording SMTP peer built on aiosmtpd: the destination the outbound tests deliver to.

:class:`Sink` is the aiosmtpd handler: it answers RCPT and DATA from scripted reply lists, records the commands
it saw (with whether TLS was up) and what it accepted, can be slow to answer the final ".", can leave extensions
out of its EHLO reply or refuse EHLO altogether, or offer DSN and record the DSN parameters it is given
(:class:`DsnSMTP`, which the test's server then has to be). The e2e tests run it under aiosmtpd's threaded Controller on
port 25; :func:`serving` runs it on the test's own event loop on 127.0.0.1 and an ephemeral port.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Sink:
    """aiosmtpd handler: answers RCPT and DATA from scripted reply lists (then 250), records what it took."""

    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    accepted: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    data_attempts: int = 0
    data_delay: float = 0.0  # seconds between the final "." and the reply
    withhold: frozenset[str] = frozenset()  # EHLO keywords left out of the reply ("SMTPUTF8", "8BITMIME")
    refuse_ehlo: str = ""  # the reply to EHLO instead of 250 ("502 5.5.1 ..."); HELO still works
    commands: list[str] = field(default_factory=list)  # "EHLO x", "MAIL <a> BODY=8BITMIME", "RCPT <b>", "DATA"
    tls: list[bool] = field(default_factory=list)  # per recorded command: was TLS up
    dsn: bool = False  # offer DSN (RFC 3461): needs DsnSMTP as the protocol
    dsn_params: list[str] = field(default_factory=list)  # "MAIL RET=FULL ENVID=x", "RCPT NOTIFY=NEVER", ...

    def _record(self, session: Session, command: str) -> None:
        self.commands.append(command)
        self.tls.append(session.ssl is not None)

    async def handle_EHLO(
        self, server: Any, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self._record(session, f"EHLO {hostname}")
        if self.refuse_ehlo:
            return [self.refuse_ehlo]
        session.host_name = hostname
        offered = [r for r in responses if r[4:].split(" ")[0].upper() not in self.withhold]
        return [*offered[:-1], "250-DSN", offered[-1]] if self.dsn else offered

    async def handle_HELO(self, server: Any, session: Session, envelope: Envelope, hostname: str) -> str:
        self._record(session, f"HELO {hostname}")
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._record(session, " ".join(["MAIL", f"<{address}>", *options]))
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._record(session, f"RCPT <{address}>")
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self._record(session, "DATA")
        self.data_attempts += 1
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.data_replies:
            return self.data_replies.pop(0)
        assert isinstance(envelope.mail_from, str)
        self.accepted.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 2.0.0 OK"

    def authenticate(self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> Any:
        if isinstance(data, LoginPassword) and data.password == b"relay secret":
            self.logins.append(data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


_DSN_PARAMS = ("RET", "ENVID", "NOTIFY", "ORCPT")


class DsnSMTP(SMTP):
    """aiosmtpd's SMTP taking the DSN parameters, which aiosmtpd refuses: each MAIL's and RCPT's are recorded in
    the Sink's ``dsn_params`` as sent, then left out of what aiosmtpd parses."""

    async def smtp_MAIL(self, arg: str | None) -> None:
        await super().smtp_MAIL(self._take("MAIL", arg))

    async def smtp_RCPT(self, arg: str | None) -> None:
        await super().smtp_RCPT(self._take("RCPT", arg))

    def _take(self, command: str, arg: str | None) -> str | None:
        if arg is None:
            return None
        words = arg.split()
        taken = [w for w in words if w.partition("=")[0].upper() in _DSN_PARAMS]
        self.event_handler.dsn_params.append(" ".join([command, *taken]))
        return " ".join(w for w in words if w not in taken)


@asynccontextmanager
async def serving(
    handler: Sink, *, hostname: str = "mx.c.test", tls_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """Run ``handler`` on 127.0.0.1 in the running loop; yields the port. SMTPUTF8 is offered unless withheld."""

    def protocol() -> SMTP:
        kind = DsnSMTP if handler.dsn else SMTP
        return kind(handler, hostname=hostname, enable_SMTPUTF8=True, tls_context=tls_context)

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
