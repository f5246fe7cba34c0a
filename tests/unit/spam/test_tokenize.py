"""Tokenizer behaviour on real-looking and nasty MIME: decoding, features kept, our headers ignored,
and totality (no input makes it raise)."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from relentad.spam.tokenize import MAX_PARTS, decode_header, through_discussion_list, tokenize, words


def message(headers: str, body: bytes | str = b"") -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return headers.strip("\n").replace("\n", "\r\n").encode() + b"\r\n\r\n" + data


PLAIN = message(
    """
From: "Alice Example" <alice@mail.example.org>
To: bob@example.net
Subject: Quarterly numbers
Message-ID: <1234@mail.example.org>
Content-Type: text/plain; charset=us-ascii
""",
    "Please review the attached spreadsheet before Friday.\r\n",
)


def test_plain_message_words_and_header_tokens() -> None:
    tokens = tokenize(PLAIN)
    assert {"please", "review", "spreadsheet", "friday"} <= tokens
    assert {"subj:quarterly", "subj:numbers"} <= tokens
    assert {"from:addr:alice@mail.example.org", "from:dom:example.org", "from:name:alice"} <= tokens
    assert {"msgid:dom:example.org", "ct:text/plain", "charset:us-ascii", "hdr:subject"} <= tokens
    assert "hn:Message-ID" in tokens  # header names keep their spelling: mailers differ in it
    assert "from:agree:msgid" in tokens
    assert "the" in tokens and "a" not in tokens  # words shorter than 3 are dropped


def test_discussion_list_mail_is_told_from_a_newsletter() -> None:
    """A discussion list stamps List-Post, X-BeenThere, Mailing-List or X-Mailing-List on what it forwards; a
    newsletter's List-Unsubscribe and List-Id alone do not make it list mail (its spam cut-off stays)."""
    assert not through_discussion_list(tokenize(PLAIN))
    newsletter = b"List-Unsubscribe: <mailto:leave@news.example>\r\nList-Id: <news.example>\r\n" + PLAIN
    assert not through_discussion_list(tokenize(newsletter))
    fields = (
        b"List-Post: <mailto:fork@xent.com>",
        b"X-BeenThere: ilug@linux.ie",
        b"Mailing-List: list x@y.example",
        b"X-Mailing-List: <linux-kernel@vger.kernel.org>",
        b"list-post: NO",
    )
    for field in fields:
        assert through_discussion_list(tokenize(field + b"\r\n" + PLAIN)), field
    assert not through_discussion_list(tokenize(PLAIN + b"\r\nList-Post: in the body, not a field\r\n"))


def test_returns_frozenset_and_is_deterministic() -> None:
    first = tokenize(PLAIN)
    assert isinstance(first, frozenset)
    assert first == tokenize(PLAIN)


def test_duplicates_count_once() -> None:
    tokens = tokenize(message("Subject: x", "money money money money"))
    assert "money" in tokens
    assert isinstance(tokens, frozenset)


def test_encoded_word_subjects_are_decoded() -> None:
    raw = message(
        "Subject: =?utf-8?b?" + base64.b64encode("Größte Rabatte".encode()).decode() + "?= "
        "=?iso-8859-1?q?f=FCr_Sie?=\nFrom: x@example.com"
    )
    tokens = tokenize(raw)
    assert {"subj:größte", "subj:rabatte", "subj:für", "subj:sie"} <= tokens


def test_decode_header_survives_garbage() -> None:
    assert decode_header("=?utf-8?b?!!!?=") is not None
    assert decode_header("=?no-such-charset?q?abc?=") == "abc"
    assert decode_header("plain") == "plain"


def test_base64_and_quoted_printable_bodies() -> None:
    b64 = message(
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
        base64.encodebytes(b"Unbelievable mortgage rates"),
    )
    assert {"unbelievable", "mortgage", "rates", "content-transfer-encoding:base64"} <= tokenize(b64)
    qp = message(
        "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable",
        b"Caf=E9 cr=E8me soft=\r\nbreak",
    )
    assert {"café", "crème", "softbreak"} <= tokenize(qp)


def test_charsets_and_unknown_charset_fallback() -> None:
    koi8 = message("Content-Type: text/plain; charset=koi8-r", "Привет мир".encode("koi8-r"))
    assert "привет" in tokenize(koi8)
    unknown = message("Content-Type: text/plain; charset=x-made-up", "Bonjour été".encode())
    assert "bonjour" in tokenize(unknown)
    assert "été" in tokenize(unknown)  # undeclared/unknown charset: UTF-8 first


def test_html_tags_stripped_but_features_kept() -> None:
    raw = message(
        "Content-Type: text/html",
        '<html><body bgcolor="#FF0000"><font color=red size=5>V<!-- x -->iagra cheap</font>'
        '<a href="http://www.pills.example.biz/buy/now.html">click here</a>'
        "<style>p { color: blue }</style>&lt;wow&gt;</body></html>",
    )
    tokens = tokenize(raw)
    assert {"viagra", "cheap", "click", "here", "wow"} <= tokens
    assert {"attr:color=red", "attr:size=5", "attr:bgcolor=#ff0000"} <= tokens
    assert not any(t.startswith("tag:") for t in tokens)  # per-tag tokens are correlated noise
    assert {"url:example.biz", "url:pills.example.biz", "url:buy", "proto:http", "html:comment"} <= tokens
    assert "color" not in tokens and "blue" not in tokens  # style content is not text


def test_multipart_parts_and_attachments() -> None:
    raw = message(
        'From: a@b.example\nContent-Type: multipart/mixed; boundary="XX"',
        "--XX\r\nContent-Type: text/plain\r\n\r\nhello there friend\r\n"
        "--XX\r\nContent-Type: application/octet-stream; name=run.exe\r\n"
        "Content-Disposition: attachment; filename=run.exe\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "TVqQAAMAAAAEAAAA\r\n--XX--\r\n",
    )
    tokens = tokenize(raw)
    assert {"hello", "there", "friend", "ct:multipart/mixed", "ct:application/octet-stream"} <= tokens
    assert "filetype:exe" in tokens


def test_long_runs_become_skip_tokens() -> None:
    assert list(words("a" * 25)) == ["skip:a 20"]
    assert list(words("(Hello), World!")) == ["hello", "world"]


def test_received_hops_and_sender_hygiene() -> None:
    raw = message(
        "Received: from mx.example.org (mail.example.org [192.0.2.7]) by relay.example.net with ESMTP\n"
        "Received: from friendly (unknown [198.51.100.9]) by mx.example.org with SMTP\n"
        "From: a@example.org"
    )
    tokens = tokenize(raw)
    assert {"rcvd:example.org", "rcvd:ip:192.0", "rcvd:ip:192.0.2", "rcvd:with:esmtp"} <= tokens
    assert {"rcvd:rdns:none", "from:agree:rcvd"} <= tokens


def test_header_shape_tokens() -> None:
    raw = message(
        "Received: from unknown (HELO x) (198.51.100.9) by mx.example.org\n"
        "Received: from mx.example.org (mail.example.org [192.0.2.7]) by relay.example.net\n"
        "Own-Stamp: ignored\n"
        "From: a@example.org\n"
        "To: Undisclosed-Recipients:;\n"
        "Subject: A subject of about thirty chars\n"
        "Date: Mon, 2 Sep 2002 13:52:31 +0100\n"
        "Message-ID: <3D73AF29.5060301@example.org>\n"
        'Content-Type: multipart/alternative; boundary="----=_NextPart_000_0A1B_01C25C3F.8F9B3E40"'
    )
    tokens = tokenize(raw, ignore_headers={"own-stamp"})
    assert {"rcvd:count:2", "rcvd:from-unknown", "to:undisclosed", "subj:len:3"} <= tokens
    assert "hdr:count:2" in tokens  # 8 fields kept (ours not counted), in steps of three
    assert "msgid:shape:9A99AA99.99" in tokens  # runs of digits / capitals / lower case, doubled when longer than one
    assert "date:shape:Aaa, 9 Aaa 99 99:99:99 +99" in tokens
    assert "ct:boundary:----=_AaaAaa_99_9A9A_99A" in tokens  # cut at 24 characters


def test_own_headers_and_own_received_hops_are_ignored() -> None:
    theirs = message(
        "Received: from sender.example.com (sender.example.com [203.0.113.5]) by mx.example.com\n"
        "From: a@example.com\nSubject: hi",
        "body text here",
    )
    ours = (
        b"Return-Path: <a@example.com>\r\nDelivered-To: me@ours.test\r\nX-Spam-Status: No, score=0.1\r\n"
        b"X-Spam-Score: 0.1\r\n"
        b"Received: from sender.example.com (sender.example.com [203.0.113.5])\r\n"
        b"\tby mx.ours.test with ESMTPS\r\n" + theirs
    )
    assert tokenize(ours, own_hosts={"mx.ours.test"}) == tokenize(theirs)
    assert "hn:Delivered-To" in tokenize(ours, ignore_headers=())


def test_authentication_results_keeps_results_only() -> None:
    raw = message("Authentication-Results: mx.ours.test; spf=pass smtp.mailfrom=x.example; dkim=fail")
    tokens = tokenize(raw)
    assert {"auth:spf=pass", "auth:dkim=fail"} <= tokens
    assert not any("ours" in t for t in tokens)


def test_mbox_from_line_is_ignored() -> None:
    assert tokenize(b"From alice@example.org  Mon Jun 24 17:06:54 2002\n" + PLAIN) == tokenize(PLAIN)


def test_malformed_mime_never_raises() -> None:
    nasty = [
        b"",
        b"\r\n\r\n",
        b"no headers at all, just text with words",
        message('Content-Type: multipart/mixed; boundary="never"', "no boundary here at all"),
        message('Content-Type: multipart/alternative; boundary="b"', "--b\r\nContent-Type: text/plain"),
        message("Content-Type: text/plain\nContent-Transfer-Encoding: base64", "!!!not*base64@@@=\r\n=="),
        message("Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable", "=ZZ=\r\n=0"),
        message("Content-Type: text/plain; charset*=''%%%", b"\xff\xfe\x00binary"),
        message("Content-Type: ;;;\nSubject: =?x?q?=?=\n: empty name\n\tcontinuation first", "x"),
        message("Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode", "begin 644 f\r\n!!!\r\n"),
        message("Content-Type: message/rfc822", "Subject: inner\r\n\r\ninner body"),
        b"\x00\xff" * 1000,
    ]
    for raw in nasty:
        assert isinstance(tokenize(raw), frozenset)
        assert "tokenizer:error" not in tokenize(raw)


def test_many_parts_are_bounded() -> None:
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart{i} word{i}\r\n" for i in range(200))
    raw = message('Content-Type: multipart/mixed; boundary="b"', parts + "--b--\r\n")
    tokens = tokenize(raw)
    assert "mime:toomany" in tokens
    assert "word1" in tokens
    assert f"word{MAX_PARTS + 5}" not in tokens


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(tokenize(raw), frozenset)


_FRAGMENTS = st.sampled_from(
    [
        b'Content-Type: multipart/mixed; boundary="a"\r\n',
        b'Content-Type: text/html; charset="utf-8"\r\n',
        b"Content-Type: text/plain; charset=bogus\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Subject: =?utf-8?b?w6k=?= =?iso-8859-1?q?=E9?=\r\n",
        b"Received: from x (y [1.2.3.4]) by z\r\n",
        b"\r\n",
        b"--a\r\n",
        b"--a--\r\n",
        b"<html><a href=http://x.y/z>t</a><!-- c",
        b"=E9=\r\n",
        b"aGVsbG8gd29ybGQ=\r\n",
        b"\xff\xfe\xc3(",
        b" folded continuation\r\n",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_FRAGMENTS, st.binary(max_size=40)), max_size=40))
def test_random_mime_shaped_input_never_raises(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    tokens = tokenize(raw)
    assert isinstance(tokens, frozenset)
    assert all(isinstance(t, str) for t in tokens)


def test_single_part_and_multipart_paths_agree_on_text() -> None:
    body = base64.encodebytes(b"Limited offer: <b>refinance</b> today, visit http://deal.example.com/x")
    single = message("Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64", body)
    multi = message(
        'Content-Type: multipart/mixed; boundary="b"',
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + body
        + b"--b--\r\n",
    )
    content = {"limited", "offer", "refinance", "today", "visit", "url:example.com", "proto:http"}
    assert content <= tokenize(single)
    assert content <= tokenize(multi)


def test_base64_with_bad_padding_still_yields_words() -> None:
    body = base64.b64encode(b"wonderful opportunity awaits you")[:-3] + b"\r\n"
    raw = message("Content-Type: text/plain\nContent-Transfer-Encoding: base64", body)
    assert {"wonderful", "opportunity"} <= tokenize(raw)
