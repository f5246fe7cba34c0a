"""Debian's ``pebble`` (Let's Encrypt's ACME test server) on loopback, for the ACME e2e tests.

Pebble validates challenges by connecting to ``httpPort`` (http-01) and ``tlsPort`` (tls-alpn-01) on the address
the name resolves to through ``-dnsserver`` (the test's dnsmasq): point them at the daemon's HTTP and HTTPS
listeners and the names at 127.0.0.1. The Debian package ships no TLS certificate for pebble's own HTTPS, so a
:class:`TestCA` issues one (for 127.0.0.1), and relentad's ``[acme] ca_file`` is that CA. The root pebble signs
with is random per start: :meth:`Pebble.root_pem` fetches it from the management interface.

Pebble is required, not optional: without it these tests fail (scripts/test installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

from tests.support import processes
from tests.support.daemon import free_port, wait_for_port
from tests.support.pki import TestCA


class Pebble:
    def __init__(self, folder: Path, http_port: int, tls_port: int, dns_server: str) -> None:
        binary = shutil.which("pebble") or "/usr/bin/pebble"
        if not os.access(binary, os.X_OK):
            raise AssertionError("pebble is not installed (apt-get install pebble; scripts/test installs it)")
        self.folder = folder
        self.ca = TestCA(folder / "ca", "pebble web CA")
        cert, key = self.ca.issue("localhost", ips=("127.0.0.1",))
        self.port, self.management_port = free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        self.config_path = folder / "pebble.json"
        self.config_path.write_text(json.dumps(config))
        self.binary, self.dns_server = binary, dns_server
        self.log_path = folder / "pebble.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self) -> Pebble:
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
            "PEBBLE_VA_ALWAYS_VALID": "0",
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-config", str(self.config_path), "-dnsserver", self.dns_server],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            wait_for_port("127.0.0.1", self.port, proc=self.proc)
            wait_for_port("127.0.0.1", self.management_port, proc=self.proc)
        except Exception:
            self.stop()
            raise AssertionError(f"pebble did not start:\n{self.log()}") from None
        return self

    def stop(self) -> None:
        processes.stop(self.proc, timeout=10)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def root_pem(self) -> bytes:
        """The root certificate pebble issues under (new at every start)."""
        context = ssl.create_default_context(cafile=str(self.ca.pem))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:  # our https URL
            return bytes(answer.read())
