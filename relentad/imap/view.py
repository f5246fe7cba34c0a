"""A session's view of its selected mailbox: the sequence-number ↔ UID map and what it has been told.

Invariants (RFC 3501 §2.3.1.2, §7.4.1; RFC 7162):
- ``uids`` is ascending; message sequence number n is ``uids[n - 1]``. It changes only when the session
  announces it: EXISTS appends, EXPUNGE/VANISHED removes. Messages that others expunged stay in the view until
  an EXPUNGE may be sent (never during FETCH, STORE or SEARCH), and are then removed.
- ``modseq`` is the highest modseq whose changes the session has processed; ``own`` remembers the modseq of
  flag changes this session already reported itself, so they are not echoed again.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..store import acl
from ..store.imapview import MailboxInfo
from .errors import bad
from .sequence import SequenceSet


@dataclass
class Selected:
    info: MailboxInfo
    readonly: bool
    uids: list[int]
    modseq: int
    own: dict[int, int] = field(default_factory=dict)
    pending_gone: set[int] = field(default_factory=set)
    keywords: dict[str, str] = field(default_factory=dict)
    recent: set[int] = field(default_factory=set)
    """UIDs that are \\Recent for this session (RFC 3501 §2.3.2)."""
    claimed: list[tuple[int, int]] = field(default_factory=list)
    """UID ranges [low, high) this session claimed as recent; every UID below ``recent_end`` has been decided."""
    recent_end: int = 0
    owner_id: int = 0
    """The account the mailbox belongs to; 0: the session's own."""
    rights: str = acl.ALL
    """The session's rights (RFC 4314) on a shared mailbox, re-read before each command; all on its own."""

    @property
    def shared(self) -> bool:
        return self.owner_id != 0

    def new_keywords(self, keywords: str) -> bool:
        """Remember keywords not announced yet; True when the FLAGS response must be sent again."""
        added = False
        for keyword in keywords.split():
            if keyword.lower() not in self.keywords:
                self.keywords[keyword.lower()] = keyword
                added = True
        return added

    def watches(self, mailbox_id: int) -> bool:
        """Whether a change in ``mailbox_id`` may change this view (a CRM view watches every mailbox)."""
        return mailbox_id == self.info.id

    @property
    def mailbox_id(self) -> int:
        return self.info.id

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq(self, uid: int) -> int | None:
        """Sequence number of ``uid`` in the view, None when it is not there."""
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index + 1
        return None

    def seqs(self, uids: Sequence[int]) -> dict[int, int]:
        """Sequence numbers of the ascending ``uids`` that are in the view (one merge walk, not a bisect each)."""
        out: dict[int, int] = {}
        view = self.uids
        if not uids:
            return out
        index = bisect.bisect_left(view, uids[0])
        end = len(view)
        for uid in uids:
            while index < end and view[index] < uid:
                index += 1
            if index < end and view[index] == uid:
                out[uid] = index + 1
        return out

    def resolve(self, sequence_set: SequenceSet, *, uid: bool, saved: SequenceSet | None) -> list[int]:
        """The UIDs a command's set names, ascending. ``$`` is the saved SEARCH result (as UIDs).

        Message numbers beyond EXISTS are a BAD (RFC 9051 §6.4.4-ish: "invalid message sequence number");
        UID sets simply select the UIDs that exist.
        """
        if sequence_set.saved:
            return saved.select(self.uids) if saved is not None else []
        if uid:
            return sequence_set.select(self.uids)
        if not self.uids:
            if any(None in bounds for bounds in sequence_set.ranges):
                return []  # "1:*" on an empty mailbox names nothing (what clients that sync blindly send)
            raise bad("no messages in the mailbox, so no message sequence numbers are valid")
        if sequence_set.highest(len(self.uids)) > len(self.uids):
            raise bad("message sequence number larger than the number of messages")
        return sequence_set.select_positions(self.uids)

    def remove(self, uid: int) -> int | None:
        """Drop ``uid`` from the view; its former sequence number (None when absent)."""
        position = self.seq(uid)
        if position is not None:
            del self.uids[position - 1]
        self.own.pop(uid, None)
        self.pending_gone.discard(uid)
        self.recent.discard(uid)
        return position
