"""Conversation threads per account, from Message-ID / In-Reply-To / References, with a subject fallback.

A message joins the thread of the messages it names that the account has seen (In-Reply-To, References), or the
thread that already named it (a reply that arrived before its parent). When those are several threads — mail of
one conversation that arrived out of order, e.g. a grandchild, then the root, then the reply between them — the
message links them and they are merged into the oldest (lowest id). Broken clients drop References but keep
"Re:": a message none of whose Message-IDs (its own or named) is known, whose subject carries a reply or forward
prefix, joins the account's latest thread with the same normalised subject if that thread was active within
:data:`SUBJECT_WINDOW`. Anything else starts a thread.

Invariants: every Message-ID a filed message has or names maps to exactly one thread of the account
(``crm_thread_ids``), and Message-IDs linked by a message end up in one thread, so threading does not depend on
delivery order; a thread id (the IMAP THREADID) is never handed out twice, not even after a merge deleted its
thread (:mod:`.ids`); subject normalisation is pure and linear (no backtracking regexes).
"""

from __future__ import annotations

import re
import sqlite3

from ..message import ParsedMessage
from . import ids

SUBJECT_WINDOW = 30 * 86400.0
MAX_IDS = 50  # References of more are cut to the newest: the thread is decided by the nearest ancestors

# One reply/forward marker: "Re:", "RE[2]:", "Fwd:", "AW:", "SV:", "Antw:", "WG:", "TR:", "RIF:", "Réf." …
_PREFIX = re.compile(
    r"\s*+(?:re|fwd?|aw|sv|vs|antw|wg|tr|rif|ref|réf|odp|enc|res)(?:\s*+\[\d{1,4}\]|\s*+\(\d{1,4}\))?\s*+[:：]",
    re.IGNORECASE,
)
_TAG = re.compile(r"\s*+\[[^\[\]]{0,64}\]")  # "[listname]" tags
_SPACE = re.compile(r"\s+")


def normalize_subject(subject: str | None) -> tuple[str, bool]:
    """(key, is_reply): the subject without reply/forward prefixes and list tags, folded; and whether it had one."""
    text = subject or ""
    reply = False
    while True:
        match = _PREFIX.match(text)
        if match is not None:
            reply = True
            text = text[match.end() :]
            continue
        match = _TAG.match(text)
        if match is not None and match.end() < len(text):
            text = text[match.end() :]
            continue
        break
    return _SPACE.sub(" ", text).strip().casefold(), reply


def _candidates(parsed: ParsedMessage) -> list[str]:
    """Message-IDs the message names, nearest ancestor first (In-Reply-To, then References newest first)."""
    out: list[str] = []
    for msgid in [*parsed.in_reply_to, *reversed(parsed.references[-MAX_IDS:])]:
        if msgid and msgid not in out:
            out.append(msgid)
    return out


def assign(
    conn: sqlite3.Connection, account_id: int, parsed: ParsedMessage, when: float, *, answers: bool = False
) -> int:
    """File the message into a thread of the account (creating one when needed); returns the thread id. ``answers``:
    the message answers the account (:func:`relentad.crm.followups.is_reply`), so a follow-up the thread awaited
    since an earlier sent message is over (set again by :func:`relentad.crm.followups.sent`)."""
    named = _candidates(parsed)
    own = parsed.message_id
    lookup = ([own] if own else []) + named
    thread_id: int | None = None
    if lookup:
        marks = ",".join("?" * len(lookup))
        found = dict(
            conn.execute(
                f"SELECT msgid, thread_id FROM crm_thread_ids WHERE account_id = ? AND msgid IN ({marks})",
                (account_id, *lookup),
            ).fetchall()
        )
        known = sorted({int(t) for t in found.values()})
        if len(known) > 1:  # the message links threads that arrived apart (a reply before its parent): one now
            thread_id = _merge(conn, account_id, known)
        elif known:
            thread_id = known[0]
    key, reply = normalize_subject(parsed.subject)
    if thread_id is None and reply and key:  # no Message-ID it has or names is known
        row = conn.execute(
            """SELECT id FROM crm_threads WHERE account_id = ? AND subject_key = ? AND last_message >= ?
               ORDER BY last_message DESC LIMIT 1""",
            (account_id, key, when - SUBJECT_WINDOW),
        ).fetchone()
        thread_id = int(row[0]) if row is not None else None
    if thread_id is None:
        thread_id = ids.fresh(conn, "crm_threads")
        conn.execute(
            """INSERT INTO crm_threads (id, account_id, subject, subject_key, first_message, last_message, messages)
               VALUES (?, ?, ?, ?, ?, ?, 1)""",
            (thread_id, account_id, (parsed.subject or "").strip(), key, when, when),
        )
    else:
        conn.execute(
            """UPDATE crm_threads SET messages = messages + 1, last_message = max(last_message, ?1),
               first_message = min(first_message, ?1),
               awaiting_message = CASE WHEN ?2 AND awaiting <= ?1 THEN NULL ELSE awaiting_message END,
               awaiting = CASE WHEN ?2 AND awaiting <= ?1 THEN NULL ELSE awaiting END
               WHERE id = ?3""",
            (when, answers, thread_id),
        )
    if lookup:
        marks = ", ".join(["(?, ?, ?)"] * len(lookup))
        conn.execute(
            f"INSERT OR IGNORE INTO crm_thread_ids (account_id, msgid, thread_id) VALUES {marks}",
            [value for msgid in lookup for value in (account_id, msgid, thread_id)],
        )
    return thread_id


def _merge(conn: sqlite3.Connection, account_id: int, thread_ids: list[int]) -> int:
    """Merge the account's threads ``thread_ids`` (ascending) into the oldest, the first; returns its id. Their
    Message-IDs, messages and contacts move to it, counts and times add up, and it takes the subject of the first
    of them whose subject is no reply (the conversation's start, when it is there)."""
    keep, others = thread_ids[0], thread_ids[1:]
    marks = ",".join("?" * len(others))
    rows = {
        int(r[0]): r
        for r in conn.execute(
            f"""SELECT id, subject, subject_key, first_message, last_message, messages, awaiting_message, awaiting
                FROM crm_threads
                WHERE account_id = ? AND id IN (?, {marks})""",
            (account_id, keep, *others),
        )
    }
    merged = [rows[t] for t in thread_ids if t in rows]
    root = next((r for r in merged if not normalize_subject(r[1])[1]), rows.get(keep, merged[0]))
    newest = max(merged, key=lambda r: (r[4], r[0]))
    conn.execute(
        f"UPDATE crm_thread_ids SET thread_id = ? WHERE account_id = ? AND thread_id IN ({marks})",
        (keep, account_id, *others),
    )
    conn.execute(
        f"UPDATE crm_messages SET thread_id = ? WHERE account_id = ? AND thread_id IN ({marks})",
        (keep, account_id, *others),
    )
    conn.execute(
        f"""INSERT OR IGNORE INTO crm_thread_contacts (thread_id, contact_id)
            SELECT ?, contact_id FROM crm_thread_contacts WHERE thread_id IN ({marks})""",
        (keep, *others),
    )
    conn.execute(f"DELETE FROM crm_thread_contacts WHERE thread_id IN ({marks})", others)
    conn.execute(f"DELETE FROM crm_threads WHERE account_id = ? AND id IN ({marks})", (account_id, *others))
    conn.execute(
        """UPDATE crm_threads SET subject = ?, subject_key = ?, first_message = ?, last_message = ?, messages = ?,
           awaiting_message = ?, awaiting = ? WHERE id = ?""",
        (
            root[1],
            root[2],
            min(r[3] for r in merged),
            newest[4],
            sum(r[5] for r in merged),
            newest[6],  # the merged conversation awaits a reply when its newest part did
            newest[7],
            keep,
        ),
    )
    return keep


def threads_of_contact(conn: sqlite3.Connection, contact_id: int, limit: int = 20) -> list[dict[str, object]]:
    """The contact's threads, most recently active first."""
    rows = conn.execute(
        """SELECT t.id, t.subject, t.messages, t.first_message, t.last_message
           FROM crm_thread_contacts l JOIN crm_threads t ON t.id = l.thread_id
           WHERE l.contact_id = ? ORDER BY t.last_message DESC, t.id DESC LIMIT ?""",
        (contact_id, limit),
    )
    return [dict(r) for r in rows]
