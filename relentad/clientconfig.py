"""Mail client set-up documents: Thunderbird's autoconfig (the ISPDB ``clientConfig`` 1.1 format), Outlook's
Autodiscover (the "POX" request and response of [MS-OXDISCO]) and Apple's configuration profile (``.mobileconfig``),
computed from the configuration.

Invariants:
- Pure: the configuration and the request in, bytes out; no store, no network. The web listener
  (:mod:`relentad.web`) decides who is asked about.
- Only what is really served is offered: a listener is named when its address is set, with the port of that
  address, and TLS ones only with a certificate (``[tls]``); implicit TLS first (RFC 8314 §3). The user name is
  always the whole address, the password sent in the clear inside TLS (relentad's AUTH PLAIN/LOGIN).
- An Autodiscover request is read by :func:`relentad.safexml.tree` (no DOCTYPE, so no entity expansion, no
  external entity, no "billion laughs"; nesting and element count bounded); the caller bounds its size.
"""

from __future__ import annotations

import plistlib
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import quote

from . import addrspec, safexml
from .config import Config, parse_address
from .errors import InvalidInput

WEB_LABELS = ("mta-sts", "autoconfig", "autodiscover")
"""The names of a hosted domain that point at the host for ``[listen] https`` (its certificate must cover them)."""


def web_names(domain: str) -> list[str]:
    """A domain's :data:`WEB_LABELS` names: ``mta-sts.DOMAIN``, ``autoconfig.DOMAIN``, ``autodiscover.DOMAIN``."""
    return [f"{label}.{domain}" for label in WEB_LABELS]


AUTODISCOVER_REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
AUTODISCOVER_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # "imap", "pop3" or "smtp"
    port: int
    implicit_tls: bool  # True: TLS from the first octet (993, 995, 465); False: STARTTLS (143, 110, 587)


def endpoints(config: Config) -> list[Endpoint]:
    """The IMAP, POP3 and submission listeners a client may use, IMAP before POP3 and implicit TLS first; none
    without a certificate."""
    if not config.tls_enabled:
        return []
    found = []
    for protocol, listener, implicit in (
        ("imap", config.listen.imaps, True),
        ("imap", config.listen.imap, False),
        ("pop3", config.listen.pop3s, True),
        ("pop3", config.listen.pop3, False),
        ("smtp", config.listen.submissions, True),
        ("smtp", config.listen.submission, False),
    ):
        try:
            address = parse_address(listener)
        except ValueError:
            continue
        if address is not None:
            found.append(Endpoint(protocol, address[1], implicit))
    return found


def _child(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


def _document(root: ET.Element) -> bytes:
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode() + b"\n"


def autoconfig(config: Config, domain: str) -> bytes:
    """The clientConfig 1.1 document for ``domain`` (https://wiki.mozilla.org/Thunderbird:Autoconfiguration).
    Thunderbird sets up the first incomingServer and offers the others: IMAP comes first, POP3 after it."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    _child(provider, "domain", domain)
    _child(provider, "displayName", domain)
    _child(provider, "displayShortName", domain)
    for endpoint in endpoints(config):
        incoming = endpoint.protocol != "smtp"
        server = ET.SubElement(provider, "incomingServer" if incoming else "outgoingServer", type=endpoint.protocol)
        _child(server, "hostname", config.server.hostname.rstrip("."))
        _child(server, "port", str(endpoint.port))
        _child(server, "socketType", "SSL" if endpoint.implicit_tls else "STARTTLS")
        _child(server, "authentication", "password-cleartext")
        _child(server, "username", "%EMAILADDRESS%")
    dav = carddav_url(config)
    if dav:  # the format's address book (Thunderbird finds it by RFC 6764 as well: /.well-known/carddav)
        book = ET.SubElement(root, "addressBook", type="carddav")
        _child(book, "username", "%EMAILADDRESS%")
        _child(book, "authentication", "http-basic")
        _child(book, "serverURL", dav)
    return _document(root)


def carddav_url(config: Config) -> str:
    """Where the CardDAV address books are (RFC 6764's well-known path on the HTTPS listener), "" when not served:
    no certificate, no ``[listen] https`` or no CRM."""
    if not config.tls_enabled or not config.listen.https or not config.crm.enabled:
        return ""
    try:
        address = parse_address(config.listen.https)
    except ValueError:
        return ""
    if address is None:
        return ""
    port = "" if address[1] == 443 else f":{address[1]}"
    return f"https://{config.server.hostname.rstrip('.')}{port}/.well-known/carddav"


def _local(element: ET.Element) -> str:
    """An element's name without its namespace (Outlook's requests use one, other clients none)."""
    return element.tag.rpartition("}")[2]


class BadRequest(Exception):
    """An Autodiscover request that cannot be answered (the web listener says 400)."""


def autodiscover_address(body: bytes) -> str:
    """The normalised EMailAddress of an Autodiscover POX request (BadRequest when there is none)."""
    try:
        root = safexml.tree(body)
    except safexml.BadXML as exc:
        raise BadRequest(f"not an Autodiscover request: {exc}") from None
    found = [
        (address.text or "").strip()
        for top in root.iter()
        if _local(top) == "Autodiscover"
        for request in top
        if _local(request) == "Request"
        for address in request
        if _local(address) == "EMailAddress"
    ]
    if len(found) != 1 or not found[0]:
        raise BadRequest("the request names no EMailAddress")
    try:
        return addrspec.normalize(found[0])
    except InvalidInput as exc:
        raise BadRequest(f"EMailAddress: {exc}") from None


def autodiscover(config: Config, email: str) -> bytes:
    """The POX response for ``email``: one IMAP and one SMTP protocol, each the first (implicit TLS) one offered;
    no POP3 (Outlook would take a POP3 entry as a choice as good as IMAP). [MS-OXDSCLI] Encryption: "SSL" is TLS
    from the start, "TLS" is STARTTLS."""
    root = ET.Element("Autodiscover", xmlns=AUTODISCOVER_NS)
    response = ET.SubElement(root, "Response", xmlns=OUTLOOK_NS)
    account = ET.SubElement(response, "Account")
    _child(account, "AccountType", "email")
    _child(account, "Action", "settings")
    seen: set[str] = set()
    for endpoint in endpoints(config):
        if endpoint.protocol in seen or endpoint.protocol == "pop3":
            continue
        seen.add(endpoint.protocol)
        protocol = ET.SubElement(account, "Protocol")
        _child(protocol, "Type", endpoint.protocol.upper())
        _child(protocol, "Server", config.server.hostname.rstrip("."))
        _child(protocol, "Port", str(endpoint.port))
        _child(protocol, "DomainRequired", "off")
        _child(protocol, "LoginName", email)
        _child(protocol, "SPA", "off")
        _child(protocol, "SSL", "on")
        _child(protocol, "Encryption", "SSL" if endpoint.implicit_tls else "TLS")
        _child(protocol, "AuthRequired", "on")
        if endpoint.protocol == "smtp":
            _child(protocol, "UsePOPAuth", "on")  # the same login as for reading
    return _document(root)


PROFILE_TYPE = "application/x-apple-aspen-config"
"""The media type a device installs a ``.mobileconfig`` download as."""
_PROFILE_NAMESPACE = uuid.UUID("6f1c3c0e-64f4-4f43-9a35-52d1ad0b1d4e")


def _payload_uuid(config: Config, email: str, part: str) -> str:
    """The same UUID for the same account and part every time: installing a new profile replaces the old one."""
    return str(uuid.uuid5(_PROFILE_NAMESPACE, f"{config.server.hostname}\0{email}\0{part}")).upper()


def mobileconfig(config: Config, email: str, name: str = "") -> bytes:
    """An Apple configuration profile that sets up the account on an iPhone, iPad or Mac: its mail (IMAP, or POP3
    when that is all that is served, and SMTP submission) and, with the HTTPS listener and the CRM on, its contacts
    (CardDAV). The password is not in it: the device asks for it when the profile is installed. Unsigned (the device
    says so); InvalidInput when no TLS listener is served, as nothing could be set up then."""
    found = endpoints(config)
    incoming = next((e for e in found if e.protocol != "smtp"), None)
    outgoing = next((e for e in found if e.protocol == "smtp"), None)
    if incoming is None or outgoing is None:
        raise InvalidInput("no TLS listener for IMAP (or POP3) and submission: set [tls] and [listen] first")
    host = config.server.hostname.rstrip(".")
    identifier = ".".join(reversed(host.split("."))) + ".relentad." + _payload_uuid(config, email, "profile").lower()
    mail = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": identifier + ".mail",
        "PayloadUUID": _payload_uuid(config, email, "mail"),
        "PayloadDisplayName": f"Mail: {email}",
        "EmailAccountDescription": email,
        "EmailAccountName": name or email,
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
        "EmailAddress": email,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": True,  # TLS: from the first octet on 993/995, by STARTTLS on 143/110
        "IncomingMailServerUsername": email,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": email,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    content: list[dict[str, object]] = [mail]
    https = parse_address(config.listen.https) if carddav_url(config) else None
    if https is not None:
        content.append(
            {
                "PayloadType": "com.apple.carddav.account",
                "PayloadVersion": 1,
                "PayloadIdentifier": identifier + ".carddav",
                "PayloadUUID": _payload_uuid(config, email, "carddav"),
                "PayloadDisplayName": f"Contacts: {email}",
                "CardDAVAccountDescription": f"Contacts ({email})",
                "CardDAVHostName": host,
                "CardDAVPort": https[1],
                "CardDAVUseSSL": True,
                "CardDAVUsername": email,
                "CardDAVPrincipalURL": f"/dav/principals/{quote(email, safe='@+')}/",  # as CardDAV names it
            }
        )
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": identifier,
        "PayloadUUID": _payload_uuid(config, email, "profile"),
        "PayloadDisplayName": f"{email} ({host})",
        "PayloadDescription": f"Mail{' and contacts' if len(content) > 1 else ''} of {email} on {host}.",
        "PayloadOrganization": host,
        "PayloadRemovalDisallowed": False,
        "PayloadContent": content,
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)
