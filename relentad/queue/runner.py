"""The queue runner: the daemon task that delivers queued mail, retries it and bounces it.

It sleeps until the next recipient is due (or ``queue.scan_interval`` passes, to see work another process
changed, or :meth:`QueueRunner.wake` is called after a submission), then starts one delivery per (message,
domain) that is due, at most ``queue.concurrency`` at once and ``queue.per_destination`` per domain (or for
the smarthost as a whole).

After an attempt, in ONE transaction: every recipient's result; for recipients that failed for good (5xx, or a
temporary failure past ``queue.lifetime``) a DSN into the sender's INBOX through the pipeline; a delay notice
once, when a message is still queued ``queue.delay_notice`` after it was submitted; a "relayed" report; and the
message row removed when nothing is left to do; with ``[tlsrpt] send_reports`` the attempt's TLS sessions
(:mod:`relentad.queue.tlsresults`). A crash before that commit repeats the attempt; after it, never: no report is
lost or sent twice.

A TLS report of ours (:data:`.tlsresults.TLS_REPORT_PREFIX`) goes without the recipient domain's MTA-STS policy or DANE
and is not itself reported: RFC 8460 §5.3 has reports delivered despite TLS failures, which they may be about.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable

from .. import forwarding, metrics, trace
from ..config import Config
from ..dns import make_resolver
from ..pipeline import Pipeline, Placement, Stored
from ..store import accounts
from ..store.db import Store
from . import deliver, dsn, mtasts, queue, tlsresults

log = logging.getLogger("relentad.queue")

_SMARTHOST = "\0smarthost"  # the per-destination key when everything goes through one relay
_HOLD_SECONDS = 300.0


def _load(conn: sqlite3.Connection, *, message_id: int, domain: str, now: float) -> queue.Work | None:
    return queue.load(conn, message_id, domain, now)


class QueueRunner:
    def __init__(self, store: Store, pipeline: Pipeline, get_config: Callable[[], Config]) -> None:
        self.store = store
        self.pipeline = pipeline
        self.get_config = get_config
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: set[tuple[int, str]] = set()
        self._per_destination: Counter[str] = Counter()
        # (message, domain) whose attempt could not be recorded: not retried before this time (wall clock), so a
        # failing database cannot turn the runner into a resend loop.
        self._hold: dict[tuple[int, str], float] = {}
        self._main: asyncio.Task[None] | None = None
        self._stopping = False
        self.policies = mtasts.Policies(store)

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._run(), name="queue-runner")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Stop starting deliveries; give running ones ``grace`` seconds, then cancel them (they stay queued).

        The flag, not only the cancel, ends the scheduling loop: on Python 3.11 ``asyncio.wait_for`` swallows a
        cancel that arrives as the wake event it waits for is set, and a delivery finishing sets it. The loop then
        ran on, delivering, until the service manager's SIGKILL."""
        self._stopping = True
        self._wake.set()
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _run(self) -> None:
        while not self._stopping:
            config = self.get_config()
            try:
                self._start_due(config)
                next_due = self.store.read(queue.next_due)
            except Exception:  # the runner must outlive any one bad step, or the queue silently stops
                log.exception("queue: scheduling step failed")
                next_due = None
            # Work due now that did not start is in flight or over a limit: a finishing delivery wakes us.
            wait = config.queue.scan_interval
            if next_due is not None and next_due > time.time():
                wait = min(wait, next_due - time.time())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def _destination(self, config: Config, domain: str) -> str:
        return _SMARTHOST if config.queue.smarthost else domain

    def _start_due(self, config: Config) -> None:
        """Start due work up to the limits, page by page: each page leaves out the destinations already at their
        limit and the pairs already seen, so older work for a busy domain never hides the other domains."""
        now = time.time()
        passed: set[tuple[int, str]] = set()  # held, or nothing left to load
        while len(self._in_flight) < config.queue.concurrency:
            if not config.queue.smarthost:
                busy = [d for d, n in self._per_destination.items() if n >= config.queue.per_destination]
            elif self._per_destination[_SMARTHOST] < config.queue.per_destination:
                busy = []
            else:
                return  # one destination for everything: nothing else can start
            find = functools.partial(
                queue.due, now=now, limit=config.queue.concurrency * 4, skip_domains=busy, skip=self._in_flight | passed
            )
            page = self.store.read(find)
            if not page or not self._start_page(config, page, now, passed):
                return

    def _start_page(
        self, config: Config, page: list[tuple[int, str]], now: float, passed: set[tuple[int, str]]
    ) -> bool:
        """Start what the limits allow from one page of due pairs; False once the overall limit is reached."""
        for message_id, domain in page:
            key = (message_id, domain)
            destination = self._destination(config, domain)
            if key in self._in_flight or self._per_destination[destination] >= config.queue.per_destination:
                continue  # the next page leaves the busy destination out
            if self._hold.get(key, 0.0) > now:
                passed.add(key)
                continue
            self._hold.pop(key, None)
            if len(self._in_flight) >= config.queue.concurrency:
                return False
            work = self.store.read(functools.partial(_load, message_id=message_id, domain=domain, now=now))
            if work is None:
                passed.add(key)
                continue
            self._in_flight.add(key)
            self._per_destination[destination] += 1
            task = asyncio.get_running_loop().create_task(self._deliver(work, config, destination))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    async def _deliver(self, work: queue.Work, config: Config, destination: str) -> None:
        started = time.perf_counter()
        try:
            smarthost = deliver.smarthost_of(config)
            resolver = make_resolver(config.dns.nameservers, config.dns.timeout)
            ca_file = config.resolve(config.queue.ca_file) if config.queue.ca_file else None
            verified = mtasts.verified_context(ca_file, cn_fallback=smarthost is not None)
            policy = None
            report = work.transaction_id.startswith(tlsresults.TLS_REPORT_PREFIX)
            sessions: list[deliver.TlsSession] | None = None
            if smarthost is None and config.tlsrpt.send_reports and not report:
                sessions = []
            if smarthost is None and config.queue.mta_sts and not report:
                timeout = min(mtasts.FETCH_TIMEOUT, config.queue.timeout)
                found = await self.policies.for_domain(work.domain, resolver, verified, time_limit=timeout)
                policy = found.policy
                failure = tlsresults.discovery_failure(found)
                if failure is not None and sessions is not None:
                    sessions.append(failure)
            outcomes = await deliver.attempt(
                domain=work.domain,
                mail_from=work.mail_from,
                recipients=[r.address for r in work.recipients],
                data=work.data,
                hostname=config.server.hostname,
                # a TLS report goes despite TLS failures (RFC 8460 §5.3): neither MTA-STS nor DANE
                queue=dataclasses.replace(config.queue, dane=False) if report else config.queue,
                resolver=resolver,
                smarthost=smarthost,
                dsn=deliver.Dsn(work.dsn, {r.address: r.dsn for r in work.recipients}),
                policy=policy,
                verified=verified,
                sessions=sessions,
            )
            await self._record(work, outcomes, config, sessions or [])
            for recipient in work.recipients:
                outcome = outcomes[recipient.address]
                metrics.sent(outcome.state)
                log.info(
                    "queue id=%d rcpt=<%s> result=%s reply=%r ms=%.1f",
                    work.message_id,
                    trace.clean(recipient.address),
                    outcome.state,
                    outcome.reply[:200],
                    (time.perf_counter() - started) * 1000,
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("queue id=%d delivery to %s failed unexpectedly", work.message_id, work.domain)
            self._hold[(work.message_id, work.domain)] = time.time() + _HOLD_SECONDS
        finally:
            self._in_flight.discard((work.message_id, work.domain))
            self._per_destination[destination] -= 1
            if self._per_destination[destination] <= 0:
                del self._per_destination[destination]
            self.wake()

    async def _record(
        self,
        work: queue.Work,
        outcomes: dict[str, deliver.Outcome],
        config: Config,
        sessions: list[deliver.TlsSession],
    ) -> None:
        """Results, bounces, delay notices and "relayed" reports of one attempt, in one transaction.

        A recipient's NOTIFY (RFC 3461 §4.1) decides which of the reports it is in: without one, failures and
        delays; NEVER, none; SUCCESS, a "relayed" report when its server took it without offering DSN (one that
        offers it got NOTIFY passed on and reports itself)."""
        now = time.time()
        expired = now - work.created >= config.queue.lifetime
        failed: list[dsn.RecipientStatus] = []
        delayed: list[dsn.RecipientStatus] = []
        relayed: list[dsn.RecipientStatus] = []
        results: list[tuple[int, str, str, float | None]] = []
        for recipient in work.recipients:
            outcome = outcomes[recipient.address]
            state = outcome.state
            if state == "deferred" and expired:
                state = "failed"
            status = dsn.RecipientStatus(
                recipient.address, outcome.reply, outcome.remote, now, outcome.from_remote, recipient.dsn.orcpt
            )
            if state == "failed":
                if recipient.dsn.wants("FAILURE"):
                    failed.append(status)
                results.append((recipient.id, queue.FAILED, outcome.reply, None))
            elif state == "deferred":
                if recipient.dsn.wants("DELAY"):
                    delayed.append(status)
                wait = queue.retry_delay(config.queue.retry_schedule, recipient.attempts + 1)
                results.append((recipient.id, queue.QUEUED, outcome.reply, now + wait))
            else:
                if recipient.dsn.wants("SUCCESS") and not outcome.dsn_passed:
                    relayed.append(status)
                results.append((recipient.id, queue.DELIVERED, outcome.reply, None))
        # once per message, when it is due, for the recipients that want it: the flag is set only with a notice,
        # so a NOTIFY without DELAY on one domain's recipients does not take it from another domain's later on
        delay_due = (
            bool(delayed)
            and not work.delay_notified
            and config.queue.delay_notice > 0
            and now - work.created >= config.queue.delay_notice
        )

        jobs: list[tuple[dsn.Action, Callable[[sqlite3.Connection], list[Stored]]]] = []
        bounce_to = work.account_id if work.mail_from else None  # never bounce a bounce
        if bounce_to is not None and self.store.read(functools.partial(_account_exists, account_id=bounce_to)):

            def notice(action: dsn.Action, recipients: list[dsn.RecipientStatus], until: float | None) -> None:
                raw = _report(work, config, action, work.mail_from, recipients, until)
                placements = [Placement(bounce_to, work.mail_from)]
                transaction_id = f"dsn-{work.message_id}-{int(now)}-{len(jobs)}"
                jobs.append((action, self.pipeline.filing(raw, placements, transaction_id, now)))

            if failed:
                notice("failed", failed, None)
            if delay_due:
                notice("delayed", delayed, work.created + config.queue.lifetime)
            if relayed:
                notice("relayed", relayed, None)

        forwarded = None
        if work.account_id is None and work.mail_from and failed:  # a forward's: back to its sender through SRS
            forwarded = await self._forward_bounce(work, failed, config, now)

        def write(conn: sqlite3.Connection) -> list[Stored]:
            """ONE transaction: the results and every report they cause (none lost to a crash, none twice). The
            delay notice only from the attempt that sets the message's flag: another domain's attempt of the same
            message, running alongside, may have sent it already."""
            for recipient_id, state, reply, next_attempt in results:
                queue.record(conn, recipient_id, state, reply, now, next_attempt)
            first_delay = delay_due and queue.mark_delay_notified(conn, work.message_id)
            queue.finish(conn, work.message_id)
            if sessions:
                tlsresults.insert(conn, work.domain, sessions, now)
            filed: list[Stored] = []
            for action, job in jobs:
                if action != "delayed" or first_delay:
                    filed += job(conn)
            if forwarded is not None:
                filed += forwarded(conn)
            return filed

        self.pipeline.publish(await self.store.write(write))
        if forwarded is not None:
            self.wake()

    async def _forward_bounce(
        self, work: queue.Work, failed: list[dsn.RecipientStatus], config: Config, now: float
    ) -> Callable[[sqlite3.Connection], list[Stored]] | None:
        """The write that bounces a forward (queued by nobody's account, its sender rewritten by SRS) to the
        original sender (RFC 3464, from MAILER-DAEMON with the null sender): filed into its INBOX when it is one of
        ours, else queued to it, DKIM-signed for the hostname's domain when there is a key. None when the sender
        is no valid SRS address of ours (a report of ours, or a forward older than the SRS window: dropped)."""
        original = self.store.read(functools.partial(forwarding.bounce_address, mail_from=work.mail_from))
        if original is None:
            log.info("queue id=%d no bounce: <%s> is no SRS address of ours", work.message_id, work.mail_from)
            return None
        raw = _report(work, config, "failed", original, failed, None)
        transaction_id = f"dsn-{work.message_id}-{int(now)}-fwd"
        resolution = self.store.read(functools.partial(accounts.resolve_recipient, address=original))
        ours = resolution.account_ids if resolution.kind is accounts.RecipientKind.LOCAL else ()
        log.info("queue id=%d forward failed: bounce to <%s>", work.message_id, trace.clean(original))
        return await self.pipeline.report_write(raw, original, ours, transaction_id, now)


def _report(
    work: queue.Work,
    config: Config,
    action: dsn.Action,
    sender: str,
    recipients: list[dsn.RecipientStatus],
    until: float | None,
) -> bytes:
    """The delivery status notification about ``work`` to ``sender`` (RFC 3464), with the message's RET and ENVID."""
    return dsn.build(
        action=action,
        hostname=config.server.hostname,
        sender=sender,
        recipients=recipients,
        original=work.data,
        arrival=work.created,
        retry_until=until,
        envid=work.dsn.envid,
        ret=work.dsn.ret,
    )


def _account_exists(conn: sqlite3.Connection, *, account_id: int) -> bool:
    return conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is not None
