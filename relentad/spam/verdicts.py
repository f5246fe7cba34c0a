"""The spam step's decision for one recipient account: score, verdict, allow-listing and the header fields.

Pure apart from reads on the connection it is given (the loop's reader during delivery): the token counts
(:class:`storage.StoredCounts`, the account's own model plus the global one) and whether the sender is a
contact the account has written to (the CRM's ``crm_contacts.count_out``). Nothing here writes; the caller
files the copy and schedules :func:`storage.touch` for the stale tokens.

Invariants:
- The verdict is ``classifier.verdict`` of the score with the configured thresholds; allow-listing never
  changes the score or the verdict, only whether the copy may go to Junk (:attr:`Judgement.to_junk`), and the
  reason says so. A sender counts as allow-listed only when DMARC did not fail (a forged From of a contact
  gets no pass).
- The header fields are ASCII, one line each, CRLF-terminated, and are stripped from training input by the
  tokenizer (``x-spam-*`` is one of its own headers), so they never feed back into the model.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

from .classifier import DEFAULT_PARAMS, Params, Thresholds, Verdict, verdict
from .storage import CountCache, StoredCounts
from .views import score_stored

JUNK_KEYWORD = "$Junk"
NOT_JUNK_KEYWORD = "$NotJunk"
REASON_SPAM = "spam"
REASON_UNSURE = "spam-unsure"
REASON_ALLOWED = "spam-allowlisted-contact"


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the classifier said about one account's copy."""

    score: float
    verdict: Verdict
    allowlisted: bool  # the sender is a contact the account wrote to
    stale: frozenset[str]  # clue tokens whose last-use day should be refreshed

    @property
    def to_junk(self) -> bool:
        return self.verdict == "spam" and not self.allowlisted

    def reason(self) -> str:
        """The named reason recorded on the placement."""
        name = {"spam": REASON_SPAM, "unsure": REASON_UNSURE, "ham": "spam-ham"}[self.verdict]
        if self.verdict == "spam" and self.allowlisted:
            name = REASON_ALLOWED
        return f"{name} score={self.score:.4f}"

    def header(self, thresholds: Thresholds) -> bytes:
        """``X-Spam-Score`` and ``X-Spam-Status`` fields for this copy."""
        status = "Yes" if self.to_junk else "No"
        extra = ", allowlisted" if self.allowlisted and self.verdict == "spam" else ""
        return (
            f"X-Spam-Score: {self.score:.4f}\r\n"
            f"X-Spam-Status: {status}, verdict={self.verdict}{extra}, score={self.score:.4f}, "
            f"ham_below={thresholds.ham_below:g}, spam_above={thresholds.spam_above:g}\r\n"
        ).encode("ascii")


def contact_written_to(conn: sqlite3.Connection, account_id: int, address: str) -> bool:
    """Whether ``address`` (normalised) belongs to a contact the account has sent mail to."""
    if not address:
        return False
    row = conn.execute(
        """SELECT c.count_out FROM crm_addresses a JOIN crm_contacts c ON c.id = a.contact_id
           WHERE a.account_id = ? AND a.address = ?""",
        (account_id, address),
    ).fetchone()
    return row is not None and int(row[0]) > 0


def judge(
    conn: sqlite3.Connection,
    account_id: int,
    tokens: Collection[str],
    thresholds: Thresholds,
    *,
    sender: str = "",
    sender_trusted: bool = True,
    params: Params = DEFAULT_PARAMS,
    cache: CountCache | None = None,
) -> Judgement:
    """Score ``tokens`` with the account's models (plus the global ones, spam/views.py); allow-list a contact
    written to.

    ``cache``: the daemon's :class:`~relentad.spam.storage.CountCache` (token rows already read)."""
    counts = StoredCounts(conn, account_id, cache=cache)
    scored = score_stored(tokens, counts, params)
    result = verdict(scored.score, thresholds)
    allowed = result == "spam" and sender_trusted and contact_written_to(conn, account_id, sender)
    used = {token for token, _ in scored.clues}
    return Judgement(scored.score, result, allowed, frozenset(counts.stale & used))
