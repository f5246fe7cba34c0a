"""A scriptable HTTPS server on loopback (stdlib http.server in a thread): the remote MTA-STS policy host.

``responses`` maps a path to (status, Content-Type, body); other paths get 404. Every request's path and Host
header is recorded in ``requests``. Tests change ``responses`` while it runs.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class HttpsPeer:
    def __init__(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self.responses: dict[str, tuple[int, str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer.requests.append((self.path, self.headers.get("Host", "")))
                status, kind, body = peer.responses.get(self.path, (404, "text/plain", b"not found\n"))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                if 300 <= status < 400:
                    self.send_header("Location", "https://elsewhere.test/.well-known/mta-sts.txt")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name="https-peer", daemon=True)

    def serve(self, path: str, body: str, status: int = 200, kind: str = "text/plain") -> None:
        self.responses[path] = (status, kind, body.encode())

    def __enter__(self) -> HttpsPeer:
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
