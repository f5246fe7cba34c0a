"""Sending SMTP TLS reports (RFC 8460): the sessions recorded per delivery attempt, the §4.4 JSON built from them,
the §5.3 mail, the _smtp._tls record, and our own TLS-RPT reader reading it back."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import json
import sqlite3
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relentad import config
from relentad.authreports import intake, tlsreports, tlsrpt
from relentad.queue import deliver, mtasts, tlsresults
from tests.support.store import database_with

POLICY_TEXT = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmx: *.mx.example.org\r\nmax_age: 86400\r\n"
POLICY = mtasts.Policy("example.org", "one", "enforce", ("mx.example.org", "*.mx.example.org"), 86400, POLICY_TEXT, 0.0)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = database_with(tmp_path / "db", "postmaster@hosted.test")
    yield connection
    connection.close()


def settings(**tlsrpt: Any) -> config.Config:
    return config.from_dict(
        {
            "server": {"hostname": "mx.hosted.test"},
            "dmarc": {"reporter": "reports@hosted.test", "org_name": "Hosted Org"},
            "tlsrpt": {"send_reports": True, **tlsrpt},
        }
    )


class TxtDNS:
    """Answers TXT lookups from a dict (name -> texts); NXDOMAIN for anything else."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.asked: list[str] = []

    async def resolve(self, name: str, rdtype: str, **kwargs: object) -> object:
        import dns.resolver

        self.asked.append(str(name))
        texts = self.records.get(str(name).rstrip("."))
        if texts is None:
            raise dns.resolver.NXDOMAIN

        class Record:
            def __init__(self, text: str) -> None:
                self.strings = [text.encode()]

        return [Record(t) for t in texts]


def cert_error(code: int) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_code = code
    exc.verify_message = "x"
    return exc


def test_certificate_failures_map_to_rfc_8460_result_types() -> None:
    assert deliver.verify_result(cert_error(10)) == "certificate-expired"
    assert deliver.verify_result(cert_error(62)) == "certificate-host-mismatch"
    assert deliver.verify_result(cert_error(20)) == "certificate-not-trusted"
    assert deliver.verify_result(cert_error(18)) == "certificate-not-trusted"
    assert deliver.verify_result(cert_error(7)) == "validation-failure"  # bad signature: none of the above


def test_failed_policy_discovery_is_a_session_of_its_own() -> None:
    def found(how: str, detail: str = "", policy: mtasts.Policy | None = None) -> deliver.TlsSession | None:
        return tlsresults.discovery_failure(mtasts.Found(policy, how, detail))

    fetch = found("fetch_failed", "mta-sts.example.org: HTTP status 500")
    assert fetch is not None and fetch.result == "sts-policy-fetch-error"
    webpki = found("fetch_failed", "mta-sts.example.org[192.0.2.1]: TLS: [SSL: CERTIFICATE_VERIFY_FAILED] ...")
    assert webpki is not None and webpki.result == "sts-webpki-invalid"
    invalid = found("invalid_policy", "no mx")
    assert invalid is not None and invalid.result == "sts-policy-invalid"
    assert found("no_txt") is None and found("dns_failed") is None and found("fetch_paused") is None
    assert found("fetch_failed_cached", "x", POLICY) is None  # the cached policy applied: its sessions count


def record(conn: sqlite3.Connection, domain: str, sessions: list[deliver.TlsSession], at: float) -> None:
    with conn:
        tlsresults.insert(conn, domain, sessions, at)


def sample(conn: sqlite3.Connection, now: float) -> None:
    ok = deliver.TlsSession("success", POLICY, "mx.example.org", "192.0.2.10", "198.51.100.1")
    bad = deliver.TlsSession(
        "certificate-host-mismatch", POLICY, "b.mx.example.org", "192.0.2.11", "198.51.100.1", "Hostname mismatch"
    )
    record(conn, "example.org", [ok, ok, bad], now - 3600)
    record(conn, "example.org", [ok, bad, deliver.TlsSession("sts-policy-fetch-error", None, detail="HTTP 500")], now)
    plain = deliver.TlsSession("starttls-not-supported", None, "mx.plain.test", "192.0.2.20", "198.51.100.1")
    record(conn, "plain.test", [plain, deliver.TlsSession("success", None, "mx.plain.test", "192.0.2.20")], now)
    record(conn, "hosted.test", [ok], now)  # our own MX: never reported


def test_sessions_become_one_rfc_8460_report_per_domain_read_back_by_our_reader(conn: sqlite3.Connection) -> None:
    now = time.time()
    sample(conn, now)
    dns = TxtDNS(
        {
            "_smtp._tls.example.org": ["v=TLSRPTv1; rua=mailto:tls@example.org,https://rpt.example.org/v1"],
            "_smtp._tls.plain.test": ["v=spf1 -all", "v=TLSRPTv1;rua=mailto:a@plain.test, mailto:b@reports.test"],
            "_smtp._tls.hosted.test": ["v=TLSRPTv1; rua=mailto:me@hosted.test"],
        }
    )

    def write(fn: Any) -> Any:
        with conn:
            return fn(conn)

    sent = asyncio.run(tlsreports.send(lambda fn: fn(conn), write, settings(), dns, None, now=now))  # type: ignore[arg-type]
    assert sorted((m.domain, m.recipients) for m in sent) == [
        ("example.org", ["tls@example.org"]),  # the https: destination is not used
        ("plain.test", ["a@plain.test", "b@reports.test"]),  # no consent asked of another domain (RFC 8460)
    ]
    assert "_smtp._tls.hosted.test" not in dns.asked
    assert conn.execute("SELECT count(*) FROM tlsrpt_results").fetchone()[0] == 0
    queued = {
        tid: (mail_from, bytes(data))
        for tid, mail_from, data in conn.execute("SELECT transaction_id, mail_from, data FROM queue_messages")
    }
    assert all(t.startswith(tlsresults.TLS_REPORT_PREFIX) for t in queued)
    raw = next(data for mail_from, data in queued.values() if b"TLS-Report-Domain: example.org" in data)
    assert next(iter(queued.values()))[0] == "reports@hosted.test"

    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Submitter"] == "hosted.test"  # a domain name (§5.3), the reporter's
    assert msg["Subject"].startswith("Report Domain: example.org Submitter: hosted.test Report-ID: <")
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    assert attachment.get_filename().startswith("hosted.test!example.org!")
    assert attachment.get_filename().endswith(".json.gz")

    document = json.loads(gzip.decompress(attachment.get_content()))
    assert set(document) == {"organization-name", "date-range", "contact-info", "report-id", "policies"}
    assert document["contact-info"] == "reports@hosted.test"
    assert document["date-range"]["start-datetime"].endswith("Z")
    sts = next(p for p in document["policies"] if "policy-string" in p["policy"])
    assert sts["policy"] == {
        "policy-type": "sts",
        "policy-string": [
            "version: STSv1",
            "mode: enforce",
            "mx: mx.example.org",
            "mx: *.mx.example.org",
            "max_age: 86400",
        ],
        "policy-domain": "example.org",
        "mx-host": ["mx.example.org", "*.mx.example.org"],
    }
    assert sts["summary"] == {"total-successful-session-count": 3, "total-failure-session-count": 2}
    assert sts["failure-details"] == [
        {
            "result-type": "certificate-host-mismatch",
            "sending-mta-ip": "198.51.100.1",
            "receiving-mx-hostname": "b.mx.example.org",
            "receiving-ip": "192.0.2.11",
            "failed-session-count": 2,
            "failure-reason-code": "Hostname mismatch",
        }
    ]

    letter, found = intake.read(raw, 1_000_000)  # our own receiving side reads what we send
    assert letter.tls and letter.subject_domain == "example.org"
    [item] = found
    report = item.report
    assert item.kind == "tls" and isinstance(report, tlsrpt.TlsReport), item.error
    assert (report.org, report.contact) == ("Hosted Org", "reports@hosted.test")
    assert report.end - report.begin == 3600
    by_kind = {(p.policy_type, p.successes, p.failures) for p in report.policies}
    assert by_kind == {("sts", 3, 2), ("sts", 0, 1)}
    fetch = next(p for p in report.policies if not p.strings)
    assert [(d.result_type, d.count) for d in fetch.details] == [("sts-policy-fetch-error", 1)]

    plain_raw = next(data for _, data in queued.values() if b"TLS-Report-Domain: plain.test" in data)
    [plain] = intake.read(plain_raw, 1_000_000)[1]
    [policy] = plain.report.policies
    assert (policy.policy_type, policy.successes, policy.failures, policy.mx_hosts) == ("no-policy-found", 1, 1, [])
    assert [(d.result_type, d.receiving_mx_hostname) for d in policy.details] == [
        ("starttls-not-supported", "mx.plain.test")
    ]


@pytest.mark.parametrize(
    ("records", "rua"),
    [
        (["v=TLSRPTv1; rua=mailto:a@x.test"], "mailto:a@x.test"),
        (["v=TLSRPTv1;rua=mailto:a@x.test,https://r.x.test/"], "mailto:a@x.test,https://r.x.test/"),
        (["v=TLSRPTv1; rua=mailto:a@x.test", "v=TLSRPTv1; rua=mailto:b@x.test"], None),  # two: none (§3)
        (["v=spf1 -all"], None),
        (["v=TLSRPTv1"], None),
        (["v=TLSRPTv10; rua=mailto:a@x.test"], None),
    ],
)
def test_tlsrpt_record_is_parsed(records: list[str], rua: str | None) -> None:
    assert tlsreports.record_rua(records) == rua


def test_domains_without_a_record_are_dropped_and_old_rows_expire(conn: sqlite3.Connection) -> None:
    now = time.time()
    record(conn, "quiet.test", [deliver.TlsSession("success", None, "mx.quiet.test")], now)

    def write(fn: Any) -> Any:
        with conn:
            return fn(conn)

    sent = asyncio.run(tlsreports.send(lambda fn: fn(conn), write, settings(), TxtDNS({}), None, now=now))  # type: ignore[arg-type]
    assert sent == []
    assert conn.execute("SELECT count(*) FROM tlsrpt_results").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM queue_messages").fetchone()[0] == 0


def test_config_needs_a_reporter_for_tls_reports() -> None:
    with pytest.raises(config.ConfigError, match=r"\[dmarc\] reporter must be set when \[tlsrpt\] send_reports"):
        config.from_dict({"tlsrpt": {"send_reports": True}})
    assert config.from_dict({}).tlsrpt.send_reports is False


def test_a_failing_insert_costs_nothing_else(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TABLE tlsrpt_results")
    conn.execute("CREATE TABLE kept (x)")
    conn.execute("BEGIN")  # the attempt's transaction: its results, then the sessions
    conn.execute("INSERT INTO kept VALUES (1)")
    tlsresults.insert(conn, "example.org", [deliver.TlsSession("success", None, "mx.example.org")], 1.0)
    conn.execute("COMMIT")
    assert [tuple(r) for r in conn.execute("SELECT x FROM kept")] == [(1,)]
