"""The message facade: parse, CRLF handling, FETCH sections, BINARY, search text, JSON (relentad.message)."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relentad.bodytext import html_to_text
from relentad.message import (
    Address,
    ParsedMessage,
    Part,
    binary_section,
    decode_header,
    header_fields_of,
    needs_crlf,
    normalize_crlf,
    parse,
    section_bytes,
    text_for_search,
)

CORPUS = Path("/work/shared/corpus/spamassassin/train")


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_FAILURES = _Recorder()
logging.getLogger("relentad.message").addHandler(_FAILURES)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


SIMPLE = crlf(
    "Date: Tue, 24 Nov 2026 10:00:00 +0000\n"
    "From: =?utf-8?q?J=C3=B6rg?= <Joerg@Example.DE>\n"
    "To: bob@example.test, Carol <carol@EXAMPLE.test>\n"
    "Subject: =?utf-8?q?caf=C3=A9?= talk\n"
    "Message-ID: <m1@example.de>\n"
    "In-Reply-To: <m0@example.test>\n"
    "References: <a@x> <m0@example.test>\n"
    "X-Other: 1\n"
    "\n"
    "hello\n"
)

NESTED = crlf(
    "Subject: outer\n"
    "Content-Type: multipart/mixed; boundary=o\n"
    "\n"
    "preamble\n"
    "--o\n"
    "Content-Type: multipart/alternative; boundary=a\n"
    "\n"
    "--a\n"
    "Content-Type: text/plain; charset=iso-8859-1\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "caf=E9 plain\n"
    "--a\n"
    "Content-Type: text/html; charset=utf-8\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    + base64.encodebytes(b"<html><style>p{}</style><p>caf\xc3\xa9 &amp; <b>html</b></p></html>").decode()
    + "--a--\n"
    "--o\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "Subject: inner\n"
    "From: x@y.test\n"
    "Content-Type: multipart/mixed; boundary=i\n"
    "\n"
    "--i\n"
    "\n"
    "inner one\n"
    "--i\n"
    "Content-Type: application/x-thing\n"
    "Content-Transfer-Encoding: x-uuencode\n"
    "\n"
    "begin\n"
    "--i--\n"
    "--o--\n"
)


# --- line endings -------------------------------------------------------------------------------


def test_normalize_crlf() -> None:
    assert normalize_crlf(b"a\nb\r\nc\r\r\n") == b"a\r\nb\r\nc\r\r\n"
    raw = b"a\r\nb\r\n"
    assert normalize_crlf(raw) is raw
    assert not needs_crlf(raw) and not needs_crlf(b"no newline") and needs_crlf(b"a\r\nb\n")


def test_bare_lf_message_offsets_refer_to_normalised_form() -> None:
    raw = SIMPLE.replace(b"\r\n", b"\n")
    message = parse(raw)
    assert message.needs_crlf and message.size == len(SIMPLE)
    assert parse(SIMPLE).to_json() == message.to_json().replace('"n":1', '"n":0')
    data = normalize_crlf(raw)
    assert section_bytes(data, message.tree, (), "TEXT") == b"hello\r\n"


# --- header summary -----------------------------------------------------------------------------


def test_summary_values() -> None:
    message = parse(SIMPLE)
    assert message.date == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert message.subject == "café talk"
    assert message.from_ == [Address("Jörg", "Joerg@example.de")]
    assert message.to == [Address("", "bob@example.test"), Address("Carol", "carol@example.test")]
    assert message.sender == [] and message.reply_to == [] and message.cc == [] and message.bcc == []
    assert message.message_id == "m1@example.de"
    assert message.in_reply_to == ["m0@example.test"]
    assert message.references == ["a@x", "m0@example.test"]
    assert not message.is_bulk
    assert message.envelope[1] == "=?utf-8?q?caf=C3=A9?= talk"
    assert message.envelope[3] == message.envelope[2]


@pytest.mark.parametrize(
    ("header", "bulk"),
    [
        ("List-Id: <x.lists.test>", True),
        ("List-Unsubscribe: <mailto:u@x>", True),
        ("Precedence: bulk", True),
        ("Precedence: first-class", False),
        ("Auto-Submitted: auto-replied", True),
        ("Auto-Submitted: no", False),
    ],
)
def test_bulk_detection(header: str, bulk: bool) -> None:
    assert parse(crlf(f"{header}\n\nx")).is_bulk is bulk


def test_header_fields_of_message_and_parts() -> None:
    assert header_fields_of(SIMPLE, parse(SIMPLE).tree)[-1] == ("x-other", "1")
    tree = parse(NESTED).tree
    assert header_fields_of(NESTED, tree.children[1].children[0])[0] == ("subject", "inner")
    assert header_fields_of(NESTED, tree.children[0].children[0]) == [
        ("content-type", "text/plain; charset=iso-8859-1"),
        ("content-transfer-encoding", "quoted-printable"),
    ]


def test_json_round_trip_is_compact() -> None:
    for raw in (SIMPLE, NESTED, b"", b"\x00\xff"):
        message = parse(raw)
        text = message.to_json()
        again = ParsedMessage.from_json(text)
        assert again == message
        assert again.bodystructure == message.bodystructure
        assert json.loads(text)["v"] == 1
    assert len(parse(SIMPLE).to_json()) < 900
    open_end = parse(b"Subject: draft\r\n\r\nno final line break")
    assert open_end.open_end and ParsedMessage.from_json(open_end.to_json()).open_end
    assert not parse(SIMPLE).open_end and "o" not in parse(SIMPLE).to_dict(), "older rows without it mean a CRLF end"


def test_from_json_rejects_other_versions() -> None:
    data = parse(SIMPLE).to_dict()
    data["v"] = 99
    with pytest.raises(ValueError, match="version"):
        ParsedMessage.from_dict(data)


# --- sections (RFC 3501 §6.4.5) -----------------------------------------------------------------


def test_whole_header_and_text_sections() -> None:
    tree = parse(SIMPLE).tree
    assert section_bytes(SIMPLE, tree) == SIMPLE
    header = section_bytes(SIMPLE, tree, (), "HEADER")
    assert header.endswith(b"X-Other: 1\r\n\r\n") and SIMPLE.startswith(header)
    assert section_bytes(SIMPLE, tree, (), "text") == b"hello\r\n"
    assert section_bytes(SIMPLE, tree, (), "MIME") == b""


def test_header_fields_keep_message_order_and_end_with_blank_line() -> None:
    tree = parse(SIMPLE).tree
    got = section_bytes(SIMPLE, tree, (), "HEADER.FIELDS", ["subject", "FROM", "nope"])
    assert got == (b"From: =?utf-8?q?J=C3=B6rg?= <Joerg@Example.DE>\r\nSubject: =?utf-8?q?caf=C3=A9?= talk\r\n\r\n")
    assert section_bytes(SIMPLE, tree, (), "HEADER.FIELDS", ["nope"]) == b"\r\n"
    rest = section_bytes(SIMPLE, tree, (), "HEADER.FIELDS.NOT", ["date", "from", "to", "subject", "message-id"])
    assert rest == b"In-Reply-To: <m0@example.test>\r\nReferences: <a@x> <m0@example.test>\r\nX-Other: 1\r\n\r\n"


def test_folded_field_and_header_without_blank_line() -> None:
    raw = b"Subject: a\r\n b\r\nTo: x"
    tree = parse(raw).tree
    assert section_bytes(raw, tree, (), "HEADER.FIELDS", ["to", "subject"]) == raw + b"\r\n\r\n"
    assert section_bytes(raw, tree, (), "TEXT") == b""


def test_non_multipart_part_one_is_the_body() -> None:
    tree = parse(SIMPLE).tree
    assert section_bytes(SIMPLE, tree, (1,)) == b"hello\r\n"
    assert section_bytes(SIMPLE, tree, (1,), "MIME").startswith(b"Date:")
    assert section_bytes(SIMPLE, tree, (2,)) == b""
    assert section_bytes(SIMPLE, tree, (1, 1)) == b""
    assert section_bytes(SIMPLE, tree, (1,), "HEADER") == b""
    assert section_bytes(SIMPLE, tree, (0,)) == b""


def test_nested_part_numbers() -> None:
    tree = parse(NESTED).tree
    assert section_bytes(NESTED, tree, (1, 1)) == b"caf=E9 plain"
    assert section_bytes(NESTED, tree, (1, 1), "MIME") == (
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    assert section_bytes(NESTED, tree, (1,)).startswith(b"--a\r\n")
    assert section_bytes(NESTED, tree, (1, 3)) == b""
    # As Dovecot: a leaf inside a multipart has a part 1, itself, and nothing below that.
    assert section_bytes(NESTED, tree, (1, 1, 1)) == b"caf=E9 plain"
    assert section_bytes(NESTED, tree, (1, 1, 1), "MIME") == section_bytes(NESTED, tree, (1, 1), "MIME")
    assert section_bytes(NESTED, tree, (1, 1, 1, 1)) == b""
    assert section_bytes(NESTED, tree, (1, 1, 2)) == b""
    assert section_bytes(NESTED, tree, (3,)) == b""


def test_message_rfc822_part_sections() -> None:
    tree = parse(NESTED).tree
    whole = section_bytes(NESTED, tree, (2,))
    assert whole.startswith(b"Subject: inner\r\n") and whole.endswith(b"--i--")
    assert section_bytes(NESTED, tree, (2,), "MIME") == b"Content-Type: message/rfc822\r\n\r\n"
    header = section_bytes(NESTED, tree, (2,), "HEADER")
    assert header.startswith(b"Subject: inner") and header.endswith(b"boundary=i\r\n\r\n")
    assert section_bytes(NESTED, tree, (2,), "TEXT").startswith(b"--i\r\n")
    assert section_bytes(NESTED, tree, (2,), "HEADER.FIELDS", ["from"]) == b"From: x@y.test\r\n\r\n"
    assert section_bytes(NESTED, tree, (2, 1)) == b"inner one"
    assert section_bytes(NESTED, tree, (2, 1), "MIME") == b"\r\n"
    assert section_bytes(NESTED, tree, (2, 2)) == b"begin"
    assert section_bytes(NESTED, tree, (2, 2), "HEADER") == b""


def test_single_part_embedded_message() -> None:
    raw = crlf("Content-Type: message/rfc822\n\nSubject: in\n\nbody\n")
    tree = parse(raw).tree
    assert section_bytes(raw, tree, (1,)) == b"Subject: in\r\n\r\nbody\r\n"
    assert section_bytes(raw, tree, (1,), "TEXT") == b"body\r\n"
    assert section_bytes(raw, tree, (1, 1)) == b"body\r\n"


def test_binary_sections() -> None:
    tree = parse(NESTED).tree
    assert binary_section(NESTED, tree, (1, 1)) == b"caf\xe9 plain"
    assert (
        binary_section(NESTED, tree, (1, 2)) == b"<html><style>p{}</style><p>caf\xc3\xa9 &amp; <b>html</b></p></html>"
    )
    assert binary_section(NESTED, tree, (2, 2)) is None
    assert binary_section(NESTED, tree, (2, 1)) == b"inner one"
    assert binary_section(NESTED, tree, (9,)) == b""
    assert binary_section(NESTED, tree) == NESTED
    raw = crlf("Content-Transfer-Encoding: base64\n\nSGVs bG8*\n=garbage")
    assert binary_section(raw, parse(raw).tree, (1,)) == b"Hello"
    raw = crlf("Content-Transfer-Encoding: quoted-printable\n\nsoft =  \nbreak, padding \t\nend=3D \t")
    assert binary_section(raw, parse(raw).tree, (1,)) == b"soft break, padding\r\nend="
    raw = crlf("Content-Transfer-Encoding: BASE64\n\nSGVsbG8gd29ybGQ")
    assert binary_section(raw, parse(raw).tree, (1,)) == b"Hello world"


# --- search text --------------------------------------------------------------------------------


def test_text_for_search_decodes_and_strips_html() -> None:
    text = text_for_search(NESTED, parse(NESTED).tree)
    assert text.split("\n") == ["café plain", "café & html", "inner one"]


def test_text_for_search_accepts_stored_bare_lf_form() -> None:
    raw = NESTED.replace(b"\r\n", b"\n")
    assert text_for_search(raw, parse(raw).tree) == text_for_search(NESTED, parse(NESTED).tree)


def test_attachment_filenames_and_nul_free_decoding() -> None:
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        'Content-Type: application/pdf; name="=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="\n\n%PDF\n--b\n'
        "Content-Type: application/pdf; name=x.pdf\n"
        "Content-Disposition: attachment; filename*=UTF-8''na%C3%AFve.pdf\n\n%PDF\n--b--\n"
    )
    first, second = parse(raw).tree.children
    assert isinstance(first, Part)
    assert (first.filename, second.filename) == ("résumé.pdf", "naïve.pdf")
    assert decode_header("=?utf-16-le?b?YQBiAA==?=") == "ab"
    assert decode_header("=?utf-8?q?a=00b?=") == "ab"


def test_text_for_search_is_capped() -> None:
    raw = crlf("Content-Type: text/html\n\n" + "<p>word</p> " * 100_000)
    text = text_for_search(raw, parse(raw).tree, limit=1000)
    assert len(text) <= 1000 and text.startswith("word word")


def test_html_stripping_survives_unclosed_markup() -> None:
    body = "<script>" + "<" * 20_000 + "<!--" * 5_000 + "<style" + "&amp;"
    raw = crlf("Content-Type: text/html\n\nvisible " + body)
    assert text_for_search(raw, parse(raw).tree) == "visible"


# --- robustness ---------------------------------------------------------------------------------


def exercise(raw: bytes, paths: tuple[tuple[int, ...], ...] = ((), (1,), (1, 1), (2,), (2, 1))) -> ParsedMessage:
    """Everything FETCH and the CRM do with a message; must not raise (nor need the last-resort net)."""
    _FAILURES.records.clear()
    message = parse(raw)
    assert not _FAILURES.records, "parse fell back to its last-resort net"
    data = normalize_crlf(raw)
    assert message.size == len(data)
    stored = message.to_json()
    stored.encode("utf-8")  # SQLite TEXT: no lone surrogates anywhere
    assert ParsedMessage.from_json(stored) == message
    json.dumps(message.bodystructure)
    json.dumps(message.body)
    for path in paths:
        for spec in (None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS"):
            section_bytes(data, message.tree, path, spec, ["subject"])
        binary_section(data, message.tree, path)
    text_for_search(data, message.tree).encode("utf-8")
    return message


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    exercise(raw)


_lines = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\n",
        b"Content-Type: message/rfc822\n",
        b"Content-Type: text/html; charset=x-bogus\n",
        b"Content-Transfer-Encoding: base64\n",
        b"Content-Transfer-Encoding: quoted-printable\n",
        b"Subject: =?utf-8?b?w6k=?= =?bad?q?=ZZ?= =?utf-7?q?+2AA-?=\n",
        b"Content-Type: text/plain; charset=utf-7\n",
        b"+2AA-\n",
        b'From: "a" <b@c>, (x) d@e; g:;\n',
        b"--b\n",
        b"--b--\n",
        b"\n",
        b"\r\n",
        b" folded\n",
        b"=C3=A9=\n",
        b"<p>x</p>&amp;\n",
        b"\xff\xfe\x00\n",
    ]
)


@settings(max_examples=400)
@given(st.lists(_lines, max_size=40))
def test_mime_shaped_garbage_never_raises(lines: list[bytes]) -> None:
    exercise(b"".join(lines))


HOSTILE = [
    b"To: " + b" " * 200_000 + b"x\r\n\r\n",
    b"To: " + b"a" * 200_000 + b"\r\n\r\n",
    b"From: " + b"(" * 100_000 + b"\r\n\r\n",
    b"Cc: " + b'"' * 100_001 + b"\r\n\r\n",
    b"Subject: " + b"=?" * 100_000 + b"\r\n\r\n",
    b"Content-Type: text/plain" + b";" * 200_000 + b"a=b\r\n\r\n",
    b'Content-Type: text/plain; a="' + b"\\" * 200_000 + b"\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b" + b" " * 200_000 + b"x\r\n" * 2,
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"\r\n--bX" * 50_000,
    b"X: y\r\n" * 100_000 + b"\r\n",
    b"Content-Type: text/html\r\n\r\n" + b"<!--<script<style" * 20_000,
    b"\n" * 200_000,
    b"\r" * 200_000,
]


@pytest.mark.parametrize("raw", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_inputs_finish(raw: bytes) -> None:
    """Big adversarial inputs: these would hang (pytest-timeout) if any scan were quadratic."""
    exercise(raw, ((), (1,)))


def corpus_files() -> list[Path]:
    folders = [CORPUS / "ham", CORPUS / "spam"]
    return sorted(p for folder in folders if folder.is_dir() for p in folder.rglob("*") if p.is_file())


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_real_corpus_parses() -> None:
    files = corpus_files()
    assert len(files) > 1000
    multipart = 0
    for path in files:
        multipart += exercise(path.read_bytes(), ((1,),)).tree.is_multipart
    assert multipart > 100


def test_a_parser_bug_degrades_to_one_text_part(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr("relentad.message.parse_tree", broken)
    message = parse(b"Subject: x\n\nbody\n")
    assert message.size == 20 and message.needs_crlf
    assert message.bodystructure[:7] == ["text", "plain", ["charset", "us-ascii"], None, None, "7bit", 20]
    assert message.envelope == [None] * 10
    assert ParsedMessage.from_json(message.to_json()) == message


def test_phrasing_tags_do_not_split_words() -> None:
    """`<b>bo</b>ld` reads "bold", as a browser shows it; block tags still separate words."""
    raw = crlf(
        "Content-Type: text/html\n\n<p>Your <SPAN lang=DE>Rech</SPAN>nung, <b>bo</b>ld<o:p></o:p></p>"
        '<p>next</p>cell<td>two<br>three <a href="x">li</a>nk'
    )
    assert text_for_search(raw, parse(raw).tree) == "Your Rechnung, bold next cell two three link"


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        ("a<Strong>b</STRONG>c<SuB>d</sub >e<wbr/>f<Font\tsize=2>g", "abcdefg"),  # any ASCII case, any end
        ("a<abbrx>b<bd>c<spans>d<bdx>e<o>f<st>g<table>h<th>i<ul>j<p/>k", "a b c d e f g h i j k"),  # near misses
        ("a \t\r\f\vb  c\t d\n \n\ne", "a b c d\ne"),  # blank runs to one space, blank lines to one break
        ("<ſpan>x</ſpan>y", "x y"),  # HTML's tag names are ASCII case-insensitive: no long s for "s"
    ],
)
def test_html_to_text_tags_and_blanks(markup: str, text: str) -> None:
    """Phrasing tag names match exactly, in any ASCII case (the pattern is built per first letter for speed);
    every other tag separates words; runs of blanks fold to one space."""
    assert html_to_text(markup) == text
