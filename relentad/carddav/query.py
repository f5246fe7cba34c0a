"""CardDAV addressbook-query filters (RFC 6352 §10.5): parsing the CARDDAV:filter element and matching a card's
values against it. Pure: the server hands each card's properties in as {NAME: [values]}.

Supported: prop-filter on any property name (a property the card does not have matches only ``is-not-defined``),
with ``test`` anyof/allof at both levels, text-match with match-type equals/contains/starts-with/ends-with,
``negate-condition`` and the collations i;unicode-casemap (default), i;ascii-casemap and i;octet. A param-filter
is refused with 403 CARDDAV:supported-filter (the cards carry no parameters worth filtering), an unknown
collation with 403 CARDDAV:supported-collation (§10.5.4, §8.3).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .davxml import CARD, DavError, name_of

COLLATIONS = ("i;unicode-casemap", "i;ascii-casemap", "i;octet")
_MATCH_TYPES = ("equals", "contains", "starts-with", "ends-with")


@dataclass(frozen=True)
class TextMatch:
    text: str
    collation: str = "i;unicode-casemap"
    match_type: str = "contains"
    negate: bool = False

    def fold(self, value: str) -> str:
        if self.collation == "i;unicode-casemap":
            return value.casefold()
        if self.collation == "i;ascii-casemap":
            return value.translate(_ASCII_LOWER)
        return value

    def matches(self, value: str) -> bool:
        wanted, value = self.fold(self.text), self.fold(value)
        found = {
            "equals": value == wanted,
            "contains": wanted in value,
            "starts-with": value.startswith(wanted),
            "ends-with": value.endswith(wanted),
        }[self.match_type]
        return found != self.negate


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class PropFilter:
    name: str  # upper case
    all_of: bool = False
    is_not_defined: bool = False
    matches: tuple[TextMatch, ...] = ()

    def test(self, values: Sequence[str]) -> bool:
        if self.is_not_defined:
            return not values
        if not values:
            return False
        if not self.matches:
            return True
        results = (any(match.matches(value) for value in values) for match in self.matches)
        return all(results) if self.all_of else any(results)


@dataclass(frozen=True)
class Filter:
    props: tuple[PropFilter, ...] = ()
    all_of: bool = False

    def test(self, card: Mapping[str, Sequence[str]]) -> bool:
        """Whether a card, {property name: values}, passes; an empty filter passes every card."""
        if not self.props:
            return True
        results = (p.test(card.get(p.name, ())) for p in self.props)
        return all(results) if self.all_of else any(results)


def _test(element: ET.Element) -> bool:
    """Whether ``test`` says allof (anyof is the default)."""
    test = element.get("test", "anyof")
    if test not in ("anyof", "allof"):
        raise DavError(400, f"test={test!r}: anyof or allof")
    return test == "allof"


def _text_match(element: ET.Element) -> TextMatch:
    collation = element.get("collation", "i;unicode-casemap")
    if collation not in COLLATIONS:
        raise DavError(403, f"collation {collation} is not supported", (CARD, "supported-collation"))
    match_type = element.get("match-type", "contains")
    if match_type not in _MATCH_TYPES:
        raise DavError(400, f"match-type={match_type!r}")
    negate = element.get("negate-condition", "no")
    if negate not in ("yes", "no"):
        raise DavError(400, f"negate-condition={negate!r}")
    return TextMatch(element.text or "", collation, match_type, negate == "yes")


def _prop_filter(element: ET.Element) -> PropFilter:
    name = element.get("name", "").strip().upper()
    if not name:
        raise DavError(400, "a prop-filter needs a name")
    not_defined, matches = False, []
    for child in element:
        local = name_of(child)
        if local == (CARD, "is-not-defined"):
            not_defined = True
        elif local == (CARD, "text-match"):
            matches.append(_text_match(child))
        elif local == (CARD, "param-filter"):
            raise DavError(403, "param-filter is not supported", (CARD, "supported-filter"))
        else:
            raise DavError(400, f"unknown element {local[1]} in a prop-filter")
    return PropFilter(name, _test(element), not_defined, tuple(matches))


def parse_filter(element: ET.Element | None) -> Filter:
    """The CARDDAV:filter of an addressbook-query (§10.5); a missing one passes every card."""
    if element is None:
        return Filter()
    props = []
    for child in element:
        if name_of(child) != (CARD, "prop-filter"):
            raise DavError(400, f"unknown element {name_of(child)[1]} in a filter")
        props.append(_prop_filter(child))
    return Filter(tuple(props), _test(element))
