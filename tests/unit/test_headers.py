"""Header fields, RFC 2047, charsets, dates, parameters and address lists (relentad.headers, .addresses)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relentad.addresses import (
    Address,
    envelope_addresses,
    fast_envelope_addresses,
    parse_addresses,
    slow_envelope_addresses,
)
from relentad.headers import (
    decode_bytes,
    decode_header,
    field_spans,
    header_fields,
    header_text,
    message_ids,
    param_value,
    parse_date,
    parse_params,
    without_fields,
)


def fields_of(block: bytes) -> list[tuple[str, str]]:
    return header_fields(block, 0, len(block))


# --- header fields -------------------------------------------------------------------------------


def test_fields_are_unfolded_lowercased_and_stripped() -> None:
    block = b"Subject: hello\r\n  world\r\n\tagain\r\nX-Empty:\r\nTo :  bob@example.test  \r\n"
    assert fields_of(block) == [
        ("subject", "hello  world\tagain"),
        ("x-empty", ""),
        ("to", "bob@example.test"),
    ]


def test_lines_without_colon_and_orphan_continuations_are_skipped() -> None:
    block = b"From alice@example.org  Thu Aug 22 12:36:23 2002\r\n  orphan: x\r\nA: 1\r\ngarbage line\r\n more\r\nB: 2"
    assert fields_of(block) == [("a", "1"), ("b", "2")]


def test_eight_bit_fields_decode_utf8_or_windows_1252_independently() -> None:
    block = "Subject: café\r\n".encode() + b"X-Latin: \xe9t\xe9 \x93q\x94\r\n"
    assert fields_of(block) == [("subject", "café"), ("x-latin", "été “q”")]


def test_nul_is_dropped() -> None:
    assert fields_of(b"Subject: a\x00b\r\n") == [("subject", "ab")]
    assert header_text(b"\xff\x00") == "ÿ"


def test_field_spans_match_fields_and_cover_crlf() -> None:
    block = b"From x 12:00\r\nSubject: hi\r\n there\r\nX-A:b\r\nnoise\r\nTO: c"
    spans = field_spans(block, 0, len(block))
    assert [(name, block[start:end]) for name, start, end in spans] == [
        ("subject", b"Subject: hi\r\n there\r\n"),
        ("x-a", b"X-A:b\r\n"),
        ("to", b"TO: c"),
    ]
    assert [name for name, _, _ in spans] == [name for name, _ in fields_of(block)]


def test_huge_header_count() -> None:
    block = b"".join(b"X-N%d: v\r\n" % i for i in range(50_000))
    assert len(fields_of(block)) == 50_000


# --- RFC 2047 ------------------------------------------------------------------------------------


def test_decode_header_examples_from_rfc_2047() -> None:
    assert decode_header("=?ISO-8859-1?Q?a?=") == "a"
    assert decode_header("=?ISO-8859-1?Q?a?= b") == "a b"
    assert decode_header("=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=") == "ab"
    assert decode_header("=?ISO-8859-1?Q?a?=\t  =?ISO-8859-1?Q?b?=") == "ab"
    assert decode_header("=?ISO-8859-1?Q?a_b?=") == "a b"
    assert decode_header("(=?ISO-8859-1?Q?a?= b)") == "(a b)"


def test_decode_header_base64_utf8_and_padding() -> None:
    assert decode_header("=?UTF-8?B?SsO2cmc=?=") == "Jörg"
    assert decode_header("=?utf-8?b?SsO2cmc?=") == "Jörg"  # missing padding
    assert decode_header("Re: =?utf-8?q?caf=C3=A9?= time") == "Re: café time"


def test_multibyte_character_split_across_words() -> None:
    # "é" is C3 A9; one byte in each word.
    assert decode_header("=?utf-8?q?caf=C3?= =?utf-8?q?=A9?=") == "café"


def test_language_suffix_unknown_charset_and_garbage() -> None:
    assert decode_header("=?utf-8*en?q?hi?=") == "hi"
    assert decode_header("=?x-klingon?q?caf=C3=A9?=") == "café"  # unknown: UTF-8 fallback
    assert decode_header("=?utf-8?b?!!!?=") == ""
    assert decode_header("=?utf-8?x?abc?=") == "=?utf-8?x?abc?="
    assert decode_header("=?broken") == "=?broken"
    assert decode_header("plain text") == "plain text"


def test_decode_bytes_charsets() -> None:
    assert decode_bytes(b"\x93hi\x94", "iso-8859-1") == "“hi”"  # labelled Latin-1 read as Windows-1252
    assert decode_bytes("中文".encode("gb18030"), "GB2312") == "中文"
    assert decode_bytes(b"x\x9cK\x04\x00", "zlib") == "x\x9cK\x04\x00".encode("latin-1").decode("cp1252", "replace")
    assert decode_bytes(b"\\u0041", "unicode_escape") == "\\u0041"
    assert decode_bytes(b"\xff", "us-ascii") == "ÿ"
    assert decode_bytes(b"\xe9", "utf-8") == "\ufffd"
    assert decode_bytes(b"+2AA-", "utf-7") == "\ufffd"  # a lone surrogate would not encode to UTF-8
    assert decode_header("=?utf-7?q?a+2AA-?=") == "a\ufffd"


# --- dates and ids ------------------------------------------------------------------------------


def test_parse_date() -> None:
    assert parse_date("Tue, 24 Nov 2026 11:11:10 +0100") == datetime(
        2026, 11, 24, 11, 11, 10, tzinfo=timezone(timedelta(hours=1))
    )
    assert parse_date("24 Nov 26 11:11 GMT") == datetime(2026, 11, 24, 11, 11, tzinfo=UTC)
    assert parse_date("Tue, 24 Nov 2026 11:11:10 -0000") == datetime(2026, 11, 24, 11, 11, 10, tzinfo=UTC)
    parsed = parse_date("Tue, 24 Nov 2026 11:11:10")
    assert parsed is not None and parsed.tzinfo is not None
    for bad in ("", None, "yesterday", "Tue, 99 Nov 2026 11:11:10 +0100", "31 Feb 2026 10:00 +0000", "1 Jan 99999 1:1"):
        assert parse_date(bad) is None


def test_message_ids() -> None:
    assert message_ids("<a@b> <c@d>\r\n <e@f>") == ["a@b", "c@d", "e@f"]
    assert message_ids("foo <a@b> (comment)") == ["a@b"]
    assert message_ids("a@b c@d") == ["a@b", "c@d"]
    assert message_ids("<>") == []
    assert message_ids(None) == []


# --- parameters ---------------------------------------------------------------------------------


def test_parse_params() -> None:
    assert parse_params('Text/Plain; Charset="UTF-8"; format=flowed') == (
        "text/plain",
        [("charset", "UTF-8"), ("format", "flowed")],
    )
    assert parse_params('multipart/mixed; boundary="a;b\\"c"  ;x=1') == (
        "multipart/mixed",
        [("boundary", 'a;b"c'), ("x", "1")],
    )
    assert parse_params("text/plain (a comment); charset=us-ascii") == ("text/plain", [("charset", "us-ascii")])
    assert parse_params("attachment") == ("attachment", [])
    assert parse_params('a/b; ;=x; noequals; name="unterminated') == ("a/b", [("name", "unterminated")])


def test_rfc_2231_continuations_and_decoding() -> None:
    value = "attachment; filename*0*=utf-8''na%C3%AF; filename*1*=ve%20.txt; size=3"
    token, params = parse_params(value)
    assert token == "attachment"
    assert params == [("filename*", "utf-8''na%C3%AFve%20.txt"), ("size", "3")]
    assert param_value(params, "filename") == "naïve .txt"
    _, params = parse_params('a/b; name*1="two"; name*0="one"')
    assert params == [("name", "onetwo")]
    assert param_value(params, "name") == "onetwo"
    assert param_value([("name", "=?utf-8?q?J=C3=B6rg?=")], "name") == "Jörg"
    assert param_value([("name*", "%41%42")], "name") == "AB"
    assert param_value([], "name") is None


def test_rfc_2231_mixed_plain_and_encoded_sections() -> None:
    """A plain section joined to encoded ones is escaped as Dovecot does, so the value decodes as one: the file
    name used to keep "%E2%82%AC" undecoded (plain first section) or a plain "%" was read as an escape."""
    _, params = parse_params('attachment; filename*0="100% "; filename*1*=%E2%82%AC.pdf')
    assert params == [("filename*", "''100%25 %E2%82%AC.pdf")]
    assert param_value(params, "filename") == "100% \u20ac.pdf"
    _, params = parse_params("attachment; filename*0*=utf-8''%E2%82%AC; filename*1=\"%41.pdf\"")
    assert params == [("filename*", "utf-8''%E2%82%AC%2541.pdf")]
    assert param_value(params, "filename") == "\u20ac%41.pdf"


# --- addresses ----------------------------------------------------------------------------------


def test_rfc_5322_appendix_a_examples() -> None:
    assert envelope_addresses('"Joe Q. Public" <john.q.public@example.com>') == [
        ["Joe Q. Public", None, "john.q.public", "example.com"]
    ]
    value = (
        "Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>, <boss@nil.test>, "
        '"Giant; \\"Big\\" Box" <sysservices@example.net>'
    )
    assert envelope_addresses(value) == [
        ["Mary Smith", None, "mary", "x.test"],
        [None, None, "jdoe", "example.org"],
        ["Who?", None, "one", "y.test"],
        [None, None, "boss", "nil.test"],
        ['Giant; "Big" Box', None, "sysservices", "example.net"],
    ]
    value = "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;"
    assert envelope_addresses(value) == [
        [None, None, "A Group", None],
        ["Ed Jones", None, "c", "a.test"],
        [None, None, "joe", "where.test"],
        ["John", None, "jdoe", "one.test"],
        [None, None, None, None],
    ]
    assert envelope_addresses("Undisclosed recipients:;") == [
        [None, None, "Undisclosed recipients", None],
        [None, None, None, None],
    ]


def test_obsolete_syntax_comments_and_routes() -> None:
    value = "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>"
    assert envelope_addresses(value) == [["Pete", None, "pete", "silly.test"]]
    assert envelope_addresses("jdoe@machine(comment).  example") == [["comment", None, "jdoe", "machine.example"]]
    assert envelope_addresses("<@a.test,@b.test:user@c.test>") == [[None, "@a.test,@b.test", "user", "c.test"]]
    assert envelope_addresses("john.doe@x.test (John Doe)") == [["John Doe", None, "john.doe", "x.test"]]
    assert envelope_addresses("Group: a@b.test") == [
        [None, None, "Group", None],
        [None, None, "a", "b.test"],
        [None, None, None, None],
    ]


def test_garbage_is_tolerated() -> None:
    assert envelope_addresses("") is None
    assert envelope_addresses(",, ,") is None
    assert envelope_addresses("(only a comment)") is None
    assert envelope_addresses("garbage") == [[None, None, "garbage", ""]]
    assert envelope_addresses("a@b@c") == [[None, None, "a@b", "c"]]
    assert envelope_addresses("x <a@b") == [["x", None, "a", "b"]]
    assert envelope_addresses('"unterminated <a@b>') == [[None, None, '"unterminated <a@b>', ""]]


def test_envelope_names_stay_raw_and_parse_addresses_decodes() -> None:
    value = "=?utf-8?q?J=C3=B6rg?= <Joerg@Example.DE>, Group: x@Bücher.example;"
    assert envelope_addresses(value) == [
        ["=?utf-8?q?J=C3=B6rg?=", None, "Joerg", "Example.DE"],
        [None, None, "Group", None],
        [None, None, "x", "Bücher.example"],
        [None, None, None, None],
    ]
    assert parse_addresses(value) == [
        Address("Jörg", "Joerg@example.de"),
        Address("", "x@bücher.example", "Group"),
    ]
    assert parse_addresses(None) == []


_simple_names = st.text(alphabet="abcXYZ .?!'-", max_size=12)
_atoms = st.text(alphabet="abcdefxyz0123456789._+-", min_size=1, max_size=10)


@st.composite
def simple_address_lists(draw: st.DrawFn) -> str:
    entries = []
    for _ in range(draw(st.integers(1, 4))):
        local, domain = draw(_atoms), draw(_atoms)
        form = draw(st.integers(0, 2))
        name = draw(_simple_names)
        if form == 0:
            entries.append(f"{local}@{domain}")
        elif form == 1:
            entries.append(f"{name} <{local}@{domain}>")
        else:
            entries.append(f'"{name}" <{local}@{domain}>')
    return draw(st.sampled_from([",", ", ", " ,  "])).join(entries)


@given(simple_address_lists())
def test_fast_path_agrees_with_general_parser(value: str) -> None:
    assert envelope_addresses(value) == (slow_envelope_addresses(value) or None)


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(list('ab@.<>," \t=?é\\[]')), max_size=40))
def test_whenever_the_fast_path_applies_it_agrees(value: str) -> None:
    fast = fast_envelope_addresses(value)
    if fast is not None:
        assert fast == slow_envelope_addresses(value)


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list('ab@.<>,:;"()\\ \t=?é\x00')), max_size=60))
def test_address_parsing_never_raises(value: str) -> None:
    items = envelope_addresses(value)
    for item in items or []:
        assert len(item) == 4
        assert all(part is None or isinstance(part, str) for part in item)
    parse_addresses(value)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_header_functions_never_raise_on_bytes(block: bytes) -> None:
    fields = header_fields(block, 0, len(block))
    for name, value in fields:
        decode_header(value)
        parse_params(value)
        parse_date(value)
        message_ids(value)
        assert "\x00" not in name + value
    field_spans(block, 0, len(block))


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("=?qQbB_utf-8abc=C3A9 \t*;'%\"")), max_size=80))
def test_decode_header_never_raises(value: str) -> None:
    assert isinstance(decode_header(value), str)
    param_value(parse_params("a/b; x*=" + value)[1], "x")


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(list("ab*0123456789²=;'\"%\\( )é")), max_size=50))
def test_parse_params_never_raises(value: str) -> None:
    token, params = parse_params("a/b; " + value)
    assert token == "a/b"
    for name, _ in params:
        param_value(params, name.rstrip("*"))


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(list("MonTueJanFeb ,:+-0123456789()GMTUTCEST")), max_size=40))
def test_parse_date_never_raises(value: str) -> None:
    parsed = parse_date(value)
    assert parsed is None or parsed.tzinfo is not None


def test_huge_and_unicode_continuation_numbers() -> None:
    assert parse_params("a/b; name*²=x") == ("a/b", [("name*²", "x")])
    token, params = parse_params("a/b; name*" + "9" * 5000 + "=x")
    assert token == "a/b" and len(params) == 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b"X-Spam-Status: No,\r\n  folded\r\nSubject: a\r\nx-spam-flag: NO\r\n\r\nX-Spam-Status: body\r\n",
            b"Subject: a\r\n\r\nX-Spam-Status: body\r\n",
        ),
        (b"Subject: a\nX-Spam-Status: No\n\nX-Spam-Status: body\n", b"Subject: a\n\nX-Spam-Status: body\n"),
        (b"\r\nX-Spam-Status: body\r\n", b"\r\nX-Spam-Status: body\r\n"),  # no header at all
        (b"Subject: only a header\r\nX-Spam-Flag: YES\r\n", b"Subject: only a header\r\n"),
        (b"Subject: x\r\nnot a field\r\n\r\nbody", b"Subject: x\r\nnot a field\r\n\r\nbody"),
    ],
)
def test_without_fields_drops_the_named_header_fields_and_never_the_body(data: bytes, expected: bytes) -> None:
    assert without_fields(data, lambda name, _: name in {"x-spam-status", "x-spam-flag"}) == expected


def test_without_fields_returns_the_same_bytes_when_nothing_is_dropped() -> None:
    data = b"Subject: x\r\n\r\nbody"
    assert without_fields(data, lambda name, _: name == "x-spam-status") is data


def test_without_fields_hands_the_predicate_each_field_whole() -> None:
    data = b"A: 1\r\nB: keep\r\nB: drop,\r\n folded\r\n\r\nB: drop\r\n"
    seen: list[tuple[str, bytes]] = []

    def drop(name: str, field: bytes) -> bool:
        seen.append((name, field))
        return b"drop" in field

    assert without_fields(data, drop) == b"A: 1\r\nB: keep\r\n\r\nB: drop\r\n"
    assert seen == [("a", b"A: 1\r\n"), ("b", b"B: keep\r\n"), ("b", b"B: drop,\r\n folded\r\n")]
