"""Pure parts of quotas and the lifecycle: send-limit arithmetic, the 90 % warning state, mboxrd quoting, purge."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from relentad import quota, quotawarn
from relentad.accountpage import sessions
from relentad.auth import apppasswords, totp
from relentad.crm import userscripts
from relentad.imap import indexer
from relentad.lifecycle import activity, announce, retention, transfer
from relentad.queue import queue
from relentad.store import acl, db, imapwrite, messages
from relentad.store.mailboxes import find
from tests.support import store
from tests.support.store import database_with


def usage(**kwargs: int) -> quota.Usage:
    values = {"account_id": 1, "bytes": 0, "messages": 0, "limit": 0}
    values |= {"daily_send": 0, "hourly_send": 0, "sent_today": 0, "sent_this_hour": 0}
    values.update(kwargs)
    return quota.Usage(**values)


def test_send_refusal_at_exact_counts() -> None:
    assert quota.send_refusal(usage(hourly_send=3, sent_this_hour=2), pending=0) is None
    assert quota.send_refusal(usage(hourly_send=3, sent_this_hour=2), pending=1) == "hour"
    assert quota.send_refusal(usage(daily_send=5, sent_today=4), pending=0) is None
    assert quota.send_refusal(usage(daily_send=5, sent_today=5), pending=0) == "day"
    assert quota.send_refusal(usage(sent_today=10**6), pending=10) is None, "0 = unlimited"


def test_full_and_fits() -> None:
    assert usage(bytes=100, limit=100).full and not usage(bytes=99, limit=100).full
    assert usage(bytes=90, limit=100).fits(10) and not usage(bytes=90, limit=100).fits(11)
    assert usage(bytes=10**9).fits(10**9), "0 = unlimited"


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: a\r\n\r\nbody\r\n",
        b"Subject: b\r\n\r\nFrom here\r\n>From there\r\n>>From everywhere\r\n",
        b"Subject: c\r\n\r\nno final newline",
        b"Subject: d\n\nbare\n\n\n",
        b"Subject: e\r\n\r\n\r\nFrom \r\n",
    ],
)
def test_mboxrd_round_trip(raw: bytes) -> None:
    data = transfer.mbox_entry(raw, 1_700_000_000) + transfer.mbox_entry(b"Subject: next\r\n\r\nx\r\n", 0)
    [(first, date, zone), (second, _, _)] = list(transfer.read_mbox(data))
    assert first == raw and second == b"Subject: next\r\n\r\nx\r\n" and (date, zone) == (1_700_000_000, 0)


@pytest.mark.parametrize("zone", [0, 120, -300, 330])
def test_an_internal_date_keeps_its_zone_through_an_mbox_round_trip(zone: int) -> None:
    """APPEND keeps the client's zone; the export's From line carries it (local time, the zone after the year, as
    Dovecot and c-client read it) and the import reads it back. It used to be written, and read, as UTC."""
    entry = transfer.mbox_entry(b"Subject: z\r\n\r\nx\r\n", 1_700_000_000, zone)
    expected = {
        0: b"Tue Nov 14 22:13:20 2023\n",
        120: b"Wed Nov 15 00:13:20 2023 +0200\n",
        -300: b"Tue Nov 14 17:13:20 2023 -0500\n",
        330: b"Wed Nov 15 03:43:20 2023 +0530\n",
    }
    assert entry.startswith(b"From MAILER-DAEMON " + expected[zone])
    assert [(date, found) for _, date, found in transfer.read_mbox(entry)] == [(1_700_000_000, zone)]
    odd = b"From x@y.test Mon Jan  1 00:00:00 2024 +9959\nA: b\n\n"  # no such offset: UTC, as without one
    assert [(date, found) for _, date, found in transfer.read_mbox(odd)] == [(1704067200.0, 0)]


def test_mbox_from_lines_in_bodies_stay_in_their_message(tmp_path: Path) -> None:
    """RFC 4155: a separator is a ``From sender date`` line; an unquoted ``From `` line inside a body (mboxo
    writers, hand-made files) is text. It used to end the message there: the rest of the body became a message of
    its own (or an empty one, still counted as imported)."""
    data = (
        b"From alice@x.test Mon Jan  1 00:00:00 2024\nSubject: one\n\nhello\n>From quoted\nFrom unquoted here\n\n"
        b"From bob@y.test Tue Jan  2 10:00:00 2024 +0000\nSubject: two\n\nFrom the start\nbye\n\n"
        b"From carol@z.test Wed Jan  3 10:00:00 2024\nFrom carol@z.test Wed Jan  3 11:00:00 2024\nSubject: 3\n\n3\n"
    )
    assert list(transfer.read_mbox(data)) == [
        (b"Subject: one\n\nhello\nFrom quoted\nFrom unquoted here\n", 1704067200.0, 0),
        (b"Subject: two\n\nFrom the start\nbye\n", 1704189600.0, 0),
        (b"", 1704276000.0, 0),
        (b"Subject: 3\n\n3", 1704279600.0, 0),
    ]
    assert transfer.read_mbox(b"From 1@xxx Sat Jan 27 18:35:08 +0000 2018\nA: b\n\n").__next__()[1] == 1517078108.0
    (tmp_path / "in.mbox").write_bytes(data)
    assert [item.raw[:12] for item in transfer.items(tmp_path / "in.mbox")] == [b"Subject: one", b"Subject: two",
                                                                              b"Subject: 3\n\n"]  # fmt: skip


def test_crlf_mbox_messages_keep_their_line_ends() -> None:
    """An mbox written with CRLF (Windows tools, some exports): the blank line between messages is CRLF. Each
    message used to keep its final CR (``bye\\r\\n\\r``, ``bye\\r``), a bare CR no message has."""
    data = (
        b"From a@x.test Mon Jan  1 00:00:00 2024\r\nSubject: one\r\n\r\nhello\r\n\r\n"
        b"From b@x.test Mon Jan  1 00:00:01 2024\r\nSubject: two\r\n\r\nno blank line after\r\n"
        b"From c@x.test Mon Jan  1 00:00:02 2024\r\nSubject: three\r\n\r\n>From quoted\r\nbye\r\n"
    )
    assert [raw for raw, _, _ in transfer.read_mbox(data)] == [
        b"Subject: one\r\n\r\nhello\r\n",
        b"Subject: two\r\n\r\nno blank line after\r\n",
        b"Subject: three\r\n\r\nFrom quoted\r\nbye\r\n",
    ]
    last = [raw for raw, _, _ in transfer.read_mbox(data + b"\r\n")][-1]
    assert last == b"Subject: three\r\n\r\nFrom quoted\r\nbye\r\n"


@pytest.mark.parametrize("folder", ["INBOX", "a/b", "a.b", "100%", "%2E", "v1.2/x%2Ey", "Café/Über"])
def test_export_file_names_are_one_per_folder(folder: str) -> None:
    assert transfer._folder_of(transfer._file_name(folder)) == folder


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return database_with(tmp_path / "t.db", "a@example.test", quota_bytes=1000)


def _deliver(conn: sqlite3.Connection, raw: bytes) -> None:
    inbox = find(conn, 1, "INBOX")
    assert inbox is not None
    blob = messages.store_blob(conn, raw)
    messages.append(conn, inbox, blob, prefix=b"", size=len(raw), internaldate=time.time())


def test_warning_once_per_crossing(conn: sqlite3.Connection) -> None:
    with db.transaction(conn):
        _deliver(conn, b"x" * 850)
        assert quota.claim_warning(conn, 1) is None
        assert not quota.warning_state_stale(conn, 1)
        _deliver(conn, b"y" * 60)  # 910 of 1000 octets
        assert quota.warning_state_stale(conn, 1)
        warned = quota.claim_warning(conn, 1)
        assert warned is not None and round(warned.percent) == 91
        assert quota.claim_warning(conn, 1) is None and not quota.warning_state_stale(conn, 1), "once"
        conn.execute("UPDATE accounts SET quota_bytes = 10000 WHERE id = 1")  # below 90 % again: re-armed
        assert quota.warning_state_stale(conn, 1) and quota.claim_warning(conn, 1) is None
        conn.execute("UPDATE accounts SET quota_bytes = 1000 WHERE id = 1")
        assert quota.claim_warning(conn, 1) is not None, "passing 90 % again warns again"


def test_terminate_then_purge_removes_account_and_blobs(conn: sqlite3.Connection) -> None:
    with db.transaction(conn):
        _deliver(conn, b"Subject: s\r\n\r\nbody\r\n")
        assert retention.terminate(conn, 1, now=1000.0) == 1
    with db.transaction(conn):
        assert retention.purge(conn, 90, now=1000.0 + 89 * 86400).accounts == 0
        result = retention.purge(conn, 90, now=1000.0 + 91 * 86400)
    assert (result.expunged, result.accounts, result.blobs) == (1, 1, 1)
    assert conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0


def test_the_purge_drops_ended_account_page_sessions_and_their_addresses(conn: sqlite3.Connection) -> None:
    """An account nobody logs in to again must not keep its old sessions' IP addresses past their end."""
    with db.transaction(conn):
        token = sessions.create(conn, 1, "192.0.2.7", now=1000.0)
        retention.purge(conn, 90, now=1000.0 + sessions.IDLE - 60)
    assert sessions.lookup(conn, token, 1000.0 + sessions.IDLE - 60) is not None, "a live one stays"
    with db.transaction(conn):
        retention.purge(conn, 90, now=1000.0 + sessions.IDLE)
    assert conn.execute("SELECT count(*) FROM web_sessions").fetchone()[0] == 0


def test_junk_mail_expires_into_retention_after_junk_days(conn: sqlite3.Connection) -> None:
    """``[retention] junk_days`` counts from when a message was saved into Junk (RFC 8514 SAVEDATE), not from its
    date; expired mail goes into retention as an EXPUNGE would (tombstone, new modseq), other folders untouched."""
    day = 86400.0
    with db.transaction(conn):
        _file(conn, "Junk", time.time() - 400 * day)  # an old message, filed into Junk just now
        _file(conn, "INBOX", time.time() - 400 * day)
    junk = find(conn, 1, "Junk")
    assert junk is not None
    before = conn.execute("SELECT highestmodseq FROM mailboxes WHERE id = ?", (junk,)).fetchone()[0]
    with db.transaction(conn):
        assert retention.purge(conn, 90, now=time.time() + 29 * day, junk_days=30).junk == 0
        assert retention.purge(conn, 90, now=time.time() + 31 * day, junk_days=0).junk == 0  # 0: keep
        result = retention.purge(conn, 90, now=time.time() + 31 * day, junk_days=30)
    assert (result.junk, result.expunged) == (1, 0)  # into retention, not yet purged
    assert conn.execute("SELECT count(*) FROM messages WHERE mailbox_id = ?", (junk,)).fetchone()[0] == 0
    assert [tuple(r) for r in conn.execute("SELECT mailbox_name FROM expunged")] == [("Junk",)]
    assert [tuple(r) for r in conn.execute("SELECT uid FROM vanished WHERE mailbox_id = ?", (junk,))] == [(1,)]
    assert conn.execute("SELECT highestmodseq FROM mailboxes WHERE id = ?", (junk,)).fetchone()[0] > before
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 1, "INBOX keeps its mail"


def test_trash_expires_by_save_date_and_zero_keeps_it(conn: sqlite3.Connection) -> None:
    """``[retention] trash_days`` reuses Junk's expiry on the ``\\Trash`` folder: by SAVEDATE, into retention."""
    day = 86400.0
    with db.transaction(conn):
        _file(conn, "Trash", time.time() - 400 * day)
        _file(conn, "Junk", time.time() - 400 * day)
    with db.transaction(conn):
        assert retention.purge(conn, 90, now=time.time() + 31 * day, trash_days=0).trash == 0  # 0: keep
        assert retention.purge(conn, 90, now=time.time() + 29 * day, trash_days=30).trash == 0
        result = retention.purge(conn, 90, now=time.time() + 31 * day, trash_days=30)
    assert (result.trash, result.junk, result.expunged) == (1, 0, 0)
    assert [tuple(r) for r in conn.execute("SELECT mailbox_name FROM expunged")] == [("Trash",)]


def test_blob_ids_are_never_reused_after_a_purge(conn: sqlite3.Connection) -> None:
    """The CRM's history keeps blob ids after the purge: the newest blob purged, the next message must not get its
    id (it did: SQLite numbers a new row max(id) + 1, and the message joined the old contact's views)."""
    with db.transaction(conn):
        _deliver(conn, b"Subject: old\r\n\r\nbody\r\n")
        old = conn.execute("SELECT max(id) FROM blobs").fetchone()[0]
        inbox = find(conn, 1, "INBOX")
        assert inbox is not None
        conn.execute("UPDATE messages SET flags = flags | 8 WHERE mailbox_id = ?", (inbox,))
        imapwrite.expunge(conn, inbox)
    with db.transaction(conn):
        assert retention.purge(conn, 90, now=time.time() + 91 * 86400).blobs == 1
        assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 0
        new, fresh = messages.put_blob(conn, b"Subject: new\r\n\r\nbody\r\n")
    assert fresh and new > old


def test_message_limit_math(conn: sqlite3.Connection) -> None:
    assert usage(messages=3, message_limit=3).full and not usage(messages=2, message_limit=3).full
    assert usage(messages=2, message_limit=3).fits(0) and not usage(messages=2, message_limit=3).fits(0, count=2)
    with db.transaction(conn):
        quota.set_limits(conn, 1, disk=0, messages=2)
        _deliver(conn, b"Subject: one\r\n\r\n")
        assert not quota.is_full(conn, 1) and not quota.would_exceed(conn, 1, 10**9)
        assert quota.would_exceed(conn, 1, 1, count=2), "two more would be three"
        assert not quota.would_exceed(conn, 1, 1, count=0), "count 0: octets only"
        _deliver(conn, b"Subject: two\r\n\r\n")
        assert quota.is_full(conn, 1) and quota.would_exceed(conn, 1, 1)
        assert quota.get(conn, 1).message_limit == 2


def _file(conn: sqlite3.Connection, mailbox: str, when: float, size: int = 100, deleted: bool = False) -> None:
    box = find(conn, 1, mailbox)
    assert box is not None
    raw = f"Subject: {when}\r\n\r\n".encode().ljust(size, b"x")
    blob = messages.store_blob(conn, raw)
    messages.append(conn, box, blob, prefix=b"", size=size, internaldate=when, flags=8 if deleted else 0)


def test_activity_totals_survive_the_roll_up(conn: sqlite3.Connection) -> None:
    """Old per-day rows become monthly summaries; totals stay the same through every purge, and nothing is
    counted twice when the purge runs again."""
    day = 86400.0
    start = (time.time() // day - 500) * day  # 500 days ago, at midnight UTC
    with db.transaction(conn):
        conn.execute("UPDATE accounts SET quota_bytes = 0")
        _file(conn, "INBOX", start + 3600)
        _file(conn, "INBOX", start + 40 * day, deleted=True)  # expunged below, purged with the retention
        _file(conn, "INBOX", start + 480 * day, size=300)  # recent: stays a row
        _file(conn, "Sent", start + 41 * day)  # the Sent folder is not mail received
        box = find(conn, 1, "INBOX")
        assert box is not None
        assert len(imapwrite.expunge(conn, box)[0]) == 1
        for when, n in ((start, 3), (start + 40 * day, 2), (start + 480 * day, 4)):
            queue.count_sent(conn, 1, n, now=when + 10)
        for when, result in ((start, "success"), (start + 1, "failure"), (start + 470 * day, "success")):
            conn.execute(
                """INSERT INTO login_history (time, account_id, login, ip, protocol, result)
                   VALUES (?, 1, 'a@example.test', '192.0.2.1', 'imap', ?)""",
                (when, result),
            )
    expected = {"received": 3, "sent": 9, "bytes_stored": 500, "logins": 2, "failed_logins": 1}
    assert activity.totals(conn, 1) == expected

    # the retention purge alone (activity rows kept forever): the expunged message goes, its count stays
    with db.transaction(conn):
        result = retention.purge(conn, 90, now=time.time() + 91 * day, activity_days=0)
    assert result.expunged == 1 and activity.totals(conn, 1) == expected
    # then the roll-up: days older than a year become months, their rows go
    for _ in range(2):
        with db.transaction(conn):
            rolled = retention.purge(conn, 90, now=time.time(), activity_days=365)
        assert activity.totals(conn, 1) == expected
    assert rolled.activity_rows == 0, "the second run had nothing left to roll up"
    assert conn.execute("SELECT count(*) FROM login_history WHERE time < ?", (start + 100 * day,)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM send_counts WHERE start < ?", (start + 100 * day,)).fetchone()[0] == 0
    months = activity.months(conn, 1)
    assert sum(m.received for m in months) == 2 and sum(m.sent for m in months) == 5
    assert sum(m.logins + m.failed_logins for m in months) == 2
    first = time.strftime("%Y-%m", time.gmtime(start))
    assert months[-1].month == first and months[-1].logins == 1 and months[-1].failed_logins == 1
    # and when the old message still in INBOX is deleted and purged later, its count stays too
    with db.transaction(conn):
        conn.execute("UPDATE messages SET flags = 8 WHERE internaldate < ?", (start + day,))
        box = find(conn, 1, "INBOX")
        assert box is not None
        imapwrite.expunge(conn, box)
        retention.purge(conn, 90, now=time.time() + 91 * day, activity_days=365)
    assert activity.totals(conn, 1) == expected


def _item(folder: str, date: float, sender: str = "jo@acme.example") -> transfer.Item:
    raw = f"From: {sender}\r\nTo: a@example.test\r\nSubject: {folder} {date}\r\n\r\nx\r\n".encode()
    return transfer.Item(folder, raw, (), date)


def test_import_order_interleaves_folders_by_date_keeping_each_folders_order() -> None:
    found = [_item("INBOX", 1), _item("INBOX", 5), _item("INBOX", 3), _item("Sent", 2), _item("Sent", 4)]
    ordered = [(i.folder, i.internaldate) for i in transfer.date_order(found)]
    assert ordered == [("INBOX", 1), ("Sent", 2), ("Sent", 4), ("INBOX", 5), ("INBOX", 3)]


def test_import_folder_roles(conn: sqlite3.Connection) -> None:
    with db.transaction(conn):
        roles = {}
        for name in ("INBOX", "Sent", "Drafts", "Archive/Sent Items", "Old/Sent Mail", "Lists/Python", "Gesendet"):
            box = find(conn, 1, name) or imapwrite.create_mailbox(conn, 1, name)
            roles[name] = transfer.folder_role(conn, box, name, sent_folder="Gesendet")
    assert roles == {"INBOX": "", "Sent": "sent", "Drafts": "drafts", "Archive/Sent Items": "sent",
                     "Old/Sent Mail": "sent", "Lists/Python": "", "Gesendet": "sent"}  # fmt: skip


def test_import_files_in_the_crm_only_when_it_is_on(conn: sqlite3.Connection) -> None:
    with db.transaction(conn):
        assert transfer.import_batch(conn, 1, [_item("INBOX", 1)], crm=False) == 1
        assert conn.execute("SELECT count(*) FROM crm_messages").fetchone()[0] == 0
        assert transfer.import_batch(conn, 1, [_item("INBOX", 2), _item("Sent", 3, "old@oldmail.example")]) == 2
        rows = conn.execute("SELECT direction, time FROM crm_messages ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("in", 2.0), ("out", 3.0)]


def test_announcements_and_quota_warnings_are_dated_rfc_5322_utc() -> None:
    """Their Date is written like every other Date relentad writes (trace.date, ``+0000``); it used to be ``GMT``,
    the obsolete zone name (RFC 5322 §4.3)."""
    announced = announce.build(sender="postmaster@example.test", subject="s", body="b", hostname="mx", now=1.7e9)
    usage = quota.Usage(1, 95, 1, 100, 0, 0, 0, 0)
    warned = quotawarn.warning_message(sender="s@mx", recipient="u@mx", usage=usage, hostname="mx", now=1.7e9)
    for raw in (announced, warned):
        assert b"\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n" in raw


DAY = 86400.0


_ACCOUNT_COLUMNS = ("account_id", "grantee_id", "scope")


def _references(conn: sqlite3.Connection, account_id: int, address: str) -> list[str]:
    """Every table.column that still holds the account's id or (in any text) its address."""
    found = []
    tables = "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'"
    for (table,) in conn.execute(tables).fetchall():  # a virtual table's data is in its shadow tables, scanned here
        for column in [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]:
            if column in _ACCOUNT_COLUMNS:
                hit = conn.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (account_id,)).fetchone()
            else:
                query = (
                    f"SELECT 1 FROM {table} WHERE (typeof({column}) = 'text' AND instr(lower({column}), ?))"
                    f" OR (typeof({column}) = 'blob' AND instr({column}, CAST(? AS BLOB)))"
                )
                hit = conn.execute(query, (address, address)).fetchone()
            if hit:
                found.append(f"{table}.{column}")
    return found


@pytest.mark.parametrize("at_once", [False, True])
def test_terminate_and_purge_leave_nothing_of_an_account_that_used_every_feature(tmp_path: Path, at_once: bool) -> None:
    """The daily purge (past ``deleted_days``) and ``terminate --now`` remove every row about the account; what
    others could see of it (their grants on its mailboxes, its grants on theirs) goes at termination already."""
    conn = database_with(tmp_path / "t.db", "a@example.test", "b@example.test")
    now = time.time()
    with db.transaction(conn):
        _deliver(conn, b"From: a@example.test\r\nSubject: s\r\n\r\nbody to a@example.test\r\n")
        store.use_every_feature(conn, 1, 2, now)
    assert indexer.step(conn, conn) > 0, "SEARCH's full-text index holds the message too"
    assert conn.execute("SELECT count(*) FROM carddav_removed").fetchone()[0] == 1
    with db.transaction(conn):
        retention.terminate(conn, 1, now=now)
    assert acl.shared_with(conn, 2) == [] and acl.shared_with(conn, 1) == []
    assert conn.execute("SELECT count(*) FROM app_passwords").fetchone()[0] == 0, "they go with the logins"
    assert conn.execute("SELECT count(*) FROM imap_acl").fetchone()[0] == 0
    for table in ("totp", "totp_recovery", "web_sessions"):
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, f"{table} goes with the logins"
    with db.transaction(conn):
        if at_once:
            retention.purge_account(conn, 1)
        else:
            assert retention.purge(conn, 90, now=now + 91 * DAY).accounts == 1
    left = _references(conn, 1, "a@example.test")
    assert left == ["login_history.login"], "the login as typed stays until activity_days (documented)"
    assert _references(conn, 2, "b@example.test") != [], "the other account is untouched"
    conn.execute("INSERT INTO carddav_sync (account_id, counter) VALUES (1, 1)")  # the scan sees a leftover
    assert "carddav_sync.account_id" in _references(conn, 1, "a@example.test")


def test_the_purge_drops_report_data_no_report_took(conn: sqlite3.Connection) -> None:
    """Inbound DMARC evaluations (sender IPs and addresses) and outbound TLS sessions are kept for our reports only
    while ``send_reports`` is on: the report job deleted old ones only when it ran, so rows noted before the switch
    was turned off stayed for ever. The daily purge drops them after the same few days."""
    now = time.time()
    with db.transaction(conn):
        for when in (now - 10 * DAY, now - DAY):
            conn.execute(
                "INSERT INTO dmarc_evaluations (received, policy_domain, header_from, source_ip, envelope_from,"
                " disposition, dkim, spf, auth_results, policy) VALUES (?, 'far.test', 'far.test', '192.0.2.7',"
                " 'z@far.test', 'none', 'pass', 'pass', '{}', '{}')",
                (when,),
            )
            conn.execute(
                "INSERT INTO tlsrpt_results (at, domain, policy_type, result) VALUES (?, 'far.test', 'sts', 'success')",
                (when,),
            )
        retention.purge(conn, 90, now=now)
    for table, column in (("dmarc_evaluations", "received"), ("tlsrpt_results", "at")):
        assert [row[0] for row in conn.execute(f"SELECT {column} FROM {table}")] == [now - DAY], table


def test_export_has_the_users_sieve_scripts_and_shares(tmp_path: Path) -> None:
    """What the user made that is not mail: its own Sieve scripts (one file each, the active one named) and the
    grants on its mailboxes both ways; an export used to leave them out."""
    conn = database_with(tmp_path / "t.db", "a@example.test", "b@example.test")
    with db.transaction(conn):
        for name, text in (("vacation", 'require "vacation";\r\nvacation "away";\r\n'), ("a/b.c", "keep;\r\n")):
            userscripts.put(conn, 1, name, text, max_scripts=10, max_size=10_000)
        userscripts.set_active(conn, 1, "vacation")
        inbox = find(conn, 1, "INBOX")
        assert inbox is not None
        acl.set_rights(conn, inbox, 2, "lr")
    transfer.export_to(conn, 1, tmp_path / "out")
    sieve = tmp_path / "out" / "sieve"
    assert sorted(p.name for p in sieve.iterdir()) == ["a%2Fb.c.sieve", "active", "vacation.sieve"]
    assert (sieve / "vacation.sieve").read_bytes() == b'require "vacation";\r\nvacation "away";\r\n'
    assert (sieve / "active").read_text() == "vacation\n"
    shares = json.loads((tmp_path / "out" / "shares.json").read_text())
    assert shares == [{"mailbox": "INBOX", "with": "b@example.test", "rights": "lr"}]
    assert [item.folder for item in transfer.items(tmp_path / "out")] == [], "import reads the mail only"
    transfer.export_to(conn, 2, tmp_path / "b")
    assert not (tmp_path / "b" / "sieve").exists()
    assert json.loads((tmp_path / "b" / "shares.json").read_text())[0]["from"] == "a@example.test"
    assert not (tmp_path / "b" / "app-passwords.json").exists()


def test_export_lists_app_passwords_without_their_hashes(tmp_path: Path) -> None:
    conn = database_with(tmp_path / "t.db", "a@example.test")
    with db.transaction(conn):
        phone = apppasswords.add(conn, 1, "phone", ("imap",), "$argon2id$secret-hash", "abcdabcdabcdabcd", 1.7e9)
        apppasswords.note_use(conn, phone, 1.8e9, "imap", "192.0.2.1")
    transfer.export_to(conn, 1, tmp_path / "out")
    text = (tmp_path / "out" / "app-passwords.json").read_text()
    assert json.loads(text) == [
        {
            "name": "phone",
            "scope": ["imap"],
            "created": 1.7e9,
            "last_used": 1.8e9,
            "last_protocol": "imap",
            "last_ip": "192.0.2.1",
        }
    ]
    assert "secret-hash" not in text and "tag" not in text
    assert not (tmp_path / "out" / "two-factor.json").exists()


def test_export_says_two_factor_login_is_on_and_never_holds_its_secret(tmp_path: Path) -> None:
    conn = database_with(tmp_path / "t.db", "a@example.test")
    key, codes = totp.new_secret(), totp.recovery_codes()
    with db.transaction(conn):
        totp.enable(conn, 1, key, 1, codes)
        assert totp.use(conn, 1, codes[0], 0.0) == "recovery-code-used"
    transfer.export_to(conn, 1, tmp_path / "out")
    found = json.loads((tmp_path / "out" / "two-factor.json").read_text())
    assert found["enabled"] is True and found["recovery_codes_left"] == 9 and found["since"].endswith("+00:00")
    everything = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert key not in everything and totp.b32(key).encode() not in everything
    assert not any(code.replace("-", "").encode() in everything for code in codes)


@pytest.mark.parametrize("name", ["x", ".hidden", "..", "100%", "a/b", "Café ü", 'we:ird*?<>|\\"'])
def test_sieve_file_names_are_one_per_script_and_portable(name: str) -> None:
    file_name = transfer.sieve_file_name(name)
    assert file_name.endswith(".sieve") and not file_name.startswith(".")
    assert not set(file_name) & set('/\\:*?"<>|') and file_name.isascii()
    assert unquote(file_name.removesuffix(".sieve")) == name
