"""The daemon: one event loop running every configured listener over one store.

Lifecycle:
- start: load config, open the store (migrations run), start the writer thread, bind listeners (and
  ``[listen] metrics``: /metrics and /healthz, :mod:`relentad.metrics`), tell systemd READY=1 (when
  $NOTIFY_SOCKET is set; no libsystemd needed).
- SIGHUP: reload the configuration and certificates; new connections use them, open ones are not dropped. A bad
  file is logged line by line and the old configuration stays. Address changes need a restart (logged).
- Certificate renewals without SIGHUP: every ``[tls] reload_interval`` one stat of the certificate and key
  (:class:`tls.PairWatcher`); when they changed, the pair is loaded again the same way (bad pair: logged, old kept).
  Every TLS listener takes its context from ``self.context`` at handshake time (STARTTLS on 25/587/143/110 per
  connection, 465, 993 and 995 at accept), so one assignment switches them all.
- ``[acme] enabled``: :class:`acme.manager.Manager` gets and renews the certificate in the background and calls
  :meth:`Daemon.reload_certificates` with each new one; until there is one, the TLS listeners are bound but
  refuse handshakes (STARTTLS is not offered), and the HTTP/HTTPS listeners answer the CA's challenges.
- SIGTERM/SIGINT: stop accepting, close idle connections with 421, let transactions in flight finish (at most
  ``limits.shutdown_grace``), drain the store's writer, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import config as config_mod
from . import mailauth, metrics, tls, web
from .acme.manager import Manager as AcmeManager
from .auth.authenticator import Authenticator
from .authreports import sending as report_sending
from .config import Config, ConfigError
from .events import Bus
from .imap import indexer
from .imap.server import ImapServer
from .lifecycle import backup, retention
from .managesieve.server import ManageSieveServer
from .pipeline import Pipeline
from .pop3.server import Pop3Server
from .queue.dkimkeys import KeyRing
from .queue.runner import QueueRunner
from .smtp.inbound import InboundHandler
from .smtp.server import Connections, ListenerContext, protocol_factory
from .smtp.submission import SubmissionHandler
from .spam import digest as junk_digest
from .spam import rebuild
from .spam import training as spam_training
from .store.db import Store

log = logging.getLogger("relentad")
T = TypeVar("T")


def setup_logging(level: str) -> None:
    """One line per event on stdout, which journald collects.

    The format uses no caller, thread or process fields, so logging is told not to look them up for every
    record (the logging HOWTO's "Optimization"): a third of the cost of the MX's line per transaction.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter


def sd_notify(message: str) -> None:
    """Send a state line to systemd's notify socket, if we run under Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings when systemd asked for them (WatchdogSec=), else None.

    systemd sets WATCHDOG_USEC (and WATCHDOG_PID, which must be us); pinging at half the period is its advice.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def watchdog(store: Store, interval: float) -> None:
    """Ping systemd's watchdog while the event loop runs AND the database answers; a hung store stops the pings,
    so systemd restarts us (Restart=on-failure)."""
    while True:
        try:
            store.read(lambda conn: conn.execute("SELECT 1").fetchone())
        except Exception:
            log.exception("watchdog: the database does not answer; not pinging systemd")
        else:
            sd_notify("WATCHDOG=1")
        await asyncio.sleep(interval)


@dataclass
class Daemon:
    config: Config
    context: ListenerContext = field(init=False)
    servers: dict[str, asyncio.Server] = field(default_factory=dict)
    smtp_connections: Connections = field(default_factory=Connections)
    submission_connections: Connections = field(default_factory=lambda: Connections("submission"))
    certificate_files: tls.PairWatcher = field(default_factory=tls.PairWatcher)
    acme: AcmeManager | None = None
    certificate_expiry: float | None = None  # of the certificate in self.context, for /metrics

    def __post_init__(self) -> None:
        self.certificate_files.mark(self.config)
        self.context = ListenerContext(self.config, None)
        self.use(self.config, tls.server_context(self.config))

    def use(self, config: Config, context: ssl.SSLContext | None) -> bool:
        """Serve new connections with ``config`` and ``context``: every TLS listener picks it up at its next
        handshake. Under ACME, no pair that loads (yet: [tls] just turned into [acme]; or a damaged file) keeps the
        certificate in service until ACME hands over its next one, rather than no TLS at all: False then."""
        if context is None and config.acme.enabled and self.context.tls_context is not None:
            self.context = ListenerContext(config, self.context.tls_context)
            return False
        self.context = ListenerContext(config, context)
        self.certificate_expiry = tls.not_after(config) if context is not None else None
        return True

    def https_context(self) -> ssl.SSLContext | None:
        """The HTTPS listener's context: ACME's dispatch context while a tls-alpn-01 challenge is pending."""
        if self.acme is not None:
            return self.acme.responder.https_context(self.context.tls_context)
        return self.context.tls_context

    def current_context(self) -> ListenerContext:
        return self.context

    def implicit_tls_context(self) -> ListenerContext:
        """Port 465's view: every connection handshakes with the current certificate and is not offered STARTTLS."""
        return ListenerContext(self.context.config, self.context.tls_context, implicit_tls=True)

    async def bind(
        self,
        name: str,
        listen: Callable[[str | None, int], Awaitable[asyncio.Server]],
        *,
        needs_cert: bool = False,
        optional: bool = False,
    ) -> None:
        """Start ``[listen] name`` unless it is off, or ``needs_cert`` and there is no certificate (logged). With
        ``optional`` a port that cannot be bound (another server has it, or a configuration written before the
        listener existed names a privileged default in an unprivileged dev setup) is logged and mail goes on
        without it; otherwise the daemon does not start."""
        text = getattr(self.config.listen, name)
        address = config_mod.parse_address(text)
        if address is None:
            return
        if needs_cert and self.context.tls_context is None and not self.config.acme.enabled:
            log.warning("%s listener needs [tls] cert and key: not started", name)
            return
        try:
            self.servers[name] = await listen(address[0], address[1])
        except OSError as exc:
            if not optional:
                raise
            log.error("%s listener not started: cannot listen on %s: %s", name, text, exc.strerror or exc)
            return
        log.info("listening %s on %s", name, text)
        if name in self.config.listen_defaults:
            log.warning(
                '%s listens on %s by default: [listen] %s is not in %s; set it there ("" turns it off)',
                name,
                text,
                name,
                self.config.path,
            )

    async def start_smtp(
        self, loop: asyncio.AbstractEventLoop, inbound: InboundHandler, submission: SubmissionHandler
    ) -> None:
        """Bind 25, 587 (STARTTLS) and 465 (implicit TLS, only with a certificate)."""

        def server(
            factory: Callable[[], asyncio.BaseProtocol],
        ) -> Callable[[str | None, int], Awaitable[asyncio.Server]]:
            return functools.partial(loop.create_server, factory, reuse_address=True, start_serving=True)

        await self.bind("smtp", server(protocol_factory(inbound, self.current_context, self.smtp_connections)))
        for name, get_context in (("submission", self.current_context), ("submissions", self.implicit_tls_context)):
            factory = protocol_factory(submission, get_context, self.submission_connections, auth_require_tls=False)
            await self.bind(name, server(factory), needs_cert=name == "submissions")

    async def run(self) -> int:
        try:  # one daemon per data folder; `relentad backup restore` checks this lock too
            lock = backup.hold_daemon_lock(self.config.data_dir)
        except backup.BackupError as exc:
            log.error("cannot start: %s", exc)
            return 1
        loop = asyncio.get_running_loop()
        store = Store(self.config.database_path)
        store.start(loop)
        bus = Bus()
        self.pipeline = Pipeline(store, bus, self.config)
        queue_runner = QueueRunner(store, self.pipeline, lambda: self.config)
        keyring = KeyRing(self.config.data_dir)
        self.pipeline.keyring = keyring  # vacation replies and reports of ours are signed and queued from the pipeline
        self.pipeline.queued = queue_runner.wake
        inbound = InboundHandler(store, self.pipeline, self.current_context, queue_runner.wake)
        authenticator = Authenticator(store, lambda: self.config.auth)
        submission = SubmissionHandler(
            store,
            self.pipeline,
            authenticator,
            keyring,
            self.current_context,
            queue_runner.wake,
        )
        imap = ImapServer(store, bus, authenticator, lambda: self.config, lambda: self.context.tls_context)
        self.acme = AcmeManager(lambda: self.config, store, functools.partial(self.reload_certificates, "from ACME"))
        web_server = web.WebServer(
            store, lambda: self.config, self.https_context, authenticator, self.acme.responder.http_answer
        )
        await web_server.recover_imports()
        managesieve = ManageSieveServer(store, authenticator, lambda: self.config, lambda: self.context.tls_context)
        pop3 = Pop3Server(store, bus, authenticator, lambda: self.config, lambda: self.context.tls_context)
        stop = asyncio.Event()
        # Before any listener is bound: a SIGHUP or SIGTERM arriving while we start must not kill the process
        # with the default action (a client can connect as soon as the first port is open).
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        # the daily retention purge (issue 7): expunged mail and terminated accounts past [retention] deleted_days
        purger = asyncio.ensure_future(retention.run_daily(store, lambda: self.config.retention))
        snapshots = asyncio.ensure_future(backup.run_daily(lambda: self.config))
        # the daily spam model rebuild: accounts that learned something, relearned from all their lessons
        rebuilder = asyncio.ensure_future(rebuild.run_daily(store, lambda: self.config.spam))
        # [spam] junk_digest: what each user's Junk got, listed in their inbox once a day
        digests = asyncio.ensure_future(junk_digest.run_daily(store, lambda: self.config))
        # [dmarc] and [tlsrpt] send_reports: the reports about yesterday's mail, shortly after midnight UTC
        outgoing_reports = asyncio.ensure_future(
            report_sending.run_daily(store, lambda: self.config, keyring, queue_runner.wake)
        )
        cert_watcher = asyncio.ensure_future(self.watch_certificates())
        # [imap] search_index: new blobs indexed in the background, never on the delivery path
        search_indexer = asyncio.ensure_future(indexer.run(store, lambda: self.config))
        acme_keeper: asyncio.Future[None] | None = None
        public_suffixes = asyncio.ensure_future(asyncio.to_thread(mailauth.load_public_suffixes))
        metrics_server = metrics.MetricsServer(
            metrics.DaemonView(
                store,
                imap_sessions=lambda: len(imap.sessions),
                managesieve_sessions=lambda: len(managesieve.sessions),
                pop3_sessions=lambda: len(pop3.sessions),
                smtp_sessions=lambda: {
                    "smtp": len(self.smtp_connections.open),
                    "submission": len(self.submission_connections.open),
                },
                listeners=lambda: {name: server.is_serving() for name, server in self.servers.items()},
                certificate_expiry=lambda: self.certificate_expiry,
            )
        )
        try:
            await self.start_smtp(loop, inbound, submission)
            queue_runner.start()
            for name, implicit in (("imap", False), ("imaps", True)):
                await self.bind(name, functools.partial(imap.listen, implicit_tls=implicit), needs_cert=implicit)
            for name, secure in (("https", True), ("http", False)):  # http too: autoconfig offers TLS ports only
                await self.bind(
                    name, functools.partial(web_server.listen, secure=secure), needs_cert=True, optional=True
                )
            await self.bind("managesieve", managesieve.listen, optional=True)  # as POP3: Dovecot may still have 4190
            for name, implicit in (("pop3", False), ("pop3s", True)):
                listen = functools.partial(pop3.listen, implicit_tls=implicit)
                await self.bind(name, listen, needs_cert=implicit, optional=True)
            address = config_mod.parse_address(self.config.listen.metrics)
            if address is not None:
                await metrics_server.start(address[0], address[1])
                log.info("listening metrics on %s", self.config.listen.metrics)
            acme_keeper = asyncio.ensure_future(self.acme.run())  # listeners first: they answer the challenges
            tune_garbage_collector()
            sd_notify("READY=1\nSTATUS=accepting mail")
            interval = watchdog_interval()
            pinger = asyncio.ensure_future(watchdog(store, interval)) if interval else None
            log.info(
                "relentad ready (database %s, event loop %s)",
                self.config.database_path,
                type(loop).__module__.split(".")[0],  # "uvloop" or "asyncio"
            )
            await stop.wait()
            log.info("shutting down")
            sd_notify("STOPPING=1")
            if pinger is not None:
                pinger.cancel()
        finally:
            purger.cancel()
            rebuilder.cancel()
            digests.cancel()
            outgoing_reports.cancel()
            snapshots.cancel()
            cert_watcher.cancel()
            search_indexer.cancel()
            self.acme.stop()
            if acme_keeper is not None:
                acme_keeper.cancel()
            public_suffixes.cancel()
            metrics_server.close()
            for server in self.servers.values():
                server.close()
            web_server.close_all()  # nothing in flight worth waiting for: one request is answered at once
            # One grace for the whole shutdown: the listeners and the queue finish side by side, not one after the
            # other (which took a grace per busy listener, past systemd's TimeoutStopSec and into SIGKILL).
            grace = self.config.limits.shutdown_grace
            deadline = loop.time() + grace
            imap_closing = asyncio.ensure_future(imap.close_all(grace))
            sieve_closing = asyncio.ensure_future(managesieve.close_all(grace))
            pop3_closing = asyncio.ensure_future(pop3.close_all(grace))
            self.smtp_connections.close_idle()
            self.submission_connections.close_idle()
            await asyncio.gather(
                self.smtp_connections.drain(grace),
                self.submission_connections.drain(grace),
                queue_runner.stop(grace),
            )
            await imap_closing
            await sieve_closing
            await pop3_closing
            imap.close()
            pop3.close()
            web_server.close()
            with contextlib.suppress(TimeoutError):  # training from IMAP in flight: best effort, never blocks exit
                await asyncio.wait_for(spam_training.drain(), max(0.0, deadline - loop.time()))
            await asyncio.to_thread(store.close)
            lock.close()
        log.info("stopped")
        return 0

    def reload(self) -> None:
        """SIGHUP: new config and certificates for new connections; keep the old ones on any problem."""
        path = self.config.path
        assert path is not None
        try:
            new = config_mod.load(path)
            files = tls.pair_signature(new)
            context = tls.server_context(new)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            return
        except (OSError, ValueError) as exc:
            log.error("reload refused: certificate: %s", exc)
            return
        if new.listen != self.config.listen:
            log.warning("listen addresses changed: restart relentad to apply them")
        self.config = new
        self.use(new, context)
        self.certificate_files.seen = files
        self.pipeline.configure(new)
        logging.getLogger().setLevel(new.server.log_level.upper())
        log.info("configuration reloaded from %s", path)

    async def watch_certificates(self) -> None:
        """Load the certificate again when its files change on disk (an ACME renewal that sends no SIGHUP)."""
        while True:
            interval = self.config.tls.reload_interval
            await asyncio.sleep(interval or 60.0)  # when off, look again later: a SIGHUP may turn it on
            try:
                config = self.config
                if (
                    interval
                    and config.tls_enabled
                    and not config.acme.enabled
                    and self.certificate_files.changed(config)
                ):
                    self.reload_certificates()  # ACME reloads what it writes itself
            except Exception:  # a bug here must not end the watching for the daemon's lifetime
                log.exception("certificate watch failed; trying again in %ss", interval or 60.0)

    def reload_certificates(self, why: str = "changed on disk") -> None:
        """The configured pair as it is on disk now, for new connections; on any problem the old pair stays."""
        config = self.config
        cert, key = config.cert_files()
        try:
            context = tls.server_context(config)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: half-written PEM, key not matching
            log.error("certificate reload refused, the old certificate stays: %s / %s: %s", cert, key, exc)
            return
        if self.use(config, context):  # else ACME's pair did not load (logged): the old one stays
            log.info("certificate reloaded from %s (%s)", cert, why)


# Young objects per collection. Python's 700 made the cyclic collector ~3 % of the inbound CPU (about 0.1 ms per
# message, 300 collections per 3,000 messages); nearly everything a delivery allocates is freed by reference
# counting long before a collection at this threshold, so the collector finds fewer survivors to examine again.
GC_YOUNG_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Once started: move start-up objects (config, modules, compiled patterns) out of the collector's way
    (``gc.freeze``: never examined again, never freed — they live as long as the process) and collect young
    objects less often. Halved the collector's CPU under the inbound benchmark; pauses stay in milliseconds."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def serve(config_path: Path) -> int:
    """Load the configuration and run the daemon until SIGTERM; the exit status."""
    config = config_mod.load(config_path)
    setup_logging(config.server.log_level)
    daemon = Daemon(config)
    return run_loop(daemon.run(), config.server.event_loop)


def run_loop(main: Coroutine[Any, Any, T], event_loop: str) -> T:
    """Run ``main`` on the configured event loop: uvloop when asked for and installed, else asyncio's."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed; running on asyncio's event loop")
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
