"""Recording TLS sessions for SMTP TLS reporting (RFC 8460), while ``[tlsrpt] send_reports`` is on.

One ``tlsrpt_results`` row per session :func:`relentad.queue.deliver.attempt` noted (policy type ``tlsa`` where DANE
applied, with that MX host's TLSA records as the policy and their TLSA base domain as its ``mx``), plus one for an
MTA-STS policy discovery that failed (§4.3.2: ``sts-policy-fetch-error``, ``sts-policy-invalid``,
``sts-webpki-invalid``), written in the transaction that records the attempt's results: no extra commit on the delivery
path. :mod:`relentad.authreports.tlsreports` sums them up once a day.
"""

from __future__ import annotations

import logging
import sqlite3

from ..store import db
from . import mtasts
from .deliver import TlsSession

log = logging.getLogger("relentad.queue")

TLS_REPORT_PREFIX = "tlsrpt-"
"""The transaction id of a queued TLS report of ours starts with this: delivered without MTA-STS, not recorded."""


DANE_RESULTS = ("tlsa-invalid", "dnssec-invalid", "dane-required")


def discovery_failure(found: mtasts.Found) -> TlsSession | None:
    """The failed session a policy lookup stands for: one whose policy could not be had and none applies. A
    missing TXT record, DNS trouble or a fetch paused after a failure are no sessions."""
    if found.policy is not None:
        return None
    if found.how == "fetch_failed":
        webpki = "CERTIFICATE_VERIFY_FAILED" in found.detail or ": TLS: " in found.detail
        result = "sts-webpki-invalid" if webpki else "sts-policy-fetch-error"
    elif found.how in ("invalid_policy", "invalid_txt"):
        result = "sts-policy-invalid"
    else:
        return None
    return TlsSession(result, None, detail=found.detail[:200])


def insert(conn: sqlite3.Connection, domain: str, sessions: list[TlsSession], now: float) -> None:
    """Store ``sessions`` of one attempt at ``domain`` (a failed discovery under policy type sts, without text), in
    the attempt's transaction: in a savepoint of its own, so that a failure here is logged and never costs the
    attempt's results (which would send the message again)."""
    rows = []
    for s in sessions:
        if s.tlsa or s.result in DANE_RESULTS:
            # the TLSA records of that host and their base domain, the policy-domain (RFC 8460 §1.1, §4.4)
            kind, text, mx = "tlsa", s.tlsa, s.tlsa_base or s.mx_host
        elif s.policy is not None or s.result.startswith("sts-"):
            kind = "sts"
            text, mx = (s.policy.text, " ".join(s.policy.mx)) if s.policy is not None else ("", "")
        else:
            kind, text, mx = "no-policy-found", "", ""
        rows.append((now, domain, kind, text, mx, s.result, s.sending_ip, s.mx_host, s.mx_ip, s.detail))
    with db.on_the_side(conn, log, "queue: recording TLS sessions for reports failed"):
        conn.executemany(
            "INSERT INTO tlsrpt_results (at, domain, policy_type, policy, mx, result, sending_ip, mx_host, mx_ip,"
            " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
