"""Rule evaluation (relentad.crm.sieve + rules): the Sieve subset, relentad's virtual fields, the sorter's use."""

from __future__ import annotations

import fnmatch
import itertools
import re
import sqlite3
import tracemalloc

import pytest

from relentad.crm import rules
from relentad.crm.sieve import Match, compile_script
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
        ('require "variables"; set "1a" "b";', "line 1: set: '1a' is not a variable name"),
        ("if true { keep; ", "sieve:"),
        ('require "foo"; keep;', "require: 'foo' is not supported"),
        ('require ["fileinto", "enotify"]; keep;', "require: 'enotify' is not supported"),
        ("if " + "not " * 2000 + "true { keep; }", "nested deeper than"),
        ("if true {" * 40 + "keep;" + "}" * 40, "nested deeper than"),
        ("# " + "x" * (1 << 20) + "\nkeep;", "larger than"),
        ('require "imap4flags"; addflag "a(b";', "addflag: 'a\\(b' is not an IMAP keyword"),
        ('require "imap4flags"; addflag "x]y";', "is not an IMAP keyword"),
        ('require "imap4flags"; setflag "\\\\Recent";', "setflag: \\\\Recent is not a flag"),
        ('require ["fileinto", "imap4flags"]; fileinto :flags "$A b(" "X";', "fileinto: 'b\\(' is not"),
        ('require "fileinto"; fileinto "Contacts/Jo";', "read-only views"),
        ('require "fileinto"; fileinto "Companies";', "read-only views"),
    ],
)
def test_refused_scripts(script: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        rules.check(script)


@pytest.mark.parametrize(
    "script",
    [
        'require "fileinto";\nif header :is :comparator "i;ascii-\nnumeric" "a" "b" { keep; }',  # sievelib's error
        'if header :is "subject" "x" { keep; }\nif size :over "1\r\nK" { keep; }',  # a bad argument, as written
    ],
)
def test_an_error_quoting_a_multi_line_string_is_one_line(script: str) -> None:
    """Found by the sieve fuzz target: sievelib quotes the token it stopped at as written, so a string spanning lines
    made a message of several (the CLI and ManageSieve's NO expect one)."""
    with pytest.raises(InvalidInput) as raised:
        rules.check(script)
    message = str(raised.value)
    assert "\n" not in message and "\r" not in message and message.startswith("sieve: line 2: "), message


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


def test_matches_agrees_with_a_reference_glob_and_honours_escapes() -> None:
    """``:matches`` against fnmatch's glob (same ``*``/``?``; case folded for i;ascii-casemap) on every short
    pattern and value over a small alphabet, and the RFC 5228 §2.7.1 escapes."""

    def reference(pattern: str, value: str, octet: bool) -> bool:
        return re.fullmatch(fnmatch.translate(pattern), value, 0 if octet else re.IGNORECASE) is not None

    values = ["".join(v) for n in range(5) for v in itertools.product("aB", repeat=n)]
    for n in range(5):
        for pattern in ("".join(p) for p in itertools.product("ab*?", repeat=n)):
            for value in values:
                for octet in (False, True):
                    match = Match(":matches", (pattern,), octet)
                    assert rules.matches(match, value) is reference(pattern, value, octet), (pattern, value, octet)
    for pattern, hit, miss in (("a\\*b", "a*b", "axb"), ("a\\?b", "a?b", "axb"), ("a\\\\*", "a\\bc", "abc")):
        assert rules.matches(Match(":matches", (pattern,)), hit)
        assert not rules.matches(Match(":matches", (pattern,)), miss)


def test_matches_on_a_hostile_subject_ends() -> None:
    """A glob of many stars against a long run of one letter: one regex of ``.*`` runs backtracked for ever (300
    "a"s in a subject stalled the daemon's event loop); the pieces matcher answers at once."""
    raw = b"From: eve@evil.example\r\nSubject: " + b"a" * 5000 + b"\r\n\r\nx\r\n"
    script = REQ + 'if header :matches "subject" "*a*a*a*a*a*a*a*a*b" { fileinto "Hit"; }'
    assert folders(run(script, raw)) == [("INBOX", [])]
    assert folders(run(script.replace("*b", "*a"), raw)) == [("Hit", [])]


@pytest.mark.parametrize(
    ("match", "value", "expected"),
    [
        (Match(":is", ("INVOICE",)), "invoice", True),
        (Match(":contains", ("MARCH",)), "Invoice für March", True),
        (Match(":is", ("ss",)), "ß", False),  # Unicode case folding would say True
        (Match(":is", ("k",)), "\u212a", False),  # the Kelvin sign
        (Match(":matches", ("k*",)), "\u212aelvin", False),
        (Match(":is", ("Ü",)), "ü", False),  # i;ascii-casemap folds A-Z only (RFC 4790 §9.2)
    ],
)
def test_ascii_casemap_folds_only_ascii_letters(match: Match, value: str, expected: bool) -> None:
    assert rules.matches(match, value) is expected


def test_accepted_capabilities_and_flag_case() -> None:
    script = (
        'require ["fileinto", "mailbox", "comparator-i;octet", "imap4flags"];\n'
        'if header :comparator "i;octet" :contains "subject" "Invoice" { addflag "\\\\seen \\\\FLAGGED"; '
        'fileinto :create "Bills"; }'
    )
    assert folders(run(script)) == [("Bills", ["\\Seen", "\\Flagged"])]


def test_inbox_children_are_filed_under_inbox_and_keep_makes_no_second_copy() -> None:
    assert folders(run(REQ + 'fileinto "inbox/Sub";')) == [("INBOX/Sub", [])]
    assert folders(run(REQ + 'fileinto "Inbox"; keep;')) == [("INBOX", [])]
    placement = Placement(1, "alice@example.test")
    assert apply_outcome(placement, run(REQ + 'fileinto "inbox"; keep;')) == []
    assert placement.mailbox == "INBOX"


def test_each_copy_gets_its_own_flags() -> None:
    placement = Placement(1, "alice@example.test", keywords=["$Unassigned"])
    extra = apply_outcome(placement, run(REQ + 'fileinto :flags "\\\\Seen" "A"; fileinto "B";'))
    assert (placement.mailbox, placement.flags, placement.keywords) == ("A", 1, ["$Unassigned"])
    assert [(p.mailbox, p.flags, p.keywords) for p in extra] == [("B", 0, ["$Unassigned"])]


def test_a_stored_rule_into_the_crm_views_keeps_the_copy_where_it_was() -> None:
    """A rule added before such folders were refused: the copy stays in its folder (and only once)."""
    outcome = rules.Outcome(fileinto=[("Contacts/Jo", []), ("INBOX", ["$X"])])
    placement = Placement(1, "alice@example.test")
    assert apply_outcome(placement, outcome) == []
    assert (placement.mailbox, placement.keywords) == ("INBOX", ["$X"])


def test_address_parts_of_quoted_local_parts_groups_and_folded_fields() -> None:
    raw = (
        b'From: "b c"@y.example\r\nCc: Team: jo@t.example, "q@x"@q.example;\r\nTo: undisclosed-recipients:;\r\n'
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\n =?utf-8?q?_au_lait?= folded\r\nX-Folded: one\r\n\ttwo\r\n\r\nbody\r\n"
    )
    hits = {
        'address :localpart :is "from" "b c"': True,  # compared as what it says, not with its quotes
        'address :localpart :is "cc" "q@x"': True,
        'address :domain :is "cc" ["t.example", "q.example"]': True,
        'address :all :contains "to" "undisclosed"': False,  # a group's name is no address
        'header :is "subject" "café au lait folded"': True,
        'header :is "x-folded" "one\ttwo"': True,  # unfolding removes the CRLF only
    }
    for test, expected in hits.items():
        assert (folders(run(REQ + f'if {test} {{ fileinto "Hit"; }}', raw)) == [("Hit", [])]) is expected, test


def test_rules_stored_by_an_older_release_keep_working() -> None:
    """What ``rules add`` now refuses but once stored — a require of an unsupported capability, a flag that is
    none — does not disable the rule at delivery: the require is ignored, the bad flag dropped."""
    text = 'require ["fileinto", "imap4flags", "variables"];\nfileinto :flags "a(b \\\\seen" "Old"; addflag "x]y $Ok";'
    with pytest.raises(InvalidInput):
        rules.check(text)
    view = rules.MessageView(parse(RAW), RAW, "", "alice@example.test", {})
    outcome = rules.evaluate([("old", rules.compiled(text))], view)
    assert outcome.fileinto == [("Old", ["\\Seen"])] and outcome.flags == ["$Ok"]


def test_the_compile_cache_is_bounded_by_size() -> None:
    """Users store scripts of up to 1 MiB (ManageSieve): a user varying one and mailing themselves after each
    change must not grow the cache by a MiB a time (it held 4096 texts of any size)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(40):
            rules.compiled(f"# {i}\r\n#" + "x" * ((1 << 20) - 100) + "\r\nkeep;\r\n")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 24 << 20, f"{held >> 20} MiB held"  # 16 MiB of text (rules.COMPILED_OCTETS) and their scripts
    assert rules.compiled("keep;") is rules.compiled("keep;"), "still a cache"
