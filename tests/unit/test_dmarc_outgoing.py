"""Sending DMARC aggregate reports: what is recorded per inbound message, the report built from it, rua= parsing."""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import sqlite3
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from relentad import config, mailauth, spf
from relentad.authreports import dmarc, outgoing, sending
from tests.support.store import database_with

RECORD = "v=DMARC1; p=reject; rua=mailto:agg@example.org,mailto:other@elsewhere.test!10m"


def auth(
    result: str, *, record: str = RECORD, dkim_domain: str = "example.org", spf_result: str = "pass"
) -> mailauth.AuthResult:
    return mailauth.AuthResult(
        authserv_id="mx.hosted.test",
        spf=spf.SpfOutcome(spf_result, "mailfrom", "bounce.example.org", "b@bounce.example.org"),  # type: ignore[arg-type]
        dkim=(mailauth.DkimSignatureResult("pass", dkim_domain, "s1", "rsa-sha256", "abc"),),
        dmarc=mailauth.DmarcOutcome(
            result,  # type: ignore[arg-type]
            "example.org",
            "reject",
            "reject" if result == "fail" else "none",
            "example.org",
            record=record,
        ),
        arc=mailauth.ArcOutcome("none"),
    )


def test_evaluations_are_recorded_only_for_domains_asking_for_reports() -> None:
    row = outgoing.evaluation(auth("pass"), source_ip="192.0.2.1", refused=False, now=1.0)
    assert row is not None
    assert row[1:8] == ("example.org", "example.org", "192.0.2.1", "bounce.example.org", "none", "pass", "pass")
    refused = outgoing.evaluation(
        auth("fail", dkim_domain="evil.test", spf_result="fail"), source_ip="192.0.2.9", refused=True, now=1.0
    )
    assert refused is not None and refused[5:8] == ("reject", "fail", "fail")
    junked = outgoing.evaluation(auth("fail", dkim_domain="evil.test"), source_ip="192.0.2.9", refused=False, now=1.0)
    assert junked is not None and junked[5:8] == ("quarantine", "fail", "pass")
    assert (
        outgoing.evaluation(auth("pass", record="v=DMARC1; p=reject"), source_ip="1.2.3.4", refused=False, now=1)
        is None
    )
    assert outgoing.evaluation(auth("temperror"), source_ip="1.2.3.4", refused=False, now=1) is None


def test_rua_destinations_are_parsed() -> None:
    got = sending.destinations(
        "mailto:agg@example.org, mailto:big@x.test!10m,https://example.org/r, mailto:bad, mailto:enc%40y.test!5k,"
        " mailto:huge@z.test!12q"
    )
    assert got == [
        sending.Destination("agg@example.org", 0),
        sending.Destination("big@x.test", 10_000_000),
        sending.Destination("enc@y.test", 5000),
    ]


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = database_with(tmp_path / "db", "postmaster@hosted.test")
    yield connection
    connection.close()


def settings() -> config.Config:
    return config.from_dict(
        {"server": {"hostname": "mx.hosted.test"}, "dmarc": {"send_reports": True, "reporter": "dmarc@hosted.test"}}
    )


class NoDNS:
    """A resolver for tests that need none: a report to a destination outside the organisation is refused."""

    async def resolve(self, *args: object, **kwargs: object) -> object:
        import dns.resolver

        raise dns.resolver.NXDOMAIN


def test_pending_evaluations_become_one_report_per_domain(conn: sqlite3.Connection) -> None:
    now = time.time()
    with conn:
        for ip in ("192.0.2.1", "192.0.2.1", "192.0.2.2"):
            row = outgoing.evaluation(auth("pass"), source_ip=ip, refused=False, now=now - 100)
            assert row is not None
            outgoing.insert(conn, row)
        hosted = outgoing.evaluation(auth("pass"), source_ip="192.0.2.3", refused=False, now=now)
        assert hosted is not None
        outgoing.insert(conn, (hosted[0], "hosted.test", *hosted[2:]))  # about ourselves: never reported

    def write(fn: object) -> object:
        with conn:
            return fn(conn)  # type: ignore[operator]

    sent = asyncio.run(outgoing.send(lambda fn: fn(conn), write, settings(), NoDNS(), None, now=now))  # type: ignore[arg-type]
    [mail] = sent
    assert (mail.domain, mail.recipients) == ("example.org", ["agg@example.org"])  # elsewhere.test did not agree
    assert conn.execute("SELECT count(*) FROM dmarc_evaluations").fetchone()[0] == 0
    [(mail_from, data)] = conn.execute("SELECT mail_from, data FROM queue_messages").fetchall()
    assert mail_from == "dmarc@hosted.test"
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"].startswith("Report Domain: example.org Submitter: mx.hosted.test Report-ID: <")
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content_type() == "application/gzip"
    assert attachment.get_filename().startswith("mx.hosted.test!example.org!")
    report = dmarc.parse(gzip.decompress(attachment.get_content()))  # our own reader reads what we send
    assert (report.org, report.domain, report.policy["p"]) == ("mx.hosted.test", "example.org", "reject")
    assert sorted((r.source_ip, r.count, r.dkim, r.spf) for r in report.records) == [
        ("192.0.2.1", 2, "pass", "pass"),
        ("192.0.2.2", 1, "pass", "pass"),
    ]
    assert [(a.domain, a.selector, a.result) for a in report.records[0].dkim_results] == [("example.org", "s1", "pass")]


def test_xml_special_characters_are_escaped() -> None:
    pending = outgoing.Pending(
        "example.org",
        {"p": "none"},
        0,
        1,
        1,
        [("192.0.2.1", "none", "fail", "fail", "a<b&c", "", '{"dkim": [], "spf": ["x", "mfrom", "none"]}', 1)],
    )
    report = dmarc.parse(outgoing.report_xml(pending, org_name="R&D <x>", contact="c@x", report_id="1", begin=0, end=1))
    assert report.org == "R&D <x>" and report.records[0].header_from == "a<b&c"


def test_first_run_is_after_midnight_utc() -> None:
    midnight = 1_795_651_200.0
    assert sending.first_delay(midnight) == 15 * 60
    assert sending.first_delay(midnight + 16 * 60) == 86_400 - 60


def test_reporter_is_required_to_send() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"dmarc": {"send_reports": True}})
    assert err.value.problems == ["[dmarc] reporter must be set when send_reports is on"]
    with pytest.raises(config.ConfigError) as err:
        config.from_dict({"dmarc": {"reporter": "nobody"}})
    assert err.value.problems == ["[dmarc] reporter: 'nobody' is not an email address"]


def test_a_failing_evaluation_record_never_costs_the_delivery(conn: sqlite3.Connection) -> None:
    row = outgoing.evaluation(auth("pass"), source_ip="192.0.2.1", refused=False, now=1.0)
    assert row is not None
    conn.execute("DROP TABLE dmarc_evaluations")
    with conn:
        conn.execute("INSERT INTO domains (name, created) VALUES ('kept.test', 0)")  # the delivery's own writes
        outgoing.insert(conn, row)
    assert conn.execute("SELECT count(*) FROM domains WHERE name = 'kept.test'").fetchone()[0] == 1


def test_report_has_what_the_schema_requires() -> None:
    """RFC 7489 Appendix C: policy_published has a required fo, IdentifierType a required envelope_from (minOccurs
    "1"); a bounce (null sender, SPF checked for the HELO name) has none to give, and says so with an empty one."""
    pending = outgoing.Pending(
        "example.org",
        {"p": "none"},
        0,
        1,
        1,
        [("192.0.2.1", "none", "pass", "fail", "example.org", "", '{"dkim": [], "spf": ["mx.x", "helo", "pass"]}', 1)],
    )
    root = ET.fromstring(outgoing.report_xml(pending, org_name="R", contact="c@x", report_id="1", begin=0, end=1))
    published = [(child.tag, child.text) for child in root.findall("policy_published/*")]
    assert published == [  # fo is required too (the default, 0, when the record has none: §6.3)
        ("domain", "example.org"), ("adkim", "r"), ("aspf", "r"), ("p", "none"), ("sp", "none"), ("pct", "100"),
        ("fo", "0"),
    ]  # fmt: skip
    [identifiers] = root.findall("record/identifiers")
    found = [(child.tag, child.text) for child in identifiers]
    assert found == [("envelope_from", None), ("header_from", "example.org")]


def test_a_report_stays_well_formed_whatever_a_signature_said() -> None:
    """The DKIM selector (and domain) of a report row are what the sender's signature said, control characters
    included; the report to the domain must still be XML its receiver can read."""
    results = '{"dkim": [["example.org", "s\\u0001\\uffff", "permerror"]], "spf": ["x", "mfrom", "none"]}'
    pending = outgoing.Pending(
        "example.org", {"p": "none"}, 0, 1, 1, [("192.0.2.1", "none", "fail", "fail", "example.org", "", results, 1)]
    )
    report = dmarc.parse(outgoing.report_xml(pending, org_name="R", contact="c@x", report_id="1", begin=0, end=1))
    assert report.records[0].dkim_results[0].selector == "s\ufffd\ufffd"


def test_report_mail_names_the_receiver_by_domain() -> None:
    """RFC 7489 §7.2.1.1: Submitter and the file name's receiver are the Mail Receiver's domain name and the file
    name's unique-id is 1*(ALPHA / DIGIT); an org_name such as "Example Mail Co" is for <org_name> only."""
    settings_with_org = config.from_dict(
        {
            "server": {"hostname": "mx.hosted.test"},
            "dmarc": {"send_reports": True, "reporter": "dmarc@hosted.test", "org_name": "Example Mail Co"},
        }
    )
    pending = outgoing.Pending("example.org", {"p": "none"}, 0, 1, 7, [])
    raw = outgoing.compose(pending, settings_with_org, gzip.compress(b"<feedback/>"), ["a@example.org"], "1.7.x", 0, 1)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"].strip() == "Report Domain: example.org Submitter: mx.hosted.test Report-ID: <1.7.x>"
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == "mx.hosted.test!example.org!0!1!7.xml.gz"
