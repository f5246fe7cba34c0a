"""Fixtures for the integration tests: a private dnsmasq per test and DKIM keys made once per session."""

from __future__ import annotations

import pytest

from relentad.queue import dkim
from tests.support.dns_fixture import dnsmasq  # noqa: F401  (the fixture, for the tests in this folder)


@pytest.fixture(scope="session")
def rsa_key() -> tuple[bytes, str]:
    """An RSA-2048 DKIM key pair (PEM, TXT value); generating one per test would be slow."""
    return dkim.generate_key("rsa")


@pytest.fixture(scope="session")
def ed25519_key() -> tuple[bytes, str]:
    return dkim.generate_key("ed25519")
