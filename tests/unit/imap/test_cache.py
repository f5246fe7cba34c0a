"""The per-message caches shared by sessions (SEARCH summaries, SORT keys, previews)."""

from __future__ import annotations

from relentad.imap.cache import MISSES_BEFORE_COLD, ContentCache


def test_a_full_cache_drops_its_oldest_entry_only() -> None:
    cache: ContentCache[int, str] = ContentCache(3)
    for key in range(4):
        cache.put(key, str(key))
    assert len(cache) == 3
    assert cache.get(0) is None
    assert [cache.get(key) for key in (1, 2, 3)] == ["1", "2", "3"]
    assert cache.misses == 4


def test_a_mailbox_is_warm_after_a_worker_and_cold_after_many_inline_misses() -> None:
    cache: ContentCache[int, str] = ContentCache(10_000)
    cache.settle(7, cache.misses, inline=False)
    assert 7 in cache.warm
    before = cache.misses
    cache.put(1, "a")
    cache.settle(7, before, inline=True)  # a few misses: still warm
    assert 7 in cache.warm
    before = cache.misses
    for key in range(MISSES_BEFORE_COLD + 1):
        cache.put(key + 10, "b")
    cache.settle(7, before, inline=True)
    assert 7 not in cache.warm
