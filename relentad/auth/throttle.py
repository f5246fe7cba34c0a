"""Throttling of failed logins, per client IP and per account, in memory.

Invariants:
- Only failures count; a success clears nothing (an attacker who also owns one account cannot wash an IP clean).
- A key is throttled while it has at least ``limit`` failures younger than ``window``; old failures fall out on
  their own, so a throttle always ends without admin action.
- Memory is bounded: keys without failures in the window are dropped when seen, and the whole table is pruned
  every ``_PRUNE_EVERY`` recordings.
- A throttled attempt is refused before the password is looked at (no argon2 work for an attacker).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

_PRUNE_EVERY = 1000


class FailureCounter:
    """Failure times per key within a sliding window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, collections.deque[float]] = {}
        self._recorded = 0

    def count(self, key: str, window: float) -> int:
        """Failures of ``key`` younger than ``window`` seconds."""
        failures = self._failures.get(key)
        if failures is None:
            return 0
        horizon = self._clock() - window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0
        return len(failures)

    def record(self, key: str, window: float) -> None:
        self._failures.setdefault(key, collections.deque()).append(self._clock())
        self._recorded += 1
        if self._recorded % _PRUNE_EVERY == 0:
            for stale in list(self._failures):
                self.count(stale, window)

    def __len__(self) -> int:
        return len(self._failures)


class LoginThrottle:
    """Refuses logins from an IP or to an account after too many recent failures."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.by_ip = FailureCounter(clock)
        self.by_account = FailureCounter(clock)

    def blocked(self, ip: str, login: str, *, per_ip: int, per_account: int, window: float) -> str | None:
        """Why a login attempt must be refused now ("ip" or "account"), or None when it may proceed."""
        if per_ip > 0 and self.by_ip.count(ip, window) >= per_ip:
            return "ip"
        if per_account > 0 and self.by_account.count(login.lower(), window) >= per_account:
            return "account"
        return None

    def failed(self, ip: str, login: str, window: float) -> None:
        self.by_ip.record(ip, window)
        self.by_account.record(login.lower(), window)
