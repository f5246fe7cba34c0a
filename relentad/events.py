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
    def __init__(self) -> None:
        self._subscribers: defaultdict[int, set[asyncio.Queue[Event]]] = defaultdict(set)

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

    def publish(self, events: list[Event]) -> None:
        for event in events:
            for queue in self._subscribers.get(event.account_id, ()):
                queue.put_nowait(event)
