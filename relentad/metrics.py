"""Prometheus metrics and ``/healthz``, served by a tiny HTTP handler inside the daemon's event loop.

What is exported (all names start with ``relentad_``):
- counters that protocol code increments where the event happens: messages received (per listener), SMTP
  rejections (per listener and reason), outbound recipients sent (per result), MTA-STS policy lookups (per
  result) and MX hosts failing a policy (per mode and reason), spam verdicts (per verdict; the spam step calls
  :func:`spam_verdict`), off-site backup copies (per result), failed ACME attempts;
- values read at scrape time from the running daemon (a :class:`DaemonView`): outbound queue size and oldest
  age, open IMAP and SMTP sessions, the store's commit latency histogram (``WriterStats``) and write failures,
  the serving certificate's expiry.
  (Per-account quota usage is not exported: summing message sizes at scrape time would scan the store.)

Invariants:
- No threads: the HTTP server is ``asyncio.start_server`` on the daemon's loop; :mod:`relentad.httpserver` reads
  one request (bounded in size and time), this module answers it, the connection closes. A scrape only reads
  (the loop thread's reader connection, never a write).
- Counters live in :data:`REGISTRY`, not prometheus_client's global one, so an in-process daemon in tests can be
  started twice without "duplicated timeseries" errors.
- ``/healthz`` answers 200 only when the store answers a query and every configured listener is serving; else
  503 with the reason, one per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from . import httpserver
from .smtp import replies
from .store.db import COMMIT_BUCKETS, Store

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES_RECEIVED = Counter(
    "relentad_messages_received",
    "Messages accepted (250 after DATA), by listener (smtp = the MX, submission = 587/465).",
    ["listener"],
    registry=REGISTRY,
)
SMTP_REJECTED = Counter(
    "relentad_smtp_rejected",
    "SMTP 4xx/5xx replies, by listener and reason (a name for relentad's own replies, else the enhanced code).",
    ["listener", "reason"],
    registry=REGISTRY,
)
BACKUP_OFFSITE = Counter(
    "relentad_backup_offsite",
    "Off-site copies of the daily snapshot ([backup] offsite), by result (copied, failed).",
    ["result"],
    registry=REGISTRY,
)
MESSAGES_SENT = Counter(
    "relentad_messages_sent",
    "Outbound delivery attempts per recipient, by result (delivered, deferred, failed).",
    ["result"],
    registry=REGISTRY,
)
SPAM_VERDICTS = Counter(
    "relentad_spam_verdicts",
    "Spam classifier verdicts per recipient copy (ham, unsure, spam).",
    ["verdict"],
    registry=REGISTRY,
)
SPAM_REBUILDS = Counter(
    "relentad_spam_rebuilds",
    "Daily spam model rebuilds per account, by result (rebuilt; deferred: a lesson came meanwhile; failed).",
    ["result"],
    registry=REGISTRY,
)
GREYLIST = Counter(
    "relentad_greylist",
    "Greylisting verdicts per MX recipient: deferred, passed (a retry after the delay), known (a triplet that "
    "passed before), client (a network that passed enough), contact (a known correspondent), exempt.",
    ["result"],
    registry=REGISTRY,
)
DNSBL_LISTED = Counter(
    "relentad_dnsbl_listed",
    "Blocklist listings acted on, by kind (ip: an MX client, once per connection; domain: a message's link) and zone.",
    ["kind", "zone"],
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "relentad_http_requests",
    "Requests to the web listeners, by listener (https, http), route (mta-sts, autoconfig, autodiscover, carddav, "
    "account, other) and status code.",
    ["listener", "route", "status"],
    registry=REGISTRY,
)

MTA_STS_LOOKUPS = Counter(
    "relentad_mta_sts_lookups",
    "MTA-STS policy lookups before a delivery, by result (fetched, cached, no_txt, invalid_txt, invalid_policy, "
    "fetch_failed, fetch_paused, dns_failed, error; all but the first two end in _cached when an unexpired cached "
    "policy applied).",
    ["result"],
    registry=REGISTRY,
)
MTA_STS_FAILURES = Counter(
    "relentad_mta_sts_failures",
    "MX hosts that failed an MTA-STS policy, by mode (enforce: not used; testing: used anyway) and reason "
    "(mx_mismatch, no_starttls, certificate, tls).",
    ["mode", "reason"],
    registry=REGISTRY,
)
DANE_LOOKUPS = Counter(
    "relentad_dane_lookups",
    "DANE (RFC 7672) per MX host tried, by result (usable: TLSA records apply; unusable: only unusable records, "
    "TLS required; none: no TLSA record; insecure: no DNSSEC-validated MX and address answers, or DANE off; "
    "failed: the TLSA lookup failed and the host is skipped).",
    ["result"],
    registry=REGISTRY,
)
DANE_FAILURES = Counter(
    "relentad_dane_failures",
    "MX hosts not used because of DANE, by reason (dnssec: TLSA lookup failed; no_starttls; tls: handshake; tlsa: "
    "the certificate matches no record; name, expired: a DANE-TA chain's server certificate).",
    ["reason"],
    registry=REGISTRY,
)
FORWARDED = Counter(
    "relentad_forwarded",
    "Forwards to addresses elsewhere, by kind (alias, redirect: a Sieve redirect, srs: a bounce to an SRS address "
    "relayed to the original sender) and result (queued; withheld: spam or judged junk, not forwarded; duplicate: "
    "its targets already get the message through another forward of it).",
    ["kind", "result"],
    registry=REGISTRY,
)
SRS_BOUNCES = Counter(
    "relentad_srs_bounces",
    "Recipients at SRS addresses on the MX, by result (accepted: a valid hash and timestamp; refused: 550 5.1.1).",
    ["result"],
    registry=REGISTRY,
)

# One request per connection, its head within 8 KiB and 5 s: a scraper or health check asks once and goes.
_LIMITS = httpserver.Limits(head=8192, fields=64, body=0, timeout=5.0, requests=1)
_USAGE = "GET /metrics or /healthz"


# relentad's own refusals by name; any other 4xx/5xx reply is labelled with its enhanced status code.
_REASONS = {
    replies.UNKNOWN_USER: "unknown_user",
    replies.BAD_SRS: "bad_srs",
    replies.RELAY_DENIED: "relay_denied",
    replies.TOO_MANY_RECIPIENTS: "too_many_recipients",
    replies.TOO_MANY_CONNECTIONS: "too_many_connections",
    replies.SERVER_BUSY: "server_busy",
    replies.TLS_UNAVAILABLE: "tls_unavailable",
    replies.SHUTTING_DOWN: "shutting_down",
    replies.STORE_FAILED: "store_failed",
    replies.LOCAL_ERROR: "local_error",
    replies.BAD_SENDER: "bad_sender",
    replies.BAD_RECIPIENT: "bad_recipient",
    replies.NO_AUTH_HERE: "no_auth_here",
    replies.MESSAGE_TOO_BIG: "message_too_big",
}
_ENHANCED = re.compile(r"^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})")


ACME_FAILURES = Counter(
    "relentad_acme_renewal_failures",
    "ACME attempts to get or renew the certificate that failed ([acme]; the old certificate keeps serving).",
    registry=REGISTRY,
)


def acme_failure() -> None:
    ACME_FAILURES.inc()


def reason_of(reply: str) -> str:
    """The ``reason`` label of an SMTP refusal."""
    named = _REASONS.get(reply.rstrip("\r\n"))
    if named is not None:
        return named
    if reply.startswith(replies.BLOCKLISTED):
        return "dnsbl"
    if reply.startswith(replies.GREYLISTED):
        return "greylist"
    if reply.startswith(replies.ATTACHMENT):
        return "attachment"
    match = _ENHANCED.match(reply)
    return match.group(1) if match else reply[:3]


def received(listener: str) -> None:
    MESSAGES_RECEIVED.labels(listener).inc()


def rejected(listener: str, reason: str) -> None:
    SMTP_REJECTED.labels(listener, reason).inc()


def sent(result: str) -> None:
    MESSAGES_SENT.labels(result).inc()


def greylisted(result: str) -> None:
    """For the MX: one greylisting verdict."""
    GREYLIST.labels(result).inc()


def dnsbl_listed(kind: str, zone: str) -> None:
    """For the blocklist checks: one listing of an MX client ("ip") or of a link domain ("domain") in ``zone``."""
    DNSBL_LISTED.labels(kind, zone).inc()


def mta_sts_lookup(result: str) -> None:
    MTA_STS_LOOKUPS.labels(result).inc()


def mta_sts_failure(mode: str, reason: str) -> None:
    """For delivery: one MX host that did not meet a domain's MTA-STS policy."""
    MTA_STS_FAILURES.labels(mode, reason).inc()


def dane_lookup(result: str) -> None:
    DANE_LOOKUPS.labels(result).inc()


def dane_failure(reason: str) -> None:
    """For delivery: one MX host not used because it did not meet its TLSA records."""
    DANE_FAILURES.labels(reason).inc()


def http_request(listener: str, route: str, status: int) -> None:
    """For the web listeners: count one answered request."""
    HTTP_REQUESTS.labels(listener, route, str(status)).inc()


def spam_verdict(verdict: str) -> None:
    """For the pipeline's spam step: count one verdict ("ham", "unsure", "spam" or "untrained")."""
    SPAM_VERDICTS.labels(verdict).inc()


def forwarded(kind: str, result: str) -> None:
    """For the pipeline: one forward queued, withheld or left out as a duplicate."""
    FORWARDED.labels(kind, result).inc()


def srs_bounce(result: str) -> None:
    """For the MX: one recipient at an SRS address accepted or refused."""
    SRS_BOUNCES.labels(result).inc()


def spam_rebuild(result: str) -> None:
    """For the daily spam rebuild: count one account's ("rebuilt", "deferred" or "failed")."""
    SPAM_REBUILDS.labels(result).inc()


@dataclass
class DaemonView:
    """What a scrape and /healthz read from the running daemon (callables: they see the current state)."""

    store: Store
    imap_sessions: Callable[[], int]
    smtp_sessions: Callable[[], dict[str, int]]  # listener name → open connections
    listeners: Callable[[], dict[str, bool]]  # listener name → serving
    managesieve_sessions: Callable[[], int] = lambda: 0
    pop3_sessions: Callable[[], int] = lambda: 0
    certificate_expiry: Callable[[], float | None] = lambda: None  # the serving certificate's notAfter


class DaemonCollector(Collector):
    """Gauges and the commit histogram, computed from a :class:`DaemonView` at scrape time."""

    def __init__(self, view: DaemonView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        view = self.view
        count, oldest = view.store.read(
            lambda conn: tuple(conn.execute("SELECT count(*), min(created) FROM queue_messages").fetchone())
        )
        yield GaugeMetricFamily("relentad_queue_messages", "Messages in the outbound queue.", value=count)
        yield GaugeMetricFamily(
            "relentad_queue_oldest_age_seconds",
            "Age of the oldest message in the outbound queue (0 when empty).",
            value=max(0.0, time.time() - oldest) if oldest is not None else 0.0,
        )
        sessions = GaugeMetricFamily(
            "relentad_sessions_open", "Open client sessions, by listener.", labels=["listener"]
        )
        sessions.add_metric(["imap"], view.imap_sessions())
        sessions.add_metric(["managesieve"], view.managesieve_sessions())
        sessions.add_metric(["pop3"], view.pop3_sessions())
        for name, open_count in view.smtp_sessions().items():
            sessions.add_metric([name], open_count)
        yield sessions
        expiry = view.certificate_expiry()
        if expiry is not None:
            yield GaugeMetricFamily(
                "relentad_tls_certificate_expiry_timestamp_seconds",
                "When the certificate the TLS listeners serve expires (Unix time).",
                value=expiry,
            )
        stats = view.store.stats
        cumulative: list[tuple[str, float]] = []
        total = 0
        for bound, in_bucket in zip([*COMMIT_BUCKETS, float("inf")], stats.commit_buckets, strict=True):
            total += in_bucket
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
        yield HistogramMetricFamily(
            "relentad_store_commit_seconds",
            "Time of one group-commit transaction of the store's writer.",
            buckets=cumulative,
            sum_value=stats.commit_seconds,
        )
        # counters (they only grow): exposed as relentad_store_jobs_total and relentad_store_commit_failures_total
        yield CounterMetricFamily(
            "relentad_store_jobs", "Write jobs committed since start (group commit batches them).", value=stats.jobs
        )
        yield CounterMetricFamily(
            "relentad_store_commit_failures", "Commits that failed (disk full, I/O error).", value=stats.failures
        )


def health(view: DaemonView) -> list[str]:
    """What is wrong with the daemon right now; empty when healthy."""
    problems: list[str] = []
    try:
        view.store.read(lambda conn: conn.execute("SELECT 1").fetchone())
    except Exception as exc:
        problems.append(f"store: {exc}")
    for name, serving in view.listeners().items():
        if not serving:
            problems.append(f"listener {name} is not serving")
    return problems


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP/1.x on the loop (one request per connection)."""

    def __init__(self, view: DaemonView) -> None:
        self.view = view
        self.collector = DaemonCollector(view)
        self.server: asyncio.Server | None = None

    async def start(self, host: str | None, port: int) -> asyncio.Server:
        REGISTRY.register(self.collector)
        self.server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
            with contextlib.suppress(KeyError):
                REGISTRY.unregister(self.collector)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await httpserver.serve(reader, writer, self.respond, _LIMITS)

    def respond(self, request: httpserver.Request) -> httpserver.Response:
        """The response to one request (HEAD: :func:`httpserver.serve` leaves the content out)."""
        if request.method not in ("GET", "HEAD"):
            return httpserver.text(405, _USAGE, ("Allow", "GET, HEAD"))  # Allow: what a 405 must say (RFC 9110)
        if request.path == "/metrics":
            try:
                exposition = generate_latest(REGISTRY)
            except Exception as exc:
                log.exception("metrics: scrape failed")
                return httpserver.text(500, f"scrape failed: {exc}")
            return httpserver.Response(200, exposition, "text/plain; version=0.0.4; charset=utf-8")
        if request.path == "/healthz":
            problems = health(self.view)
            if problems:
                return httpserver.text(503, "\n".join(problems))
            return httpserver.text(200, "ok")
        return httpserver.text(404, _USAGE)
