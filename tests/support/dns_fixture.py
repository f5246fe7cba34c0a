"""pytest fixtures around tests.support.dnsmasq: a private DNS server per test.

Import the fixture into a conftest.py (`from tests.support.dns_fixture import dnsmasq  # noqa: F401`)
or call `start_or_skip` from a fixture of your own. Without dnsmasq installed the tests are skipped with
the reason shown, never passed silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dnsmasq import Dnsmasq, DnsRecords, dnsmasq_path

SKIP_REASON = "dnsmasq is not installed (apt-get install dnsmasq-base); these tests need a real DNS server"


def start_or_skip(workdir: Path, records: DnsRecords | None = None) -> Dnsmasq:
    """A started Dnsmasq in `workdir`, or skip the calling test when dnsmasq is missing."""
    if dnsmasq_path() is None:
        pytest.skip(SKIP_REASON)
    workdir.mkdir(parents=True, exist_ok=True)
    return Dnsmasq(records, workdir=workdir).start()


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[Dnsmasq]:
    """A running dnsmasq with no records yet; call `.replace(DnsRecords(...))` to serve some."""
    workdir = tmp_path / "dnsmasq"
    workdir.mkdir()
    server = start_or_skip(workdir)
    try:
        yield server
    finally:
        server.close()
