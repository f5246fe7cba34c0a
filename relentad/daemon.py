"""The daemon: one event loop running every configured listener over one store.

Lifecycle:
- start: load config, open the store (migrations run), start the writer thread, bind listeners, tell systemd
  READY=1 (when $NOTIFY_SOCKET is set; no libsystemd needed).
- SIGHUP: reload the configuration and certificates; new connections use them, open ones are not dropped. A bad
  file is logged line by line and the old configuration stays. Address changes need a restart (logged).
- SIGTERM/SIGINT: stop accepting, close idle connections with 421, let transactions in flight finish (at most
  ``limits.shutdown_grace``), drain the store's writer, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import config as config_mod
from . import tls
from .config import Config, ConfigError
from .events import Bus
from .pipeline import Pipeline
from .smtp.inbound import InboundHandler
from .smtp.server import Connections, ListenerContext, protocol_factory
from .store.db import Store

log = logging.getLogger("relentad")

# Listeners whose protocol is not part of this build yet; configured ones are reported, not bound.
_PENDING = ("submission", "submissions", "imap", "imaps")


def setup_logging(level: str) -> None:
    """One line per event on stdout, which journald collects."""
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


@dataclass
class Daemon:
    config: Config
    context: ListenerContext = field(init=False)
    servers: dict[str, asyncio.Server] = field(default_factory=dict)
    smtp_connections: Connections = field(default_factory=Connections)

    def __post_init__(self) -> None:
        self.context = ListenerContext(self.config, tls.server_context(self.config))

    def current_context(self) -> ListenerContext:
        return self.context

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        store = Store(self.config.database_path)
        store.start(loop)
        bus = Bus()
        self.pipeline = Pipeline(store, bus, self.config)
        inbound = InboundHandler(store, self.pipeline, self.current_context)
        stop = asyncio.Event()
        try:
            address = config_mod.parse_address(self.config.listen.smtp)
            if address is not None:
                factory = protocol_factory(inbound, self.current_context, self.smtp_connections)
                self.servers["smtp"] = await loop.create_server(
                    factory, address[0], address[1], reuse_address=True, start_serving=True
                )
                log.info("listening smtp on %s", self.config.listen.smtp)
            for name in _PENDING:
                if getattr(self.config.listen, name):
                    log.info("%s listener configured but not available in this version yet", name)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            sd_notify("READY=1\nSTATUS=accepting mail")
            log.info("relentad ready (database %s)", self.config.database_path)
            await stop.wait()
            log.info("shutting down")
            sd_notify("STOPPING=1")
        finally:
            for server in self.servers.values():
                server.close()
            self.smtp_connections.close_idle()
            await self.smtp_connections.drain(self.config.limits.shutdown_grace)
            await asyncio.to_thread(store.close)
        log.info("stopped")
        return 0

    def reload(self) -> None:
        """SIGHUP: new config and certificates for new connections; keep the old ones on any problem."""
        path = self.config.path
        assert path is not None
        try:
            new = config_mod.load(path)
            context = ListenerContext(new, tls.server_context(new))
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
        self.context = context
        self.pipeline.configure(new)
        logging.getLogger().setLevel(new.server.log_level.upper())
        log.info("configuration reloaded from %s", path)


def serve(config_path: Path) -> int:
    """Load the configuration and run the daemon until SIGTERM; the exit status."""
    config = config_mod.load(config_path)
    setup_logging(config.server.log_level)
    daemon = Daemon(config)
    return asyncio.run(daemon.run())
