"""A scriptable ACME server on loopback, for what pebble cannot be made to do: a challenge that stays pending (to
probe the daemon while it answers one), a server that hangs, redirects or sends too much.

It checks nothing the client signs (pebble does that in the other tests); it answers each ACME resource with what
the test set in :attr:`FakeAcme.script` (a path → callable returning ``(status, headers, body)``; status 0: the
body alone, no HTTP) or the default:
a directory, nonces, an account, one order for ``names`` whose authorizations stay ``pending`` with one
``tls-alpn-01`` and one ``http-01`` challenge. :attr:`requests` records ``(method, path)`` as they arrive.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.pki import TestCA

Reply = tuple[int, dict[str, str], bytes]


class FakeAcme:
    def __init__(self, folder: Path, names: Sequence[str]) -> None:
        self.ca = TestCA(folder / "ca", "fake ACME web CA")
        cert, key = self.ca.issue("localhost", ips=("127.0.0.1",))
        self.names = list(names)
        self.script: dict[str, Callable[[], Reply]] = {}
        self.requests: list[tuple[str, str]] = []
        self.trickle: dict[str, float] = {}  # path → seconds between the octets of its answer's body
        self.nonces = 0
        self.released = threading.Event()  # set at stop: what :meth:`hang` holds returns
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                fake.requests.append((self.command, self.path))
                status, headers, body = fake.reply(self.path)
                if status == 0:  # not HTTP at all: ``body`` as it is, then the connection closes
                    self.wfile.write(body)
                    self.close_connection = True
                    return
                self.send_response(status)
                fake.nonces += 1
                self.send_header("Replay-Nonce", f"nonce{fake.nonces}")
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if self.path in fake.trickle:  # one octet at a time, a pause between
                    for octet in body:
                        self.wfile.write(bytes([octet]))
                        self.wfile.flush()
                        if fake.released.wait(fake.trickle[self.path]):
                            return
                else:
                    self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def directory(self) -> str:
        return f"{self.base}/dir"

    def start(self) -> FakeAcme:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def token(self, index: int) -> str:
        return f"token{index}"

    def grant(self, chain_pem: bytes) -> None:
        """Every authorization valid at once, the order ready, finalized at once: ``chain_pem`` is the certificate."""
        base = self.base
        for index, name in enumerate(self.names):
            valid = {"status": "valid", "identifier": {"type": "dns", "value": name}, "challenges": []}
            self.script[f"/authz/{index}"] = lambda valid=valid: json_reply(200, valid)
        done = {"status": "valid", "certificate": f"{base}/cert"}
        self.script["/order/1"] = lambda: json_reply(200, {"status": "ready", "finalize": f"{base}/finalize"})
        self.script["/finalize"] = lambda: json_reply(200, done, {"Location": f"{base}/order/1"})
        self.script["/cert"] = lambda: (200, {"Content-Type": "application/pem-certificate-chain"}, chain_pem)

    def hang(self) -> Reply:
        """A reply that never comes (until :meth:`stop`): a CA that accepted the request and went silent."""
        self.released.wait(120)
        return json_reply(503, {"detail": "gone"})

    def reply(self, path: str) -> Reply:
        if path in self.script:
            return self.script[path]()
        base = self.base
        if path == "/dir":
            return json_reply(
                200,
                {"newNonce": f"{base}/nonce", "newAccount": f"{base}/acct", "newOrder": f"{base}/order"},
            )
        if path == "/nonce":
            return 200, {}, b""
        if path == "/acct":
            return json_reply(201, {"status": "valid"}, {"Location": f"{base}/acct/1"})
        if path == "/order":
            order = {
                "status": "pending",
                "authorizations": [f"{base}/authz/{i}" for i in range(len(self.names))],
                "finalize": f"{base}/finalize",
            }
            return json_reply(201, order, {"Location": f"{base}/order/1"})
        if path.startswith("/authz/"):
            index = int(path.rsplit("/", 1)[1])
            challenges = [
                {"type": kind, "url": f"{base}/chall/{kind}/{index}", "token": self.token(index), "status": "pending"}
                for kind in ("tls-alpn-01", "http-01")
            ]
            authz = {"status": "pending", "identifier": {"type": "dns", "value": self.names[index]}}
            return json_reply(200, {**authz, "challenges": challenges})
        if path.startswith("/chall/"):
            return json_reply(200, {"status": "processing"})
        return json_reply(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": "no such resource"})


def json_reply(status: int, value: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(value).encode()
