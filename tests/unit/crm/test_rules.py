"""Rule evaluation (relentad.crm.sieve + rules): the Sieve subset, relentad's virtual fields, the sorter's use."""

from __future__ import annotations

import sqlite3

import pytest

from relentad.crm import rules
from relentad.crm.sieve import compile_script
from relentad.crm.sorter import apply_outcome
from relentad.errors import AlreadyExists, InvalidInput, NotFound
from relentad.message import parse
from relentad.pipeline import Placement

RAW = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <juergen@Acme.example>\r\n"
    b"To: Alice <alice@example.test>, team@acme.example\r\n"
    b"Cc: carol@other.test\r\n"
    b"Subject: =?utf-8?q?Invoice_f=C3=BCr_March?=\r\n"
    b"X-Priority: 1 (Highest)\r\n"
    b"X-Relentad-Contact-Tag: vip\r\n"
    b"\r\n" + b"x" * 2000 + b"\r\n"
)


def run(script: str, raw: bytes = RAW, virtual: dict[str, list[str]] | None = None) -> rules.Outcome:
    view = rules.MessageView(parse(raw), raw, "bounce@acme.example", "alice+crm@example.test", virtual or {})
    return rules.evaluate([("r", compile_script(script))], view)


def folders(outcome: rules.Outcome, current: str = "INBOX") -> list[tuple[str, list[str]]]:
    return outcome.targets(current)


REQ = 'require ["fileinto", "imap4flags", "envelope"];\n'


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('address :domain :is "from" "acme.example"', True),
        ('address :domain :is "from" "ACME.EXAMPLE"', True),
        ('address :localpart :is "from" "juergen"', True),
        ('address :all :contains ["to", "cc"] "other"', True),
        ('address :matches "to" "*@acme.*"', True),
        ('address :matches "to" "?eam@acme.example"', True),
        ('address :matches "to" "t\\\\?am@acme.example"', False),
        ('address :is "bcc" "x@y"', False),
        ('header :contains "subject" "für"', True),
        ('header :is "subject" "invoice für march"', True),
        ('header :comparator "i;octet" :is "subject" "invoice für march"', False),
        ('header :matches "x-priority" "1*"', True),
        ('exists ["subject", "x-priority"]', True),
        ('exists ["subject", "x-missing"]', False),
        ("size :over 1K", True),
        ("size :under 1K", False),
        ('envelope :domain :is "from" "acme.example"', True),
        ('envelope :localpart :matches "to" "alice+*"', True),
        ('allof (true, not false, anyof (false, header :contains "from" "Jürgen"))', True),
        ('not address :domain :is "from" "acme.example"', False),
    ],
)
def test_tests(test: str, expected: bool) -> None:
    outcome = run(REQ + f'if {test} {{ fileinto "Hit"; }}')
    assert (folders(outcome) == [("Hit", [])]) is expected


def test_virtual_fields_come_from_the_crm_not_the_message() -> None:
    script = REQ + 'if header :is "X-Relentad-Contact-Tag" "vip" { fileinto "VIP"; }'
    assert folders(run(script)) == [("INBOX", [])]  # the forged header in the message does not count
    assert folders(run(script, virtual={"x-relentad-contact-tag": ["vip", "eu"]})) == [("VIP", [])]
    company = REQ + 'if header :is "x-relentad-company" "acme.example" { addflag "$Acme"; }'
    assert folders(run(company, virtual={"x-relentad-company": ["Acme", "acme.example"]})) == [("INBOX", ["$Acme"])]


def test_if_elsif_else_flags_keep_and_stop() -> None:
    script = REQ + (
        'if header :contains "subject" "nothing" { fileinto "A"; }\n'
        'elsif header :contains "subject" "invoice" { addflag ["\\\\Flagged", "$Invoice"]; fileinto "Billing"; '
        "keep; }\n"
        'else { fileinto "C"; }\n'
        'removeflag "$Invoice"; stop; fileinto "Never";'
    )
    outcome = run(script)
    assert folders(outcome) == [("Billing", ["\\Flagged", "$Invoice"]), ("INBOX", ["\\Flagged", "$Invoice"])]
    assert outcome.flags == ["\\Flagged"] and outcome.stopped


def test_stop_ends_later_rules_and_flags_carry_across() -> None:
    view = rules.MessageView(parse(RAW), RAW, "", "alice@example.test")
    first = compile_script(REQ + 'addflag "$A";')
    second = compile_script(REQ + 'fileinto "Two"; stop;')
    third = compile_script(REQ + 'fileinto "Three";')
    outcome = rules.evaluate([("1", first), ("2", second), ("3", third)], view)
    assert outcome.targets("INBOX") == [("Two", ["$A"])]


def test_tagcontact_collects_tags_once_and_needs_its_require() -> None:
    script = (
        'require ["vnd.relentad.tagcontact", "imap4flags"];\n'
        'if header :contains "subject" "invoice" { tagcontact ["billing", "vip"]; }\n'
        'tagcontact "vip"; addflag "$Seen-By-Rule";\n'
    )
    outcome = run(script)
    assert outcome.tags == ["billing", "vip"] and outcome.flags == ["$Seen-By-Rule"]
    assert "r: tagcontact billing vip" in outcome.trace
    assert run(script.replace("invoice", "nothing")).tags == ["vip"]
    with pytest.raises(InvalidInput, match="not loaded"):
        compile_script('tagcontact "vip";')
    with pytest.raises(InvalidInput, match="not a tag"):
        compile_script('require "vnd.relentad.tagcontact"; tagcontact "a,b";')


def test_fileinto_flags_argument() -> None:
    assert folders(run(REQ + 'fileinto :flags "\\\\Seen $Done" "Done";')) == [("Done", ["\\Seen", "$Done"])]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("discard;", "never drops mail"),
        ('require "fileinto"; if header :regex "a" "b" { keep; }', "sieve:"),
        ('fileinto "x";', "extension 'fileinto' not loaded"),
        ('require "variables"; set "a" "b";', "not supported"),
        ("if true { keep; ", "sieve:"),
    ],
)
def test_refused_scripts(script: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        rules.check(script)


def test_bad_folder_names_are_refused_when_added() -> None:
    with pytest.raises(InvalidInput, match="fileinto"):
        rules.check(REQ + 'fileinto "a//b";')


def test_apply_outcome_moves_flags_and_copies_but_never_out_of_junk() -> None:
    placement = Placement(1, "alice@example.test")
    extra = apply_outcome(placement, run(REQ + 'addflag "\\\\Seen"; fileinto "A/B"; fileinto "C";'))
    assert (placement.mailbox, placement.flags, placement.keywords) == ("A/B", 1, [])
    assert [(p.mailbox, p.flags) for p in extra] == [("C", 1)]
    junk = Placement(1, "alice@example.test", "Junk")
    assert apply_outcome(junk, run(REQ + 'addflag "$Seen-By-Rule"; fileinto "A";')) == []
    assert (junk.mailbox, junk.keywords) == ("Junk", ["$Seen-By-Rule"])


def test_storage_order_and_errors(conn: sqlite3.Connection, account_id: int) -> None:
    rules.add(conn, account_id, "b", REQ + 'fileinto "B";')
    rules.add(conn, account_id, "a", REQ + 'fileinto "A";', position=1)
    rules.add(conn, account_id, "c", REQ + "keep;")
    assert [r["name"] for r in rules.list_rules(conn, account_id)] == ["a", "b", "c"]
    assert [name for name, _ in rules.load(conn, account_id)] == ["a", "b", "c"]
    with pytest.raises(AlreadyExists):
        rules.add(conn, account_id, "a", REQ + "keep;")
    rules.remove(conn, account_id, "a")
    assert [(r["position"], r["name"]) for r in rules.list_rules(conn, account_id)] == [(1, "b"), (2, "c")]
    with pytest.raises(NotFound):
        rules.remove(conn, account_id, "a")
