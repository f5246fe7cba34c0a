"""Pure parts of CardDAV: safe XML, PROPFIND/REPORT bodies, multistatus output, addressbook-query filters and
the URL layout."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from relentad import safexml
from relentad.carddav import davxml, query, server
from relentad.carddav.davxml import CARD, DAV, DavError


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
        b'<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>',
        b"<a>" * 40 + b"</a>" * 40,
        b"<a>" + b"<b/>" * 30 + b"</a>",
        b"<a>",
        b"",
        b"<a xmlns:p='x'><q:b/></a>",
        b"<?xml version='1.0' encoding='bogus'?><a/>",
    ],
)
def test_safexml_refuses(body: bytes) -> None:
    with pytest.raises(safexml.BadXML):
        safexml.tree(body, max_elements=20)


def test_propfind_bodies() -> None:
    assert davxml.propfind(b"") == davxml.Props("allprop")
    assert davxml.propfind(b"<propfind xmlns='DAV:'><propname/></propfind>").kind == "propname"
    asked = davxml.propfind(
        b"<d:propfind xmlns:d='DAV:' xmlns:c='urn:ietf:params:xml:ns:carddav'><d:prop><d:getetag/>"
        b"<c:address-data version='4.0'/><d:getetag/></d:prop></d:propfind>"
    )
    assert asked.names == ((DAV, "getetag"), (CARD, "address-data")) and asked.vcard_version == "4.0"
    with pytest.raises(DavError) as refused:
        davxml.propfind(
            b"<d:propfind xmlns:d='DAV:' xmlns:c='urn:ietf:params:xml:ns:carddav'><d:prop>"
            b"<c:address-data content-type='application/vcard+json'/></d:prop></d:propfind>"
        )
    assert refused.value.status == 403 and refused.value.condition == (CARD, "supported-address-data")
    with pytest.raises(DavError) as bad:
        davxml.propfind(b"<propfind/>")  # not in DAV:
    assert bad.value.status == 400


def test_multistatus_names_unknown_properties_as_asked_and_keeps_cr_lf() -> None:
    body = davxml.multistatus(
        [
            davxml.response(
                "/a b&c", [davxml.el((CARD, "address-data"), "BEGIN:VCARD\r\nEND:VCARD\r\n")], [("urn:x", "odd")]
            )
        ],
        "urn:relentad:sync:3",
    )
    root = ET.fromstring(body)
    ns = {"d": DAV, "c": CARD}
    assert root.findtext("d:response/d:href", namespaces=ns) == "/a b&c"
    assert root.findtext(".//c:address-data", namespaces=ns) == "BEGIN:VCARD\r\nEND:VCARD\r\n"
    assert root.find(".//d:propstat[2]/d:prop/{urn:x}odd", ns) is not None
    assert "404" in (root.findtext("d:response/d:propstat[2]/d:status", namespaces=ns) or "")
    assert root.findtext("d:sync-token", namespaces=ns) == "urn:relentad:sync:3"
    error = ET.fromstring(davxml.error((DAV, "valid-sync-token"), "start over"))
    assert error.tag == "{DAV:}error" and error.find("{DAV:}valid-sync-token") is not None


def parse_filter(xml: str) -> query.Filter:
    root = ET.fromstring(f"<c:filter xmlns:c='{CARD}' {xml}")
    return query.parse_filter(root)


def test_query_filters() -> None:
    card = {"FN": ["Jürgen Schmidt"], "EMAIL": ["j@acme.example", "js@home.example"], "NOTE": []}
    contains = parse_filter("><c:prop-filter name='fn'><c:text-match>JÜRGEN</c:text-match></c:prop-filter></c:filter>")
    assert contains.test(card) and not contains.test({"FN": ["Petra"]})
    ends = "<c:text-match match-type='ends-with' collation='i;octet'>@home.example</c:text-match>"
    assert parse_filter(f"><c:prop-filter name='EMAIL'>{ends}</c:prop-filter></c:filter>").test(card)
    negated = "<c:text-match negate-condition='yes'>acme</c:text-match>"
    assert parse_filter(f"><c:prop-filter name='EMAIL'>{negated}</c:prop-filter></c:filter>").test(card)
    undefined = "<c:prop-filter name='NOTE'><c:is-not-defined/></c:prop-filter>"
    missing = "<c:prop-filter name='ORG'><c:text-match>x</c:text-match></c:prop-filter>"
    assert parse_filter(f"test='anyof'>{undefined}{missing}</c:filter>").test(card)
    assert not parse_filter(f"test='allof'>{undefined}{missing}</c:filter>").test(card)
    assert query.parse_filter(None).test(card)
    for xml, status, condition in (
        ("><c:prop-filter name='FN'><c:param-filter name='TYPE'/></c:prop-filter></c:filter>", 403, "supported-filter"),
        (
            "><c:prop-filter name='FN'><c:text-match collation='x'>a</c:text-match></c:prop-filter></c:filter>",
            403,
            "supported-collation",
        ),
        (
            "><c:prop-filter name='FN'><c:text-match match-type='regex'>a</c:text-match></c:prop-filter></c:filter>",
            400,
            None,
        ),
        ("test='some'></c:filter>", 400, None),
        ("><c:prop-filter/></c:filter>", 400, None),
    ):
        with pytest.raises(DavError) as refused:
            parse_filter(xml)
        assert refused.value.status == status
        assert refused.value.condition == (None if condition is None else (CARD, condition))


def test_url_layout() -> None:
    assert server.resource("/") == server.Resource("root")
    assert server.resource("/dav/") == server.Resource("root")
    assert server.resource("/dav/principals/Alice%40Example.test/") == server.Resource(
        "principal", "alice@example.test"
    )
    assert server.resource("/dav/addressbooks/a@b/") == server.Resource("home", "a@b")
    assert server.resource("/dav/addressbooks/a@b/contacts") == server.Resource("book", "a@b")
    assert server.resource("/dav/addressbooks/a@b/contacts/x.vcf") == server.Resource("card", "a@b", "x.vcf")
    for path in ("/dav/addressbooks/a@b/other/", "/dav/addressbooks/a@b/contacts/x.ics", "/dav/x/y/z/w/v", "/x"):
        assert server.resource(path) is None, path
    assert server.book_href("a+b@c.example") == "/dav/addressbooks/a+b@c.example/contacts/"


def test_multiget_hrefs_name_cards_of_this_book_only() -> None:
    base = "/dav/addressbooks/a@b/contacts/"
    assert server._card_name("https://h:1/dav/addressbooks/a%40b/contacts/x%20y.vcf", base) == "x y.vcf"
    assert server._card_name(base + "x.vcf", base) == "x.vcf"
    for href in ("http://[::1", base + "x.ics", "/dav/addressbooks/c@d/contacts/x.vcf", base + "sub/x.vcf", ""):
        assert server._card_name(href, base) is None, href


def test_text_that_xml_cannot_carry_is_replaced() -> None:
    """Whatever text reaches a multistatus (a property value, a name), the document stays well-formed."""
    document = davxml.multistatus([davxml.response("/a b", [davxml.d("displayname", "x\uffffy\x01z\ud800")])])
    assert ET.fromstring(document).findtext(".//{DAV:}displayname") == "x\ufffdy\ufffdz\ufffd"
