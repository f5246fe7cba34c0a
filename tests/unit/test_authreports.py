"""DMARC aggregate and TLS-RPT reports: finding them in mail, bounded decompression, safe parsing, recording."""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad import config, mailauth, spf
from relentad.authreports import dmarc, intake, payload, summary, tlsrpt
from relentad.authreports.dmarc import ReportError
from relentad.lifecycle import retention
from tests.support import reports as samples
from tests.support.store import database_with

LIMIT = 1_000_000


def test_google_report_is_read() -> None:
    report = dmarc.parse(samples.google_xml("example.test"))
    assert (report.org, report.email, report.report_id) == (
        "google.com",
        "noreply-dmarc-support@google.com",
        "10998877665544332211",
    )
    assert report.domain == "example.test"
    assert report.end - report.begin == samples.DAY - 1
    assert report.policy == {"adkim": "r", "aspf": "r", "p": "reject", "sp": "reject", "pct": "100", "np": "reject"}
    good, bad = report.records
    assert (good.source_ip, good.count, good.disposition, good.dkim, good.spf, good.passed) == (
        "203.0.113.25",
        12,
        "none",
        "pass",
        "pass",
        True,
    )
    assert [(a.domain, a.selector, a.result) for a in good.dkim_results] == [("example.test", "s1", "pass")]
    assert (bad.source_ip, bad.count, bad.disposition, bad.passed, bad.header_from) == (
        "198.51.100.7",
        3,
        "reject",
        False,
        "example.test",
    )
    assert [(a.domain, a.result) for a in bad.spf_results] == [("spoofer.example", "softfail")]


def test_microsoft_report_is_read() -> None:
    report = dmarc.parse(samples.microsoft_xml("example.test"))
    assert report.org == "Enterprise Outlook"
    [record] = report.records
    assert (record.source_ip, record.reasons, record.envelope_to, record.envelope_from) == (
        "2001:db8::25",
        ["forwarded"],
        "outlook.com",
        "example.test",
    )
    assert record.passed and record.dkim == "fail"
    assert [(a.domain, a.scope, a.result) for a in record.spf_results] == [("example.test", "mfrom", "pass")]


def test_namespaced_dmarcbis_report_is_read() -> None:
    xml = samples.google_xml("example.test").decode()
    xml = xml.replace("<feedback>", '<d:feedback xmlns:d="urn:ietf:params:xml:ns:dmarc-2.0">')
    xml = (
        xml.replace("</feedback>", "</d:feedback>")
        .replace("<record>", "<d:record>")
        .replace("</record>", "</d:record>")
    )
    assert len(dmarc.parse(xml.encode()).records) == 2


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (  # billion laughs: entities are never expanded, a DTD is refused outright
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            b"<feedback><report_metadata><org_name>&lol2;</org_name></report_metadata></feedback>",
            "document type declaration",
        ),
        (  # an external entity (file disclosure) is refused the same way
            b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]><feedback>&x;</feedback>',
            "document type declaration",
        ),
        (b"<feedback><report_metadata>", "not well-formed"),
        (b"<feedback><unknown>&undefined;</unknown></feedback>", "not well-formed"),
        (b"<html><body>hello</body></html>", "not a DMARC aggregate report"),
        (b"<a>" * 100_000, "nested deeper than 16"),
    ],
)
def test_hostile_or_broken_xml_is_refused(document: bytes, reason: str) -> None:
    with pytest.raises(ReportError, match=reason):
        dmarc.parse(document)


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("<source_ip>203.0.113.25</source_ip>", "<source_ip>not-an-ip</source_ip>", "source_ip"),
        ("<count>12</count>", "<count>-12</count>", "count"),
        ("<count>12</count>", "<count>²</count>", "count"),  # str.isdigit, but no int
        ("<end>", "<end>99", "date_range"),  # year 33658: no datetime shows it (`reports dmarc --json` failed)
        ('encoding="UTF-8"', 'encoding="x-unknown"', "unknown encoding"),
        ("<domain>example.test</domain>\n    <adkim>", "<domain></domain>\n    <adkim>", "no policy_published domain"),
    ],
)
def test_report_with_bad_values_is_refused(old: str, new: str, reason: str) -> None:
    xml = samples.google_xml("example.test").decode().replace(old, new, 1)
    with pytest.raises(ReportError, match=reason):
        dmarc.parse(xml.encode())


def test_records_past_the_limit_are_counted_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dmarc, "MAX_RECORDS", 1)
    report = dmarc.parse(samples.google_xml("example.test"))
    assert (len(report.records), report.dropped) == (1, 1)


def test_tls_report_of_rfc_8460_is_read() -> None:
    report = tlsrpt.parse(json.dumps(samples.tls_report("example.test")).encode())
    assert (report.org, report.contact) == ("Company-X", "sts-reporting@company-x.example")
    [policy] = report.policies
    assert (policy.policy_type, policy.domain, policy.successes, policy.failures) == ("sts", "example.test", 5326, 303)
    assert policy.mx_hosts == ["*.mail.company-y.example"]
    assert [(d.result_type, d.count) for d in policy.details] == [
        ("certificate-expired", 100),
        ("starttls-not-supported", 200),
        ("validation-failure", 3),
    ]
    assert policy.details[2].additional == "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.pop("report-id"), "report-id"),
        (lambda r: r.update({"policies": []}), "no policies"),
        (lambda r: r["date-range"].update({"start-datetime": "yesterday"}), "not a date-time"),
        (lambda r: r["date-range"].update({"end-datetime": "9999-12-31T23:59:59-01:00"}), "not a date-time"),
        (lambda r: r["policies"][0]["summary"].update({"total-failure-session-count": "303"}), "not a count"),
        (lambda r: r["policies"][0].update({"failure-details": {}}), "not a list"),
    ],
)
def test_tls_report_with_bad_values_is_refused(change: object, reason: str) -> None:
    report = samples.tls_report("example.test")
    change(report)  # type: ignore[operator]
    with pytest.raises(ReportError, match=reason):
        tlsrpt.parse(json.dumps(report).encode())


def test_control_characters_of_a_report_are_not_kept() -> None:
    """A forged report's texts reach the admin's terminal through `relentad reports`: no escape sequence, no line
    break that would make a line of the listing look like another."""
    report = samples.tls_report("example.test")
    report["organization-name"] = "\x1b]0;owned\x07\x1b[2JCompany-X"
    report["policies"][0]["failure-details"][0]["additional-information"] = "a\r\nexample.test: all fine\x9b"  # type: ignore[index]
    tls = tlsrpt.parse(json.dumps(report).encode())
    assert tls.org == "]0;owned [2JCompany-X"
    assert tls.policies[0].details[0].additional.startswith("a example.test: all fine")
    xml = samples.google_xml("example.test").replace(b"<org_name>google.com", b"<org_name>google.com&#10;example.test")
    assert dmarc.parse(xml).org == "google.com example.test"


@pytest.mark.parametrize("document", [b"{", b"[1, 2]", b'{"a": ' * 100_000, "{\xff}".encode("latin-1")])
def test_tls_report_that_is_no_json_object_is_refused(document: bytes) -> None:
    with pytest.raises(ReportError):
        tlsrpt.parse(document)


# -- decompression ------------------------------------------------------------------------------------------


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * 30_000_000, compresslevel=9)  # 30 MB in about 30 KB
    assert len(bomb) < 100_000
    with pytest.raises(payload.PayloadError, match="larger than 1000000 bytes uncompressed"):
        payload.decompress(bomb, LIMIT)


def test_zip_bomb_stops_at_the_limit() -> None:
    bomb = samples.zipped(b"\0" * 30_000_000)
    with pytest.raises(payload.PayloadError, match="larger than 1000000 bytes uncompressed"):
        payload.decompress(bomb, LIMIT)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_zip_bomb_of_another_compression_method_is_refused_unread(method: int) -> None:
    """zipfile inflates bzip2 and LZMA entries a 4 KiB input chunk at a time with no output bound: 840 bytes of
    bzip2 made 1 GB in memory. Reporters use deflate; other methods are refused before anything is inflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr("report.xml", b"\0" * 20_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(payload.PayloadError, match="compression method"):
            payload.decompress(buffer.getvalue(), LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * LIMIT


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (gzip.compress(b"<feedback/>", mtime=0)[:-6], "truncated gzip"),
        (b"\x1f\x8b\x08\x00garbage-garbage", "bad gzip data"),
        (b"PK\x03\x04" + b"\0" * 40, "bad zip archive"),
    ],
)
def test_broken_archives_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(payload.PayloadError, match=reason):
        payload.decompress(data, LIMIT)


def test_gzip_with_several_members_is_read_whole() -> None:
    assert payload.decompress(gzip.compress(b"<a>") + gzip.compress(b"</a>"), LIMIT) == b"<a></a>"
    with pytest.raises(payload.PayloadError, match="more than 100 gzip members"):
        payload.decompress(gzip.compress(b"x") * 101, LIMIT)


def test_zip_with_many_files_is_refused_before_it_is_opened() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(101):
            archive.writestr(f"{i}.xml", b"<feedback/>")
    with pytest.raises(payload.PayloadError, match="more than 100 files"):
        payload.decompress(buffer.getvalue(), LIMIT)


def _understated_zip(files: int, *, zip64: bool) -> bytes:
    """A zip of ``files`` entries whose end record states one (and, with ``zip64``, a small directory too, with
    the true one in a ZIP64 end record, which zipfile reads instead): zipfile walks the whole directory anyway."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("report.xml", b"<feedback/>")
        for i in range(files - 1):
            archive.writestr(f"{i}", b"")
    data = buffer.getvalue()
    end = data.rfind(b"PK\x05\x06")
    size, offset = (
        int.from_bytes(data[end + 12 : end + 16], "little"),
        int.from_bytes(data[end + 16 : end + 20], "little"),
    )
    stated = (1).to_bytes(2, "little") * 2
    if not zip64:
        return data[: end + 8] + stated + data[end + 12 :]
    record = b"PK\x06\x06" + (44).to_bytes(8, "little") + b"\x2d\x00\x2d\x00" + bytes(8)
    record += (1).to_bytes(8, "little") * 2 + size.to_bytes(8, "little") + offset.to_bytes(8, "little")
    locator = b"PK\x06\x07" + bytes(4) + end.to_bytes(8, "little") + (1).to_bytes(4, "little")
    small = (46).to_bytes(4, "little")
    return data[:end] + record + locator + data[end : end + 8] + stated + small + data[end + 16 :]


@pytest.mark.parametrize("zip64", [False, True])
def test_zip_directory_larger_than_its_end_record_says_is_refused(zip64: bool) -> None:
    """The entry count of the end record is a claim: zipfile builds an object per entry of the central directory
    as long as the directory's stated size goes (a 20 MB message: 250,000 entries, seconds of CPU under the GIL)."""
    archive = _understated_zip(2000, zip64=zip64)
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:  # what zipfile sees
        assert len(opened.infolist()) == 2000
    with pytest.raises(payload.PayloadError, match="more than 100 files"):
        payload.decompress(archive, LIMIT)


# -- messages -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attachment", "ctype", "filename"),
    [
        (samples.gz(samples.google_xml("example.test")), "application/gzip", "google.com!example.test!1!2.xml.gz"),
        (samples.zipped(samples.microsoft_xml("example.test")), "application/zip", "outlook!example.test!1!2.zip"),
        (samples.gz(samples.google_xml("example.test")), "application/octet-stream", "report.xml.gz"),
        (samples.google_xml("example.test"), "text/xml", "report.xml"),
    ],
)
def test_dmarc_report_is_found_in_a_message(attachment: bytes, ctype: str, filename: str) -> None:
    raw = samples.dmarc_mail(attachment, domain="example.test", ctype=ctype, filename=filename)
    letter, [found] = intake.read(raw, LIMIT)
    assert found.kind == "dmarc" and found.error == ""
    assert isinstance(found.report, dmarc.DmarcReport) and found.report.domain == "example.test"
    assert letter.subject_domain == "example.test" and letter.submitter == "google.com"


def test_tls_report_is_found_in_a_message() -> None:
    raw = samples.tls_mail(samples.tls_report("example.test"), sender="tlsrpt@company-x.example")
    letter, [found] = intake.read(raw, LIMIT)
    assert letter.tls and found.kind == "tls" and isinstance(found.report, tlsrpt.TlsReport)


def test_mail_without_a_report_has_none() -> None:
    raw = b"From: a@b.example\r\nTo: postmaster@example.test\r\nSubject: hello\r\n\r\nYour server is great.\r\n"
    assert intake.read(raw, LIMIT)[1] == []
    pdf = samples.dmarc_mail(b"%PDF-1.4", domain="example.test", ctype="application/pdf", filename="invoice.pdf")
    assert intake.read(pdf, LIMIT)[1] == []


def test_unreadable_report_says_why() -> None:
    bomb = gzip.compress(b"\0" * 3_000_000)
    _, [found] = intake.read(samples.dmarc_mail(bomb, domain="example.test"), LIMIT)
    assert (found.kind, found.report) == ("dmarc", None)
    assert "larger than" in found.error
    _, [found] = intake.read(samples.dmarc_mail(b"%%%%", domain="example.test"), LIMIT)
    assert found.error == "neither XML nor JSON"


def test_report_addresses_match_local_parts_subaddresses_and_full_addresses() -> None:
    addresses = intake.Addresses.of(["postmaster", "DMARC@example.test"])
    got = addresses.match(["postmaster@example.test", "Postmaster", "postmaster+rua@b.test", "dmarc@example.test"])
    assert got == ["postmaster@example.test", "Postmaster", "postmaster+rua@b.test", "dmarc@example.test"]
    assert addresses.match(["alice@example.test", "dmarc@other.test", "postmasterx@example.test"]) == []
    assert intake.Addresses.of([]).match(["postmaster@example.test"]) == []


def _auth(dmarc_result: str, *, dkim_domain: str = "", spf_result: str = "none") -> mailauth.AuthResult:
    signatures = (mailauth.DkimSignatureResult("pass", dkim_domain, "s", "rsa-sha256", "abc"),) if dkim_domain else ()
    return mailauth.AuthResult(
        authserv_id="mx.example.test",
        spf=spf.SpfOutcome(spf_result, "mailfrom", "google.com", "x@google.com"),  # type: ignore[arg-type]
        dkim=signatures,
        dmarc=mailauth.DmarcOutcome(dmarc_result, "google.com"),  # type: ignore[arg-type]
        arc=mailauth.ArcOutcome("none"),
    )


def test_only_authenticated_reports_are_trusted() -> None:
    assert intake.trusted(_auth("pass"))
    assert intake.trusted(None)  # [mailauth] verify = false
    assert not intake.trusted(_auth("fail"))
    assert not intake.trusted(_auth("temperror"))
    assert not intake.trusted(_auth("none"))  # no DMARC record and nothing aligned
    assert intake.trusted(_auth("none", dkim_domain="mail.google.com"))
    assert not intake.trusted(_auth("none", dkim_domain="evil.example"))
    assert intake.trusted(_auth("none", spf_result="pass"))


# -- recording ----------------------------------------------------------------------------------------------


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = database_with(tmp_path / "db", "postmaster@example.test")
    yield connection
    connection.close()


def _record(conn: sqlite3.Connection, raw: bytes, received: float | None = None) -> None:
    letter, found = intake.read(raw, LIMIT)
    with conn:
        intake.record(conn, letter, found, time.time() if received is None else received, "example.test")


def _google(domain: str = "example.test", report_id: str = "10998877665544332211") -> bytes:
    return samples.dmarc_mail(samples.gz(samples.google_xml(domain, report_id)), domain=domain)


def test_reports_are_recorded_once_and_summed_up(conn: sqlite3.Connection) -> None:
    _record(conn, _google())
    _record(conn, _google())  # the same report again (sent to two report addresses, or resent)
    microsoft = samples.microsoft_xml("example.test")
    _record(conn, samples.dmarc_mail(samples.zipped(microsoft), domain="example.test", ctype="application/zip"))
    assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM dmarc_records").fetchone()[0] == 3
    [found] = summary.dmarc(conn, since=time.time() - 7 * summary.DAY)
    assert (found.domain, found.reports, found.messages, found.passed, found.failed) == ("example.test", 2, 17, 14, 3)
    assert found.reporters == {"google.com": 15, "Enterprise Outlook": 2}
    spoofer, ours, outlook = found.ordered_sources()
    assert (spoofer.source_ip, spoofer.failed, spoofer.spf_unaligned, spoofer.dkim_unaligned) == (
        "198.51.100.7",
        3,
        3,
        3,
    )
    assert spoofer.dispositions == {"reject": 3}
    assert (ours.source_ip, ours.passed) == ("203.0.113.25", 12)
    assert (outlook.source_ip, outlook.passed, outlook.dkim_unaligned) == ("2001:db8::25", 2, 2)
    text = "\n".join(summary.dmarc_text([found], 7))
    assert "example.test: 17 message(s) in 2 report(s) from google.com, Enterprise Outlook" in text
    assert "DMARC pass 14, fail 3" in text
    assert json.loads(json.dumps(found.as_json()))["sources"][0]["source_ip"] == "198.51.100.7"
    assert summary.dmarc(conn, since=time.time() - 7 * summary.DAY, domain="other.test") == []


def test_reports_about_other_domains_are_not_recorded(conn: sqlite3.Connection) -> None:
    _record(conn, _google("not-hosted.test"))
    _record(conn, samples.tls_mail(samples.tls_report("not-hosted.test"), sender="tlsrpt@company-x.example"))
    assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 0


def test_reports_about_subdomains_are_recorded(conn: sqlite3.Connection) -> None:
    _record(conn, _google("bounces.example.test"))
    assert [r[0] for r in conn.execute("SELECT domain FROM reports")] == ["bounces.example.test"]
    assert [s.domain for s in summary.dmarc(conn, since=0, domain="example.test")] == ["bounces.example.test"]


def test_unreadable_report_is_recorded_as_such(conn: sqlite3.Connection) -> None:
    _record(conn, samples.dmarc_mail(b"<feedback><oops>", domain="example.test", ctype="text/xml", filename="r.xml"))
    _record(conn, samples.dmarc_mail(b"<feedback><oops>", domain="elsewhere.test", ctype="text/xml", filename="r.xml"))
    row = conn.execute("SELECT kind, org, domain, error FROM reports").fetchall()
    assert [tuple(r) for r in row] == [("dmarc", "google.com", "example.test", row[0][3])]
    assert row[0][3].startswith("not well-formed XML")
    [found] = summary.dmarc(conn, since=time.time() - summary.DAY)
    assert found.reports == 0 and len(found.unread) == 1
    assert "1 report(s) could not be read" in "\n".join(summary.dmarc_text([found], 1))


def test_tls_report_is_recorded_and_summed_up(conn: sqlite3.Connection) -> None:
    report = samples.tls_report("example.test")
    report["policies"].append(  # type: ignore[attr-defined]
        {"policy": {"policy-type": "no-policy-found", "policy-domain": "other.test"}, "summary": {}}
    )
    _record(conn, samples.tls_mail(report, sender="tlsrpt@company-x.example"))
    assert [r[0] for r in conn.execute("SELECT domain FROM tls_policies")] == ["example.test"]  # only the hosted one
    [found] = summary.tls(conn, since=time.time() - 7 * summary.DAY)
    assert (found.domain, found.reports, found.successes, found.failures) == ("example.test", 1, 5326, 303)
    first = found.ordered_failures()[0]
    assert (first.result_type, first.sessions, first.receiving_ip) == ("starttls-not-supported", 200, "203.0.113.56")
    text = "\n".join(summary.tls_text([found], 7))
    assert "5326 TLS session(s) succeeded, 303 failed" in text and "certificate-expired" in text


def test_a_failing_recording_never_costs_the_delivery(conn: sqlite3.Connection) -> None:
    letter, found = intake.read(_google(), LIMIT)
    conn.execute("DROP TABLE dmarc_records")
    with conn:
        conn.execute("INSERT INTO domains (name, created) VALUES ('kept.test', 0)")  # the delivery's own writes
        intake.record(conn, letter, found, time.time(), "example.test")
    assert conn.execute("SELECT count(*) FROM domains WHERE name = 'kept.test'").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 0  # rolled back alone


def test_old_reports_are_purged(conn: sqlite3.Connection) -> None:
    _record(conn, _google())
    with conn:
        retention.purge(conn, 90, now=time.time() + 30 * summary.DAY, reports_days=400)
    assert conn.execute("SELECT count(*) FROM dmarc_records").fetchone()[0] == 2
    with conn:
        retention.purge(conn, 90, now=time.time() + 500 * summary.DAY, reports_days=400)
    assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM dmarc_records").fetchone()[0] == 0


def test_a_report_about_the_future_is_recorded_as_unread(conn: sqlite3.Connection) -> None:
    """A period that ends days after the report arrived (a forged report, a reporter's broken clock) would stay in
    the last week's summary and the doctor's findings for ever: retention purges by the period's end."""
    received = time.time() - 10 * summary.DAY  # the sample reports cover yesterday: 9 days after this
    _record(conn, _google(), received=received)
    _record(conn, samples.tls_mail(samples.tls_report("example.test"), sender="tlsrpt@company-x.example"), received)
    rows = conn.execute("SELECT kind, error, end FROM reports ORDER BY kind").fetchall()
    assert [(kind, end) for kind, _, end in rows] == [("dmarc", received), ("tls", received)]
    assert all(error.startswith("its period ends after it arrived") for _, error, _ in rows)
    assert conn.execute("SELECT count(*) FROM dmarc_records").fetchone()[0] == 0
    assert summary.dmarc(conn, since=time.time() - 7 * summary.DAY) == []


@pytest.mark.parametrize("entry", ["a b", "@example.test", "user+tag", "x@"])
def test_bad_report_addresses_are_refused(entry: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"reports": {"addresses": [entry]}})
    assert err.value.problems == [f"[reports] addresses: {entry!r} is not a local part or an address"]


def test_doctor_warns_about_own_sources_failing_and_tls_failures(conn: sqlite3.Connection) -> None:
    from relentad import doctor

    since = time.time() - 7 * summary.DAY
    assert doctor.check_reports(summary.dmarc(conn, since=since), summary.tls(conn, since=since)) == []
    _record(conn, _google())  # one source passes, another (never passing) fails: no warning
    [ok] = doctor.check_reports(summary.dmarc(conn, since=since), [])
    assert ok.status == "ok" and "12 of 15 message(s) passed DMARC" in ok.message
    xml = samples.google_xml("example.test", "second").decode()
    xml = xml.replace("<source_ip>198.51.100.7</source_ip>", "<source_ip>203.0.113.25</source_ip>")
    _record(conn, samples.dmarc_mail(samples.gz(xml.encode()), domain="example.test"))  # now ours fails too
    _record(conn, samples.tls_mail(samples.tls_report("example.test"), sender="tlsrpt@company-x.example"))
    dmarc_warning, tls_warning = doctor.check_reports(summary.dmarc(conn, since=since), summary.tls(conn, since=since))
    assert dmarc_warning.status == "warn" and "203.0.113.25, 3 of 27" in dmarc_warning.message
    assert tls_warning.status == "warn" and "303 of 5629 TLS session(s)" in tls_warning.message
    assert "starttls-not-supported" in tls_warning.message
