"""Parsing an SMTP TLS report (RFC 8460 §4): a JSON document about TLS sessions to our MX hosts.

Invariant: :func:`parse` returns a :class:`TlsReport` or raises :class:`ReportError` with a short reason; values are
type-checked and cut to :data:`MAX_TEXT` characters, lists to :data:`MAX_POLICIES` policies and :data:`MAX_DETAILS`
failure details each, so a hostile report stores little.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from .dmarc import ReportError, visible

MAX_JSON = 1_000_000
"""Largest JSON document read (it is parsed whole); real reports are a few kilobytes."""
MAX_TEXT = 512
MAX_POLICIES = 100
MAX_DETAILS = 50


@dataclass
class FailureDetail:
    result_type: str
    count: int
    sending_mta_ip: str = ""
    receiving_mx_hostname: str = ""
    receiving_ip: str = ""
    additional: str = ""  # additional-information and failure-reason-code


@dataclass
class Policy:
    policy_type: str  # sts, tlsa or no-policy-found
    domain: str
    successes: int
    failures: int
    mx_hosts: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    details: list[FailureDetail] = field(default_factory=list)


@dataclass
class TlsReport:
    org: str
    report_id: str
    begin: int
    end: int
    contact: str = ""
    policies: list[Policy] = field(default_factory=list)


def _text(value: Any, name: str, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ReportError(f"{name} is not a string")
    return visible(value)


def _count(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise ReportError(f"{name} is not a count")
    return value


def _texts(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReportError(f"{name} is not a list")
    return [_text(item, name) for item in value[:20]]


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportError(f"{name} is not an object")
    return value


def _datetime(value: Any, name: str) -> int:
    """RFC 3339 date-time (RFC 8460 §4.4 uses ``2016-04-01T00:00:00Z``); fractions and offsets are accepted."""
    text = _text(value, name, required=True)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ReportError(f"{name} is not a date-time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return calendar.timegm(moment.utctimetuple())
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past the last year datetime has
        raise ReportError(f"{name} is not a date-time: {text[:40]!r}") from None


def _detail(value: Any) -> FailureDetail:
    item = _object(value, "failure-details")
    extra = [_text(item.get("additional-information"), "additional-information")]
    extra.append(_text(item.get("failure-reason-code"), "failure-reason-code"))
    return FailureDetail(
        result_type=_text(item.get("result-type"), "result-type", required=True).lower(),
        count=_count(item.get("failed-session-count"), "failed-session-count"),
        sending_mta_ip=_text(item.get("sending-mta-ip"), "sending-mta-ip"),
        receiving_mx_hostname=_text(item.get("receiving-mx-hostname"), "receiving-mx-hostname").lower().rstrip("."),
        receiving_ip=_text(item.get("receiving-ip"), "receiving-ip"),
        additional=" ".join(e for e in extra if e)[:MAX_TEXT],
    )


def _policy(value: Any) -> Policy:
    entry = _object(value, "policies")
    policy = _object(entry.get("policy"), "policy")
    summary = _object(entry.get("summary", {}), "summary")
    details = entry.get("failure-details")
    details = [] if details is None else details
    if not isinstance(details, list):
        raise ReportError("failure-details is not a list")
    domain = _text(policy.get("policy-domain"), "policy-domain", required=True).lower().rstrip(".")
    return Policy(
        policy_type=_text(policy.get("policy-type"), "policy-type", required=True).lower(),
        domain=domain,
        successes=_count(summary.get("total-successful-session-count"), "total-successful-session-count"),
        failures=_count(summary.get("total-failure-session-count"), "total-failure-session-count"),
        mx_hosts=_texts(policy.get("mx-host"), "mx-host"),
        strings=_texts(policy.get("policy-string"), "policy-string"),
        details=[_detail(item) for item in details[:MAX_DETAILS]],
    )


def parse(data: bytes) -> TlsReport:
    """The report in ``data`` (the uncompressed JSON document); ReportError when it is not a usable one."""
    if len(data) > MAX_JSON:
        raise ReportError(f"larger than {MAX_JSON} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ReportError(f"not JSON: {str(exc)[:80]}") from None
    root = _object(document, "the report")
    dates = _object(root.get("date-range"), "date-range")
    policies = root.get("policies")
    if not isinstance(policies, list) or not policies:
        raise ReportError("no policies")
    report = TlsReport(
        org=_text(root.get("organization-name"), "organization-name", required=True),
        report_id=_text(root.get("report-id"), "report-id", required=True),
        begin=_datetime(dates.get("start-datetime"), "start-datetime"),
        end=_datetime(dates.get("end-datetime"), "end-datetime"),
        contact=_text(root.get("contact-info"), "contact-info"),
        policies=[_policy(item) for item in policies[:MAX_POLICIES]],
    )
    if report.end < report.begin:
        raise ReportError("date-range ends before it begins")
    return report
