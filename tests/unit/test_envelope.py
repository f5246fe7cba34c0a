"""IMAP ENVELOPE / BODYSTRUCTURE / BODY structures (relentad.envelope)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from relentad.envelope import body_structure, envelope
from relentad.headers import header_fields
from relentad.mimetree import Part, parse_tree


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def env_of(header: str) -> list[Any]:
    data = crlf(header)
    return envelope(header_fields(data, 0, len(data)))


def tree_of(data: bytes) -> Part:
    return parse_tree(data, envelope)[0]


def only_imap_values(value: Any) -> bool:
    if isinstance(value, list):
        return all(only_imap_values(item) for item in value)
    return value is None or isinstance(value, str | int)


def test_envelope_order_defaults_and_raw_strings() -> None:
    env = env_of(
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\n"
        "From: Terry Gray <gray@cac.washington.edu>\n"
        "Subject: =?utf-8?q?IMAP4rev1_WG_mtg_summary?=\n"
        "  and minutes\n"
        "To: imap@cac.washington.edu\n"
        'cc: minutes@CNRI.Reston.VA.US, "John Klensin" <KLENSIN@MIT.EDU>\n'
        "Message-Id: <B27397-0100000@cac.washington.edu>\n"
        "In-Reply-To: <x@y>\n"
    )
    terry = [["Terry Gray", None, "gray", "cac.washington.edu"]]
    assert env == [
        "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        "=?utf-8?q?IMAP4rev1_WG_mtg_summary?=  and minutes",
        terry,
        terry,
        terry,
        [[None, None, "imap", "cac.washington.edu"]],
        [[None, None, "minutes", "CNRI.Reston.VA.US"], ["John Klensin", None, "KLENSIN", "MIT.EDU"]],
        None,
        "<x@y>",
        "<B27397-0100000@cac.washington.edu>",
    ]


def test_envelope_of_empty_header_is_all_nil() -> None:
    assert env_of("") == [None] * 10


def test_explicit_sender_and_reply_to_and_empty_address_field() -> None:
    env = env_of("From: a@x.test\nSender: s@x.test\nReply-To: r@x.test\nTo:\nBcc: undisclosed:;\n")
    assert env[3] == [[None, None, "s", "x.test"]]
    assert env[4] == [[None, None, "r", "x.test"]]
    assert env[5] is None
    assert env[7] == [[None, None, "undisclosed", None], [None, None, None, None]]


def test_first_of_repeated_fields_wins() -> None:
    env = env_of("Subject: one\nSubject: two\n")
    assert env[1] == "one"


def test_text_plain_bodystructure_and_body() -> None:
    data = crlf("Subject: x\n\nhello\nworld\n")
    root = tree_of(data)
    basic = ["text", "plain", ["charset", "us-ascii"], None, None, "7bit", 14, 2]
    assert body_structure(root) == [*basic, None, None, None, None]
    assert body_structure(root, extended=False) == ["text", "plain", ["charset", "us-ascii"], None, None, "7bit", 14, 2]


MULTI = crlf(
    'Content-Type: multipart/mixed; boundary="XX"\n'
    "Content-Language: en\n"
    "\n"
    "--XX\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "caf=C3=A9\n"
    "--XX\n"
    "Content-Type: image/png; name=a.png\n"
    'Content-Disposition: inline; filename="a.png"\n'
    "Content-ID: <img@x>\n"
    "Content-Language: en, de\n"
    "Content-Location: a.png\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "iVBO\n"
    "--XX\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "Subject: fwd\n"
    "From: b@y.test\n"
    "\n"
    "inner\n"
    "--XX--\n"
)


def test_multipart_bodystructure_extended() -> None:
    structure = body_structure(tree_of(MULTI))
    text, image, message = structure[:3]
    assert text == ["text", "plain", ["charset", "utf-8"], None, None, "quoted-printable", 9, 0, None, None, None, None]
    assert image == [
        "image",
        "png",
        ["name", "a.png"],
        "<img@x>",
        None,
        "base64",
        4,
        None,
        ["inline", ["filename", "a.png"]],
        ["en", "de"],
        "a.png",
    ]
    inner_env = [None, "fwd", *[[[None, None, "b", "y.test"]]] * 3, None, None, None, None, None]
    assert message[:7] == ["message", "rfc822", None, None, None, "7bit", 37]
    assert message[7] == inner_env
    assert message[8] == ["text", "plain", ["charset", "us-ascii"], None, None, "7bit", 5, 0, None, None, None, None]
    assert message[9] == 3
    assert message[10:] == [None, None, None, None]
    assert structure[3:] == ["mixed", ["boundary", "XX"], None, "en", None]


def test_multipart_body_non_extended() -> None:
    body = body_structure(tree_of(MULTI), extended=False)
    assert body[0] == ["text", "plain", ["charset", "utf-8"], None, None, "quoted-printable", 9, 0]
    assert body[1] == ["image", "png", ["name", "a.png"], "<img@x>", None, "base64", 4]
    assert body[2][8] == ["text", "plain", ["charset", "us-ascii"], None, None, "7bit", 5, 0]
    assert len(body[2]) == 10
    assert body[3] == "mixed" and len(body) == 4


def test_structures_are_json_values() -> None:
    root = tree_of(MULTI)
    for structure in (body_structure(root), body_structure(root, extended=False)):
        assert only_imap_values(structure)
        assert json.loads(json.dumps(structure)) == structure


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_valid_structures(data: bytes) -> None:
    root, fields = parse_tree(data, envelope)
    env = envelope(fields)
    assert len(env) == 10 and only_imap_values(env)
    structure = body_structure(root)
    assert only_imap_values(structure)
    assert isinstance(structure[0], list | str)


def test_rfc_2231_parameters_location_and_global_message() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        "Content-Type: application/pdf\n"
        "Content-Disposition: attachment; filename*0*=utf-8''na%C3%AF; filename*1=ve.pdf\n"
        "Content-Location:\n http://x.test/\n a.pdf\n\n%PDF\n--b\n"
        "Content-Type: message/global\n\nSubject: =?utf-8?q?caf=C3=A9?=\n\nhi\n--b--\n"
    )
    pdf, message = body_structure(tree_of(data))[:2]
    assert pdf[8] == ["attachment", ["filename*", "utf-8''na%C3%AFve.pdf"]]
    assert pdf[10] == "http://x.test/a.pdf"
    assert message[:2] == ["message", "global"]
    assert message[7][1] == "=?utf-8?q?caf=C3=A9?="
    assert message[8][:2] == ["text", "plain"]


def test_digest_parts_are_messages_in_bodystructure() -> None:
    data = crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nbody\n--d--\n")
    structure = body_structure(tree_of(data))
    assert structure[0][:2] == ["message", "rfc822"]
    assert structure[0][2] is None
    assert structure[1] == "digest"


def test_content_md5_is_the_body_md5() -> None:
    """RFC 3501 body-fld-md5 is the Content-MD5 value (Dovecot gives it); it used to be NIL always."""
    data = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
        "Content-Type: text/plain\nContent-MD5: Q2hlY2sgSW50ZWdyaXR5IQ== (comment)\n\nhi\n"
        "--b\nContent-Type: application/pdf\n\n%PDF\n--b--\n"
    )
    root = tree_of(data)
    text, pdf = body_structure(root)[:2]
    assert text[8] == "Q2hlY2sgSW50ZWdyaXR5IQ=="
    assert pdf[7] is None
    assert len(body_structure(root, extended=False)[0]) == 8  # BODY has no MD5
    legacy = root.to_list()
    legacy[14][0] = legacy[14][0][:16]  # a structure stored before Content-MD5 was kept
    assert body_structure(Part.from_list(legacy))[0][8] is None
