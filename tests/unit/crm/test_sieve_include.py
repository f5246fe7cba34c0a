"""Sieve include (RFC 6609): include, return and global as scripts compile and run them (relentad.crm.sieve + rules),
with the account's scripts looked up by name as the sorter's includer does it."""

from __future__ import annotations

import re

import pytest

from relentad.crm import rules
from relentad.crm.sieve import CAPABILITIES, Script, compile_script
from relentad.errors import InvalidInput
from relentad.message import parse

RAW = b"From: Shop <shop@example.com>\r\nTo: alice@example.test\r\nSubject: Your order\r\n\r\nHello.\r\n"
REQUIRE = 'require ["fileinto", "imap4flags", "include", "variables"];\n'


def run(main: str, **stored: str) -> rules.Outcome:
    """``main`` as the user's active script, ``stored`` the account's other scripts by name."""
    scripts = {name: compile_script(REQUIRE + text) for name, text in stored.items()}

    def load(name: str) -> Script | None:
        return scripts.get(name)

    view = rules.MessageView(parse(RAW), RAW, "shop@example.com", "alice@example.test")
    program = [("main" + rules.USER_SUFFIX, compile_script(REQUIRE + main))]
    return rules.evaluate(program, view, include=load)


def test_announced() -> None:
    assert "include" in CAPABILITIES


def test_an_included_scripts_actions_count_and_the_implicit_keep_is_shared() -> None:
    outcome = run('addflag "$A"; include "shop"; addflag "$C";', shop='fileinto "Shop"; addflag "$B";')
    assert outcome.fileinto == [("Shop", ["$A"])]
    assert outcome.targets("INBOX") == [("Shop", ["$A"])], "a fileinto in the included script cancels the keep"
    assert outcome.flags == ["$A", "$B", "$C"], "the flags variable is the message's, not the script's"
    assert "shop (user): fileinto Shop" in outcome.trace


def test_optional_and_missing() -> None:
    assert run('include :optional "nothing"; fileinto "After";').targets("INBOX") == [("After", [])]
    outcome = run('fileinto "Before"; include "nothing";')
    assert outcome.targets("INBOX") == [("INBOX", [])], "a missing script is a run-time error: the message is kept"
    assert "include: there is no script 'nothing'" in outcome.trace[-1]


def test_recursion_is_an_error_once_is_not() -> None:
    outcome = run('include "a";', a='include "b";', b='fileinto "B"; include "a";')
    assert outcome.targets("INBOX") == [("INBOX", [])] and "include: 'a' includes itself" in outcome.trace[-1]
    outcome = run('include "a";', a='include "main";')
    assert "include: 'main' includes itself" in outcome.trace[-1], "the running user script counts"
    outcome = run('include :once "b"; include "a";', a='include :once "b";', b='addflag "$B";')
    assert outcome.flags == ["$B"] and "include: error" not in " ".join(outcome.trace)


def test_return_ends_only_the_script_it_is_in() -> None:
    outcome = run('include "a"; fileinto "Main";', a='fileinto "A"; return; fileinto "Never";')
    assert outcome.fileinto == [("A", []), ("Main", [])]
    outcome = run('if true { return; } fileinto "Never";')
    assert outcome.targets("INBOX") == [("INBOX", [])] and not outcome.trace, "at the top: as if the script ended"


def test_stop_in_an_included_script_stops_everything() -> None:
    outcome = run('include "a"; fileinto "Never";', a="stop;")
    assert outcome.stopped and outcome.targets("INBOX") == [("INBOX", [])]


def test_globals_are_shared_and_other_variables_are_not() -> None:
    main = (
        'global "folder"; set "folder" "Orders"; set "local" "mine"; include "a"; include "a";'
        ' fileinto "${folder}-${local}";'
    )
    library = 'global "folder"; set "folder" "${folder}+"; fileinto "${local}seen";'
    outcome = run(main, a=library)
    assert [folder for folder, _ in outcome.fileinto] == ["seen", "seen", "Orders++-mine"]


def test_the_same_script_twice_without_once_runs_twice() -> None:
    outcome = run('global "n"; include "a"; include "a"; fileinto "n${n}";', a='global "n"; set "n" "${n}x";')
    assert outcome.fileinto == [("nxx", [])]


def test_nesting_is_bounded() -> None:
    chain = {f"s{i}": f'include "s{i + 1}";' for i in range(rules.MAX_INCLUDE_DEPTH + 1)}
    chain[f"s{rules.MAX_INCLUDE_DEPTH + 1}"] = 'fileinto "Deep";'
    outcome = run('include "s0";', **chain)
    assert outcome.targets("INBOX") == [("INBOX", [])] and "more than 10 levels" in outcome.trace[-1]


def test_a_failing_included_script_drops_the_including_scripts_actions() -> None:
    outcome = run('fileinto "Main"; include "bad";', bad='set "f" ""; fileinto "${f}";')
    assert outcome.targets("INBOX") == [("INBOX", [])]
    assert "the folder name is empty" in outcome.trace[-1]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ('include :global "x";', "include :global is not supported"),
        ('include "";', "include: a script name cannot be empty"),
        ('include "a\tb";', "include: a script name cannot contain control characters"),
        ('global "1x";', "global: '1x' is not a variable name"),
    ],
)
def test_checked_at_upload(script: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        compile_script(REQUIRE + script)


def test_require() -> None:
    with pytest.raises(InvalidInput, match="extension 'include' not loaded"):
        compile_script('include "a";')
    with pytest.raises(InvalidInput, match='global: require "variables" too'):
        compile_script('require "include"; global "a";')


def test_the_name_is_never_expanded() -> None:
    outcome = run('set "x" "a"; include :optional "${x}"; fileinto "End";', a='fileinto "A";')
    assert outcome.fileinto == [("End", [])], "RFC 6609 §3.2: the name is a constant"
    assert run('include "${x}";', **{"${x}": 'fileinto "Literal";'}).fileinto == [("Literal", [])]
