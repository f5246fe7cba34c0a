"""Sieve editheader (RFC 5293): addheader / deleteheader as scripts compile and run them (relentad.crm.editheader,
sieve, rules), the examples of the RFC among them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relentad.crm import editheader, rules
from relentad.crm.sieve import CAPABILITIES, compile_script
from relentad.crm.sieveregex import Budget, Exhausted
from relentad.errors import InvalidInput
from relentad.headers import header_end
from relentad.message import parse

RAW = (
    b"Received: from a by b; Tue, 1 Apr 2025 22:10:00 +0000\r\n"
    b"From: Shop <shop@example.com>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: Your order\r\n"
    b"X-Tracking: 1\r\n"
    b"X-Note: first\r\n"
    b"X-Tracking: 2\r\n"
    b"\t folded\r\n"
    b"Auto-Submitted: auto-generated\r\n"
    b"\r\n"
    b"Hello.\r\n"
)
REQUIRE = 'require ["fileinto", "editheader", "variables", "vacation"];\n'


def view(raw: bytes = RAW) -> rules.MessageView:
    return rules.MessageView(parse(raw), raw, "shop@example.com", "alice@example.test")


def run(script: str, raw: bytes = RAW, *more: str) -> tuple[rules.Outcome, rules.MessageView]:
    message = view(raw)
    scripts = [("r", compile_script(REQUIRE + script))] + [
        (f"s{i}", compile_script(REQUIRE + s)) for i, s in enumerate(more)
    ]
    return rules.evaluate(scripts, message), message


def head(raw: bytes | None) -> bytes:
    assert raw is not None
    return raw[: header_end(raw)]


def test_announced() -> None:
    assert "editheader" in CAPABILITIES


def test_addheader_first_or_last_and_tests_see_it() -> None:
    outcome, _ = run('addheader "X-Filed" "yes"; if header :is "x-filed" "yes" { fileinto "Seen"; }')
    assert outcome.edited is not None and outcome.edited.startswith(b"X-Filed: yes\r\nReceived: from a")
    assert outcome.targets("INBOX") == [("Seen", [])], "later tests read the edited message (RFC 5293 §3)"
    outcome, _ = run('addheader :last "X-Filed" "yes";')
    assert head(outcome.edited).endswith(b"Auto-Submitted: auto-generated\r\nX-Filed: yes\r\n")
    assert outcome.edited is not None and outcome.edited.endswith(b"\r\n\r\nHello.\r\n"), "the body untouched"


def test_rfc5293_subject_tagging_example() -> None:
    script = (
        'if header :matches "Subject" "*" { set "subject" "${1}"; deleteheader "Subject";'
        ' addheader "Subject" "[order] ${subject}"; }'
    )
    outcome, message = run(script)
    assert b"Subject: [order] Your order\r\n" in head(outcome.edited)
    assert head(outcome.edited).count(b"Subject:") == 1
    assert message.parsed.subject == "[order] Your order", "ENVELOPE and the CRM's view read the edited field"


def test_deleteheader_all_indexed_or_by_value() -> None:
    outcome, _ = run('deleteheader "x-tracking";')
    assert b"X-Tracking" not in head(outcome.edited) and b"folded" not in head(outcome.edited), "folded lines too"
    assert b"X-Note: first\r\n" in head(outcome.edited)
    outcome, _ = run('deleteheader :index 1 :last "X-Tracking";')
    assert b"X-Tracking: 1\r\n" in head(outcome.edited) and b"folded" not in head(outcome.edited)
    outcome, _ = run('deleteheader :index 1 "X-Tracking";')
    assert b"X-Tracking: 1" not in head(outcome.edited) and b"X-Tracking: 2" in head(outcome.edited)
    outcome, _ = run('deleteheader :contains "X-Tracking" "fold";')  # the value as the header test reads it
    assert b"X-Tracking: 1\r\n" in head(outcome.edited) and b"X-Tracking: 2" not in head(outcome.edited)
    outcome, _ = run('deleteheader :index 3 "X-Tracking";')  # no third one: nothing changes
    assert outcome.edited is None


def test_protected_fields_are_left_alone_silently() -> None:
    outcome, _ = run('deleteheader "Received"; deleteheader "auto-submitted"; fileinto "Next";')
    assert outcome.edited is None
    assert outcome.targets("INBOX") == [("Next", [])], "ignored, not an error (RFC 5293 §6)"
    assert "deleteheader Received (ignored: a protected field)" in outcome.trace[0]


def test_deleteheader_sets_no_match_variables() -> None:
    script = 'if header :matches "From" "*<*>" { deleteheader :matches "X-Note" "f*"; fileinto "${2}"; }'
    outcome, _ = run(script)
    assert outcome.targets("INBOX") == [("shop@example.com", [])]
    assert b"X-Note" not in head(outcome.edited)


def test_values_are_encoded_and_folded() -> None:
    outcome, message = run('addheader "X-Name" "Jürgen Groß";')
    assert b"X-Name: =?utf-8?" in head(outcome.edited)
    assert message.headers("x-name") == ["Jürgen Groß"]
    long_value = " ".join(["word"] * 300)
    outcome, message = run(f'addheader "X-Long" "{long_value}";')
    assert max(len(line) for line in head(outcome.edited).split(b"\r\n")) <= 78
    assert message.headers("x-long") == [long_value]
    outcome, message = run(f'addheader "X-Long" "{"x" * 2000}";')  # no place to fold: encoded words fold
    assert max(len(line) for line in head(outcome.edited).split(b"\r\n")) <= 998
    assert message.headers("x-long") == ["x" * 2000]


def test_a_message_with_bare_lf_keeps_them() -> None:
    raw = RAW.replace(b"\r\n", b"\n")
    outcome, _ = run('addheader :last "X-A" "1"; addheader "X-B" "2";', raw)
    assert outcome.edited is not None and b"\r" not in outcome.edited
    assert outcome.edited.startswith(b"X-B: 2\nReceived:") and b"auto-generated\nX-A: 1\n\nHello." in outcome.edited


def test_a_message_without_a_body_or_a_final_line_end() -> None:
    assert editheader.add(b"Subject: x", "X-A", "1", last=True) == b"Subject: x\r\nX-A: 1\r\n"
    assert editheader.add(b"Subject: x\r\n", "X-A", "1", last=True) == b"Subject: x\r\nX-A: 1\r\n"
    assert editheader.add(b"\r\nbody", "X-A", "1", last=True) == b"X-A: 1\r\n\r\nbody"


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ('addheader "X Bad" "v";', "addheader: 'X Bad' is not a header field name"),
        ('addheader "" "v";', "addheader: '' is not a header field name"),
        ('addheader "X:y" "v";', "addheader: 'X:y' is not a header field name"),
        ('deleteheader "Über";', "deleteheader: 'Über' is not a header field name"),
        ('addheader "X-A" "a\r\nb";', "addheader: the value must be one line of text"),
        ('addheader "X-A" "a\x0cb";', "addheader: the value must be one line of text"),
        (f'addheader "X-A" "{"v" * 2049}";', "addheader: the value is longer than 2048 octets"),
        ('deleteheader :last "X-A";', "deleteheader: :last needs :index"),
        ('deleteheader :index 0 "X-A";', "deleteheader: :index needs a number from 1"),
    ],
)
def test_checked_at_upload(script: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape("sieve: line 2: " + message)):
        compile_script(REQUIRE + script)


def test_without_require_they_are_refused() -> None:
    with pytest.raises(InvalidInput, match="extension 'editheader' not loaded"):
        compile_script('addheader "X-A" "1";')


def test_a_name_built_at_run_time_that_is_none_fails_the_script_and_its_edits_go() -> None:
    outcome, message = run(
        'addheader "X-Kept" "no"; set "n" "X Bad"; addheader "${n}" "v"; fileinto "Never";',
        RAW,
        'addheader "X-Second" "yes";',
    )
    assert outcome.targets("INBOX") == [("INBOX", [])], "the failing script's actions are dropped"
    assert outcome.edited is not None and b"X-Kept" not in outcome.edited, "and so are its edits"
    assert outcome.edited.startswith(b"X-Second: yes\r\n"), "the next script still runs and edits"
    assert message.as_received().raw == RAW


def test_scripts_share_the_edited_message() -> None:
    outcome, _ = run('addheader "X-Stage" "one";', RAW, 'if exists "x-stage" { fileinto "Staged"; }')
    assert outcome.targets("INBOX") == [("Staged", [])]


def test_responses_read_the_message_as_received() -> None:
    _, message = run('deleteheader "Subject"; addheader "Subject" "changed";')
    assert message.edited and message.parsed.subject == "changed"
    original = message.as_received()
    assert original.parsed.subject == "Your order" and not original.edited and original.raw == RAW


def test_edits_cost_from_the_messages_work_limit() -> None:
    big = RAW + b"x" * (4 << 20)
    script = REQUIRE + 'addheader "X-A" "1"; deleteheader "X-A";' * 300
    with pytest.raises(Exhausted):
        budget = Budget()
        message = view(big)
        for _ in range(3):  # evaluate catches it per script: run the commands as the engine does
            rules._run(compile_script(script).commands, message, rules.Outcome(), "r", rules.Variables(budget=budget))


@given(st.binary(max_size=300), st.text(max_size=40))
def test_add_then_delete_gives_the_header_back(raw: bytes, value: str) -> None:
    raw = raw.lstrip(b" \t")  # a line starting with white space would continue the added field (RFC 5322 folding)
    value = "".join(c if c == "\t" or (c >= " " and c != "\x7f") else " " for c in value)
    added = editheader.add(raw, "X-Fuzz-Added", value)
    found = editheader.fields(added, "x-fuzz-added")
    assert found and found[0].start == 0
    assert editheader.remove(added, found[:1]) == raw
