"""Sending DMARC aggregate reports (RFC 7489 §7.2) about the mail this server receives. Off unless
``[dmarc] send_reports``: a report tells another domain which addresses sent mail in its name to us, how much and
with what results — traffic information about our users' correspondents that we only give when the admin chooses to.

How: while it is on, the pipeline records each inbound DMARC evaluation whose record asks for reports (``rua=``) as
one ``dmarc_evaluations`` row (:func:`evaluation`; in the delivery's transaction, or alone for a refused message).
Once a day (:func:`.sending.run_daily`, shortly after midnight UTC; ``relentad reports send`` on demand) the rows are
summed up per policy domain into one XML report (Appendix C), gzipped and queued — DKIM-signed for
``[dmarc] reporter``'s domain — to the domain's ``mailto:`` addresses: one outside the domain's organisation only when
``<domain>._report._dmarc.<its host>`` publishes ``v=DMARC1`` (§7.1, so that nobody can make us mail reports to a
third party), and none whose ``!size`` limit the report exceeds. The rows reported, and any a report could not go
to, are deleted in the transaction that queues the reports. No report is sent about hosted domains (we hold that
data already) and a row left over (a failed run) is dropped after :data:`KEEP_DAYS` days.
"""

from __future__ import annotations

import email.policy
import gzip
import json
import logging
import sqlite3
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import dns.asyncresolver

from .. import daily, mailauth, safexml
from ..config import Config
from ..dns import DnsTemporaryError, lookup
from ..queue.dkimkeys import KeyRing
from ..store import db
from . import intake, sending
from .sending import Outgoing, destinations

log = logging.getLogger("relentad.reports")

POLICY_TAGS = ("adkim", "aspf", "p", "sp", "pct", "fo", "rua")
MAX_ROWS = 5000
"""Distinct record rows in one report (each row counts the messages alike)."""
KEEP_DAYS = 3


def evaluation(auth: mailauth.AuthResult, *, source_ip: str, refused: bool, now: float) -> tuple[Any, ...] | None:
    """The ``dmarc_evaluations`` row for one inbound message, or None when its DMARC record asks for no reports
    (or none applied: no record, a DNS or record error). ``refused``: rejected at DATA for its p=reject failure."""
    outcome = auth.dmarc
    if not outcome.record or outcome.result not in ("pass", "fail"):
        return None
    tags = mailauth.dmarc_tags(outcome.record)
    if not tags.get("rua"):
        return None
    author = outcome.from_domain
    dkim = any(s.result == "pass" and mailauth.aligned(s.domain, author, tags.get("adkim", "r")) for s in auth.dkim)
    spf_ok = auth.spf.result == "pass" and mailauth.aligned(auth.spf.domain, author, tags.get("aspf", "r"))
    if refused:
        disposition = "reject"
    elif outcome.result == "fail" and outcome.disposition != "none":
        disposition = "quarantine"  # filed into Junk (p=quarantine, or p=reject with [mailauth] dmarc_reject off)
    else:
        disposition = "none"
    results = {
        "dkim": [[s.domain, s.selector, s.result] for s in auth.dkim],
        "spf": [auth.spf.domain, "mfrom" if auth.spf.identity == "mailfrom" else "helo", auth.spf.result],
    }
    return (
        now,
        outcome.record_domain or author,
        author,
        source_ip,
        auth.spf.domain if auth.spf.identity == "mailfrom" else "",
        disposition,
        "pass" if dkim else "fail",
        "pass" if spf_ok else "fail",
        json.dumps(results),
        json.dumps({k: tags[k] for k in POLICY_TAGS if k in tags}),
    )


def insert(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """Record ``row`` (from :func:`evaluation`), inside the delivery's transaction: in its own savepoint, so that a
    failure is logged and never costs the message."""
    with db.on_the_side(conn, log, "reports: recording a DMARC evaluation failed"):
        conn.execute(
            "INSERT INTO dmarc_evaluations (received, policy_domain, header_from, source_ip, envelope_from,"
            " disposition, dkim, spf, auth_results, policy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )


@dataclass
class Pending:
    """A policy domain's evaluations not yet reported, summed up as the report's rows."""

    domain: str
    policy: dict[str, str]
    begin: float
    end: float
    last_id: int
    rows: list[tuple[Any, ...]]  # source_ip, disposition, dkim, spf, header_from, envelope_from, auth_results, count
    hosted: bool = False


def collect(conn: sqlite3.Connection) -> list[Pending]:
    """Every policy domain's pending evaluations."""
    found = []
    domains = conn.execute(
        "SELECT policy_domain, min(received), max(received), max(id) FROM dmarc_evaluations GROUP BY policy_domain"
    ).fetchall()
    for domain, begin, end, last_id in domains:
        (policy,) = conn.execute(
            "SELECT policy FROM dmarc_evaluations WHERE policy_domain = ? ORDER BY id DESC LIMIT 1", (domain,)
        ).fetchone()
        rows = conn.execute(
            "SELECT source_ip, disposition, dkim, spf, header_from, envelope_from, auth_results, count(*)"
            " FROM dmarc_evaluations WHERE policy_domain = ? AND id <= ? GROUP BY 1, 2, 3, 4, 5, 6, 7"
            " ORDER BY count(*) DESC LIMIT ?",
            (domain, last_id, MAX_ROWS),
        ).fetchall()
        found.append(
            Pending(
                domain, json.loads(policy), begin, end, last_id, [tuple(r) for r in rows], intake.hosted(conn, domain)
            )
        )
    return found


def _element(name: str, value: object) -> str:
    return f"<{name}>{escape(safexml.characters(str(value)))}</{name}>"  # a DKIM selector is the sender's text


def report_xml(pending: Pending, *, org_name: str, contact: str, report_id: str, begin: int, end: int) -> bytes:
    """The aggregate report (RFC 7489 Appendix C) for ``pending``."""
    policy = pending.policy
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<feedback>", "<version>1.0</version>", "<report_metadata>"]
    out += [_element("org_name", org_name), _element("email", contact), _element("report_id", report_id)]
    out += ["<date_range>", _element("begin", begin), _element("end", end), "</date_range>", "</report_metadata>"]
    out += ["<policy_published>", _element("domain", pending.domain)]
    out += [_element("adkim", policy.get("adkim", "r")), _element("aspf", policy.get("aspf", "r"))]
    out += [_element("p", policy.get("p", "none")), _element("sp", policy.get("sp", policy.get("p", "none")))]
    out += [_element("pct", policy.get("pct", "100")), _element("fo", policy.get("fo", "0")), "</policy_published>"]
    for source_ip, disposition, dkim, spf, header_from, envelope_from, results, count in pending.rows:
        out += ["<record>", "<row>", _element("source_ip", source_ip), _element("count", count)]
        out += ["<policy_evaluated>", _element("disposition", disposition), _element("dkim", dkim)]
        out += [_element("spf", spf), "</policy_evaluated>", "</row>", "<identifiers>"]
        # envelope_from is required (minOccurs="1"), empty for a null sender
        out += [_element("envelope_from", envelope_from), _element("header_from", header_from), "</identifiers>"]
        out.append("<auth_results>")
        auth = json.loads(results)
        for domain, selector, result in auth["dkim"]:
            out += ["<dkim>", _element("domain", domain), _element("selector", selector)]
            out += [_element("result", result), "</dkim>"]
        domain, scope, result = auth["spf"]
        out += ["<spf>", _element("domain", domain), _element("scope", scope), _element("result", result), "</spf>"]
        out += ["</auth_results>", "</record>"]
    out.append("</feedback>")
    return ("\n".join(out) + "\n").encode()


async def accepts(resolver: dns.asyncresolver.Resolver, domain: str, address: str) -> bool:
    """RFC 7489 §7.1: ``address`` may get ``domain``'s reports — in the same organisational domain, or its host
    publishes ``<domain>._report._dmarc.<host>`` TXT ``v=DMARC1``. DNS trouble counts as no (not this time)."""
    host = address.rpartition("@")[2]
    if mailauth.organizational_domain(host) == mailauth.organizational_domain(domain):
        return True
    try:
        records = await lookup(resolver, f"{domain}._report._dmarc.{host}", "TXT")
    except DnsTemporaryError as exc:
        log.info("reports: cannot verify %s for %s's reports: %s", address, domain, exc)
        return False
    texts = [b"".join(getattr(r, "strings", ())).decode("utf-8", "replace") for r in records]
    return any(t.replace(" ", "").lower().startswith("v=dmarc1") for t in texts)


def compose(
    pending: Pending, config: Config, compressed: bytes, recipients: list[str], report_id: str, begin: int, end: int
) -> bytes:
    """The report mail of RFC 7489 §7.2.1.1: a short text and the gzipped XML, named as that section says (the
    Submitter and the file name's receiver are our domain name, whatever ``org_name`` says; its unique-id digits)."""
    submitter = config.server.hostname.rstrip(".")
    msg = sending.message(config, pending.domain, submitter, recipients, report_id, end)
    msg["Message-ID"] = f"<dmarc-{report_id}@{config.server.hostname}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"This is a DMARC aggregate report from {submitter} for {pending.domain}, covering "
        f"{sending.period(begin, end)}.\n"
    )
    name = f"{submitter}!{pending.domain}!{begin}!{end}!{pending.last_id}.xml.gz"
    msg.add_attachment(compressed, maintype="application", subtype="gzip", filename=name)
    return msg.as_bytes(policy=email.policy.SMTP)


async def prepare(
    batches: list[Pending], config: Config, resolver: dns.asyncresolver.Resolver, keyring: KeyRing | None, now: float
) -> list[Outgoing]:
    """The report mails for ``batches``: verified destinations within their size limits, DKIM-signed."""
    out = []
    org_name = config.dmarc.org_name or config.server.hostname
    for pending in batches:
        if pending.hosted:
            continue
        begin, end = int(pending.begin), int(now)
        report_id = f"{end}.{pending.last_id}.{pending.domain}"
        report = report_xml(
            pending, org_name=org_name, contact=config.dmarc.reporter, report_id=report_id, begin=begin, end=end
        )
        compressed = gzip.compress(report, mtime=0)
        size = len(compressed) * 4 // 3 + 2048  # in base64, with the message around it
        recipients = []
        for target in destinations(pending.policy.get("rua", "")):
            if target.limit and size > target.limit:
                log.info("reports: %s's report of %d bytes is over %s's limit", pending.domain, size, target.address)
            elif await accepts(resolver, pending.domain, target.address):
                recipients.append(target.address)
            else:
                log.info("reports: %s does not take %s's reports (RFC 7489 §7.1)", target.address, pending.domain)
        if not recipients:
            continue
        raw = await sending.sign(
            compose(pending, config, compressed, recipients, report_id, begin, end), config, keyring
        )
        out.append(Outgoing(pending.domain, raw, recipients, report_id))
    return out


def commit(
    conn: sqlite3.Connection, batches: list[Pending], outgoing: list[Outgoing], config: Config, now: float
) -> None:
    """Queue the reports and delete the evaluations they cover (and those no report could go to)."""
    for mail in outgoing:
        sending.enqueue(conn, config, mail.raw, mail.recipients, f"dmarc-{mail.report_id}", now)
        log.info("reports: DMARC report for %s queued to %s", mail.domain, ", ".join(mail.recipients))
    for pending in batches:
        conn.execute(
            "DELETE FROM dmarc_evaluations WHERE policy_domain = ? AND id <= ?", (pending.domain, pending.last_id)
        )
    expire(conn, now)


async def send(
    read: sending.Reader,
    write: sending.Writer,
    config: Config,
    resolver: dns.asyncresolver.Resolver,
    keyring: KeyRing | None,
    now: float | None = None,
) -> list[Outgoing]:
    """One run over the pending evaluations (:func:`.sending.run`)."""
    return await sending.run(read, write, collect, prepare, commit, config, resolver, keyring, now)


def expire(conn: sqlite3.Connection, now: float) -> int:
    """Drop the evaluations older than ``KEEP_DAYS`` that no report took: also run by the daily retention purge, so
    what was recorded before ``send_reports`` was switched off does not stay for ever."""
    cursor = conn.execute("DELETE FROM dmarc_evaluations WHERE received < ?", (now - KEEP_DAYS * daily.DAY,))
    return int(cursor.rowcount)
