"""Users' own Sieve scripts: RFC 5804 storage semantics (one active, codes) and their place after the admin rules."""

from __future__ import annotations

import sqlite3

import pytest

from relentad.crm import rules, userscripts
from relentad.crm.sorter import account_context
from relentad.crm.userscripts import ScriptError


def code(call: object) -> str:
    assert callable(call)
    with pytest.raises(ScriptError) as caught:
        call()
    return caught.value.code


def test_one_active_script_and_rfc5804_codes(conn: sqlite3.Connection, account_id: int) -> None:
    userscripts.put(conn, account_id, "a", "keep;", 2, 100)
    userscripts.put(conn, account_id, "b", "stop;", 2, 100)
    assert code(lambda: userscripts.put(conn, account_id, "c", "keep;", 2, 100)) == "QUOTA/MAXSCRIPTS"
    assert code(lambda: userscripts.put(conn, account_id, "a", "x" * 101, 2, 100)) == "QUOTA/MAXSIZE"
    userscripts.set_active(conn, account_id, "a")
    userscripts.set_active(conn, account_id, "b")
    assert userscripts.listing(conn, account_id) == [("a", False), ("b", True)]
    assert code(lambda: userscripts.delete(conn, account_id, "b")) == "ACTIVE"
    assert code(lambda: userscripts.rename(conn, account_id, "b", "a")) == "ALREADYEXISTS"
    assert code(lambda: userscripts.rename(conn, account_id, "zz", "y")) == "NONEXISTENT"
    userscripts.rename(conn, account_id, "b", "c")
    userscripts.put(conn, account_id, "c", "keep;", 2, 100)
    assert userscripts.listing(conn, account_id) == [("a", False), ("c", True)], "a replaced script stays active"
    userscripts.set_active(conn, account_id, "")
    assert userscripts.listing(conn, account_id) == [("a", False), ("c", False)]
    userscripts.delete(conn, account_id, "c")
    assert code(lambda: userscripts.get(conn, account_id, "c")) == "NONEXISTENT"


@pytest.mark.parametrize("name", ["", "tab\there", "del\x7f", "c1\x85", "line\u2028sep", "x" * 129])
def test_names_rfc5804_refuses(name: str) -> None:
    with pytest.raises(ScriptError):
        userscripts.check_name(name)


def test_names_are_kept_in_nfc() -> None:
    assert userscripts.check_name("e\u0301t\u00e9") == "\u00e9t\u00e9"
    assert userscripts.check_name("x" * 128) == "x" * 128


def test_the_active_script_runs_after_the_admin_rules(conn: sqlite3.Connection, account_id: int) -> None:
    rules.add(conn, account_id, "admin", 'require "imap4flags"; addflag "$A";')
    userscripts.put(conn, account_id, "mine", 'require "fileinto"; fileinto "Mine";', 5, 1 << 20)
    userscripts.put(conn, account_id, "other", "stop;", 5, 1 << 20)
    assert [name for name, _ in account_context(conn, account_id).scripts] == ["admin"], "none active yet"
    userscripts.set_active(conn, account_id, "mine")
    assert [name for name, _ in account_context(conn, account_id).scripts] == ["admin", "mine (user)"]
    assert [name for name, _ in rules.load(conn, account_id)] == ["admin", "mine (user)"]
