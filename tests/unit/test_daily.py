"""The daemon's daily loop (relentad/daily.py): a failing run is logged and the next one still comes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from relentad import daily


def test_a_failing_run_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("disk full")

    async def main() -> None:
        loop = asyncio.ensure_future(
            daily.every_day(job, what="test job", log=logging.getLogger("relentad.test"), first_delay=0, interval=0.01)
        )
        while len(runs) < 3:
            await asyncio.sleep(0.01)
        loop.cancel()

    with caplog.at_level(logging.ERROR, logger="relentad.test"):
        asyncio.run(asyncio.wait_for(main(), 10))
    assert len(runs) >= 3
    assert [r.getMessage() for r in caplog.records] == ["test job: the daily run failed; retrying tomorrow"]
