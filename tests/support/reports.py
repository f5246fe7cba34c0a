"""Report samples written for the tests, shaped like what Google, Microsoft and RFC 8460 §4.4 reporters send."""

from __future__ import annotations

import gzip
import io
import json
import time
import zipfile
from email.message import EmailMessage

DAY = 86_400


def _rfc3339(moment: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


GOOGLE_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>{report_id}</report_id>
    <date_range>
      <begin>{begin}</begin>
      <end>{end}</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>reject</p>
    <sp>reject</sp>
    <pct>100</pct>
    <np>reject</np>
  </policy_published>
  <record>
    <row>
      <source_ip>203.0.113.25</source_ip>
      <count>12</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>pass</dkim>
        <spf>pass</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>{domain}</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>{domain}</domain>
        <result>pass</result>
        <selector>s1</selector>
      </dkim>
      <spf>
        <domain>{domain}</domain>
        <result>pass</result>
      </spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>198.51.100.7</source_ip>
      <count>3</count>
      <policy_evaluated>
        <disposition>reject</disposition>
        <dkim>fail</dkim>
        <spf>fail</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>{domain}</header_from>
    </identifiers>
    <auth_results>
      <spf>
        <domain>spoofer.example</domain>
        <result>softfail</result>
      </spf>
    </auth_results>
  </record>
</feedback>
"""

MICROSOFT_XML = """<?xml version="1.0"?>
<feedback xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <version>1.0</version>
  <report_metadata>
    <org_name>Enterprise Outlook</org_name>
    <email>dmarcreport@microsoft.com</email>
    <report_id>{report_id}</report_id>
    <date_range>
      <begin>{begin}</begin>
      <end>{end}</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>{domain}</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>quarantine</p>
    <sp>quarantine</sp>
    <pct>100</pct>
    <fo>0</fo>
  </policy_published>
  <record>
    <row>
      <source_ip>2001:db8::25</source_ip>
      <count>2</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>fail</dkim>
        <spf>pass</spf>
        <reason>
          <type>forwarded</type>
          <comment></comment>
        </reason>
      </policy_evaluated>
    </row>
    <identifiers>
      <envelope_to>outlook.com</envelope_to>
      <envelope_from>{domain}</envelope_from>
      <header_from>{domain}</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>{domain}</domain>
        <selector>s1</selector>
        <result>fail</result>
      </dkim>
      <spf>
        <domain>{domain}</domain>
        <scope>mfrom</scope>
        <result>pass</result>
      </spf>
    </auth_results>
  </record>
</feedback>
"""


def tls_report(domain: str, report_id: str = "2026-11-26T00:00:00Z_example.test") -> dict[str, object]:
    """The example of RFC 8460 §4.4, for ``domain`` and yesterday."""
    begin, end = _yesterday()
    return {
        "organization-name": "Company-X",
        "date-range": {"start-datetime": _rfc3339(begin), "end-datetime": _rfc3339(end)},
        "contact-info": "sts-reporting@company-x.example",
        "report-id": report_id,
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": [
                        "version: STSv1",
                        "mode: testing",
                        "mx: *.mail.company-y.example",
                        "max_age: 86400",
                    ],
                    "policy-domain": domain,
                    "mx-host": ["*.mail.company-y.example"],
                },
                "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
                "failure-details": [
                    {
                        "result-type": "certificate-expired",
                        "sending-mta-ip": "2001:db8:abcd:0012::1",
                        "receiving-mx-hostname": "mx1.mail.company-y.example",
                        "failed-session-count": 100,
                    },
                    {
                        "result-type": "starttls-not-supported",
                        "sending-mta-ip": "2001:db8:abcd:0013::1",
                        "receiving-mx-hostname": "mx2.mail.company-y.example",
                        "receiving-ip": "203.0.113.56",
                        "failed-session-count": 200,
                        "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported",
                    },
                    {
                        "result-type": "validation-failure",
                        "sending-mta-ip": "198.51.100.62",
                        "receiving-ip": "203.0.113.58",
                        "receiving-mx-hostname": "mx-backup.mail.company-y.example",
                        "failed-session-count": 3,
                        "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED",
                    },
                ],
            }
        ],
    }


def _yesterday() -> tuple[int, int]:
    """The last whole UTC day, as reporters cover it."""
    today = int(time.time()) // DAY * DAY
    return today - DAY, today - 1


def google_xml(domain: str, report_id: str = "10998877665544332211") -> bytes:
    begin, end = _yesterday()
    return GOOGLE_XML.format(domain=domain, report_id=report_id, begin=begin, end=end).encode()


def microsoft_xml(domain: str, report_id: str = "8f4c3ab1e27d4c8b9a6f0d2e1c5b7a93") -> bytes:
    begin, end = _yesterday()
    return MICROSOFT_XML.format(domain=domain, report_id=report_id, begin=begin, end=end + 1).encode()


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def zipped(data: bytes, name: str = "report.xml") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def dmarc_mail(
    attachment: bytes,
    *,
    domain: str,
    sender: str = "noreply-dmarc-support@google.com",
    to: str = "postmaster@example.test",
    filename: str = "google.com!example.test!1764115200!1764201599.xml.gz",
    ctype: str = "application/gzip",
) -> bytes:
    """A DMARC report mail as Google sends it: a short text and the report attached (RFC 7489 §7.2.1.1)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"Report domain: {domain} Submitter: google.com Report-ID: <10998877665544332211>"
    msg["Message-ID"] = "<report-10998877665544332211@google.com>"
    msg["Date"] = "Thu, 26 Nov 2026 23:59:59 -0800"
    msg.set_content("This is an aggregate report from google.com.\n")
    maintype, subtype = ctype.split("/")
    msg.add_attachment(attachment, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def tls_mail(report: dict[str, object], *, sender: str, to: str = "postmaster@example.test") -> bytes:
    """A TLS report mail per RFC 8460 §5.3: multipart/report; report-type=tlsrpt with application/tlsrpt+gzip."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "Report Domain: example.test Submitter: company-x.example Report-ID: <2026.11.26T00.00.00Z>"
    msg["Message-ID"] = "<tlsrpt-1@company-x.example>"
    msg["TLS-Report-Domain"] = "example.test"
    msg["TLS-Report-Submitter"] = "company-x.example"
    msg.set_content("This is an aggregate TLS report from company-x.example.\n")
    msg.add_attachment(
        gzip.compress(json.dumps(report).encode()),
        maintype="application",
        subtype="tlsrpt+gzip",
        filename="company-x.example!example.test!1764115200!1764201599.json.gz",
    )
    msg.set_type("multipart/report")
    msg.set_param("report-type", "tlsrpt")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
