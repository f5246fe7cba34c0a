"""What ACME keeps under ``<data_dir>/acme``: light enough for the CLI (no network code, no crypto imports).

- ``account.key``: the ACME account key (PEM, mode 0600), made on first use and kept across renewals;
- ``cert.pem`` / ``key.pem``: the certificate chain and its key as the TLS listeners load them (key mode 0600);
- ``state.json``: names, expiry, the last attempt and its error, the next renewal, failures in a row (for
  ``relentad acme status``, ``doctor`` and the back-off), and the answers to the recent CLI requests;
- ``renew-request.ID``: one per ``relentad acme renew`` waiting, taken (deleted) by the daemon, which answers
  them all with one check and keeps the outcome in ``state.json`` under the ID (several CLIs may wait at once).

Invariants: every file is written to a temporary name and renamed into place (:mod:`relentad.atomicfile`), so a
reader (a listener reloading, the CLI) sees the old or the new file, never half of one; a state file that cannot
be read is an empty state.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..atomicfile import write_atomic

STATE = "state.json"
REQUEST = "renew-request."
REQUEST_WAIT = 330.0
"""Seconds `acme renew` waits for the daemon's answer (past one attempt's poll deadline); an older request, left
by a CLI that gave up (or by a daemon stopped before it looked), is dropped unanswered."""
ANSWERS_KEPT = 16


@dataclass
class State:
    names: list[str] = field(default_factory=list)  # the names of the current certificate
    not_before: float = 0.0
    not_after: float = 0.0
    renew_at: float = 0.0  # when the current certificate is due for renewal
    last_attempt: float = 0.0
    last_success: float = 0.0
    last_error: str = ""  # of the last attempt; "" after a success
    failures: int = 0  # attempts failed in a row
    next_attempt: float = 0.0  # after a failure: not before (the back-off)
    left_out: list[str] = field(default_factory=list)  # wanted names the CA refused last time (backing off)
    answers: dict[str, Any] = field(default_factory=dict)  # `acme renew` request ID → {"ok": bool, "result": str}


def load_state(folder: Path) -> State:
    try:
        data = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return State()
    if not isinstance(data, dict):
        return State()
    known = {f.name for f in fields(State)}
    state = State()
    for key, value in data.items():
        if key in known and isinstance(value, type(getattr(state, key))):
            setattr(state, key, value)
    return state


def save_state(folder: Path, state: State) -> None:
    write_atomic(folder / STATE, json.dumps(asdict(state), indent=1).encode())


def write_request(folder: Path, request_id: str, force: bool) -> None:
    """Leave a request for the daemon (``request_id``: letters and digits). Readable by all (nothing secret in it):
    the CLI may run as root and the daemon as its own user, who owns the folder (so it can remove the file)."""
    write_atomic(folder / f"{REQUEST}{request_id}", json.dumps({"force": force}).encode(), 0o644)


def take_requests(folder: Path, now: float | None = None) -> dict[str, Any] | None:
    """The `acme renew` requests waiting, removed, as one: ``{"ids": [...], "force": any forced}``; None when there
    is none (a malformed or stale one is dropped)."""
    now = time.time() if now is None else now
    ids, force = [], False
    try:
        entries = [entry for entry in os.scandir(folder) if entry.name.startswith(REQUEST)]
    except OSError:
        return None
    for entry in entries:
        request_id = entry.name.removeprefix(REQUEST)
        try:
            stale = entry.stat().st_mtime < now - REQUEST_WAIT
            text = Path(entry.path).read_text(encoding="utf-8")
            os.unlink(entry.path)
            request = json.loads(text)
        except (OSError, ValueError):
            continue
        if stale or not request_id.isalnum() or not isinstance(request, dict):
            continue
        ids.append(request_id)
        force = force or bool(request.get("force"))
    return {"ids": ids, "force": force} if ids else None


def answer(state: State, request_ids: list[str], ok: bool, result: str) -> None:
    """Record the outcome for each waiting CLI (the newest :data:`ANSWERS_KEPT` are kept)."""
    answers = {**state.answers, **{request_id: {"ok": ok, "result": result} for request_id in request_ids}}
    state.answers = dict(list(answers.items())[-ANSWERS_KEPT:])
