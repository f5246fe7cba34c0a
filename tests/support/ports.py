"""Which port numbers this pytest-xdist worker may hand to the servers its tests start.

A port found free by binding and closing a probe socket stays free for anyone until the server binds it, so two
workers probing at the same moment could be handed one number by the kernel. Each worker takes only the numbers
whose half, rounded down, leaves its own index as remainder by the worker count: workers of one run never pick the
same port. The half, because Linux gives bind() to port 0 odd numbers (even ones go to connect()): by the number
itself, the worker of the even ones would never be handed one.
"""

from __future__ import annotations

import os


def ours(port: int) -> bool:
    """True when ``port`` is in this worker's share (every port outside a parallel run)."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0")
    return (port // 2) % count == index % count
