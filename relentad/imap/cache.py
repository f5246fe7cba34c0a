"""Bounded per-message caches shared by every session: SEARCH's folded summaries, SORT/THREAD's header keys and
FETCH's previews.

Each is keyed by something that names a message's content for good (its blob's SHA-256, or its blob id, which is
never reused: migration 012), so an entry is never stale and nothing ever invalidates one. Past ``limit`` entries
the oldest goes (insertion order), not the whole cache: a client's message list stays warm while the mailbox it
scrolls stays under the bound.

Thread safety: entries are read and written from the loop thread and from reader threads at once. A lookup and an
insertion are single dict operations (atomic under the GIL); the eviction tolerates another thread having evicted
or inserted meanwhile. ``misses`` counts insertions; it may lose a count under races (it is a heuristic: a search
that missed many entries runs in a worker next time, see ``warm``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MISSES_BEFORE_COLD = 100
"""Entries a command may compute on the loop thread before its mailbox counts as cold again."""


class ContentCache(Generic[K, V]):
    """Values by content key, oldest first, at most ``limit``; ``warm``: mailboxes whose entries a worker filled
    (their next command may run on the loop thread)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: dict[K, V] = {}
        self.misses = 0
        self.warm: set[int] = set()
        self.get: Callable[[K], V | None] = self.entries.get
        """The cached value or None: the dict's own lookup, as cheap as before (it runs once per message)."""

    def put(self, key: K, value: V) -> None:
        self.misses += 1
        entries = self.entries
        if len(entries) >= self.limit:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # another thread evicted meanwhile
                del entries[next(iter(entries))]
        entries[key] = value

    def settle(self, mailbox_id: int, misses_before: int, *, inline: bool) -> None:
        """After a command over ``mailbox_id``: warm once a worker filled its entries; cold again when a command on
        the loop thread had to compute many (the cache lost them to other mailboxes)."""
        if not inline:
            self.warm.add(mailbox_id)
        elif self.misses - misses_before > MISSES_BEFORE_COLD:
            self.warm.discard(mailbox_id)

    def __len__(self) -> int:
        return len(self.entries)
