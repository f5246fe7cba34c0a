"""In-process change bus: the store's committed changes, told to the IMAP sessions that care.

Invariant (DESIGN.md §1, mox store/state.go): publish only AFTER the transaction committed, never about data
that could still roll back. Subscribers get events for one account through an asyncio.Queue; publishing never
blocks (a slow subscriber's queue just grows until it reads or unsubscribes).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class MessageAdded:
    account_id: int
    mailbox_id: int
    uid: int
    modseq: int


@dataclass(frozen=True)
class MailboxChanged:
    """Messages of a mailbox changed (flags, expunge, move, append) up to ``modseq``; sessions re-read it."""

    account_id: int
    mailbox_id: int
    modseq: int


Event = MessageAdded | MailboxChanged


class Bus:
    """Events go to the sessions of the mailbox's owner account, and to sessions of other accounts that have it
    selected as a shared mailbox (:meth:`watch`)."""

    def __init__(self) -> None:
        self._subscribers: defaultdict[int, set[asyncio.Queue[Event]]] = defaultdict(set)
        self._watchers: defaultdict[int, set[asyncio.Queue[Event]]] = defaultdict(set)

    def subscribe(self, account_id: int) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers[account_id].add(queue)
        return queue

    def unsubscribe(self, account_id: int, queue: asyncio.Queue[Event]) -> None:
        subscribers = self._subscribers.get(account_id)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[account_id]

    def watch(self, mailbox_id: int, queue: asyncio.Queue[Event]) -> None:
        """Also tell ``queue`` about changes to ``mailbox_id`` (a shared mailbox another account selected)."""
        self._watchers[mailbox_id].add(queue)

    def unwatch(self, mailbox_id: int, queue: asyncio.Queue[Event]) -> None:
        watchers = self._watchers.get(mailbox_id)
        if watchers is not None:
            watchers.discard(queue)
            if not watchers:
                del self._watchers[mailbox_id]

    def publish(self, events: list[Event]) -> None:
        for event in events:
            subscribers = self._subscribers.get(event.account_id, ())
            for queue in subscribers:
                queue.put_nowait(event)
            for queue in self._watchers.get(event.mailbox_id, ()):
                if queue not in subscribers:
                    queue.put_nowait(event)
