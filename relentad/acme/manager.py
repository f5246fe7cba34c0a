"""The daemon's certificate keeper: gets a certificate at start when none valid exists, renews it before expiry,
and hands each new one to every TLS listener.

When: a check runs at start, every :data:`RECHECK` seconds, and at once when ``relentad acme renew`` leaves a
request. A check renews when there is no certificate, it does not cover every wanted name (a domain was added), or
less than ``[acme] renew_remaining`` of its lifetime is left; a forced request renews regardless. A failed attempt
is one log line and waits :data:`BACKOFF` (1 min, 10 min, 1 h, then every 6 h); the old certificate keeps serving.

Invariants: the network and crypto work runs on a worker thread, one attempt at a time (a daemon thread: shutdown
never waits for a CA); the new key and chain are written (key 0600) before ``on_certificate`` runs on the loop;
nothing here raises into the loop (a bug is logged, and the check comes again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from .. import clientconfig, metrics
from ..atomicfile import write_atomic
from ..config import Config
from ..store import accounts
from ..store.db import Store
from . import jws
from . import store as files
from .challenges import Responder
from .client import AcmeError, Client

log = logging.getLogger("relentad.acme")

RECHECK = 600.0
"""Seconds between checks when nothing is due (names change when a domain is added)."""
POLL = 0.5
"""Seconds between looks for a `relentad acme renew` request (one failed open when there is none)."""
BACKOFF = (60.0, 600.0, 3600.0, 6 * 3600.0)
"""Waits after 1, 2, 3 and more failures in a row."""


@dataclass(frozen=True)
class Current:
    """What the certificate on disk covers and when it is valid."""

    names: frozenset[str]
    not_before: float
    not_after: float


def read_certificate(pem: bytes) -> Current:
    """Names and validity of the first certificate in a PEM chain; ValueError when it is none."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = frozenset(n.lower() for n in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = frozenset()
    return Current(names, cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp())


def hosted_domains(conn: sqlite3.Connection) -> list[str]:
    return [str(row["name"]) for row in accounts.list_domains(conn)]


def read_pair(cert: Path, key: Path) -> Current | None:
    """The certificate on disk when it loads with its key (a pair left half-written by a crash is None: renewed)."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        return read_certificate(cert.read_bytes())
    except (OSError, ValueError):
        return None


def wanted_names(config: Config, domains: Sequence[str]) -> list[str]:
    """``[acme] names``, or the host name plus, with ``[listen] https`` on, every hosted domain's web names."""
    if config.acme.names:
        return list(dict.fromkeys(n.lower().rstrip(".") for n in config.acme.names))
    names = [config.server.hostname.lower().rstrip(".")]
    if config.listen.https:
        names += [name for domain in domains for name in clientconfig.web_names(domain)]
    return list(dict.fromkeys(names))


def renew_at(current: Current, remaining: float) -> float:
    return current.not_after - remaining * (current.not_after - current.not_before)


def why_renew(current: Current | None, names: Sequence[str], remaining: float, now: float) -> str | None:
    """Why a new certificate is needed now, or None."""
    if current is None:
        return "no certificate yet"
    missing = [n for n in names if n not in current.names]
    if missing:
        return f"not covering {', '.join(missing[:3])}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    if now >= current.not_after:
        return "certificate expired"
    if now >= renew_at(current, remaining):
        return "certificate due for renewal"
    return None


def backoff(failures: int) -> float:
    return BACKOFF[min(failures, len(BACKOFF)) - 1]


async def in_daemon_thread(function: Callable[..., float], *args: object) -> float:
    """``function(*args)`` on a daemon thread of its own, awaited. Not ``asyncio.to_thread``: the loop's executor
    is joined at exit, so a request to a CA that hangs would hold the daemon's shutdown for its whole timeout
    (SIGKILL by systemd at worst). A daemon thread is abandoned at exit; what it writes is replaced in one rename."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[float] = loop.create_future()

    def settle(result: float | None, error: BaseException | None) -> None:
        if future.done():  # cancelled at shutdown
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or 0.0)

    def run() -> None:
        result, error = None, None
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="relentad-acme", daemon=True).start()
    return await future


def iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Manager:
    """Keeps ``<data_dir>/acme`` holding a valid certificate for the wanted names."""

    def __init__(self, get_config: Callable[[], Config], store: Store, on_certificate: Callable[[], None]) -> None:
        self.get_config = get_config
        self.store = store
        self.on_certificate = on_certificate
        self.responder = Responder(self._existing_files)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Shutdown: an attempt in flight gives up at its next wait (the loop's exit waits for the thread)."""
        self.stopping.set()

    def _sleep(self, seconds: float) -> None:
        if self.stopping.wait(seconds):
            raise AcmeError("the daemon is stopping")

    def _existing_files(self) -> tuple[Path, Path] | None:
        cert, key = self.get_config().cert_files()
        return (cert, key) if read_pair(cert, key) is not None else None

    async def run(self) -> None:
        """Check now, then whenever due or asked; never returns (cancelled at shutdown). With ``[acme]`` off it only
        waits (a SIGHUP may turn it on)."""
        self.loop = asyncio.get_running_loop()
        next_check = 0.0
        while True:
            config = self.get_config()
            try:
                request = files.take_requests(config.acme_dir) if config.acme.enabled else None
                if config.acme.enabled and (request is not None or time.time() >= next_check):
                    domains = self.store.read(hosted_domains)  # on the loop: the store's reader is the loop's
                    next_check = await in_daemon_thread(self.check, domains, request)
            except Exception:  # a bug must not end the renewals for the daemon's lifetime
                log.exception("ACME check failed; trying again in %.0f s", RECHECK)
                next_check = time.time() + RECHECK
            await asyncio.sleep(POLL)

    def check(self, domains: Sequence[str], request: dict[str, Any] | None = None) -> float:
        """One check (worker thread) for the hosted ``domains``: renew when needed; when to check next."""
        config = self.get_config()
        now = time.time()
        if not config.acme.enabled:
            return now + RECHECK
        folder = config.acme_dir
        state = files.load_state(folder)
        names = wanted_names(config, domains)
        current = read_pair(*config.cert_files())
        backing_off = request is None and state.failures > 0 and now < state.next_attempt
        # while backing off, the names the CA refused last time are no reason to order again
        needed = [n for n in names if not (backing_off and n in state.left_out)]
        force = bool(request and request.get("force"))
        reason = "renewal forced" if force else why_renew(current, needed, config.acme.renew_remaining, now)
        if reason is None:
            assert current is not None
            state.renew_at = renew_at(current, config.acme.renew_remaining)
            if request:
                due = f"valid until {iso(current.not_after)}, renewal from {iso(state.renew_at)}"
                self._answer(state, request, f"not due: {due}")
            files.save_state(folder, state)
            return min(state.renew_at, state.next_attempt if backing_off else now + RECHECK, now + RECHECK)
        if backing_off:
            return min(state.next_attempt, now + RECHECK)
        state.last_attempt = now
        log.info("ACME: requesting a certificate for %s (%s)", ", ".join(names), reason)
        left_out: list[str] = []
        try:
            try:
                new = self.obtain(config, names)
            except AcmeError as exc:  # names the CA could not validate: the others are not held hostage
                rest = [n for n in names if n not in exc.failed_names]
                if not exc.failed_names or not rest:
                    raise
                if not force and current and not why_renew(current, rest, config.acme.renew_remaining, now):
                    raise  # the certificate in service covers the rest: the same one again would only spend the
                    # CA's limits (Let's Encrypt: 5 per week for the same names) and then block the renewal
                left_out, partial_error = [n for n in names if n in exc.failed_names], str(exc)
                log.warning("ACME: %s; ordering again without %s", exc, ", ".join(left_out))
                new = self.obtain(config, rest)
        except AcmeError as exc:
            error = str(exc)
            covered = {n for n in names if n not in exc.failed_names}
            if exc.failed_names and covered and current and covered <= current.names:  # (not ordered again above)
                state.left_out = [n for n in names if n in exc.failed_names]
        except Exception as exc:  # a bug or a disk problem: logged in full once, the daemon goes on
            log.exception("ACME attempt failed")
            error = f"{type(exc).__name__}: {exc}"
        else:
            state.names, state.not_before, state.not_after = sorted(new.names), new.not_before, new.not_after
            state.renew_at = renew_at(new, config.acme.renew_remaining)
            state.last_success, state.left_out = now, left_out
            obtained = f"certificate obtained for {len(new.names)} name(s), valid until {iso(new.not_after)}"
            if left_out:
                self._failed(state, now, f"left out {', '.join(left_out)}: {partial_error}")
                log.error(
                    "ACME: certificate obtained without %s: %s; next attempt %s",
                    ", ".join(left_out),
                    partial_error,
                    iso(state.next_attempt),
                )
            else:
                state.last_error, state.failures, state.next_attempt = "", 0, 0.0
                log.info("ACME: certificate for %s obtained, valid until %s", ", ".join(names), iso(new.not_after))
            if request:
                self._answer(state, request, f"{obtained}; {state.last_error}" if left_out else obtained, not left_out)
            files.save_state(folder, state)
            if self.loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the next start loads the files
                    self.loop.call_soon_threadsafe(self.on_certificate)
            return min(state.renew_at, state.next_attempt or state.renew_at, now + RECHECK)
        if self.stopping.is_set():
            log.info("ACME: attempt abandoned at shutdown")
            return now
        self._failed(state, now, error)
        kept = f"the certificate valid until {iso(current.not_after)} stays" if current else "no certificate yet"
        log.error("ACME: certificate not obtained: %s; %s; next attempt %s", error, kept, iso(state.next_attempt))
        if request:
            self._answer(state, request, f"renewal failed: {error}", ok=False)
        files.save_state(folder, state)
        return state.next_attempt

    @staticmethod
    def _failed(state: files.State, now: float, error: str) -> None:
        state.failures += 1
        state.last_error = error
        state.next_attempt = now + backoff(state.failures)
        metrics.acme_failure()

    @staticmethod
    def _answer(state: files.State, request: dict[str, Any], result: str, ok: bool = True) -> None:
        files.answer(state, request["ids"], ok, result)

    def obtain(self, config: Config, names: Sequence[str]) -> Current:
        """One ACME order (blocking): the new chain and key written in place; what they cover."""
        folder = config.acme_dir
        account_path = folder / "account.key"
        try:
            account_key = jws.load_key(account_path.read_bytes())
        except FileNotFoundError:
            account_key = jws.new_key("ec256")
            write_atomic(account_path, jws.key_pem(account_key), 0o600)
        except ValueError as exc:
            raise AcmeError(f"{account_path}: unusable account key ({exc})") from None
        usable = {"tls-alpn-01": bool(config.listen.https), "http-01": bool(config.listen.http)}
        kinds = [kind for kind in config.acme.challenges if usable[kind]]
        client = Client(
            config.acme.directory,
            account_key,
            str(config.resolve(config.acme.ca_file)) if config.acme.ca_file else None,
            self._sleep,
        )
        client.register(config.acme.email)
        cert_key = jws.new_key(config.acme.key_type)
        chain = client.issue(names, cert_key, kinds, self.responder.present, self.responder.cleanup)
        try:
            new = read_certificate(chain.encode())
            leaf_key = x509.load_pem_x509_certificate(chain.encode()).public_key()
        except ValueError:
            raise AcmeError("the CA sent a certificate that does not parse") from None
        if leaf_key != cert_key.public_key():  # the listeners could not load it: keep what serves now
            raise AcmeError("the CA's chain does not start with a certificate for the key it was asked to certify")
        missing = [n for n in names if n not in new.names]
        if missing:
            raise AcmeError(f"the CA's certificate does not name {', '.join(missing)}")
        cert_path, key_path = config.cert_files()
        write_atomic(key_path, jws.key_pem(cert_key), 0o600)
        write_atomic(cert_path, chain.encode())
        return new
