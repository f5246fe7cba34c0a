"""XML from clients, read safely: expat with no DOCTYPE at all, so no entity can be declared or expanded (no
"billion laughs", no external entity), and bounded nesting and element counts. The caller bounds the size. Also
:func:`characters`, for the text of documents written.

Used for Outlook's Autodiscover requests (:mod:`relentad.clientconfig`) and WebDAV/CardDAV bodies
(:mod:`relentad.carddav`). Element tags are ``{namespace}local`` as in :mod:`xml.etree.ElementTree`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from xml.parsers import expat

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def characters(text: str) -> str:
    """``text`` for an XML document we write: what XML 1.0 cannot carry at all (§2.2: most C0 controls, U+FFFE,
    U+FFFF, surrogates) becomes U+FFFD, so that the document stays well-formed whatever the text came from."""
    return _NOT_XML.sub("\ufffd", text)


class BadXML(Exception):
    """A body that is no acceptable XML document; the message says why (for a 400 reply)."""


class _Forbidden(Exception):
    pass


def _no_doctype(*_: object) -> None:
    raise _Forbidden("a DOCTYPE is not accepted")


def _no_external_entity(_context: str, _base: str | None, _system: str | None, _public: str | None) -> int:
    raise _Forbidden("external entities are not accepted")


def _parser() -> expat.XMLParserType:
    """An expat parser (namespaces split by a space) that refuses any DOCTYPE, entity declaration or external
    entity; :func:`tree` sets its element and character handlers."""
    created = expat.ParserCreate(namespace_separator=" ")
    created.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    created.StartDoctypeDeclHandler = _no_doctype  # no DTD: so no entity is ever declared or expanded
    created.EntityDeclHandler = _no_doctype
    created.ExternalEntityRefHandler = _no_external_entity
    return created


def _run(created: expat.XMLParserType, body: bytes) -> None:
    """Feed the whole ``body`` to a :func:`_parser`; BadXML when it is not well-formed or not acceptable."""
    try:
        created.Parse(body, True)
    except (expat.ExpatError, _Forbidden, ValueError, LookupError, RecursionError) as exc:  # Lookup: encoding="x"
        raise BadXML(str(exc) or type(exc).__name__) from None


def _tag(name: str) -> str:
    namespace, _, local = name.rpartition(" ")
    return f"{{{namespace}}}{local}" if namespace else local


def tree(body: bytes, *, max_depth: int = 32, max_elements: int = 20000) -> ET.Element:
    """The document's root element, its text and children (attributes without namespaces kept by local name)."""
    created = _parser()
    builder = ET.TreeBuilder()
    depth = [0, 0]  # current depth, elements seen

    def start(name: str, attributes: dict[str, str]) -> None:
        depth[0] += 1
        depth[1] += 1
        if depth[0] > max_depth:
            raise _Forbidden("elements nested too deep")
        if depth[1] > max_elements:
            raise _Forbidden("too many elements")
        builder.start(_tag(name), {_tag(key): value for key, value in attributes.items()})

    def end(name: str) -> None:
        depth[0] -= 1
        builder.end(_tag(name))

    created.StartElementHandler = start
    created.EndElementHandler = end
    created.CharacterDataHandler = builder.data
    _run(created, body)
    root = builder.close()
    if root is None:
        raise BadXML("no document element")
    return root
