"""A real DNS server for tests: Debian's dnsmasq on 127.0.0.1, serving only records given in Python.

Tests must never ask the machine's resolver or an outside host, so dnsmasq runs with `--no-resolv
--no-hosts`, no upstream server, and `local=/#/`: a name without a configured record is NXDOMAIN (and a
configured name without the asked type is NODATA), never a forward or a SERVFAIL. That keeps SPF "none"
and DMARC "no policy" distinguishable from "DNS broken"; a test wanting "DNS broken" for some names only
lists them in `refused`.

Invariants:
- `Dnsmasq.nameserver` ("127.0.0.1:PORT") stays the same across `replace()`, so a resolver or a relentad
  config built once keeps working when a test changes its records.
- `start()` returns only once the server answers queries; `stop()` always reaps the process. (A test run
  killed with SIGKILL can leave one behind: dnsmasq changes credentials, which clears PR_SET_PDEATHSIG.)
- Long TXT values (DKIM keys) are split into <=255-byte character-strings of one record, as RFC 6376
  §3.6.2.2 expects; a verifier concatenates them again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.query
import dns.reversename

from tests.support import ports, processes

TXT_CHUNK = 255


def dnsmasq_path() -> str | None:
    """Where the dnsmasq binary is, or None (it lives in /usr/sbin, often missing from a user's PATH)."""
    found = shutil.which("dnsmasq")
    if found:
        return found
    for candidate in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class DnsRecords:
    """The zone content to serve. Names are written without a trailing dot."""

    mx: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    txt: dict[str, list[str]] = field(default_factory=dict)
    ptr: dict[str, list[str]] = field(default_factory=dict)
    """IP address -> host names. host-records (`a`/`aaaa`) already answer PTR for their addresses, unless the
    address has names here."""
    srv: dict[str, list[tuple[int, int, int, str]]] = field(default_factory=dict)
    """_service._proto.domain -> (priority, weight, port, target)."""
    refused: list[str] = field(default_factory=list)
    """Names (with everything under them) answered REFUSED, a DNS failure: a temperror for one name at once."""

    def add_mx(self, domain: str, host: str, preference: int = 10) -> DnsRecords:
        self.mx.setdefault(domain, []).append((preference, host))
        return self

    def add_a(self, name: str, *addresses: str) -> DnsRecords:
        self.a.setdefault(name, []).extend(addresses)
        return self

    def add_aaaa(self, name: str, *addresses: str) -> DnsRecords:
        self.aaaa.setdefault(name, []).extend(addresses)
        return self

    def add_txt(self, name: str, value: str) -> DnsRecords:
        """One TXT record (several calls for one name give several records)."""
        self.txt.setdefault(name, []).append(value)
        return self

    def add_ptr(self, ip: str, name: str) -> DnsRecords:
        """One PTR record (several calls for one address give several records)."""
        self.ptr.setdefault(ip, []).append(name)
        return self

    def add_srv(self, name: str, priority: int, weight: int, port: int, target: str) -> DnsRecords:
        """An SRV record; target "." with port 0 says the service is not offered (RFC 2782)."""
        self.srv.setdefault(name, []).append((priority, weight, port, target))
        return self

    def add_refused(self, name: str) -> DnsRecords:
        self.refused.append(name)
        return self

    def config_lines(self) -> list[str]:
        """The dnsmasq configuration file lines serving these records."""
        lines = ["local=/#/"]
        for domain, entries in self.mx.items():
            lines += [f"mx-host={domain},{host},{pref}" for pref, host in entries]
        for name, addresses in self.a.items():
            lines += [f"host-record={name},{address}" for address in addresses]
        for name, addresses in self.aaaa.items():
            lines += [f"host-record={name},{address}" for address in addresses]
        for name, values in self.txt.items():
            lines += [f"txt-record={name},{_txt_strings(value)}" for value in values]
        for ip, names in self.ptr.items():
            lines += [f"ptr-record={_reverse(ip)},{name}" for name in names]
        for name, services in self.srv.items():
            for priority, weight, port, target in services:
                # dnsmasq: an srv-host with no target answers "no such service" ("." in the zone).
                lines.append(
                    f"srv-host={name},{target},{port},{priority},{weight}" if target != "." else f"srv-host={name}"
                )
        # "#" forwards to the usual upstream servers, and with --no-resolv there are none: REFUSED.
        lines += [f"server=/{name}/#" for name in self.refused]
        return lines


def _txt_strings(value: str) -> str:
    """`value` as dnsmasq's comma-separated, quoted character-strings of at most 255 bytes each."""
    raw = value.encode()
    if b"\n" in raw:
        raise ValueError("TXT values cannot contain newlines")
    chunks = [raw[i : i + TXT_CHUNK] for i in range(0, len(raw), TXT_CHUNK)] or [b""]
    return ",".join('"' + _escape(chunk.decode()) + '"' for chunk in chunks)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _reverse(ip: str) -> str:
    return dns.reversename.from_address(ip).to_text(omit_final_dot=True)


def _free_port(host: str) -> int:
    """A port free for both UDP and TCP on `host` right now (dnsmasq needs both)."""
    for _ in range(1000):  # most probes fall outside this worker's share (ports.ours)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port: int = udp.getsockname()[1]
            if not ports.ours(port):  # another test worker's share
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free UDP+TCP port on {host}")


KEPT_PORT_ATTEMPTS = 30
"""Tries to restart on the same port while it is in use: the kernel hands its ephemeral ports (any client socket of
any test process, a resolver's UDP query among them) from the range free ports come from, so the port a restart
needs can be held for a moment (seen once in a full parallel run)."""
IN_USE = "Address already in use"


class DnsmasqError(RuntimeError):
    """dnsmasq did not start or did not answer."""


class Dnsmasq:
    """One dnsmasq process serving `DnsRecords`; usable as a context manager.

    `host` is any IPv4 loopback address (127.0.0.1 unless a test wants another); `port` None picks a free one.
    """

    def __init__(
        self,
        records: DnsRecords | None = None,
        *,
        workdir: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        ttl: int = 0,
    ) -> None:
        binary = dnsmasq_path()
        if binary is None:
            raise DnsmasqError("dnsmasq is not installed (apt-get install dnsmasq-base)")
        self.binary = binary
        self.records = records if records is not None else DnsRecords()
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="dnsmasq-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.ttl = ttl  # 0: resolvers never cache, so a test's record changes are seen at once
        self._fixed_port = port
        self.port = port or 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def nameserver(self) -> str:
        """The "host:port" string for relentad's `[dns] nameservers`."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> Dnsmasq:
        """Start serving and wait until a query is answered; picks a free port on the first start."""
        if self.running:
            return self
        kept = bool(self._fixed_port or self.port)  # a restart (``replace``) must come back on its port
        attempts = KEPT_PORT_ATTEMPTS if kept else 5
        last_error = ""
        for _ in range(attempts):
            if not self.port:
                self.port = _free_port(self.host)
            try:
                self._launch(timeout)
                return self
            except DnsmasqError as exc:
                last_error = str(exc)
                if not kept:
                    self.port = 0  # maybe lost a race for the port: try another
                elif IN_USE in last_error:
                    time.sleep(0.1)  # a client socket elsewhere drew the port as its ephemeral one: it goes soon
                else:
                    break
        raise DnsmasqError(last_error)

    def stop(self) -> None:
        """Stop the server (the port is kept for a later `start()`)."""
        process, self._process = self._process, None
        processes.stop(process)

    def replace(self, records: DnsRecords) -> None:
        """Serve `records` instead, on the same port (dnsmasq re-reads its config only on restart).

        A stopped server stays stopped; it serves the new records when started again.
        """
        self.records = records
        if self.running:
            self.stop()
            self.start()

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log(self) -> str:
        """What dnsmasq logged (queries included), for assertion messages."""
        path = self.workdir / "dnsmasq.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Dnsmasq:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _launch(self, timeout: float) -> None:
        conf = self.workdir / "dnsmasq.conf"
        conf.write_text("\n".join(self.records.config_lines()) + "\n")
        args = [
            self.binary,
            "--keep-in-foreground",
            f"--conf-file={conf}",
            f"--port={self.port}",
            f"--listen-address={self.host}",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--pid-file=",
            "--log-facility=-",
            "--log-queries",
            "--cache-size=0",
            f"--local-ttl={self.ttl}",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")  # as root it would switch to nobody, who may not read our files
        with (self.workdir / "dnsmasq.log").open("ab") as log:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._process = process
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                raise DnsmasqError(f"dnsmasq exited with {process.returncode}: {self.log()[-2000:]}")
            if self._answers():
                return
            time.sleep(0.005)
        self.stop()
        raise DnsmasqError(f"dnsmasq did not answer on {self.nameserver} within {timeout}s")

    def _answers(self) -> bool:
        """One query over TCP (a refused connect fails at once, where UDP would wait), then one over UDP."""
        query = dns.message.make_query("ready.invalid", "A")
        try:
            dns.query.tcp(query, self.host, port=self.port, timeout=1.0)
            dns.query.udp(query, self.host, port=self.port, timeout=1.0)
        except (dns.exception.DNSException, OSError):
            return False
        return True


@contextlib.contextmanager
def running_dnsmasq(records: DnsRecords | None = None, workdir: Path | None = None) -> Iterator[Dnsmasq]:
    """A started Dnsmasq for the duration of a `with` block (tests use the fixture in dns_fixture)."""
    server = Dnsmasq(records, workdir=workdir)
    try:
        yield server.start()
    finally:
        server.close()
