"""Fixtures for end-to-end tests: a running relentad with a hosted domain and users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon


def provision(daemon: Daemon) -> Daemon:
    """example.test with alice, bob and carol; aliases sales@ → alice+bob, info@ → carol."""
    daemon.add_domain("example.test")
    for user in ("alice", "bob", "carol"):
        daemon.add_user(f"{user}@example.test")
    daemon.add_alias("sales@example.test", "alice@example.test")
    daemon.add_alias("sales@example.test", "bob@example.test")
    daemon.add_alias("info@example.test", "carol@example.test")
    return daemon


MakeDaemon = Callable[..., Daemon]


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[MakeDaemon]:
    """Make daemons with custom settings (not started, not provisioned); all are stopped at the end."""
    made: list[Daemon] = []

    def make(name: str = "mx", settings: dict[str, dict[str, Any]] | None = None, **kwargs: Any) -> Daemon:
        daemon = Daemon(tmp_path / name, settings=settings or {}, **kwargs)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.stop()


@pytest.fixture
def relentad(make_daemon: MakeDaemon) -> Daemon:
    """A provisioned daemon with default limits, running."""
    return provision(make_daemon()).start()
