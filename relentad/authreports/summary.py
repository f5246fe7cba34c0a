"""Reading recorded reports back, summed up for ``relentad reports dmarc|tls`` (and ``relentad doctor``).

The DMARC view answers an admin's two questions: is someone sending as us (sources failing DMARC), and does our own
mail fail somewhere (a source of ours failing SPF or DKIM alignment). Per domain: totals, then one line per source
IP with the reporters that saw it. A report counts when the period it covers ends within the last ``days`` days.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

DAY = 86_400


def _iso(moment: float | None) -> str | None:
    """As the CLI's other JSON: ISO 8601 in UTC, to the second."""
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


@dataclass
class Source:
    source_ip: str
    messages: int = 0
    passed: int = 0
    failed: int = 0
    spf_unaligned: int = 0  # policy_evaluated spf was not pass
    dkim_unaligned: int = 0
    dispositions: Counter[str] = field(default_factory=Counter)
    reporters: set[str] = field(default_factory=set)
    header_from: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["dispositions"] = dict(sorted(self.dispositions.items()))
        data["reporters"] = sorted(self.reporters)
        data["header_from"] = sorted(self.header_from)
        return data


@dataclass
class Unread:
    kind: str
    org: str
    received: float
    error: str

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "org": self.org, "received": _iso(self.received), "error": self.error}


@dataclass
class Summary:
    """What a domain's summary holds for either kind: its reports, their reporters, the period, the unread ones."""

    domain: str
    reports: int = 0
    reporters: Counter[str] = field(default_factory=Counter)  # messages (DMARC) or sessions (TLS) per reporter
    unread: list[Unread] = field(default_factory=list)
    begin: float | None = None
    end: float | None = None

    def cover(self, begin: float, end: float) -> None:
        """Widen the period to take in a report's."""
        self.begin = begin if self.begin is None else min(self.begin, begin)
        self.end = end if self.end is None else max(self.end, end)


S = TypeVar("S", bound=Summary)


@dataclass
class DmarcSummary(Summary):
    messages: int = 0
    passed: int = 0
    failed: int = 0
    sources: dict[str, Source] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "reports": self.reports,
            "messages": self.messages,
            "passed": self.passed,
            "failed": self.failed,
            "begin": _iso(self.begin),
            "end": _iso(self.end),
            "reporters": dict(self.reporters.most_common()),
            "sources": [s.as_json() for s in self.ordered_sources()],
            "unread": [u.as_json() for u in self.unread],
        }

    def ordered_sources(self) -> list[Source]:
        """Failing sources first (what an admin looks for), then by messages."""
        return sorted(self.sources.values(), key=lambda s: (-s.failed, -s.messages, s.source_ip))


def _domain_filter(domain: str | None) -> tuple[str, list[object]]:
    if not domain:
        return "", []
    return " AND (r.domain = ? OR r.domain LIKE ?)", [domain, f"%.{domain}"]


def _with_unread(
    conn: sqlite3.Connection, kind: str, since: float, domain: str | None, summaries: dict[str, S], make: type[S]
) -> list[S]:
    """``summaries`` by domain name, each with the reports of its kind that could not be read (a domain may have
    only those)."""
    where, params = _domain_filter(domain)
    rows = conn.execute(
        "SELECT r.domain, r.org, r.received, r.error FROM reports r WHERE r.kind = ? AND r.error != ''"
        f" AND r.received >= ?{where} ORDER BY r.received DESC",
        [kind, since, *params],
    )
    for name, org, received, error in rows:
        summaries.setdefault(name, make(name)).unread.append(Unread(kind, org, received, error))
    return [summaries[name] for name in sorted(summaries)]


def dmarc(conn: sqlite3.Connection, *, since: float, domain: str | None = None) -> list[DmarcSummary]:
    """Per policy domain, the DMARC reports whose period ended at ``since`` or later."""
    where, params = _domain_filter(domain)
    summaries: dict[str, DmarcSummary] = {}
    reports = conn.execute(
        "SELECT r.id, r.domain, r.org, r.begin, r.end FROM reports r"
        f" WHERE r.kind = 'dmarc' AND r.error = '' AND r.end >= ?{where} ORDER BY r.domain, r.end",
        [since, *params],
    ).fetchall()
    for report_id, name, org, begin, end in reports:
        summary = summaries.setdefault(name, DmarcSummary(name))
        summary.reports += 1
        summary.cover(begin, end)
        summary.reporters[org] += 0
        for ip, count, disposition, dkim, spf, header_from in conn.execute(
            "SELECT source_ip, count, disposition, dkim, spf, header_from FROM dmarc_records WHERE report_id = ?",
            (report_id,),
        ):
            source = summary.sources.setdefault(ip, Source(ip))
            passed = dkim == "pass" or spf == "pass"
            for target in (summary, source):
                target.messages += count
                target.passed += count if passed else 0
                target.failed += 0 if passed else count
            summary.reporters[org] += count
            source.spf_unaligned += 0 if spf == "pass" else count
            source.dkim_unaligned += 0 if dkim == "pass" else count
            source.dispositions[disposition or "none"] += count
            source.reporters.add(org)
            if header_from:
                source.header_from.add(header_from)
    return _with_unread(conn, "dmarc", since, domain, summaries, DmarcSummary)


@dataclass
class Failure:
    result_type: str
    receiving_mx_hostname: str
    receiving_ip: str
    sessions: int = 0
    sending_ips: set[str] = field(default_factory=set)
    additional: str = ""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["sending_ips"] = sorted(self.sending_ips)
        return data


@dataclass
class TlsSummary(Summary):
    successes: int = 0
    failures: int = 0
    policy_types: Counter[str] = field(default_factory=Counter)  # sessions per policy type (sts, tlsa, no-policy-found)
    details: dict[tuple[str, str, str], Failure] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "reports": self.reports,
            "begin": _iso(self.begin),
            "end": _iso(self.end),
            "successes": self.successes,
            "failures": self.failures,
            "reporters": dict(self.reporters.most_common()),
            "policy_types": dict(self.policy_types.most_common()),
            "failure_details": [f.as_json() for f in self.ordered_failures()],
            "unread": [u.as_json() for u in self.unread],
        }

    def ordered_failures(self) -> list[Failure]:
        return sorted(self.details.values(), key=lambda f: (-f.sessions, f.result_type, f.receiving_mx_hostname))


def tls(conn: sqlite3.Connection, *, since: float, domain: str | None = None) -> list[TlsSummary]:
    """Per policy domain, the TLS reports whose period ended at ``since`` or later."""
    where, params = _domain_filter(domain)
    summaries: dict[str, TlsSummary] = {}
    reports: dict[str, set[int]] = {}
    rows = conn.execute(
        "SELECT r.id, r.org, r.begin, r.end, p.domain, p.policy_type, p.successes, p.failures, p.details"
        " FROM reports r"
        " JOIN tls_policies p ON p.report_id = r.id"
        f" WHERE r.kind = 'tls' AND r.error = '' AND r.end >= ?{where.replace('r.domain', 'p.domain')}"
        " ORDER BY p.domain, r.end",
        [since, *params],
    )
    for report_id, org, begin, end, name, policy_type, successes, failures, details in rows:
        summary = summaries.setdefault(name, TlsSummary(name))
        summary.cover(begin, end)
        reports.setdefault(name, set()).add(report_id)
        summary.successes += successes
        summary.failures += failures
        summary.reporters[org] += successes + failures
        summary.policy_types[policy_type] += successes + failures
        for detail in json.loads(details):
            key = (detail["result_type"], detail["receiving_mx_hostname"], detail["receiving_ip"])
            failure = summary.details.setdefault(key, Failure(*key))
            failure.sessions += int(detail["count"])
            if detail["sending_mta_ip"]:
                failure.sending_ips.add(detail["sending_mta_ip"])
            failure.additional = failure.additional or detail["additional"]
    for name, ids in reports.items():
        summaries[name].reports = len(ids)
    return _with_unread(conn, "tls", since, domain, summaries, TlsSummary)


def _day(moment: float | None) -> str:
    return "?" if moment is None else time.strftime("%Y-%m-%d", time.gmtime(moment))


def _unread_lines(unread: list[Unread]) -> list[str]:
    if not unread:
        return []
    latest = unread[0]
    return [
        f"  {len(unread)} report(s) could not be read; the latest, from {latest.org or '?'} on "
        f"{_day(latest.received)}: {latest.error}"
    ]


def dmarc_text(summaries: list[DmarcSummary], days: int) -> list[str]:
    """The text of ``relentad reports dmarc``: per domain its totals, then a line per source IP."""
    if not summaries:
        return [f"no DMARC reports in the last {days} day(s)"]
    lines: list[str] = []
    for s in summaries:
        reporters = ", ".join(s.reporters) or "-"
        lines.append(
            f"{s.domain}: {s.messages} message(s) in {s.reports} report(s) from {reporters}, "
            f"{_day(s.begin)} to {_day(s.end)}; DMARC pass {s.passed}, fail {s.failed}"
        )
        if s.sources:
            lines.append(
                f"  {'source IP':<39} {'messages':>8} {'pass':>7} {'fail':>7} {'no SPF':>8} {'no DKIM':>8}  "
                "disposition, reporters"
            )
        for src in s.ordered_sources():
            dispositions = " ".join(f"{k} {v}" for k, v in sorted(src.dispositions.items()))
            lines.append(
                f"  {src.source_ip:<39} {src.messages:>8} {src.passed:>7} {src.failed:>7} {src.spf_unaligned:>8} "
                f"{src.dkim_unaligned:>8}  {dispositions}; {', '.join(sorted(src.reporters))}"
            )
        lines += _unread_lines(s.unread)
    return lines


def tls_text(summaries: list[TlsSummary], days: int) -> list[str]:
    """The text of ``relentad reports tls``: per domain its session counts, then the failures by kind and host."""
    if not summaries:
        return [f"no TLS reports in the last {days} day(s)"]
    lines: list[str] = []
    for s in summaries:
        reporters = ", ".join(s.reporters) or "-"
        policies = ", ".join(f"{k} {v}" for k, v in s.policy_types.most_common()) or "-"
        lines.append(
            f"{s.domain}: {s.successes} TLS session(s) succeeded, {s.failures} failed, in {s.reports} report(s) "
            f"from {reporters}, {_day(s.begin)} to {_day(s.end)} (policy: {policies})"
        )
        for f in s.ordered_failures():
            where = " ".join(x for x in (f.receiving_mx_hostname, f.receiving_ip and f"[{f.receiving_ip}]") if x)
            senders = ", ".join(sorted(f.sending_ips)[:5])
            extra = f"; {f.additional}" if f.additional else ""
            lines.append(f"  {f.sessions:>8} {f.result_type} at {where or '?'} (from {senders or '?'}){extra}")
        lines += _unread_lines(s.unread)
    return lines
