"""Fixtures for end-to-end tests: a running relentad with a hosted domain and users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon
from tests.support.dns_fixture import start_or_skip
from tests.support.dnsmasq import Dnsmasq


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


@pytest.fixture(scope="session")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    """A dnsmasq with no records: every daemon asks it, never the machine's resolver (names → NXDOMAIN)."""
    server = start_or_skip(tmp_path_factory.mktemp("dns"))
    yield server
    server.close()


@pytest.fixture
def make_daemon(tmp_path: Path, dns_server: Dnsmasq) -> Iterator[MakeDaemon]:
    """Make daemons with custom settings (not started, not provisioned); all are stopped at the end.

    Unless the test names its own, every daemon's `[dns] nameservers` is the session's empty dnsmasq.
    """
    made: list[Daemon] = []

    def make(name: str = "mx", settings: dict[str, dict[str, Any]] | None = None, **kwargs: Any) -> Daemon:
        settings = {section: dict(values) for section, values in (settings or {}).items()}
        settings.setdefault("dns", {}).setdefault("nameservers", [dns_server.nameserver])
        daemon = Daemon(tmp_path / name, settings=settings, **kwargs)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.stop()


@pytest.fixture
def relentad(make_daemon: MakeDaemon) -> Daemon:
    """A provisioned daemon with default limits, running."""
    return provision(make_daemon()).start()
