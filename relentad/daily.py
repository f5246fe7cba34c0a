"""The daemon's daily jobs (retention purge, backup snapshot, spam model rebuild) share one loop: a first run soon
after start, then one a day, a failure logged and never ending the loop (the next run comes as planned)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

DAY = 86_400.0


async def every_day(
    job: Callable[[], Awaitable[None]], *, what: str, log: logging.Logger, first_delay: float, interval: float = DAY
) -> None:
    """Await ``job()`` ``first_delay`` seconds from now and then every ``interval`` seconds, until cancelled; an
    exception is logged on ``log`` as "``what``: the daily run failed"."""
    await asyncio.sleep(first_delay)
    while True:
        try:
            await job()
        except Exception:
            log.exception("%s: the daily run failed; retrying tomorrow", what)
        await asyncio.sleep(interval)
