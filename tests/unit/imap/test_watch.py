"""The poll for changes other processes commit (relentad.imap.watch): a baseline when an account starts to IDLE,
nothing published while nothing moved, one MailboxChanged per mailbox whose modseq grew, nothing once nobody
idles."""

from __future__ import annotations

import asyncio
from pathlib import Path

from relentad.events import Bus, MailboxChanged
from relentad.imap.watch import ExternalChanges
from relentad.message import parse
from relentad.store import accounts, db, mailboxes, messages

RAW = b"From: Jo <jo@elsewhere.test>\r\nSubject: Hello\r\n\r\nSome body text\r\n"


def test_poll_publishes_what_another_connection_committed(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    other = db.open_database(path)  # stands for the CLI: another connection (and process) writing the file
    with db.transaction(other):
        accounts.add_domain(other, "example.test")
        me = accounts.add_account(other, "a@example.test", "x", quota_bytes=0, daily_send=0).id
        you = accounts.add_account(other, "b@example.test", "x", quota_bytes=0, daily_send=0).id
    inbox = mailboxes.find(other, me, "INBOX")
    assert inbox is not None

    async def scenario() -> list[object]:
        bus = Bus()
        mine, yours = bus.subscribe(me), bus.subscribe(you)
        watcher = ExternalChanges(path, bus, interval=3600)  # polled by hand below
        watcher.enter(me)
        watcher.poll()
        assert mine.empty()  # nothing committed since the baseline
        with db.transaction(other):
            blob = messages.store_blob(other, RAW, parse(RAW).to_json())
            messages.append(other, inbox, blob, prefix=b"", size=len(RAW), internaldate=1e9)
        watcher.poll()
        event = mine.get_nowait()
        watcher.poll()  # the same state again: nothing new
        assert mine.empty() and yours.empty()
        watcher.leave(me)
        with db.transaction(other):
            messages.append(other, inbox, blob, prefix=b"", size=len(RAW), internaldate=1e9)
        watcher.poll()  # nobody idles: no look at all
        assert mine.empty()
        watcher.close()
        return [event]

    [event] = asyncio.run(scenario())
    assert isinstance(event, MailboxChanged)
    assert (event.account_id, event.mailbox_id) == (me, inbox)
    row = other.execute("SELECT highestmodseq FROM mailboxes WHERE id = ?", (inbox,)).fetchone()
    assert event.modseq == row[0] - 1  # the modseq after the first append (the second one was not looked at)
    other.close()


async def test_bus_tells_watchers_of_a_shared_mailbox_once() -> None:
    from relentad.events import Bus, MailboxChanged

    bus = Bus()
    owner, grantee, other = bus.subscribe(1), bus.subscribe(2), bus.subscribe(3)
    bus.watch(10, grantee)
    bus.watch(10, owner)  # an owner's session watching its own mailbox is told once, not twice
    bus.publish([MailboxChanged(1, 10, 5), MailboxChanged(1, 11, 6)])
    assert [e.mailbox_id for e in _drain(owner)] == [10, 11]
    assert [e.mailbox_id for e in _drain(grantee)] == [10]
    assert _drain(other) == []
    bus.unwatch(10, grantee)
    bus.publish([MailboxChanged(1, 10, 7)])
    assert _drain(grantee) == []


def _drain(queue):  # type: ignore[no-untyped-def]
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out
