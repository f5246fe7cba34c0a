"""RelentadSMTP sets up aiosmtpd's protocol state from a per-class table instead of SMTP.__init__'s inspection.

These tests build both ways and compare, so an aiosmtpd upgrade that changes what SMTP.__init__ sets fails here
rather than in a live connection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from relentad import __version__, config
from relentad.smtp.inbound import InboundHandler
from relentad.smtp.server import Connections, ListenerContext, RelentadSMTP
from relentad.smtp.submission import SubmissionHandler

SCALARS = (
    "data_size_limit", "enable_SMTPUTF8", "_decode_data", "hostname", "tls_context", "_timeout_duration",
    "_auth_require_tls", "_authenticator", "_auth_callback", "_auth_required", "_enforce_call_limit",
    "_proxy_timeout", "line_length_limit", "__ident__", "_ehlo_hook_ver", "event_handler", "session", "envelope",
    "transport", "_tls_protocol", "_original_transport", "_handler_coroutine", "_tls_handshake_okay",
)  # fmt: skip


def build_both(handler: Any, auth_require_tls: bool) -> tuple[RelentadSMTP, RelentadSMTP]:
    cfg = config.from_dict({})
    context = ListenerContext(cfg, None)
    ours = RelentadSMTP(handler, context, Connections(), auth_require_tls=auth_require_tls)
    reference = RelentadSMTP.__new__(RelentadSMTP)
    reference.line_length_limit = cfg.limits.line_length
    reference.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
    SMTP.__init__(
        reference,
        handler,
        data_size_limit=cfg.limits.message_size,
        enable_SMTPUTF8=True,
        decode_data=False,
        hostname=cfg.server.hostname,
        ident=f"relentad {__version__} ESMTP",
        tls_context=None,
        timeout=cfg.limits.command_timeout,
        auth_require_tls=auth_require_tls,
    )
    return ours, reference


@pytest.mark.parametrize(("handler_class", "auth_require_tls"), [(InboundHandler, True), (SubmissionHandler, False)])
def test_protocol_state_matches_aiosmtpd_init(handler_class: type, auth_require_tls: bool) -> None:
    async def check() -> None:
        handler = handler_class.__new__(handler_class)  # its hooks are all the protocol looks at
        ours, reference = build_both(handler, auth_require_tls)
        ours_only = {
            "_connections",
            "_context",
            "_refused",
            "_handshaking",
            "_in_ehlo",
            "_ehlo_lines",
            "_peer_ip",
            "_deadline",
            "_timer_pending",
        }
        assert set(vars(ours)) - ours_only == set(vars(reference)) - ours_only
        for name in SCALARS:
            assert getattr(ours, name) == getattr(reference, name), name
        assert bool(ours.require_starttls) == bool(reference.require_starttls)
        assert ours.loop is reference.loop
        assert {k: (v.method.__func__, v.is_builtin) for k, v in ours._auth_methods.items()} == {
            k: (v.method.__func__, v.is_builtin) for k, v in reference._auth_methods.items()
        }
        assert ours._handle_hooks == reference._handle_hooks
        assert set(ours._smtp_methods) == set(reference._smtp_methods)
        assert all(getattr(m, "__self__", None) is ours for m in ours._smtp_methods.values())
        assert ours._stream_reader._limit == reference._stream_reader._limit  # type: ignore[attr-defined]

    asyncio.run(check())


PATHS = [
    "<a@b.test>", "<a.b@c.d.test> SIZE=100 BODY=8BITMIME", "<a@b.test>  SMTPUTF8", "<a..b@c.test>", "<.a@b.test>",
    "<a.@b.test>", "<a@-b.test>", "<a@b-.test>", "<a@b..test>", "<a@[127.0.0.1]>", '<"a b"@c.test>',
    "<@r.test:a@b.test>",
    "<>", "<a@b.test", "a@b.test", " <a@b.test>", "<a@b.test>x", "<a b@c.test>", "<ä@b.test>", "<a@bä.test>",
    "<a+tag=x@b.test>", "<a@b>", "<a@b.test>\t8BITMIME", "<a@b.test> ", "<x!#$%&'*+/=?^_`{|}~-@b.test>",
    "<a@b.test>>", "<<a@b.test>", "<a@b.test> SIZE=1\r\n", "<" + "a" * 70 + "@b.test>", "<a@b.test> (c) SIZE=1",
    "<a@b.test> \r\n SIZE=1", "<a@b.test>(c)", "<a@b.test> \tX",
]  # fmt: skip


@pytest.mark.parametrize("arg", PATHS)
def test_fast_address_path_agrees_with_aiosmtpd(arg: str) -> None:
    async def check() -> None:
        handler = InboundHandler.__new__(InboundHandler)
        ours, reference = build_both(handler, True)
        for limit in (0, 64):
            ours.local_part_limit = reference.local_part_limit = limit
            assert ours._getaddr(arg) == SMTP._getaddr(reference, arg)

    asyncio.run(check())


def test_aiosmtpd_command_logging_is_skipped_when_disabled_and_kept_when_enabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiosmtpd's per-command log lines go through our level check (it looks ``sanitized_log`` up per call)."""
    import aiosmtpd.smtp

    from relentad.smtp import server

    assert aiosmtpd.smtp.sanitized_log is server._sanitized_log_when_enabled
    mail_log = logging.getLogger("mail.log")
    mail_log.setLevel(logging.WARNING)
    with caplog.at_level(logging.WARNING, logger="mail.log"):
        aiosmtpd.smtp.sanitized_log(mail_log.info, "%r >> %r", ("127.0.0.1", 1), b"NOOP\xff")
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="mail.log"):
        aiosmtpd.smtp.sanitized_log(mail_log.debug, "line %r", b"NOOP\xff")
    assert [r.getMessage() for r in caplog.records] == ["line b'NOOP\\xff'"]  # aiosmtpd's sanitising


def test_command_methods_bind_per_connection_and_hooks_are_shared() -> None:
    async def check() -> None:
        handler = InboundHandler.__new__(InboundHandler)
        context = ListenerContext(config.from_dict({}), None)
        one = RelentadSMTP(handler, context, Connections())
        two = RelentadSMTP(handler, context, Connections())
        assert one._smtp_methods["NOOP"] == one.smtp_NOOP
        assert one._smtp_methods.get("NOSUCH") is None
        assert one._smtp_methods["NOOP"].__self__ is one and two._smtp_methods["NOOP"].__self__ is two
        assert one._handle_hooks is two._handle_hooks

    asyncio.run(check())
