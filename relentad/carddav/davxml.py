"""WebDAV XML for CardDAV: reading PROPFIND and REPORT bodies (pure, from :mod:`relentad.safexml` trees) and
writing multistatus and error documents.

Invariants:
- A body that is not what the method expects raises :class:`DavError` with status 400 (or 403 with the RFC's
  precondition element); nothing here touches the store.
- Output declares the ``DAV:``, CardDAV and calendarserver namespaces once on the root with fixed prefixes; a
  property name in any other namespace (one the client asked for and we do not have) is written with its own
  declaration, so every name the client sent comes back as it sent it (RFC 4918 §9.1: 404 propstat).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from .. import safexml

DAV = "DAV:"
CARD = "urn:ietf:params:xml:ns:carddav"
CS = "http://calendarserver.org/ns/"
_PREFIXES = {DAV: "d", CARD: "card", CS: "cs"}
XML_TYPE = "application/xml; charset=utf-8"

Name = tuple[str, str]  # (namespace, local name)


class DavError(Exception):
    """A request refused with ``status``; ``condition`` is the precondition element for a DAV:error body (RFC 4918
    §16), ``message`` a line of explanation."""

    def __init__(self, status: int, message: str, condition: Name | None = None, href: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.condition = condition
        self.href = href  # a resource the condition names (CARDDAV:no-uid-conflict, RFC 6352 §6.3.2.1)


# -- output ------------------------------------------------------------------------------------------------


@dataclass
class Node:
    """An element to write: its name, attributes (no namespaces) and children (elements or text)."""

    name: Name
    children: list[Node | str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)


def el(name: Name, *children: Node | str | None, **attributes: str) -> Node:
    return Node(name, [c for c in children if c is not None], attributes)


def d(local: str, *children: Node | str | None) -> Node:
    return el((DAV, local), *children)


def _write(node: Node, out: list[str], root: bool) -> None:
    namespace, local = node.name
    prefix = _PREFIXES.get(namespace)
    declarations = ""
    if root:
        declarations = "".join(f" xmlns:{p}={quoteattr(ns)}" for ns, p in _PREFIXES.items())
    if prefix is None:
        prefix = "x"
        declarations += f" xmlns:x={quoteattr(namespace)}" if namespace else ""
    tag = f"{prefix}:{local}" if namespace else local
    attributes = "".join(f" {key}={quoteattr(value)}" for key, value in node.attributes.items())
    if not node.children:
        out.append(f"<{tag}{declarations}{attributes}/>")
        return
    out.append(f"<{tag}{declarations}{attributes}>")
    for child in node.children:
        if isinstance(child, str):
            # a raw CR LF would be read as LF (XML §2.11); what XML cannot carry at all becomes U+FFFD
            out.append(escape(safexml.characters(child), {"\r": "&#13;"}))
        else:
            _write(child, out, False)
    out.append(f"</{tag}>")


def document(root: Node) -> bytes:
    out = ['<?xml version="1.0" encoding="utf-8"?>\n']
    _write(root, out, True)
    out.append("\n")
    return "".join(out).encode("utf-8")


def status_line(status: int) -> str:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"


def response(href: str, found: list[Node], missing: Sequence[Name] = ()) -> Node:
    """A DAV:response with a 200 propstat for ``found`` and a 404 one for ``missing`` names."""
    node = d("response", d("href", href))
    if found:
        node.children.append(d("propstat", d("prop", *found), d("status", status_line(200))))
    if missing:
        node.children.append(d("propstat", d("prop", *(el(n) for n in missing)), d("status", status_line(404))))
    return node


def gone(href: str, status: int = 404) -> Node:
    """A DAV:response for a member that is not there (multiget of an unknown card, a card removed since a token)."""
    return d("response", d("href", href), d("status", status_line(status)))


def multistatus(responses: list[Node], sync_token: str | None = None) -> bytes:
    root = d("multistatus", *responses)
    if sync_token is not None:
        root.children.append(d("sync-token", sync_token))
    return document(root)


def error(condition: Name, message: str = "", href: str | None = None) -> bytes:
    """A DAV:error body naming the failed precondition, with a human-readable line beside it."""
    named = el(condition, d("href", href) if href else None)
    return document(d("error", named, el(("urn:relentad", "reason"), message) if message else None))


# -- input -------------------------------------------------------------------------------------------------


def _name(tag: str) -> Name:
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    return (namespace, local)


@dataclass(frozen=True)
class Props:
    """What a PROPFIND or REPORT asks for: some properties, all of them, or their names."""

    kind: Literal["prop", "allprop", "propname"]
    names: tuple[Name, ...] = ()
    vcard_version: str = "3.0"  # of address-data, from its version attribute (RFC 6352 §10.4)


ADDRESS_DATA: Name = (CARD, "address-data")
VCARD_VERSIONS = ("3.0", "4.0")


def parse(body: bytes) -> ET.Element:
    try:
        return safexml.tree(body)
    except safexml.BadXML as exc:
        raise DavError(400, f"bad XML: {exc}") from None


def _props(container: ET.Element | None) -> Props:
    if container is None:
        return Props("allprop")
    names: list[Name] = []
    version = "3.0"
    for child in container:
        name = _name(child.tag)
        if name == ADDRESS_DATA:
            content_type = child.get("content-type", "text/vcard").lower()
            version = child.get("version", "3.0")
            if content_type != "text/vcard" or version not in VCARD_VERSIONS:
                raise DavError(
                    403, f"address data {content_type} {version} is not served", (CARD, "supported-address-data")
                )
        names.append(name)
    return Props("prop", tuple(dict.fromkeys(names)), version)


def _one_of(root: ET.Element) -> Props:
    """The DAV:prop, DAV:allprop or DAV:propname child of a PROPFIND or REPORT (allprop when there is none)."""
    for child in root:
        name = _name(child.tag)
        if name == (DAV, "prop"):
            return _props(child)
        if name == (DAV, "propname"):
            return Props("propname")
        if name == (DAV, "allprop"):
            return Props("allprop")
    return Props("allprop")


def propfind(body: bytes) -> Props:
    """RFC 4918 §9.1: an empty body asks for allprop."""
    if not body.strip():
        return Props("allprop")
    root = parse(body)
    if _name(root.tag) != (DAV, "propfind"):
        raise DavError(400, "the body of a PROPFIND is a DAV:propfind")
    return _one_of(root)


@dataclass(frozen=True)
class Report:
    """A REPORT body: which report, the properties asked for and its own parts (the root element)."""

    name: Name
    props: Props
    root: ET.Element

    def hrefs(self) -> list[str]:
        return [(child.text or "").strip() for child in self.root if _name(child.tag) == (DAV, "href")]

    def child(self, name: Name) -> ET.Element | None:
        return next((child for child in self.root if _name(child.tag) == name), None)

    def text(self, name: Name) -> str | None:
        found = self.child(name)
        return None if found is None else (found.text or "").strip()


def report(body: bytes) -> Report:
    if not body.strip():
        raise DavError(400, "a REPORT needs a body")
    root = parse(body)
    return Report(_name(root.tag), _one_of(root), root)


def name_of(element: ET.Element) -> Name:
    return _name(element.tag)
