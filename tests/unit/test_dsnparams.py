"""The DSN extension's parameters (RFC 3461 §4, RFC 6533 §3): xtext, MAIL's RET/ENVID, RCPT's NOTIFY/ORCPT."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relentad.smtp import dsnparams
from relentad.smtp.dsnparams import MailParams, ParamError, RcptParams


def test_xtext_round_trip_and_rfc_examples() -> None:
    assert dsnparams.xtext_decode("a+2Bb+3Dc") == "a+b=c"
    assert dsnparams.xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert dsnparams.xtext_decode(dsnparams.xtext_encode("jürgen@b.test")) == "jürgen@b.test"
    assert dsnparams.xtext_decode("+c3+bc") == "ü", "lower-case hex taken (liberal in what we accept)"


@pytest.mark.parametrize("bad", ["a+2", "a+G0", "a=b", "a b", "a\x7fb", "+FF"])
def test_xtext_malformed(bad: str) -> None:
    with pytest.raises(ParamError):
        dsnparams.xtext_decode(bad)


def test_mail_parameters_taken_out_in_their_case() -> None:
    found, rest = dsnparams.parse_mail("SIZE=100 ret=hdrs ENVID=Qv+2Bx BODY=8BITMIME")
    assert found == MailParams("HDRS", "Qv+x")
    assert rest == "SIZE=100 BODY=8BITMIME"
    assert dsnparams.parse_mail("") == (MailParams(), "")


@pytest.mark.parametrize(
    ("params", "reply"),
    [
        ("RET=ALL", "501 5.5.4 RET must be FULL or HDRS"),
        ("RET=FULL RET=HDRS", "501 5.5.4 Duplicate RET parameter"),
        ("ENVID=a ENVID=b", "501 5.5.4 Duplicate ENVID parameter"),
        ("RET", "501 5.5.4 RET needs a value"),
        ("ENVID=", "501 5.5.4 ENVID needs a value"),
        ("ENVID=" + "x" * 101, "501 5.5.4 ENVID longer than 100 characters"),
        ("ENVID=a+0Ab", "501 5.5.4 ENVID must be printable ASCII"),
        ("ENVID=+C3+BC", "501 5.5.4 ENVID must be printable ASCII"),
    ],
)
def test_mail_parameters_refused(params: str, reply: str) -> None:
    with pytest.raises(ParamError) as refused:
        dsnparams.parse_mail(params)
    assert refused.value.reply == reply


def test_rcpt_parameters() -> None:
    found, rest = dsnparams.parse_rcpt("notify=success,DELAY ORCPT=rfc822;Bob+2Btag@b.test")
    assert found == RcptParams(frozenset({"SUCCESS", "DELAY"}), "rfc822;Bob+tag@b.test")
    assert rest == ""
    assert found.wants("SUCCESS") and found.wants("DELAY") and not found.wants("FAILURE")
    never, _ = dsnparams.parse_rcpt("NOTIFY=NEVER")
    assert not any(never.wants(e) for e in dsnparams.NOTIFY_VALUES)
    default = RcptParams()
    assert default.wants("FAILURE") and default.wants("DELAY") and not default.wants("SUCCESS")
    assert dsnparams.notify_text(found.notify) == "SUCCESS,DELAY"
    assert dsnparams.rcpt_params("SUCCESS,DELAY", "rfc822;x@y") == RcptParams(found.notify, "rfc822;x@y")


def test_utf8_orcpt() -> None:
    """RFC 6533: utf-8-addr-xtext (\\x{HEX}) and utf-8-addr-unitext (raw UTF-8) both decode; it goes on as xtext."""
    for sent in ("utf-8;j\\x{FC}rgen@b.test", "utf-8;jürgen@b.test"):
        found, _ = dsnparams.parse_rcpt(f"ORCPT={sent}")
        assert found.orcpt == "utf-8;jürgen@b.test"
    assert dsnparams.orcpt_field("utf-8;jürgen@b.test") == "utf-8;j\\x{FC}rgen@b.test"
    assert dsnparams.original_recipient("utf-8;jürgen@b.test") == "utf-8; j\\x{FC}rgen@b.test"
    assert dsnparams.orcpt_field("rfc822;a+b@c") == "rfc822;a+2Bb@c"


@pytest.mark.parametrize(
    ("params", "reply"),
    [
        ("NOTIFY=NEVER,SUCCESS", "501 5.5.4 NOTIFY must be NEVER, or one or more of SUCCESS, FAILURE, DELAY"),
        ("NOTIFY=SOMETIMES", "501 5.5.4 NOTIFY must be NEVER, or one or more of SUCCESS, FAILURE, DELAY"),
        ("NOTIFY=SUCCESS,", "501 5.5.4 NOTIFY must be NEVER, or one or more of SUCCESS, FAILURE, DELAY"),
        ("NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4 Duplicate NOTIFY parameter"),
        ("ORCPT=bob@b.test", "501 5.5.4 ORCPT must be addr-type;address"),
        ("ORCPT=rfc822;", "501 5.5.4 ORCPT must be addr-type;address"),
        ("ORCPT=rfc822;a+0Db", "501 5.5.4 ORCPT address must be printable ASCII"),
        ("ORCPT=rfc822;jürgen@b.test", "501 5.5.4 Malformed xtext: only printable ASCII may appear unencoded"),
        ("ORCPT=utf-8;a+b", "501 5.5.4 Malformed utf-8 address: '+', '=' and '\\' must be escaped as \\x{HEX}"),
        ("ORCPT=utf-8;a\\x{D800}", "501 5.5.4 Malformed utf-8 address: escape outside Unicode"),
        ("ORCPT=rfc822;" + "a" * 500, "501 5.5.4 ORCPT longer than 500 characters"),
    ],
)
def test_rcpt_parameters_refused(params: str, reply: str) -> None:
    with pytest.raises(ParamError) as refused:
        dsnparams.parse_rcpt(params)
    assert refused.value.reply == reply


@given(st.text())
def test_xtext_encoding_round_trips(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return  # a lone surrogate is no string a client can send
    encoded = dsnparams.xtext_encode(text)
    assert encoded.isascii() and "=" not in encoded
    assert dsnparams.xtext_decode(encoded) == text


_PARAM = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda name, value: f"{name}={value}",
        st.sampled_from(["RET", "ENVID", "NOTIFY", "ORCPT", "ret", "Orcpt", "SIZE"]),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
        | st.sampled_from(["FULL", "HDRS", "NEVER", "SUCCESS,DELAY", "rfc822;a+2Bb", "utf-8;\\x{FC}", "+", "+4"]),
    ),
)


@given(st.lists(_PARAM, max_size=5).map(" ".join))
def test_parsing_never_raises_anything_but_a_501(params: str) -> None:
    for parse in (dsnparams.parse_mail, dsnparams.parse_rcpt):
        try:
            found, rest = parse(params)
        except ParamError as refusal:
            assert refusal.reply.startswith("501 5.5.4 ")
            continue
        assert set(rest.split()) <= set(params.split())
        if isinstance(found, RcptParams) and found.orcpt is not None:
            assert dsnparams.orcpt_field(found.orcpt).isascii()
            assert dsnparams.parse_orcpt(dsnparams.orcpt_field(found.orcpt)) == found.orcpt
        if isinstance(found, MailParams) and found.envid is not None:
            assert dsnparams.xtext_decode(dsnparams.xtext_encode(found.envid)) == found.envid
