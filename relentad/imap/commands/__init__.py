"""IMAP command handlers, one module per command family; :data:`HANDLERS` is the dispatch table.

Each module exports ``HANDLERS`` (command name → coroutine taking the session and the parsed command); the
session checks the per-state tables before dispatching (STYLE.md #2).
"""

from __future__ import annotations

from ..session import Handler
from . import (
    acl,
    append,
    auth,
    copymove,
    expunge,
    fetch,
    idle,
    mailbox,
    misc,
    quota,
    replace,
    search,
    select,
    sort,
    store,
)

HANDLERS: dict[str, Handler] = {
    **misc.HANDLERS,
    **auth.HANDLERS,
    **mailbox.HANDLERS,
    **select.HANDLERS,
    **fetch.HANDLERS,
    **search.HANDLERS,
    **sort.HANDLERS,
    **store.HANDLERS,
    **copymove.HANDLERS,
    **expunge.HANDLERS,
    **append.HANDLERS,
    **replace.HANDLERS,
    **idle.HANDLERS,
    **quota.HANDLERS,
    **acl.HANDLERS,
}
