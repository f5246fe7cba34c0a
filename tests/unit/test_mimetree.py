"""The byte-offset MIME part tree (relentad.mimetree)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from relentad.envelope import envelope
from relentad.mimetree import MAX_DEPTH, MAX_PARTS, Part, parse_tree, split_header


def tree_of(text: str | bytes) -> Part:
    data = text.encode() if isinstance(text, str) else text
    return parse_tree(data, envelope)[0]


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def check_invariants(part: Part, size: int) -> None:
    assert 0 <= part.header_start <= part.body_start <= part.body_end <= size
    for child in part.children:
        assert part.body_start <= child.header_start
        assert child.body_end <= part.body_end
        check_invariants(child, size)


def depth_of(part: Part) -> int:
    return 1 + max((depth_of(child) for child in part.children), default=0)


def test_split_header() -> None:
    assert split_header(b"A: b\r\n\r\nbody", 0, 13) == (6, 8)
    assert split_header(b"\r\nbody", 0, 6) == (0, 2)
    assert split_header(b"A: b\r\nB: c", 0, 10) == (10, 10)
    assert split_header(b"", 0, 0) == (0, 0)


def test_single_part_defaults_and_offsets() -> None:
    data = crlf("Subject: x\n\nhello\nworld\n")
    part = tree_of(data)
    assert (part.header_start, part.body_start, part.body_end) == (0, 14, len(data))
    assert part.header_end == part.body_start
    assert data[part.body_start :] == b"hello\r\nworld\r\n"
    assert (part.type, part.subtype, part.params) == ("text", "plain", [("charset", "us-ascii")])
    assert part.encoding is None
    assert part.lines == 2 and part.size == 14
    assert part.children == []


def test_no_body_and_empty_message() -> None:
    part = tree_of(b"Subject: only a header")
    assert part.body_start == part.body_end == 22
    part = tree_of(b"")
    assert (part.header_start, part.body_start, part.body_end) == (0, 0, 0)
    part = tree_of(b"\r\nbody only")
    assert part.body_start == 2 and part.type == "text"


MULTI = crlf(
    'Content-Type: multipart/mixed; boundary="XX"\n'
    "\n"
    "preamble\n"
    "--XX\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: Quoted-Printable\n"
    "\n"
    "caf=C3=A9\n"
    "--XX  \n"
    "Content-Type: application/pdf; name=a.pdf\n"
    'Content-Disposition: attachment; filename="a.pdf"\n'
    "Content-Language: en, de (comment)\n"
    "Content-Location: http://x.test/\n a.pdf\n"
    "Content-ID: <id@x>\n"
    "Content-Description: =?utf-8?q?J=C3=B6rg?=\n"
    "\n"
    "%PDF\n"
    "--XX--\n"
    "epilogue\n"
)


def test_multipart_offsets_exclude_delimiter_crlf() -> None:
    root = tree_of(MULTI)
    assert root.is_multipart and root.subtype == "mixed"
    first, second = root.children
    assert MULTI[first.header_start : first.body_end].startswith(b"Content-Type: text/plain")
    assert MULTI[first.body_start : first.body_end] == b"caf=C3=A9"
    assert MULTI[second.body_start : second.body_end] == b"%PDF"
    assert first.encoding == "quoted-printable"
    assert first.params == [("charset", "utf-8")]
    assert first.lines == 0
    assert second.type == "application" and second.subtype == "pdf"
    assert second.disposition == "attachment"
    assert second.disposition_params == [("filename", "a.pdf")]
    assert second.language == ["en", "de"]
    assert second.location == "http://x.test/a.pdf"
    assert second.content_id == "<id@x>"
    assert second.description == "=?utf-8?q?J=C3=B6rg?="
    check_invariants(root, len(MULTI))


def test_delimiter_at_body_start_and_empty_parts() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nA\n--b\n--b\nX: y\n\nB\n--b--")
    root = tree_of(data)
    bodies = [data[c.body_start : c.body_end] for c in root.children]
    assert bodies == [b"A", b"", b"B"]
    check_invariants(root, len(data))


def test_boundary_prefix_is_not_a_delimiter() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\n--bX\nstill first\n--b--\n")
    root = tree_of(data)
    assert len(root.children) == 1
    assert data[root.children[0].body_start : root.children[0].body_end] == b"--bX\r\nstill first"


def test_missing_close_delimiter_ends_at_enclosing_body() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=out\n\n--out\n"
        "Content-Type: multipart/alternative; boundary=in\n\n--in\n\ninner text\n"
        "--out\n\nsecond\n"
    )
    root = tree_of(data)
    inner, second = root.children
    assert inner.is_multipart and len(inner.children) == 1
    assert data[inner.children[0].body_start : inner.children[0].body_end] == b"inner text"
    assert data[second.body_start : second.body_end] == b"second\r\n"
    check_invariants(root, len(data))


def test_multipart_without_boundary_or_delimiters_is_demoted() -> None:
    for header in ("multipart/mixed", "multipart/mixed; boundary=zz", 'multipart/mixed; boundary=""'):
        part = tree_of(crlf(f"Content-Type: {header}\n\nno parts here\n"))
        assert (part.type, part.subtype, part.children) == ("text", "plain", [])
        assert part.lines == 1


def test_invalid_content_type_means_text_plain() -> None:
    for header in ("garbage", "text/", "/plain", "te xt/plain", ""):
        part = tree_of(crlf(f"Content-Type: {header}\n\nx"))
        assert (part.type, part.subtype, part.params) == ("text", "plain", [("charset", "us-ascii")])


def test_message_rfc822_is_parsed_with_envelope() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nintro\n--b\n"
        "Content-Type: message/rfc822\n\n"
        "Subject: inner\nFrom: a@b.test\nContent-Type: text/html\n\n<p>hi</p>\n"
        "--b--\n"
    )
    root = tree_of(data)
    message = root.children[1]
    assert message.is_message
    assert message.envelope is not None and message.envelope[1] == "inner"
    inner = message.children[0]
    assert (inner.type, inner.subtype) == ("text", "html")
    assert data[inner.header_start : inner.body_start].startswith(b"Subject: inner")
    assert data[inner.body_start : inner.body_end] == b"<p>hi</p>"
    assert message.lines == 4
    check_invariants(root, len(data))


def test_encoded_message_rfc822_is_a_leaf() -> None:
    part = tree_of(crlf("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeA==\n"))
    assert (part.type, part.subtype, part.children, part.envelope) == ("application", "octet-stream", [], None)


def test_digest_default_is_message_rfc822() -> None:
    data = crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nbody\n--d--\n")
    child = tree_of(data).children[0]
    assert (child.type, child.subtype) == ("message", "rfc822")
    assert child.envelope is not None and child.envelope[1] == "one"


def test_nesting_is_capped() -> None:
    levels = 500
    head = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(levels))
    tail = "".join(f"\n--b{i}--" for i in reversed(range(levels)))
    data = crlf(head + "\nleaf" + tail)
    root = tree_of(data)
    assert depth_of(root) <= MAX_DEPTH + 1
    check_invariants(root, len(data))
    messages = crlf("Content-Type: message/rfc822\n\n" * 300 + "\nbody\n")
    root = tree_of(messages)
    assert depth_of(root) <= MAX_DEPTH + 2
    check_invariants(root, len(messages))


def count_parts(part: Part) -> int:
    return 1 + sum(count_parts(child) for child in part.children)


def test_part_count_is_capped() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=b\n\n" + "--b\n\nx\n" * (MAX_PARTS + 500) + "--b--\n")
    root = tree_of(data)
    assert count_parts(root) <= MAX_PARTS
    check_invariants(root, len(data))


def test_first_content_field_wins_and_names_are_case_insensitive() -> None:
    part = tree_of(crlf("CONTENT-TYPE: Text/HTML; CHARSET=ISO-8859-1\nContent-Type: image/png\n\nx"))
    assert (part.type, part.subtype, part.params) == ("text", "html", [("charset", "ISO-8859-1")])


def test_to_list_round_trip() -> None:
    root = tree_of(MULTI)
    assert Part.from_list(root.to_list()) == root


_pieces = st.sampled_from(
    [
        "--b\n",
        "--b--\n",
        "--c\n",
        "--c--\n",
        "\n",
        "Content-Type: multipart/mixed; boundary=c\n",
        "Content-Type: message/rfc822\n",
        "Content-Type: text/plain\n",
        "Content-Transfer-Encoding: base64\n",
        "Subject: x\n",
        "body\n",
        "\r",
        "\x00",
    ]
)


@settings(max_examples=300)
@given(st.lists(_pieces, max_size=30), st.booleans())
def test_mime_like_input_keeps_invariants(pieces: list[str], as_crlf: bool) -> None:
    text = "Content-Type: multipart/mixed; boundary=b\n\n" + "".join(pieces)
    data = crlf(text) if as_crlf else text.encode()
    root = tree_of(data)
    check_invariants(root, len(data))
    restored: Any = Part.from_list(root.to_list())
    assert restored == root
