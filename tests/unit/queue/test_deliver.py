"""One delivery attempt (deliver.attempt in MX mode) against a recording aiosmtpd peer on 127.0.0.1.

DNS is replaced: the MX of c.test is mx.c.test at 127.0.0.1, on the peer's ephemeral port.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import dns.asyncresolver
import pytest

from relentad import dns as relentad_dns
from relentad.config import QueueConfig
from relentad.queue import dane, deliver, mtasts
from relentad.smtp import dsnparams
from relentad.tls import make_self_signed
from tests.support.pki import TestCA
from tests.support.smtp_peer import Sink, serving

MESSAGE = b"From: alice@a.test\r\nTo: bob@c.test\r\nSubject: hi\r\n\r\nbody\r\n"
EIGHT_BIT = (
    b"From: alice@a.test\r\nTo: bob@c.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße\r\n".encode()
)


def server_tls(tmp_path: Path) -> ssl.SSLContext:
    make_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem", ["mx.c.test"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context


async def attempt(
    monkeypatch: pytest.MonkeyPatch,
    port: int,
    recipients: list[str],
    data: bytes = MESSAGE,
    *,
    mail_from: str = "alice@a.test",
    timeout: float = 10.0,
    dsn: deliver.Dsn = deliver.NO_DSN,
    policy: mtasts.Policy | None = None,
    verified: ssl.SSLContext | None = None,
    ips: tuple[str, ...] = ("127.0.0.1",),
    sessions: list[deliver.TlsSession] | None = None,
    tlsa: dane.Dane | None = None,
) -> dict[str, deliver.Outcome]:
    async def mx_route(resolver: dns.asyncresolver.Resolver, domain: str) -> relentad_dns.Route:
        return relentad_dns.Route(["mx.c.test"], secure=False)

    async def host(resolver: dns.asyncresolver.Resolver, name: str, secure_mx: bool) -> dane.Host:
        return dane.Host(name, list(ips), dane.Lookup(tlsa is not None, dane=tlsa))

    monkeypatch.setattr(relentad_dns, "mx_route", mx_route)
    monkeypatch.setattr(deliver, "_host", host)
    monkeypatch.setattr(deliver, "SMTP_PORT", port)
    return await deliver.attempt(
        domain="c.test",
        mail_from=mail_from,
        recipients=recipients,
        data=data,
        hostname="mx.a.test",
        queue=QueueConfig(timeout=timeout),
        resolver=dns.asyncresolver.Resolver(configure=False),
        smarthost=None,
        dsn=dsn,
        policy=policy,
        verified=verified,
        sessions=sessions,
    )


async def test_a_slow_reply_to_the_final_dot_is_awaited_not_resent(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 5321 §4.5.3.2.6: a server may take minutes after the "." (content scanning); giving up then means the
    message it is accepting gets sent again (next MX, next retry)."""
    sink = Sink(data_delay=1.5)
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], timeout=0.5)
    assert outcomes["bob@c.test"].state == "delivered"
    assert sink.data_attempts == 1
    assert deliver.DATA_TIMEOUT >= 600


async def test_ehlo_again_after_starttls_so_mail_options_are_sent_over_tls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RFC 3207 §4.2: STARTTLS wipes what the client knew of the server's extensions; without a new EHLO the
    MAIL options (BODY=8BITMIME, SMTPUTF8) would be chosen from an empty list."""
    sink = Sink()
    async with serving(sink, tls_context=server_tls(tmp_path)) as port:
        outcomes = await attempt(monkeypatch, port, ["jürgen@c.test"], EIGHT_BIT)
    assert outcomes["jürgen@c.test"].state == "delivered"
    commands = list(zip(sink.commands, sink.tls, strict=True))
    assert commands[:3] == [
        ("EHLO mx.a.test", False),
        ("EHLO mx.a.test", True),
        ("MAIL <alice@a.test> BODY=8BITMIME SMTPUTF8", True),
    ]
    assert sink.accepted[0][2] == EIGHT_BIT


@pytest.mark.parametrize("refusal", ["500 5.5.2 Command unrecognized", "502 5.5.1 EHLO not implemented", "550 no"])
async def test_a_refused_ehlo_falls_back_to_helo(monkeypatch: pytest.MonkeyPatch, refusal: str) -> None:
    """RFC 5321 §3.2: a server without ESMTP refuses EHLO; HELO and a transaction without extensions follow."""
    sink = Sink(refuse_ehlo=refusal)
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], EIGHT_BIT)
    assert outcomes["bob@c.test"].state == "delivered"
    assert sink.commands[:4] == ["EHLO mx.a.test", "HELO mx.a.test", "MAIL <alice@a.test>", "RCPT <bob@c.test>"]


async def test_outcomes_say_whether_the_reply_came_from_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = Sink(rcpt_replies=["550 5.1.1 No such user"])
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["nobody@c.test", "bob@c.test"])
    assert outcomes["nobody@c.test"] == deliver.Outcome("failed", "550 5.1.1 No such user", "mx.c.test", True)
    assert outcomes["bob@c.test"].state == "delivered" and outcomes["bob@c.test"].from_remote
    closed = port  # the peer is gone: nothing listens there any more
    [(_, unreachable)] = (await attempt(monkeypatch, closed, ["bob@c.test"])).items()
    assert unreachable.state == "deferred" and unreachable.reply.startswith("451 4.4.1 ")
    assert not unreachable.from_remote


async def test_an_international_address_is_not_sent_to_a_server_without_smtputf8(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RFC 6531 §3.2: such an address must not go out without SMTPUTF8; it bounces, the others are delivered."""
    sink = Sink(withhold=frozenset({"SMTPUTF8"}))
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["jürgen@c.test", "bob@c.test"])
    refused = outcomes["jürgen@c.test"]
    assert refused.state == "failed" and not refused.from_remote
    assert refused.reply == "553 5.6.7 mx.c.test does not support SMTPUTF8, which the address needs"
    assert outcomes["bob@c.test"].state == "delivered"
    assert [c for c in sink.commands if c.startswith(("MAIL", "RCPT"))] == ["MAIL <alice@a.test>", "RCPT <bob@c.test>"]


async def test_an_international_sender_is_not_sent_to_a_server_without_smtputf8(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = Sink(withhold=frozenset({"SMTPUTF8"}))
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], mail_from="jürgen@a.test")
    assert outcomes["bob@c.test"].state == "failed" and outcomes["bob@c.test"].reply.startswith("553 5.6.7 ")
    assert not any(c.startswith("MAIL") for c in sink.commands)


async def test_utf8_in_the_header_declares_smtputf8_when_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 6532 header fields with an ASCII envelope: still a message that needs SMTPUTF8 where it is offered."""
    data = "From: Jürgen <alice@a.test>\r\nTo: bob@c.test\r\nSubject: Grüße\r\n\r\nhi\r\n".encode()
    sink = Sink()
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], data)
    assert outcomes["bob@c.test"].state == "delivered"
    assert "MAIL <alice@a.test> BODY=8BITMIME SMTPUTF8" in sink.commands


async def test_8bit_content_goes_unchanged_to_a_server_without_8bitmime(monkeypatch: pytest.MonkeyPatch) -> None:
    """No conversion to 7 bit: it would break the DKIM signature over the body."""
    sink = Sink(withhold=frozenset({"8BITMIME", "SMTPUTF8"}))
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], EIGHT_BIT)
    assert outcomes["bob@c.test"].state == "delivered"
    assert "MAIL <alice@a.test>" in sink.commands
    assert sink.accepted[0][2] == EIGHT_BIT


DSN = deliver.Dsn(
    dsnparams.MailParams("FULL", "id=1 x"),
    {
        "bob@c.test": dsnparams.RcptParams(frozenset({"SUCCESS", "DELAY"}), "rfc822;Bob+x@c.test"),
        "jürgen@c.test": dsnparams.RcptParams(None, "utf-8;jürgen@c.test"),
    },
)


async def test_dsn_parameters_go_to_a_server_that_offers_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 3461 §5.2-5.3: passed on as the sender gave them, re-encoded as xtext (utf-8-addr-xtext for utf-8)."""
    sink = Sink(dsn=True)
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test", "jürgen@c.test"], dsn=DSN)
    assert sink.dsn_params == [
        "MAIL RET=FULL ENVID=id+3D1+20x",
        "RCPT NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Bob+2Bx@c.test",
        "RCPT ORCPT=utf-8;j\\x{FC}rgen@c.test",
    ]
    assert all(o.state == "delivered" and o.dsn_passed for o in outcomes.values())


async def test_no_dsn_parameters_to_a_server_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = Sink()
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], dsn=DSN)
    assert [c for c in sink.commands if c.startswith(("MAIL", "RCPT"))] == ["MAIL <alice@a.test>", "RCPT <bob@c.test>"]
    assert outcomes["bob@c.test"].state == "delivered" and not outcomes["bob@c.test"].dsn_passed


# -- MTA-STS (RFC 8461 §4, §5) ---------------------------------------------------------------------------------


def _policy(mode: mtasts.Mode, mx: str = "mx.c.test") -> mtasts.Policy:
    return mtasts.Policy("c.test", "1", mode, (mx,), 600, "", 0.0)


def _ca_context(tmp_path: Path, *names: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(the MX's server context for ``names``, our client context trusting the test CA)."""
    ca = TestCA(tmp_path / "ca")
    return ca.server_context(*names), mtasts.verified_context(ca.pem)


async def test_mta_sts_enforce_delivers_over_verified_tls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server, client = _ca_context(tmp_path, "mx.c.test")
    sink = Sink()
    async with serving(sink, tls_context=server) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], policy=_policy("enforce"), verified=client)
    assert outcomes["bob@c.test"].state == "delivered"
    assert all(tls for command, tls in zip(sink.commands, sink.tls, strict=True) if not command.startswith("EHLO"))


@pytest.mark.parametrize("mode", ["enforce", "testing"])
async def test_mta_sts_certificate_for_another_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: mtasts.Mode
) -> None:
    """enforce: deferred with 4.7.5, the host never gets a command in plain text; testing: delivered anyway."""
    server, client = _ca_context(tmp_path, "other.test")
    sink = Sink()
    async with serving(sink, tls_context=server) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], policy=_policy(mode), verified=client)
    outcome = outcomes["bob@c.test"]
    if mode == "enforce":
        assert outcome.state == "deferred" and not outcome.from_remote
        assert outcome.reply.startswith("451 4.7.5 MTA-STS policy of c.test: mx.c.test[127.0.0.1]: certificate not")
        assert sink.commands == ["EHLO mx.a.test"], "nothing after the failed STARTTLS"
    else:
        assert outcome.state == "delivered"
        assert sink.tls[sink.commands.index("DATA")], "still over (unverified) TLS"


async def test_mta_sts_enforce_needs_the_name_in_the_certificates_subject_alt_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RFC 8461 §4.2: a DNS-ID in the SAN; a certificate naming the MX only in its subject's CN does not verify."""
    ca = TestCA(tmp_path / "ca")
    sink = Sink()
    async with serving(sink, tls_context=ca.server_context("mx.c.test", san=False)) as port:
        verified = mtasts.verified_context(ca.pem)
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], policy=_policy("enforce"), verified=verified)
    assert outcomes["bob@c.test"].state == "deferred"
    assert outcomes["bob@c.test"].reply.startswith("451 4.7.5 MTA-STS policy of c.test: mx.c.test[127.0.0.1]: certif")
    assert "MAIL FROM:<alice@a.test>" not in sink.commands


async def test_mta_sts_enforce_never_falls_back_to_plain_text_after_a_refused_ehlo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """HELO has no STARTTLS: under enforce the host is not used, whatever the STARTTLS-capable server says."""
    server, client = _ca_context(tmp_path, "mx.c.test")
    sink = Sink(refuse_ehlo="502 5.5.1 EHLO not implemented")
    async with serving(sink, tls_context=server) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], policy=_policy("enforce"), verified=client)
    assert outcomes["bob@c.test"].reply == (
        "451 4.7.5 MTA-STS policy of c.test: mx.c.test[127.0.0.1] does not offer STARTTLS"
    )
    assert sink.commands == ["EHLO mx.a.test", "HELO mx.a.test"]


async def test_mta_sts_enforce_skips_hosts_outside_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = Sink()
    async with serving(sink) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], policy=_policy("enforce", mx="*.elsewhere.test"))
    assert outcomes["bob@c.test"].reply == (
        "451 4.7.5 MTA-STS policy of c.test: MX host mx.c.test matches none of the policy's mx (*.elsewhere.test)"
    )
    assert sink.commands == []


async def test_mta_sts_testing_never_gives_the_reason_a_message_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A testing policy only reports: an MX outside it is not what the delay notice says when the MX has no
    address (or whatever else really keeps the message)."""
    policy = _policy("testing", mx="*.other.test")
    outcomes = await attempt(monkeypatch, 0, ["bob@c.test"], policy=policy, ips=())
    assert outcomes["bob@c.test"].reply == "451 4.4.1 no host could be reached"


async def test_mta_sts_mode_none_is_as_without_a_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = Sink()
    async with serving(sink) as port:  # no STARTTLS offered
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], policy=_policy("none", mx="nothing.test"))
    assert outcomes["bob@c.test"].state == "delivered"


# -- TLS reporting (RFC 8460 §4.3) -------------------------------------------------------------------------------


def _summary(sessions: list[deliver.TlsSession]) -> list[tuple[str, bool, str, str]]:
    return [(s.result, s.policy is not None, s.mx_host, s.mx_ip) for s in sessions]


async def test_sessions_under_a_policy_are_noted_once_per_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A verified session is a success; a testing policy's failed one is one failure, its fallback no session."""
    server, client = _ca_context(tmp_path, "mx.c.test")
    sessions: list[deliver.TlsSession] = []
    async with serving(Sink(), tls_context=server) as port:
        await attempt(monkeypatch, port, ["bob@c.test"], policy=_policy("enforce"), verified=client, sessions=sessions)
    assert _summary(sessions) == [("success", True, "mx.c.test", "127.0.0.1")]
    assert sessions[0].sending_ip == "127.0.0.1"

    server, client = _ca_context(tmp_path / "other", "other.test")
    sessions = []
    async with serving(Sink(), tls_context=server) as port:
        outcomes = await attempt(
            monkeypatch, port, ["bob@c.test"], policy=_policy("testing"), verified=client, sessions=sessions
        )
    assert outcomes["bob@c.test"].state == "delivered"
    assert _summary(sessions) == [("certificate-host-mismatch", True, "mx.c.test", "127.0.0.1")]
    assert "Hostname mismatch" in sessions[0].detail


async def test_untrusted_certificate_under_enforce(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _, client = _ca_context(tmp_path, "mx.c.test")
    sessions: list[deliver.TlsSession] = []
    async with serving(Sink(), tls_context=server_tls(tmp_path)) as port:  # self-signed, not from the CA
        await attempt(monkeypatch, port, ["bob@c.test"], policy=_policy("enforce"), verified=client, sessions=sessions)
    assert _summary(sessions) == [("certificate-not-trusted", True, "mx.c.test", "127.0.0.1")]


async def test_sessions_without_a_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Opportunistic TLS (unverified) is a success; no STARTTLS is starttls-not-supported, noted once."""
    sessions: list[deliver.TlsSession] = []
    async with serving(Sink(), tls_context=server_tls(tmp_path)) as port:
        await attempt(monkeypatch, port, ["bob@c.test"], sessions=sessions)
    assert _summary(sessions) == [("success", False, "mx.c.test", "127.0.0.1")]
    sessions = []
    async with serving(Sink()) as port:
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], sessions=sessions)
    assert outcomes["bob@c.test"].state == "delivered"
    assert _summary(sessions) == [("starttls-not-supported", False, "mx.c.test", "127.0.0.1")]


@pytest.mark.parametrize("mode", ["enforce", "testing"])
async def test_an_mx_outside_the_policy_is_a_failed_session(monkeypatch: pytest.MonkeyPatch, mode: mtasts.Mode) -> None:
    """testing: the host then gets the message, and that connection is no second session."""
    sessions: list[deliver.TlsSession] = []
    async with serving(Sink()) as port:
        outcomes = await attempt(
            monkeypatch, port, ["bob@c.test"], policy=_policy(mode, mx="*.elsewhere.test"), sessions=sessions
        )
    assert _summary(sessions) == [("validation-failure", True, "mx.c.test", "")]
    assert outcomes["bob@c.test"].state == ("deferred" if mode == "enforce" else "delivered")


async def test_dane_takes_precedence_over_mta_sts_and_never_falls_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A self-signed certificate fails the enforce policy's CA check, but its key is the one the TLSA record names:
    delivered (RFC 8461 §2). A record naming another key: deferred, the host never sees MAIL, not even in plain
    text."""
    _, client = _ca_context(tmp_path, "mx.c.test")
    context = server_tls(tmp_path)
    own = ssl.PEM_cert_to_DER_cert((tmp_path / "cert.pem").read_text())
    sessions: list[deliver.TlsSession] = []
    sink = Sink()
    async with serving(sink, tls_context=context) as port:
        matching = dane.Dane("mx.c.test", "mx.c.test", (dane.record_for(own),))
        outcomes = await attempt(
            monkeypatch,
            port,
            ["bob@c.test"],
            policy=_policy("enforce"),
            verified=client,
            sessions=sessions,
            tlsa=matching,
        )
    assert outcomes["bob@c.test"].state == "delivered"
    assert [(s.result, s.policy, s.tlsa) for s in sessions] == [("success", None, matching.text())]
    sessions, sink = [], Sink()
    async with serving(sink, tls_context=context) as port:
        wrong = dane.Dane("mx.c.test", "mx.c.test", (dane.Tlsa(3, 1, 1, bytes(32)),))
        outcomes = await attempt(monkeypatch, port, ["bob@c.test"], sessions=sessions, tlsa=wrong)
    assert outcomes["bob@c.test"].state == "deferred"
    assert outcomes["bob@c.test"].reply == (
        "451 4.7.5 DANE: mx.c.test[127.0.0.1]: the certificate matches none of the TLSA records"
    )
    assert not any(c.startswith("MAIL") for c in sink.commands), sink.commands
    assert [s.result for s in sessions] == ["tlsa-invalid"]


async def test_unusable_tlsa_records_keep_the_mta_sts_policy_and_make_tls_required(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only unusable TLSA records (RFC 7672 §2.2): the MTA-STS policy still verifies the certificate (a self-signed one
    fails enforce), and a testing policy's fallback keeps TLS: no STARTTLS means no delivery, not plain text."""
    _, client = _ca_context(tmp_path, "mx.c.test")
    unusable = dane.Dane("mx.c.test", "mx.c.test", (), (dane.Tlsa(1, 1, 1, bytes(32)),))
    sink = Sink()
    async with serving(sink, tls_context=server_tls(tmp_path)) as port:
        enforce = await attempt(
            monkeypatch, port, ["bob@c.test"], policy=_policy("enforce"), verified=client, tlsa=unusable
        )
        testing = await attempt(
            monkeypatch, port, ["carol@c.test"], policy=_policy("testing"), verified=client, tlsa=unusable
        )
    assert enforce["bob@c.test"].state == "deferred" and "MTA-STS policy of c.test" in enforce["bob@c.test"].reply
    assert testing["carol@c.test"].state == "delivered"
    assert all(tls for command, tls in zip(sink.commands, sink.tls, strict=True) if command.startswith("MAIL"))
    plain = Sink()
    async with serving(plain) as port:
        outcomes = await attempt(
            monkeypatch, port, ["dave@c.test"], policy=_policy("testing"), verified=client, tlsa=unusable
        )
    assert outcomes["dave@c.test"].reply == "451 4.7.5 DANE: mx.c.test[127.0.0.1] does not offer STARTTLS"
    assert not any(c.startswith("MAIL") for c in plain.commands), plain.commands
