"""STORE, COPY, MOVE, EXPUNGE (UIDPLUS, CONDSTORE UNCHANGEDSINCE) over real sockets, and the retention area."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest

from relentad.store import flags as flagmod
from tests.support.daemon import Daemon
from tests.support.dnsmasq import Dnsmasq
from tests.support.imap import Raw, client, imap_daemon, message


@pytest.fixture(scope="module")
def relentad(tmp_path_factory: pytest.TempPathFactory, dns_server: Dnsmasq) -> Iterator[Daemon]:
    daemon = imap_daemon(tmp_path_factory.mktemp("imap-store"), dns_server.nameserver)
    yield daemon
    daemon.stop()


def fresh(daemon: Daemon, user: str, count: int) -> Raw:
    """A raw session on `user`'s INBOX holding `count` new messages."""
    conn = client(daemon, user)
    for n in range(count):
        conn.append("INBOX", None, None, message(f"msg {n}"))
    conn.logout()
    raw = Raw(daemon)
    raw.login(user)
    raw.command("s", "SELECT INBOX")
    return raw


def test_store_flags_and_keywords(relentad: Daemon) -> None:
    raw = fresh(relentad, "alice@example.test", 3)
    reply = raw.command("a", "STORE 1 +FLAGS (\\Seen $Label1)")
    assert reply[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)\r\n"  # a new keyword
    assert reply[1].startswith(b"* OK [PERMANENTFLAGS (")
    assert reply[2] == b"* 1 FETCH (FLAGS (\\Seen \\Recent $Label1))\r\n"
    assert raw.command("b", "STORE 1 -FLAGS ($label1)")[0] == b"* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n"
    assert raw.command("c", "STORE 1:2 FLAGS (\\Answered \\Draft)")[:2] == [
        b"* 1 FETCH (FLAGS (\\Answered \\Draft \\Recent))\r\n",
        b"* 2 FETCH (FLAGS (\\Answered \\Draft \\Recent))\r\n",
    ]
    reply = raw.command("d", "UID STORE 3 +FLAGS.SILENT (\\Flagged)")
    assert reply == [b"d OK STORE completed\r\n"] or reply[-1].startswith(b"d OK")
    assert b"FLAGS (\\Flagged \\Recent)" in b"".join(raw.command("e", "FETCH 3 FLAGS"))
    assert b"$Label1" not in b"".join(raw.command("f", "SELECT INBOX"))  # no message has it any more
    assert raw.command("g", "STORE 9 +FLAGS (\\Seen)")[-1].startswith(b"g BAD")
    assert raw.command("h", "STORE 1 +FLAGS (\\Recent)")[-1].startswith(b"h BAD")


def test_other_sessions_see_flag_changes(relentad: Daemon) -> None:
    first = fresh(relentad, "bob@example.test", 2)
    second = Raw(relentad)
    second.login("bob@example.test")
    second.command("s", "SELECT INBOX")
    first.command("a", "STORE 2 +FLAGS (\\Flagged)")
    reply = second.command("b", "NOOP")
    assert b"* 2 FETCH (UID 2 FLAGS (\\Flagged))\r\n" in reply
    assert b"FETCH" not in b"".join(first.command("c", "NOOP"))  # its own change is not echoed


def test_unchangedsince_reports_modified(relentad: Daemon) -> None:
    raw = fresh(relentad, "carol@example.test", 2)
    raw.command("e", "ENABLE CONDSTORE")
    text = b"".join(raw.command("a", "FETCH 1:2 (MODSEQ)"))
    assert b"* 1 FETCH (MODSEQ (" in text
    first = max(int(part.split(b")")[0]) for part in text.split(b"MODSEQ (")[1:])
    reply = raw.command("b", f"STORE 1 (UNCHANGEDSINCE {first}) +FLAGS (\\Seen)")
    assert reply[0].startswith(b"* 1 FETCH (FLAGS (\\Seen \\Recent) MODSEQ (")
    reply = raw.command("c", f"UID STORE 1:2 (UNCHANGEDSINCE {first}) +FLAGS (\\Flagged)")
    assert reply[-1].startswith(b"c OK [MODIFIED 1]")
    reply = raw.command("d", f"FETCH 1:2 (FLAGS) (CHANGEDSINCE {first})")
    assert any(line.startswith(b"* 1 FETCH") for line in reply)


def test_copy_move_expunge_with_uidplus(relentad: Daemon) -> None:
    relentad.add_user("dave@example.test")
    raw = fresh(relentad, "dave@example.test", 4)
    reply = raw.command("a", "COPY 1:2 Archive")
    assert reply[-1].startswith(b"a OK [COPYUID ") and reply[-1].split()[4:6] == [b"1:2", b"1:2]"]
    assert raw.command("b", "COPY 1 Nowhere")[-1].startswith(b"b NO [TRYCREATE]")
    reply = raw.command("c", "UID MOVE 3 Trash")
    assert reply[0].startswith(b"* OK [COPYUID ") and reply[1] == b"* 3 EXPUNGE\r\n" and reply[-1].startswith(b"c OK")
    raw.command("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
    raw.command("e", "STORE 3 +FLAGS.SILENT (\\Deleted)")
    reply = raw.command("f", "UID EXPUNGE 1")
    assert reply[0] == b"* 1 EXPUNGE\r\n"
    reply = raw.command("g", "EXPUNGE")
    assert reply[0] == b"* 2 EXPUNGE\r\n"
    assert b"* 1 EXISTS" in b"".join(raw.command("h", "SELECT INBOX"))
    kept = relentad.query(
        "SELECT e.uid, e.mailbox_name FROM expunged e JOIN accounts a ON a.id = e.account_id WHERE a.email = ?",
        "dave@example.test",
    )
    assert sorted((r["mailbox_name"], r["uid"]) for r in kept) == [("INBOX", 1), ("INBOX", 4)]
    refs = relentad.query(
        """SELECT b.refs, (SELECT count(*) FROM messages m WHERE m.blob_id = b.id)
                  + (SELECT count(*) FROM expunged e WHERE e.blob_id = b.id) AS used FROM blobs b"""
    )
    assert all(r["refs"] == r["used"] for r in refs)


def test_expunge_seen_by_other_session_only_when_allowed(relentad: Daemon) -> None:
    relentad.add_user("erin@example.test")
    first = fresh(relentad, "erin@example.test", 3)
    second = Raw(relentad)
    second.login("erin@example.test")
    second.command("s", "SELECT INBOX")
    first.command("a", "STORE 2 +FLAGS.SILENT (\\Deleted)")
    first.command("b", "EXPUNGE")
    during_fetch = b"".join(second.command("c", "FETCH 1:3 (UID)"))
    assert b"EXPUNGE" not in during_fetch
    reply = second.command("d", "NOOP")
    assert b"* 2 EXPUNGE\r\n" in reply
    assert b"* 2 FETCH (UID 3)" in b"".join(second.command("e", "FETCH 2 (UID)"))


def test_recent_belongs_to_the_first_session_only(relentad: Daemon) -> None:
    relentad.add_user("frank@example.test")
    conn = client(relentad, "frank@example.test")
    conn.append("INBOX", None, None, message("new one"))
    assert conn.status("INBOX", "(RECENT)")[1][0].endswith(b"(RECENT 1)")
    first = Raw(relentad)
    first.login("frank@example.test")
    assert b"* 1 RECENT\r\n" in first.command("a", "SELECT INBOX")
    assert first.command("b", "SEARCH RECENT")[0] == b"* SEARCH 1\r\n"
    assert first.command("c", "SEARCH NEW")[0] == b"* SEARCH 1\r\n"
    second = Raw(relentad)
    second.login("frank@example.test")
    assert b"* 0 RECENT\r\n" in second.command("a", "SELECT INBOX")
    assert second.command("b", "SEARCH RECENT")[0] == b"* SEARCH\r\n"
    assert second.command("c", "SEARCH OLD")[0] == b"* SEARCH 1\r\n"
    assert conn.status("INBOX", "(RECENT)")[1][0].endswith(b"(RECENT 0)")
    conn.logout()


def _view(raw: Raw, tag: str) -> tuple[list[int], dict[int, bytes]]:
    """The UIDs in sequence order and the flags a session believes, from `FETCH 1:* (UID FLAGS)`."""
    uids, flags = [], {}
    for line in raw.command(tag, "FETCH 1:* (UID FLAGS)"):
        match = re.match(rb"\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\)\)", line)
        if match:
            assert int(match.group(1)) == len(uids) + 1, line  # sequence numbers are dense and ordered
            uids.append(int(match.group(2)))
            flags[int(match.group(2))] = match.group(3).replace(b"\\Recent", b"").strip()
    return uids, flags


@pytest.mark.parametrize("seed", [3501, 9051, 7162])
def test_two_sessions_stay_consistent_under_random_changes(relentad: Daemon, seed: int) -> None:
    """A seeded random mix of APPEND, STORE, EXPUNGE, MOVE by two sessions; after each step both sessions'
    views (sequence numbers, UIDs, flags) must equal the database once they have heard the news."""
    user = f"gina{seed}@example.test"
    relentad.add_user(user)
    sessions = [Raw(relentad), Raw(relentad)]
    for raw in sessions:
        raw.login(user)
        raw.command("s", "SELECT INBOX")
    rng = random.Random(seed)
    for step in range(60):
        actor = sessions[rng.randrange(2)]
        exists = len(_view(actor, f"v{step}")[0])
        action = rng.choice(["append", "append", "store", "store", "expunge", "move"] if exists else ["append"])
        body = message(f"step {step}")
        if action == "append":
            actor.command(f"a{step}", b"APPEND INBOX {%d+}\r\n" % len(body) + body)
        elif action == "store":
            flag = rng.choice(["\\Seen", "\\Flagged", "\\Deleted", "$Tag"])
            actor.command(f"a{step}", f"STORE {rng.randint(1, exists)} {rng.choice('+-')}FLAGS ({flag})")
        elif action == "expunge":
            actor.command(f"a{step}", "EXPUNGE")
        else:
            actor.command(f"a{step}", f"MOVE {rng.randint(1, exists)} Archive")
        rows = relentad.query(
            """SELECT m.uid, m.flags, m.keywords FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id
               JOIN accounts a ON a.id = b.account_id WHERE a.email = ? AND b.name = 'INBOX'
               ORDER BY m.uid""",
            user,
        )
        for n, raw in enumerate(sessions):
            raw.command(f"n{step}x{n}", "NOOP")
            uids, flags = _view(raw, f"c{step}x{n}")
            assert uids == [r["uid"] for r in rows], (step, action, n)
            for row in rows:
                expected = set(flagmod.names(row["flags"], row["keywords"]))
                assert set(flags[row["uid"]].decode().split()) == expected, (step, action, n)
