"""The spam step's decision for one recipient account: score, verdict, allow-listing and the header fields.

Pure apart from reads on the connection it is given (the loop's reader during delivery): the token counts
(:class:`storage.StoredCounts`, the account's own model plus the global one) and whether the sender is a
contact the account has written to (the CRM's ``crm_contacts.count_out``). Nothing here writes; the caller
files the copy and schedules :func:`storage.touch` for the stale tokens.

Invariants:
- Until the account's model (its own plus the global one) has recorded ``min_trained`` messages of each class,
  the verdict is ``untrained`` whatever the score: the copy stays in INBOX without a keyword (as SpamAssassin's
  Bayes waits for ``bayes_min_spam_num`` / ``bayes_min_ham_num``, 200 each). A user's first move into Junk on an
  account with no global model taught one spam up to eight times, and then scored 98 % of the ham in the corpus
  as spam; bulk-trained models of 20 / 50 / 200 messages per class still put 4 / 1.2 / 0.7 % of it into Junk.
- Otherwise the verdict is ``classifier.verdict`` of the score with the configured thresholds, the spam cut-off
  raised for a model that has learned fewer than ``confident_after`` messages and lowered (to ``spam_above_min`` at
  most) for one that has learned more (:func:`scaled_thresholds`: a small model's high scores are less sure, a large
  one's surer, measured); the sender lists
  never change the score or the verdict, only whether the copy goes to Junk (:attr:`Judgement.to_junk`), and the
  reason says so. A sender counts as allow-listed (a contact the account wrote to, or on its allow list) only
  when DMARC did not fail (a forged From gets no pass); a sender on its block list goes to Junk whatever the
  score, trained or not (senderlists.py).
- The header fields are ASCII, one line each, CRLF-terminated, and are stripped from training input by the
  tokenizer (``x-spam-*`` is one of its own headers), so they never feed back into the model.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from ..config import SpamConfig
from . import senderlists
from .classifier import DEFAULT_PARAMS, Params, Thresholds, Verdict, verdict
from .storage import CountCache, StoredCounts
from .tokenize import through_discussion_list
from .views import score_stored

JUNK_KEYWORD = "$Junk"
NOT_JUNK_KEYWORD = "$NotJunk"
REASON_SPAM = "spam"
STATUS_FIELDS = frozenset({"x-spam-flag", "x-spam-score", "x-spam-status"})
"""The fields :meth:`Judgement.header` sets; removed from mail arriving with them (``pipeline.strip_forged_fields``,
as SpamAssassin removes its own)."""
REASON_UNSURE = "spam-unsure"
REASON_ALLOWED = "spam-allowlisted-contact"
REASON_LISTED = {"allow": "spam-allowlisted-sender", "block": "spam-blocked-sender"}
CONFIDENT_AFTER = 2000
"""Messages (both classes) a model has recorded when ``[spam] spam_above`` applies as set (``[spam]
confident_after``): a smaller model's cut-off is raised, a larger one's lowered. On the SpamAssassin training half
(10-fold cross-validation, three fold seeds, the models trained on random fractions of the nine folds) the lowest
cut-off keeping false positives at 0.1 % was 0.97 for models of ~680 messages, 0.81 for ~1,360 and 0.68 for
~2,720: a model that learned half as much needs a cut-off about 0.15 higher. At 0.79 the ~680-message models put
0.27 % of the ham into Junk, the ~1,360 ones 0.13 %. A second draw of the ~1,360-message subsets (spam_eval.py
``--train-fraction 0.5``) needed 0.85, and 1,500 here would have given those models 0.81 and 0.14 % of the ham in
Junk; from 2,000 the rule's cut-off is at or above every measured one (2,040 messages: 0.77)."""
PER_DOUBLING = 0.15
"""How far the spam cut-off moves for each halving of the messages learned below ``CONFIDENT_AFTER`` (up) and each
doubling above it (down): the measured curve's slope."""
MAX_SPAM_ABOVE = 0.99
"""The raised cut-off never exceeds this: a small model still files what it is all but certain of."""
SMALLER_CLASS_TIMES = 4
"""A model counts as at most this many times its smaller class of recorded messages (:func:`model_size`). Every
model the curve was measured on had this corpus's mix, 31 % spam; a model that has learned 3,000 spam but 300 ham
has not met the hard ham a 3,300-message model of that mix has, so it is counted as 1,200 and its cut-off raised, not
lowered. A quarter leaves every mix the measurements cover as it is; the limit itself is a judgement, not measured."""
LOWEST_SPAM_ABOVE = 0.7
"""The lowest cut-off a model larger than ``CONFIDENT_AFTER`` is lowered to (``[spam] spam_above_min``). Measured on
the SpamAssassin training half: 10-fold CV (three fold seeds pooled, ~2,720 messages learned) kept false positives at
0.10 % at 0.7 as at 0.79 (no ham of 6,225 scored between the two) and missed 2.07 % of the spam instead of 2.92 %;
20-fold CV (~2,870 learned, three fold seeds pooled) kept them at 0.10 % down to 0.60, and missed 2.14 % at this
rule's 0.71 instead of 2.85 % at 0.79. Nothing larger than this corpus was measured, so the curve is not followed
further down."""

LIST_MAIL_SHIFT = 1.0
"""How far, in log-odds, the spam cut-off is lowered for mail that came through a discussion list (``[spam]
list_mail_shift``; :func:`for_message`, for a model :func:`lowers_list_mail` allows): 0.70 becomes 0.46, 0.79 0.58.
Such a list forwards every post with its own header fields, which its members' ham has taught the model as strong ham
clues, many of them at once; spam posted to the list carries them too, and scores too low for its body. Measured on
the SpamAssassin training half (10- and 20-fold CV, three fold seeds each): no list ham of 4,458 scored above 0.39,
while 27 of the 59 spam missed at 0.7 were list mail; at each model size's cut-off (0.99 for ~410 messages to 0.7 for
~2,870) this shift missed 0.4-1.2 points less spam with the same ham in Junk (one more of 6,225 for ~680 messages),
1.5 put one more ham into Junk for the large models."""

DEFAULT_SPAM = SpamConfig()
Status = Verdict | Literal["untrained"]


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the classifier said about one account's copy."""

    score: float
    verdict: Status
    allowlisted: bool  # the sender is a contact the account wrote to, or on its allow list (DMARC did not fail)
    stale: frozenset[str]  # clue tokens whose last-use day should be refreshed
    recorded: tuple[int, int] = (0, 0)  # messages the model has recorded as (spam, ham), shown while untrained
    min_trained: int = 0
    sender_list: senderlists.Action | None = None  # the account's list the sender is on (``relentad spam allow``)
    thresholds: Thresholds = Thresholds()  # the cut-offs the verdict used (``spam_above`` moved by the model's size)
    list_mail: bool = False  # the spam cut-off was lowered for mail through a discussion list (:func:`for_message`)

    @property
    def blocked(self) -> bool:
        return self.sender_list == "block"

    @property
    def to_junk(self) -> bool:
        return self.blocked or (self.verdict == "spam" and not self.allowlisted)

    def reason(self) -> str:
        """The named reason recorded on the placement."""
        name = {"spam": REASON_SPAM, "unsure": REASON_UNSURE, "ham": "spam-ham", "untrained": "spam-untrained"}[
            self.verdict
        ]
        if self.blocked:
            name = REASON_LISTED["block"]
        elif self.verdict == "spam" and self.allowlisted:
            name = REASON_LISTED["allow"] if self.sender_list == "allow" else REASON_ALLOWED
        return f"{name} score={self.score:.4f}"

    def header(self) -> bytes:
        """``X-Spam-Score`` and ``X-Spam-Status`` fields for this copy, with the cut-offs its verdict used, and
        SpamAssassin's ``X-Spam-Flag: YES`` on a copy filed into Junk (what mail clients' and Sieve scripts' junk
        rules test)."""
        thresholds = self.thresholds
        status = "Yes" if self.to_junk else "No"
        extra = ", allowlisted" if self.allowlisted and self.verdict == "spam" and not self.blocked else ""
        if self.verdict == "untrained":
            spam, ham = self.recorded
            extra = f", trained={spam} spam/{ham} ham, min_trained={self.min_trained}"
        if self.blocked:
            extra += ", blocked-sender"
        if self.list_mail:
            extra += ", list-mail"
        return (
            ("X-Spam-Flag: YES\r\n" if self.to_junk else "") + f"X-Spam-Score: {self.score:.4f}\r\n"
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
    spam: SpamConfig = DEFAULT_SPAM,
    *,
    sender: str = "",
    sender_trusted: bool = True,
    params: Params = DEFAULT_PARAMS,
    cache: CountCache | None = None,
) -> Judgement:
    """Score ``tokens`` with the account's models (plus the global ones, spam/views.py); allow-list a contact
    written to; ``untrained`` below ``[spam] min_trained`` messages of either class; the cut-offs ``[spam]`` gives a
    model of the size recorded (:func:`cut_offs`).

    ``cache``: the daemon's :class:`~relentad.spam.storage.CountCache` (token rows already read)."""
    counts = StoredCounts(conn, account_id, cache=cache)
    scored = score_stored(tokens, counts, params)
    min_trained = spam.min_trained
    recorded = counts.recorded() if min_trained > 0 or spam.confident_after > 0 else (0, 0)
    model_cut = cut_offs(spam, recorded)
    used_thresholds = message_cut_offs(spam, model_cut, recorded, through_discussion_list(tokens))
    result = gated_verdict(scored.score, used_thresholds, recorded, min_trained)
    listed = senderlists.decision(conn, account_id, sender) if sender else None
    allowed = (
        result == "spam" and sender_trusted and (listed == "allow" or contact_written_to(conn, account_id, sender))
    )
    used = {token for token, _ in scored.clues}
    stale = frozenset(counts.stale & used)
    return Judgement(
        scored.score,
        result,
        allowed,
        stale,
        recorded,
        min_trained,
        listed,
        used_thresholds,
        used_thresholds != model_cut,
    )


def short_of_training(recorded: tuple[int, int], min_trained: int) -> bool:
    """Whether a model that recorded (spam, ham) messages is still short of ``min_trained`` of either class."""
    return min(recorded) < min_trained


def gated_verdict(value: float, thresholds: Thresholds, recorded: tuple[int, int], min_trained: int) -> Status:
    """``classifier.verdict``, or ``untrained`` while ``recorded`` (spam, ham) messages fall short of ``min_trained``
    in either class (the daemon and ``relentad spam score`` alike)."""
    if short_of_training(recorded, min_trained):
        return "untrained"
    return verdict(value, thresholds)


def scaled_thresholds(
    thresholds: Thresholds,
    trained: int,
    confident_after: int = CONFIDENT_AFTER,
    lowest: float = LOWEST_SPAM_ABOVE,
) -> Thresholds:
    """``thresholds`` with the spam cut-off moved by :data:`PER_DOUBLING` for each halving of ``trained`` (messages
    the model recorded) below ``confident_after`` (raised, at most :data:`MAX_SPAM_ABOVE`) and for each doubling
    above it (lowered, not below ``lowest`` nor ``ham_below``); unchanged when ``confident_after`` is 0. How high
    the most spam-like ham scores follows how much the model has learned: a small model's high scores are less
    sure, a large one's surer (see :data:`CONFIDENT_AFTER` and :data:`LOWEST_SPAM_ABOVE`)."""
    spam_above = thresholds.spam_above
    if confident_after <= 0 or trained == confident_after:
        return thresholds
    moved = spam_above + PER_DOUBLING * math.log2(confident_after / max(trained, 1))
    if moved > spam_above:
        moved = max(min(moved, MAX_SPAM_ABOVE), spam_above)
    else:
        moved = min(max(moved, lowest, thresholds.ham_below), spam_above)
    return Thresholds(thresholds.ham_below, moved) if moved != spam_above else thresholds


def model_size(recorded: tuple[int, int]) -> int:
    """How many messages a model that recorded (spam, ham) counts as for its cut-off: all of them, at most
    :data:`SMALLER_CLASS_TIMES` times its smaller class."""
    return min(sum(recorded), SMALLER_CLASS_TIMES * min(recorded))


def cut_offs(spam: SpamConfig, recorded: tuple[int, int]) -> Thresholds:
    """The thresholds ``[spam]`` gives a model that recorded (spam, ham) messages (:func:`scaled_thresholds` of its
    :func:`model_size`)."""
    thresholds = Thresholds(spam.ham_below, spam.spam_above)
    return scaled_thresholds(thresholds, model_size(recorded), spam.confident_after, spam.spam_above_min)


def for_message(thresholds: Thresholds, list_mail: bool, shift: float = LIST_MAIL_SHIFT) -> Thresholds:
    """The cut-offs for one message: ``thresholds``, with the spam cut-off lowered by ``shift`` log-odds (not below
    ``ham_below``) for ``list_mail``, mail that came through a discussion list (``tokenize.through_discussion_list``;
    see :data:`LIST_MAIL_SHIFT`)."""
    return lowered(thresholds, shift) if list_mail and shift > 0 else thresholds


def message_cut_offs(spam: SpamConfig, cut: Thresholds, recorded: tuple[int, int], through_list: bool) -> Thresholds:
    """What one message is judged against: the model's ``cut`` (:func:`cut_offs`), lowered by ``[spam]
    list_mail_shift`` if it came through a discussion list and the model is large enough (:func:`lowers_list_mail`).
    The daemon, ``relentad spam score`` and spam_lessons.py all judge through this; a message's cut-off was lowered
    exactly when the result differs from ``cut``."""
    return for_message(cut, through_list and lowers_list_mail(spam, recorded), spam.list_mail_shift)


def lowers_list_mail(spam: SpamConfig, recorded: tuple[int, int]) -> bool:
    """Whether a model that recorded (spam, ham) messages gets the list-mail cut-off: only one of ``[spam]
    confident_after`` messages or more (:func:`model_size`). A smaller one learned from a user's corrections alone
    put three more ham of 6,225 into Junk with it (``spam_lessons.py``: 7 instead of 4 at its cut-off 0.944), while
    every model of 2,040 messages or more kept the same ham (README, The spam filter)."""
    return model_size(recorded) >= spam.confident_after


def lowered(thresholds: Thresholds, shift: float) -> Thresholds:
    """``thresholds`` with the spam cut-off moved ``shift`` log-odds down (not below ``ham_below``); a cut-off of 0
    or 1 stays."""
    spam_above = thresholds.spam_above
    if not 0 < spam_above < 1:
        return thresholds
    moved = 1 / (1 + math.exp(shift - math.log(spam_above / (1 - spam_above))))
    return Thresholds(thresholds.ham_below, max(moved, thresholds.ham_below))


def size_note(spam: SpamConfig, recorded: tuple[int, int]) -> str:
    """Why a model that recorded (spam, ham) messages has another spam cut-off than ``[spam] spam_above`` ("" when it
    has not): for ``spam score``, ``spam train`` and ``relentad doctor`` to say."""
    cut = cut_offs(spam, recorded).spam_above
    if cut == spam.spam_above:
        return ""
    size, total = model_size(recorded), sum(recorded)
    counted = f"{total} messages recorded"
    if size < total:
        smaller = "spam" if recorded[0] <= recorded[1] else "ham"
        counted += f", counted as {size} ({SMALLER_CLASS_TIMES} times its {min(recorded)} {smaller})"
    than = "fewer" if cut > spam.spam_above else "more"
    return (
        f"{counted}, {than} than [spam] confident_after ({spam.confident_after}): its spam cut-off is {cut:.2f} "
        f"instead of {spam.spam_above:g}"
    )
