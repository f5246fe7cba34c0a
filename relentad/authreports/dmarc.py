"""Parsing a DMARC aggregate report (RFC 7489 §7.2 and the XML schema of its Appendix C).

The XML is read by expat in one streaming pass that keeps only the fields recorded: no tree of the document is
built, so memory stays bounded by :data:`MAX_RECORDS` whatever the file's size. A document type declaration is
refused outright — a report has no use for one, and refusing it rules out entity expansion ("billion laughs") and
external entities. Element names are read without their namespace prefix, so DMARCbis reports
(``urn:ietf:params:xml:ns:dmarc-2.0``) read alike.

Invariant: :func:`parse` returns a :class:`DmarcReport` or raises :class:`ReportError` with a short reason.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from xml.parsers import expat

MAX_RECORDS = 10_000
"""Records kept from one report; the rest are counted in ``DmarcReport.dropped`` (real reports have far fewer)."""
MAX_TEXT = 512
"""Characters kept of one element's text (org names, domains, comments)."""
MAX_AUTH_RESULTS = 10
"""DKIM or SPF results kept per record."""
MAX_DEPTH = 16
"""Element nesting allowed (a report needs 6): deeper is not a report, and the stack of names would grow with it."""


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def visible(text: str) -> str:
    """A report's text as kept: control characters (line breaks, terminal escapes a forged report could aim at
    the admin's terminal through ``relentad reports``) become one space each run; trimmed, cut at MAX_TEXT."""
    return _CONTROLS.sub(" ", text).strip()[:MAX_TEXT]


class ReportError(Exception):
    """The report cannot be read; the message says why, in a few words."""


@dataclass
class AuthResult:
    """One ``auth_results`` entry: the raw DKIM or SPF result for a domain (before alignment)."""

    domain: str = ""
    result: str = ""
    selector: str = ""  # DKIM
    scope: str = ""  # SPF: mfrom or helo


@dataclass
class Record:
    """One ``record``: messages from one source IP with the same identifiers and results."""

    source_ip: str = ""
    count: int = 0
    disposition: str = ""
    dkim: str = ""  # policy_evaluated: the DMARC-aligned DKIM result, pass or fail
    spf: str = ""  # policy_evaluated: the DMARC-aligned SPF result
    reasons: list[str] = field(default_factory=list)  # policy override reasons: forwarded, local_policy, ...
    header_from: str = ""
    envelope_from: str = ""
    envelope_to: str = ""
    dkim_results: list[AuthResult] = field(default_factory=list)
    spf_results: list[AuthResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """DMARC passed: aligned DKIM or aligned SPF passed (RFC 7489 §4.2)."""
        return self.dkim == "pass" or self.spf == "pass"


@dataclass
class DmarcReport:
    org: str = ""
    email: str = ""
    report_id: str = ""
    begin: int = 0
    end: int = 0
    domain: str = ""  # policy_published: the domain the report is about
    policy: dict[str, str] = field(default_factory=dict)  # policy_published: adkim, aspf, p, sp, pct, np, fo
    records: list[Record] = field(default_factory=list)
    dropped: int = 0  # records past MAX_RECORDS
    errors: list[str] = field(default_factory=list)  # report_metadata/error: what the reporter could not do


class _Forbidden(Exception):
    pass


_POLICY_FIELDS = frozenset({"adkim", "aspf", "p", "sp", "pct", "np", "fo", "testing", "discovery_method"})


class _Reader:
    """The expat handlers: a stack of element names, the text of the innermost one, the record being read."""

    def __init__(self) -> None:
        self.report = DmarcReport()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.size = 0
        self.record: Record | None = None
        self.auth: AuthResult | None = None
        self.reason: str = ""

    def start(self, name: str, _attrs: dict[str, str]) -> None:
        name = name.rpartition(":")[2]
        if len(self.stack) >= MAX_DEPTH:
            raise ReportError(f"elements nested deeper than {MAX_DEPTH}")
        self.stack.append(name)
        self.text, self.size = [], 0
        path = tuple(self.stack)
        if path == ("feedback", "record"):
            self.record = Record()
        elif self.record is not None and path[-2:] in (("auth_results", "dkim"), ("auth_results", "spf")):
            self.auth = AuthResult()

    def chars(self, data: str) -> None:
        if self.size < MAX_TEXT:
            self.text.append(data)
            self.size += len(data)

    def end(self, _name: str) -> None:
        path = tuple(self.stack)
        value = visible("".join(self.text))
        self.text, self.size = [], 0
        self.stack.pop()
        if len(path) < 2 or path[0] != "feedback":
            return
        if path[1] == "record" and self.record is not None:
            self._record_field(path[2:], value)
        elif path[1] == "report_metadata":
            self._metadata(path[2:], value)
        elif path[1] == "policy_published" and len(path) == 3:
            if path[2] == "domain":
                self.report.domain = value.lower().rstrip(".")
            elif path[2] in _POLICY_FIELDS:
                self.report.policy[path[2]] = value

    def _metadata(self, rest: tuple[str, ...], value: str) -> None:
        report = self.report
        if rest == ("org_name",):
            report.org = value
        elif rest == ("email",):
            report.email = value
        elif rest == ("report_id",):
            report.report_id = value
        elif rest == ("date_range", "begin"):
            report.begin = _timestamp(value)
        elif rest == ("date_range", "end"):
            report.end = _timestamp(value)
        elif rest == ("error",) and len(report.errors) < 10:
            report.errors.append(value)

    def _record_field(self, rest: tuple[str, ...], value: str) -> None:
        record = self.record
        assert record is not None
        if rest == ():
            self._finish_record(record)
        elif rest == ("row", "source_ip"):
            record.source_ip = _address(value)
        elif rest == ("row", "count"):
            record.count = _count(value)
        elif rest[:2] == ("row", "policy_evaluated"):
            self._evaluated(record, rest[2:], value)
        elif rest[:1] == ("identifiers",) and len(rest) == 2:
            if rest[1] in ("header_from", "envelope_from", "envelope_to"):
                setattr(record, rest[1], value.lower().rstrip("."))
        elif rest[:1] == ("auth_results",) and len(rest) >= 2 and self.auth is not None:
            self._auth(record, rest[1:], value)

    def _evaluated(self, record: Record, rest: tuple[str, ...], value: str) -> None:
        if rest in (("disposition",), ("dkim",), ("spf",)):
            setattr(record, rest[0], value.lower())
        elif rest == ("reason", "type"):
            self.reason = value.lower()
        elif rest == ("reason",) and self.reason and len(record.reasons) < 5:
            record.reasons.append(self.reason)
            self.reason = ""

    def _auth(self, record: Record, rest: tuple[str, ...], value: str) -> None:
        auth = self.auth
        assert auth is not None
        if len(rest) == 1:  # the dkim or spf element ends
            target = record.dkim_results if rest[0] == "dkim" else record.spf_results
            if len(target) < MAX_AUTH_RESULTS:
                target.append(auth)
            self.auth = None
        elif len(rest) == 2 and rest[1] in ("domain", "result", "selector", "scope"):
            setattr(auth, rest[1], value.lower().rstrip(".") if rest[1] != "selector" else value)

    def _finish_record(self, record: Record) -> None:
        self.record = None
        if not record.source_ip:
            raise ReportError("a record without a valid source_ip")
        if len(self.report.records) < MAX_RECORDS:
            self.report.records.append(record)
        else:
            self.report.dropped += 1


def _forbid(*_args: object) -> None:
    raise _Forbidden


_LAST_SECOND = 253_402_300_799
"""9999-12-31T23:59:59Z, the last moment :mod:`datetime` (so the summaries) can show."""


def _digits(value: str) -> bool:
    """Decimal ASCII digits: ``str.isdigit`` also takes "²", which ``int`` refuses."""
    return value.isascii() and value.isdigit()


def _timestamp(value: str) -> int:
    if not _digits(value) or len(value) > 12 or int(value) > _LAST_SECOND:
        raise ReportError(f"date_range is not seconds since the epoch: {value[:40]!r}")
    return int(value)


def _count(value: str) -> int:
    if not _digits(value) or len(value) > 12:
        raise ReportError(f"count is not a number: {value[:40]!r}")
    return int(value)


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ReportError(f"source_ip is not an IP address: {value[:60]!r}") from None


def parse(data: bytes) -> DmarcReport:
    """The report in ``data`` (the uncompressed XML document); ReportError when it is not a usable one."""
    reader = _Reader()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _forbid
    parser.EntityDeclHandler = _forbid
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.chars
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except _Forbidden:
        raise ReportError("a document type declaration (refused: reports have none)") from None
    except expat.ExpatError as exc:
        raise ReportError(f"not well-formed XML: {expat.ErrorString(exc.code)} at line {exc.lineno}") from None
    except (LookupError, ValueError) as exc:  # encoding="x-unknown" in the XML declaration
        raise ReportError(f"not readable XML: {str(exc)[:80]}") from None
    report = reader.report
    if not report.org or not report.report_id:
        raise ReportError("not a DMARC aggregate report (no org_name or report_id)")
    if not report.domain:
        raise ReportError("no policy_published domain")
    if report.end < report.begin:
        raise ReportError("date_range ends before it begins")
    return report
