"""The sorter: the CRM step of the delivery pipeline, run on received mail and on the Sent copy of sent mail.

Two halves, so the delivery stays one transaction and the event loop never waits on a write:
- :meth:`Sorter.plan` runs on the event loop before the commit with a read connection: per recipient account it
  works out the direction (``out`` for the sender's Sent copy, and for mail whose From is the account's own only
  when the account itself submitted or imported it — never for mail from the MX, whatever its From says), the
  participants (none when every copy the account receives is filed into Junk: spam must not fill the CRM with
  contacts and companies), the account's rules (which may change the folder and flags of the copy, or add
  copies) and the ``$Unassigned`` keyword (a person who is not a confirmed contact wrote; lists and automatic
  senders never count). It returns a :data:`Record` job. For an import (``relentad import``) it only works out
  direction and participants: the copies keep the folders and flags they had (no rules, no ``$Unassigned``).
- The job runs on the store's writer thread inside the SAME transaction as the message copies, after they were
  inserted, with the stored rows: it files the message (``crm_messages``, one per account and blob, so a
  duplicate delivery counts once), its thread, contacts, companies and the links between them.

Invariants: the CRM never loses or refuses mail — an error in either half is logged and the message is stored
as if the sorter were off (a failing job raises :class:`FilingFailed`, which rolls back the delivery's savepoint;
the pipeline then stores the message without the CRM's writes — a savepoint of the sorter's own cost two
statements on every delivery for a case that is a bug); mail already filed into Junk by an earlier step stays
there (rules only add flags to it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import forwarding, message, quota, trace
from ..errors import InvalidInput
from ..headers import header_end, header_text
from ..message import ParsedMessage
from ..store import accounts, mailboxes
from ..store import flags as flagmod
from . import autoforward, contacts, followups, participants, rules, threads, vacation
from .participants import IN, LIST, OUT, PERSON, Participant
from .sieve import Script
from .sieveregex import Budget

if TYPE_CHECKING:
    from ..pipeline import Delivery, Placement, Stored

log = logging.getLogger(__name__)

UNASSIGNED = "$Unassigned"

Record = Callable[[sqlite3.Connection, "Sequence[Stored]"], None]


class FilingFailed(Exception):
    """A :data:`Record` job failed; its writes are in the caller's transaction, which must roll them back."""


@dataclass(frozen=True, slots=True)
class AccountContext:
    """What the sorter reads before filing, for one account: own addresses, rules, the sender's contact."""

    own: frozenset[str]
    scripts: list[tuple[str, Script]]
    known: contacts.Known | None


_ACCOUNT_CONTEXT = f"""SELECT a.email,
          (SELECT group_concat(address, char(31)) FROM aliases x
           WHERE x.account_id = a.id AND x.address NOT LIKE '@%'),
          (SELECT json_group_array(json_array(name, script))
           FROM ({rules.PROGRAM.format(account="a.id", suffix="?4")})),
          c.id, c.kind, c.confirmed, coalesce(p.name, ''), coalesce(p.domain, ''),
          (SELECT group_concat(tag, char(31)) FROM crm_tags t WHERE t.contact_id = c.id)
   FROM accounts a
   LEFT JOIN crm_contacts c ON c.id = coalesce(
       (SELECT contact_id FROM crm_addresses WHERE account_id = a.id AND address = ?2),
       (SELECT contact_id FROM crm_addresses WHERE account_id = a.id AND address = ?3))
   LEFT JOIN crm_companies p ON p.id = c.company_id
   WHERE a.id = ?1"""
"""account_context's one query (built once: it runs for every delivered message)."""


def account_context(
    conn: sqlite3.Connection, account_id: int, extra: Sequence[str] = (), sender: str = ""
) -> AccountContext:
    """Own addresses (with ``extra``, the recipient addresses), compiled rules and the sender's contact (the one
    of its base address for a subaddress it has not written from before: the filing will join them), in ONE
    query: this runs for every delivered message."""
    row = conn.execute(
        _ACCOUNT_CONTEXT,
        (account_id, sender, participants.base_address(sender), rules.USER_SUFFIX),
    ).fetchone()
    extras = {normal for normal in (participants.normalize(a) for a in extra) if normal}
    if row is None:
        return AccountContext(frozenset(extras), [], None)
    own = {str(row[0]).lower(), *extras}
    own.update(a.lower() for a in (row[1] or "").split("\x1f") if a)
    scripts = []
    for name, text in json.loads(row[2]) if row[2] and row[2] != "[]" else ():
        try:
            scripts.append((str(name), rules.compiled(str(text))))
        except InvalidInput:
            continue
    known = None
    if row[3] is not None:
        tags = tuple(row[8].split("\x1f")) if row[8] else ()
        known = contacts.Known(int(row[3]), str(row[4]), bool(row[5]), str(row[6]), str(row[7]), tags)
    return AccountContext(frozenset(own), scripts, known)


@dataclass
class AccountPlan:
    """What the sorter decided for one recipient account of a delivery."""

    account_id: int
    direction: str
    people: list[Participant]
    subject: str
    sender: str
    unknown: frozenset[str] = frozenset()  # addresses that were no contact's when planned (likely new)
    tags: tuple[str, ...] = ()  # the rules' tagcontact: tags for the message's contact


def _add_flags(placement: Placement, names: list[str]) -> None:
    bits, keywords = flagmod.split(names)
    placement.flags |= bits
    known = {k.lower() for k in placement.keywords}
    placement.keywords.extend(k for k in keywords if k.lower() not in known)


def _virtual(known: contacts.Known | None, spam: bool) -> dict[str, list[str]]:
    if known is None:
        status = "unknown"
    elif known.kind != PERSON:
        status = known.kind
    else:
        status = "confirmed" if known.confirmed else "new"
    return {
        "x-relentad-contact-tag": list(known.tags) if known else [],
        "x-relentad-company": [v for v in (known.company, known.company_domain) if v] if known else [],
        "x-relentad-contact": [status],
        "x-relentad-spam": ["yes" if spam else "no"],
    }


_SPAM_SCORE = re.compile(rb"^X-Spam-Score: ([0-9.]+)\r?$", re.MULTILINE | re.IGNORECASE)


def spam_score(headers: Sequence[bytes]) -> float | None:
    """The spam filter's score of a copy, from the X-Spam-Score field it added (Sieve's spamtest); None when the
    copy was not scored or the filter had too little training to judge it (RFC 5235: "not tested"). The sender
    lists decide as they do for Junk: an allow-listed sender's mail reads as not spam at all (0), a blocked
    sender's as spam (1), so that a user's ``spamtest`` rule never files what the lists keep out of Junk."""
    fields = b"".join(headers)
    found = _SPAM_SCORE.search(fields)
    if found is None or b"verdict=untrained" in fields:
        return None
    if b", blocked-sender" in fields:
        return 1.0
    if b", allowlisted" in fields:
        return 0.0
    try:
        return float(found.group(1))
    except ValueError:
        return None


def _allowed(folder: str, current: str) -> str:
    """The rule's folder, or ``current`` when it is refused (a rule stored before the check was stricter)."""
    try:
        rules.check_folder(folder)
    except InvalidInput as exc:
        log.warning("rule folder %r refused (%s); the copy stays in %s", folder, exc, current)
        return current
    return folder


def apply_outcome(placement: Placement, outcome: rules.Outcome) -> list[Placement]:
    """Change the copy as the rules say; returns extra copies (further fileinto targets)."""
    current = placement.mailbox
    targets = outcome.targets(current)
    if current == mailboxes.JUNK:  # rules never pull mail out of Junk; they may flag it
        merged = [flag for _folder, names in targets for flag in names]
        targets = [(current, merged)]
    extra: list[Placement] = []
    copies: dict[str, Placement] = {}
    # every copy starts from the copy as it came (its own target's flags only: RFC 5232 :flags is per action)
    bits, keywords = placement.flags, tuple(placement.keywords)
    for wanted, names in targets:
        folder = _allowed(wanted, current)
        target = copies.get(folder)
        if target is None:
            target = placement
            if copies:
                reasons = list(placement.reasons)
                target = dataclasses.replace(placement, flags=bits, keywords=list(keywords), reasons=reasons)
            target.mailbox = folder
            copies[folder] = target
            if target is not placement:
                extra.append(target)
        _add_flags(target, names)
    if outcome.trace:
        placement.reasons.append("rules: " + "; ".join(outcome.trace))
    return extra


class Sorter:
    """The CRM step; one per pipeline (it keeps no state but the compiled-rule cache in :mod:`.rules`)."""

    def __init__(self, unassigned: str = UNASSIGNED, hostname: str = "") -> None:
        self.unassigned = unassigned  # the keyword for mail to review; "" for none ([crm] unassigned_keyword)
        self.hostname = hostname  # Sieve's environment "host"
        self.user_forwarding = True  # [web] user_forwarding: the account page's forwarding runs

    def plan(
        self, conn: sqlite3.Connection, delivery: Delivery, parsed: ParsedMessage, *, keep_copies: bool = False
    ) -> Record | None:
        """Decide folders, flags and keywords of the copies (mutating ``delivery.placements``); return the job
        that files the message in the CRM, or None when there is nothing to record.

        ``keep_copies`` (an import of mail the user already had): leave every copy's folder and flags as they
        are — no rules, no unassigned keyword — and only file the message in the CRM."""
        by_account: dict[int, list[Placement]] = {}
        for placement in delivery.placements:
            by_account.setdefault(placement.account_id, []).append(placement)
        plans = []
        sender = participants.sender(parsed)
        submitter = participants.normalize(delivery.source.authenticated_as or "")
        for account_id, placements in by_account.items():
            context = account_context(conn, account_id, [p.address for p in placements], sender)
            own, scripts, known = context.own, context.scripts, context.known
            if not self.user_forwarding:  # the admin turned the account page's forwarding off: it stops
                scripts = without_forwarding(scripts)
            # Only mail the account really sent counts "out" (confirming its recipients and, through count_out,
            # allow-listing them past the spam filter): its submission's Sent copy, or mail it submitted
            # (authenticated as itself) from an own address, or an import of its own mail. A From naming the
            # account on mail from the MX is a claim anyone can make, so such mail is always "in".
            outgoing = any(p.outgoing for p in placements) or (
                bool(sender)
                and participants.is_own(sender, own)
                and (keep_copies or participants.is_own(submitter, own))
            )
            direction = OUT if outgoing else IN
            people = participants.participants(parsed, own, direction)
            if delivery.recipients and any(p.outgoing for p in placements):
                people += participants.blind_copies(people, delivery.recipients, own)
            incoming = [p for p in placements if not p.outgoing]
            tags: list[str] = []
            if incoming and not keep_copies:
                if self.unassigned and direction == IN and self._unassigned(people, known):
                    for placement in incoming:
                        if placement.mailbox != mailboxes.JUNK:  # spam is no correspondent to review
                            _add_flags(placement, [self.unassigned])
                budget = Budget()  # one account's rules: one work limit, however many of its addresses
                for placement in incoming if scripts else ():
                    view = rules.MessageView(
                        parsed,
                        delivery.raw,
                        delivery.mail_from,
                        placement.address,
                        _virtual(known, placement.mailbox == mailboxes.JUNK),
                        spam_score=spam_score(placement.headers),
                        now=delivery.received_at,
                        host=self.hostname,
                    )
                    outcome = rules.evaluate(scripts, view, budget, rules.includer(conn, account_id))
                    placement.rejected = outcome.reject or ""
                    if outcome.edited is not None:  # the copies (and redirects) are the edited message
                        placement.raw, placement.structure = outcome.edited, view.parsed.to_json()
                    if outcome.redirects:
                        self._redirect(conn, delivery, placement, outcome, own)
                    extra = apply_outcome(placement, outcome)
                    delivery.placements.extend(extra)
                    tags += [tag for tag in outcome.tags if tag not in tags]
                    if outcome.vacation is not None and not any(r.account_id == account_id for r in delivery.replies):
                        junk = any(p.mailbox == mailboxes.JUNK for p in (placement, *extra))
                        reply = vacation.decide(
                            view.as_received(),
                            own,
                            account_id,
                            outcome.vacation,
                            personal=vacation.personal_addresses(conn, account_id),
                            junk=junk,
                            forged=vacation.forged(delivery.auth),
                            now=delivery.received_at,
                            name=vacation.account_name(conn, account_id),
                        )
                        if isinstance(reply, str):
                            placement.reasons.append(f"vacation: no reply ({reply})")
                            log.info(
                                "vacation: no reply to <%s> (tx %s): %s",
                                trace.clean(delivery.mail_from),
                                delivery.transaction_id,
                                reply,
                            )
                        else:
                            delivery.replies.append(reply)
                            placement.reasons.append(f"vacation: reply to <{reply.to}>")
            if direction == IN and incoming and all(p.mailbox == mailboxes.JUNK for p in incoming):
                people = []  # spam makes no contacts or companies (the message and its thread are still filed)
            new = frozenset({sender}) if sender and known is None else frozenset()
            subject = (parsed.subject or "").strip()
            plans.append(AccountPlan(account_id, direction, people, subject, sender, new, tuple(tags)))
        if not plans:
            return None
        when = delivery.received_at

        def record(conn: sqlite3.Connection, stored: Sequence[Stored]) -> None:
            try:
                for plan in plans:
                    blobs = {s.blob_id: s.new_blob for s in stored if s.account_id == plan.account_id}
                    for blob_id, new_blob in blobs.items():
                        file_message(conn, plan, parsed, blob_id, when, new_blob=new_blob)
            except Exception as exc:
                raise FilingFailed("crm: filing of a message failed") from exc

        return record

    @staticmethod
    def _redirect(
        conn: sqlite3.Connection, delivery: Delivery, placement: Placement, outcome: rules.Outcome, own: frozenset[str]
    ) -> None:
        """Sieve ``redirect``: a forward of this copy (forwarding.py), unless it must not leave — then the copy is
        kept as if there had been no redirect. A redirect without ``:copy`` and no other filing takes the copy away
        (it stays the forward's fallback: the pipeline puts it back if the forward is withheld after all)."""
        pending = sum(len(f.targets) for f in delivery.forwards if f.account_id == placement.account_id)
        why = redirect_refusal(conn, placement, outcome.redirects, own, pending)
        if why:
            outcome.trace.append(f"redirect not done: {why}")
            placement.reasons.append(f"redirect not done: {why}")
            log.info("sieve: redirect of tx %s not done: %s", delivery.transaction_id, why)
            outcome.redirects, outcome.cancel_keep = [], False
            return
        fallback = []
        if not outcome.targets(placement.mailbox):
            delivery.placements.remove(placement)
            fallback.append(placement)
        forward = forwarding.Forward(
            placement.address, tuple(outcome.redirects), "redirect", placement.account_id, fallback, outcome.edited
        )
        delivery.forwards.append(forward)

    @staticmethod
    def _unassigned(people: list[Participant], known: contacts.Known | None) -> bool:
        """A person wrote who is not a confirmed contact (mailing lists and automatic senders never count)."""
        author = next((p for p in people if p.role == "from"), None)
        if author is None or author.kind != PERSON or any(p.kind == LIST for p in people):
            return False
        return known is None or not known.confirmed  # a "bulk" contact writing as a person becomes one (record)


def redirect_refusal(
    conn: sqlite3.Connection, placement: Placement, targets: list[str], own: frozenset[str], pending: int = 0
) -> str:
    """Why a copy's redirect must not be done ("" when it may): it is in Junk (spam or a failed check: never
    forwarded), a target is the account itself or at a hosted domain (use an alias), or the account's send limits
    would be passed with the ``pending`` forwards of this message already planned for it (forwarding is sending:
    quota.py)."""
    if placement.mailbox == mailboxes.JUNK:
        return "the copy is in Junk"
    for target in targets:
        if participants.is_own(target, own):
            return f"<{target}> is the account itself"
        if accounts.domain_id(conn, target.rpartition("@")[2]) is not None:
            return f"<{target}> is at a domain of this server (an alias routes mail here)"
    broken = quota.send_refusal(quota.get(conn, placement.account_id), pending + len(targets) - 1)
    if broken is not None:
        return f"the account's {'hourly' if broken == 'hour' else 'daily'} send limit is reached"
    return ""


_MAX_VARIABLES = 999  # the least SQLITE_MAX_VARIABLE_NUMBER of any SQLite build (before 3.32)


def insert_rows(conn: sqlite3.Connection, statement: str, rows: Sequence[tuple[object, ...]]) -> None:
    """``INSERT OR IGNORE … VALUES (…), (…)`` as ONE statement (executemany costs several times more per row), or
    as few as SQLite's limit on bound variables allows."""
    if not rows:
        return
    per = max(1, _MAX_VARIABLES // len(rows[0]))
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        marks = ", ".join(["(" + ", ".join("?" * len(chunk[0])) + ")"] * len(chunk))
        conn.execute(f"{statement} VALUES {marks}", [value for row in chunk for value in row])


def file_message(
    conn: sqlite3.Connection,
    plan: AccountPlan,
    parsed: ParsedMessage,
    blob_id: int,
    when: float,
    *,
    new_blob: bool = False,
) -> int:
    """File one message of an account in the CRM (thread, contacts, links); returns its ``crm_messages`` id, or
    0 when the account already had this exact message (a duplicate delivery counts once). ``new_blob``: the
    caller inserted the blob in this transaction, so no account can have filed it (the check is skipped).

    This is the delivery hot path: each step is one statement where it can be (about eight for a message from a
    known contact, a few more for a new contact or company)."""
    if not new_blob:
        duplicate = conn.execute(
            "SELECT 1 FROM crm_messages WHERE account_id = ? AND blob_id = ?", (plan.account_id, blob_id)
        ).fetchone()
        if duplicate is not None:
            return 0
    thread_id = threads.assign(
        conn, plan.account_id, parsed, when, answers=followups.is_reply(plan.direction, plan.people)
    )
    cursor = conn.execute(
        """INSERT INTO crm_messages (account_id, blob_id, thread_id, direction, time, sender, subject)
           VALUES (?, ?, ?, ?, ?, ?, ?)""",
        (plan.account_id, blob_id, thread_id, plan.direction, when, plan.sender, plan.subject),
    )
    message_id = int(cursor.lastrowid or 0)
    counted: set[int] = set()
    links: dict[int, str] = {}
    for who in plan.people:
        likely_new = who.address in plan.unknown
        contact_id = contacts.record(conn, plan.account_id, who, plan.direction, when, counted, likely_new)
        links.setdefault(contact_id, who.role)
    insert_rows(  # the trigger crm_message_contacts_thread links them to the thread too (migration 010)
        conn,
        "INSERT OR IGNORE INTO crm_message_contacts (contact_id, message_id, role)",
        [(contact_id, message_id, role) for contact_id, role in links.items()],
    )
    if plan.direction == OUT and links:
        followups.sent(conn, thread_id, message_id, when)
    if plan.tags:
        _tag_contact(conn, links, plan.tags)
    return message_id


def _tag_contact(conn: sqlite3.Connection, links: dict[int, str], tags: Sequence[str]) -> None:
    """The rules' ``tagcontact``: tag the message's contact — its author, or the mailing list for list traffic.
    A rule's tag does not confirm the contact (only the owner's own acts and replies do)."""
    contact_id = next((c for c, role in links.items() if role == "from"), None)
    if contact_id is None:
        contact_id = next((c for c, role in links.items() if role == "list"), None)
    if contact_id is not None:
        insert_rows(conn, "INSERT OR IGNORE INTO crm_tags (contact_id, tag)", [(contact_id, tag) for tag in tags])


def without_forwarding(scripts: list[tuple[str, Script]]) -> list[tuple[str, Script]]:
    """The program without the account page's forwarding (``[web] user_forwarding = false``)."""
    return [(name, script) for name, script in scripts if name != autoforward.NAME]


def preview(
    conn: sqlite3.Connection, account_id: int, address: str, raw: bytes, mail_from: str, *, user_forwarding: bool = True
) -> dict[str, object]:
    """What the account's rules would do to a message delivered to ``address`` now (``relentad rules test``;
    ``user_forwarding``: ``[web] user_forwarding``, as :class:`Sorter` takes it)."""
    parsed = message.parse(raw)
    sender = participants.sender(parsed)
    context = account_context(conn, account_id, [address], sender)
    own, known = context.own, context.known
    scripts = without_forwarding(context.scripts) if not user_forwarding else context.scripts
    direction = IN  # as delivered from the MX: a From naming the account does not make mail "out" there
    people = participants.participants(parsed, own, direction)
    virtual = _virtual(known, False)
    view = rules.MessageView(parsed, raw, mail_from, address, virtual)
    outcome = rules.evaluate(scripts, view, include=rules.includer(conn, account_id))
    from ..pipeline import Placement  # the pipeline imports this module

    placement = Placement(account_id, address)
    kept = bool(outcome.targets(placement.mailbox))
    if outcome.redirects:
        refused = redirect_refusal(conn, placement, outcome.redirects, own)
        if refused:
            outcome.trace.append(f"redirect not done: {refused}")
            outcome.redirects, outcome.cancel_keep, kept = [], False, True
    extra = apply_outcome(placement, outcome)
    unassigned = direction == IN and Sorter._unassigned(people, known)
    reply: dict[str, str] | None = None
    if outcome.vacation is not None:
        junk = any(p.mailbox == mailboxes.JUNK for p in (placement, *extra))
        personal = vacation.personal_addresses(conn, account_id)
        decided = vacation.decide(
            view.as_received(),
            own,
            account_id,
            outcome.vacation,
            personal=personal,
            junk=junk,
            forged="",
            now=0.0,
            name=vacation.account_name(conn, account_id),
        )
        if isinstance(decided, str):
            reply = {"none": decided}
        elif vacation.replied(conn, account_id, decided.to, decided.handle, time.time()):
            reply = {"none": f"<{decided.to}> already had this reply within its period"}
        else:
            reply = {"to": decided.to, "from": decided.from_address}
    return {
        "direction": direction,
        "sender": sender,
        "contact": virtual["x-relentad-contact"][0],
        "unassigned": unassigned,
        "copies": [
            {"folder": c.mailbox, "flags": flagmod.names(c.flags, " ".join(c.keywords))}
            for c in ([placement] if kept else []) + extra
        ],
        "redirects": outcome.redirects,
        "reject": outcome.reject,
        "header": None if outcome.edited is None else header_text(outcome.edited[: header_end(outcome.edited)]),
        "trace": outcome.trace,
        "tags": outcome.tags,
        "vacation": reply,
        "participants": [dataclasses.asdict(p) for p in people],
    }
