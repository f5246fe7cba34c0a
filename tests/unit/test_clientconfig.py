"""relentad.clientconfig and the web routes: what mail clients are told, and Autodiscover requests read safely."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from relentad import clientconfig, web
from relentad import config as config_mod
from relentad.errors import InvalidInput
from relentad.tls import make_self_signed


def make_config(tmp_path: Path, tls: bool = True, **listen: str) -> config_mod.Config:
    data: dict[str, dict[str, object]] = {
        "server": {"hostname": "mx.example.com", "data_dir": str(tmp_path / "data")},
        "listen": {"submission": "*:587", "submissions": "*:465", "imap": "*:143", "imaps": "*:993"} | listen,
    }
    if tls:
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        if not cert.exists():
            make_self_signed(cert, key, ["mx.example.com"])
        data["tls"] = {"cert": str(cert), "key": str(key)}
    return config_mod.from_dict(data, tmp_path / "relentad.toml")


def offered(config: config_mod.Config) -> list[tuple[str, int, bool]]:
    return [(e.protocol, e.port, e.implicit_tls) for e in clientconfig.endpoints(config)]


def test_only_listeners_that_are_on_are_offered_implicit_tls_first(tmp_path: Path) -> None:
    assert offered(make_config(tmp_path)) == [
        ("imap", 993, True),
        ("imap", 143, False),
        ("pop3", 995, True),
        ("pop3", 110, False),
        ("smtp", 465, True),
        ("smtp", 587, False),
    ]
    assert offered(make_config(tmp_path, imaps="", pop3="", pop3s="", submissions="10.0.0.1:4650")) == [
        ("imap", 143, False),
        ("smtp", 4650, True),
        ("smtp", 587, False),
    ]
    assert offered(make_config(tmp_path, tls=False)) == []  # no certificate: no login would work


def test_autoconfig_document(tmp_path: Path) -> None:
    config = make_config(tmp_path, imap="", submission="", pop3s="")
    document = ET.fromstring(clientconfig.autoconfig(config, "a.test"))
    provider = document.find("emailProvider")
    assert provider is not None and provider.get("id") == "a.test"
    incoming, pop3 = provider.findall("incomingServer")
    assert incoming.get("type") == "imap" and incoming.findtext("socketType") == "SSL"
    assert incoming.findtext("hostname") == "mx.example.com" and incoming.findtext("port") == "993"
    assert pop3.get("type") == "pop3" and pop3.findtext("socketType") == "STARTTLS", "second: IMAP is preferred"
    assert pop3.findtext("port") == "110" and pop3.findtext("username") == "%EMAILADDRESS%"
    [outgoing] = provider.findall("outgoingServer")
    assert outgoing.findtext("port") == "465" and outgoing.findtext("username") == "%EMAILADDRESS%"


def request(address: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{clientconfig.AUTODISCOVER_REQUEST_NS}">'
        f"<Request><EMailAddress>{address}</EMailAddress></Request></Autodiscover>"
    ).encode()


def test_autodiscover_address_is_read_and_normalised() -> None:
    assert clientconfig.autodiscover_address(request(" Bob@Example.COM ")) == "bob@example.com"
    plain = b"<Autodiscover><Request><EMailAddress>a@b.test</EMailAddress></Request></Autodiscover>"
    assert clientconfig.autodiscover_address(plain) == "a@b.test"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<Autodiscover><Request></Request></Autodiscover>",
        b"<EMailAddress>a@b.test</EMailAddress>",  # not inside Autodiscover/Request
        request("a@b.test").replace(b"</Request>", b"<EMailAddress>c@d.test</EMailAddress></Request>"),
        request("not an address"),
        request("&lt;a@b.test&gt;"),
        # billion laughs, external and parameter entities: no DOCTYPE is accepted at all
        b'<!DOCTYPE a [<!ENTITY x "x"><!ENTITY y "&x;&x;&x;&x;">]><Autodiscover><Request><EMailAddress>&y;@b.test'
        b"</EMailAddress></Request></Autodiscover>",
        b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><Autodiscover><Request><EMailAddress>&x;'
        b"</EMailAddress></Request></Autodiscover>",
        b'<!DOCTYPE a [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]><Autodiscover/>',
        b'<!DOCTYPE a SYSTEM "http://127.0.0.1:1/x.dtd"><Autodiscover/>',
        b"<Autodiscover><Request><EMailAddress>&undefined;</EMailAddress></Request></Autodiscover>",
        b"<?xml version='1.0' encoding='bogus'?><Autodiscover/>",  # was a LookupError: 500 and a traceback
    ],
)
def test_bad_autodiscover_requests_are_refused(body: bytes) -> None:
    with pytest.raises(clientconfig.BadRequest):
        clientconfig.autodiscover_address(body)


def test_autodiscover_response_escapes_and_names_one_server_per_protocol(tmp_path: Path) -> None:
    config = make_config(tmp_path, imaps="")
    namespaces = {"o": clientconfig.OUTLOOK_NS}
    body = clientconfig.autodiscover(config, '"a<b&c"@example.com')
    root = ET.fromstring(body)
    protocols = root.findall("o:Response/o:Account/o:Protocol", namespaces)
    assert [
        (p.findtext("o:Type", namespaces=namespaces), p.findtext("o:Port", namespaces=namespaces)) for p in protocols
    ] == [
        ("IMAP", "143"),
        ("SMTP", "465"),
    ]
    assert protocols[0].findtext("o:Encryption", namespaces=namespaces) == "TLS"  # STARTTLS in MS-OXDSCLI
    assert protocols[0].findtext("o:LoginName", namespaces=namespaces) == '"a<b&c"@example.com'


@pytest.mark.parametrize(
    ("host", "path", "secure", "wanted"),
    [
        ("mta-sts.a.test", "/.well-known/mta-sts.txt", True, ("mta-sts", "a.test")),
        ("mta-sts.a.test", "/.well-known/mta-sts.txt", False, None),  # never over plain HTTP (RFC 8461 §3.3)
        ("a.test", "/.well-known/mta-sts.txt", True, None),
        ("autoconfig.a.test", "/mail/config-v1.1.xml", False, ("autoconfig", "a.test")),
        ("a.test", "/mail/config-v1.1.xml", True, None),
        ("a.test", "/.well-known/autoconfig/mail/config-v1.1.xml", True, ("autoconfig", "a.test")),
        ("autodiscover.a.test", "/AutoDiscover/AutoDiscover.XML", True, ("autodiscover", "a.test")),
        ("a.test", "/autodiscover/autodiscover.xml", True, ("autodiscover", "a.test")),
        ("a.test", "/autodiscover/autodiscover.xml", False, ("autodiscover", "a.test")),  # a redirect to HTTPS
        ("a.test", "/", True, None),
    ],
)
def test_routes(host: str, path: str, secure: bool, wanted: tuple[str, str] | None) -> None:
    assert web.route(host, path, secure=secure) == wanted


def test_the_apple_profile_sets_up_mail_and_contacts(tmp_path: Path) -> None:
    config = make_config(tmp_path, https="*:443")
    profile = plistlib.loads(clientconfig.mobileconfig(config, "jürgen+x@example.com", "Jürgen Groß"))
    assert profile["PayloadType"] == "Configuration" and profile["PayloadIdentifier"].startswith("com.example.mx.")
    mail, contacts = profile["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed" and mail["EmailAccountType"] == "EmailTypeIMAP"
    assert (mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"]) == ("mx.example.com", 993)
    assert (mail["OutgoingMailServerPortNumber"], mail["OutgoingMailServerUseSSL"]) == (465, True)
    assert mail["EmailAccountName"] == "Jürgen Groß" and mail["IncomingMailServerUsername"] == "jürgen+x@example.com"
    assert "IncomingPassword" not in mail and "OutgoingPassword" not in mail, "never a password: the device asks"
    assert contacts["PayloadType"] == "com.apple.carddav.account" and contacts["CardDAVPort"] == 443
    assert contacts["CardDAVPrincipalURL"] == "/dav/principals/j%C3%BCrgen+x@example.com/"
    again = plistlib.loads(clientconfig.mobileconfig(config, "jürgen+x@example.com"))
    assert again["PayloadUUID"] == profile["PayloadUUID"], "the same UUIDs: a new download replaces the old profile"
    other = plistlib.loads(clientconfig.mobileconfig(config, "anna@example.com"))
    assert other["PayloadUUID"] != profile["PayloadUUID"]


def test_the_apple_profile_offers_only_what_is_served(tmp_path: Path) -> None:
    only_starttls = make_config(tmp_path, imaps="", submissions="", https="")
    [mail] = plistlib.loads(clientconfig.mobileconfig(only_starttls, "a@example.com"))["PayloadContent"]
    assert (mail["IncomingMailServerPortNumber"], mail["OutgoingMailServerPortNumber"]) == (143, 587)
    pop_only = make_config(tmp_path, imaps="", imap="", https="")
    [mail] = plistlib.loads(clientconfig.mobileconfig(pop_only, "a@example.com"))["PayloadContent"]
    assert mail["EmailAccountType"] == "EmailTypePOP" and mail["IncomingMailServerPortNumber"] == 995
    with pytest.raises(InvalidInput, match="no TLS listener"):
        clientconfig.mobileconfig(make_config(tmp_path, tls=False), "a@example.com")


def test_autoconfig_names_the_address_book_when_carddav_is_served(tmp_path: Path) -> None:
    document = ET.fromstring(clientconfig.autoconfig(make_config(tmp_path, https="*:443"), "a.test"))
    book = document.find("addressBook")
    assert book is not None and book.get("type") == "carddav"
    assert book.findtext("serverURL") == "https://mx.example.com/.well-known/carddav"
    assert book.findtext("authentication") == "http-basic" and book.findtext("username") == "%EMAILADDRESS%"
    other_port = ET.fromstring(clientconfig.autoconfig(make_config(tmp_path, https="127.0.0.1:2443"), "a.test"))
    assert other_port.findtext("addressBook/serverURL") == "https://mx.example.com:2443/.well-known/carddav"
    assert ET.fromstring(clientconfig.autoconfig(make_config(tmp_path, https=""), "a.test")).find("addressBook") is None
