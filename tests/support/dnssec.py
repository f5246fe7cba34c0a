"""A real DNSSEC world on loopback for the DANE tests: Knot DNS signs and serves zones, unbound validates.

``knotd`` is authoritative for the zones given (signed ones with automatic DNSSEC signing, ECDSA P-256, TTL 0 so
nothing is cached); ``unbound`` is the validating resolver relentad asks (``[dns] nameservers``), with the signed
top zone's DS (from ``keymgr``) as its trust anchor and a stub zone pointing at knotd. Names outside the top zone
are refused, so nothing ever leaves the machine. A child zone delegated without a DS is insecure; one delegated
with a wrong DS is bogus (unbound answers SERVFAIL).

Both run in the foreground as our children and are stopped by :meth:`SignedDns.close`. Missing binaries fail
loudly (scripts/test installs ``knot`` and ``unbound``): DANE cannot be tested without them.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from tests.support import processes
from tests.support.dnsmasq import _free_port

BINARIES = ("knotd", "keymgr", "unbound")


def _binary(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None)
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install knot unbound): the DANE tests need it")
    return found


@dataclass(frozen=True)
class Zone:
    name: str  # without the trailing dot
    text: str  # zone file body (after the $TTL/SOA/NS lines written here)
    signed: bool = True


class SignedDns:
    """knotd serving ``zones`` on ``auth_host`` and unbound validating on ``host``; ``top`` is the anchored zone."""

    def __init__(self, workdir: Path, zones: list[Zone], *, top: str, host: str, auth_host: str) -> None:
        self.workdir = workdir
        self.zones = zones
        self.top = top
        self.host = host
        self.auth_host = auth_host
        self.port = 0
        self.auth_port = 0
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def nameserver(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> SignedDns:
        try:
            self._start_knot()
            self._start_unbound()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for process in reversed(self._processes):
            processes.stop(process)
        self._processes.clear()

    def log(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.workdir / name).read_text(errors='replace')[-4000:]}"
            for name in ("knot.log", "unbound.log")
            if (self.workdir / name).exists()
        )

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.workdir / log).open("ab") as out:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self._processes.append(process)
        return process

    def _wait(self, what: str, process: subprocess.Popen[bytes], host: str, port: int, name: str, rdtype: str) -> None:
        """Until ``name rdtype`` gets an answer with records (the resolver asked with AD, like relentad)."""
        deadline = time.monotonic() + 15
        query = dns.message.make_query(name, rdtype)
        query.flags |= dns.flags.AD
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}:\n{self.log()}")
            try:
                answer = dns.query.udp(query, host, port=port, timeout=0.5)
                if answer.rcode() == dns.rcode.NOERROR and answer.answer:
                    return
            except (dns.exception.DNSException, OSError):
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{what} did not answer {name} {rdtype} on {host}:{port}:\n{self.log()}")

    def _start_knot(self) -> None:
        zones_dir, kasp = self.workdir / "zones", self.workdir / "kasp"
        zones_dir.mkdir(parents=True, exist_ok=True)
        kasp.mkdir(exist_ok=True)
        self.auth_port = _free_port(self.auth_host)
        entries = []
        for zone in self.zones:
            head = f"$TTL 0\n@ SOA ns.{self.top}. hostmaster.{self.top}. 1 3600 600 86400 0\n@ NS ns.{self.top}.\n"
            (zones_dir / f"{zone.name}.zone").write_text(head + zone.text)
            signing = "\n    dnssec-signing: on\n    dnssec-policy: fast" if zone.signed else ""
            entries.append(f"  - domain: {zone.name}\n    file: {zone.name}.zone{signing}")
        conf = self.workdir / "knot.conf"
        conf.write_text(
            f"""server:
    rundir: "{self.workdir}"
    listen: {self.auth_host}@{self.auth_port}
log:
  - target: stderr
    any: warning
database:
    storage: "{kasp}"
policy:
  - id: fast
    algorithm: ecdsap256sha256
    nsec3: off
    dnskey-ttl: 0
    zone-max-ttl: 0
template:
  - id: default
    storage: "{zones_dir}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
"""
            + "\n".join(entries)
            + "\n"
        )
        knot = self._spawn([_binary("knotd"), "-c", str(conf)], "knot.log")
        for zone in self.zones:
            self._wait("knotd", knot, self.auth_host, self.auth_port, zone.name, "DNSKEY" if zone.signed else "SOA")
        found = subprocess.run(
            [_binary("keymgr"), "-c", str(conf), self.top, "ds"], capture_output=True, text=True, check=True
        )
        anchor = next(line for line in found.stdout.splitlines() if " DS " in line and " 13 2 " in line)
        (self.workdir / "anchor").write_text(anchor + "\n")

    def _start_unbound(self) -> None:
        self.port = _free_port(self.host)
        conf = self.workdir / "unbound.conf"
        conf.write_text(
            f"""server:
    interface: {self.host}@{self.port}
    port: {self.port}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{self.workdir}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    trust-anchor-file: "{self.workdir / "anchor"}"
    cache-max-ttl: 0
    cache-max-negative-ttl: 0
    local-zone: "." refuse
    local-zone: "{self.top}." transparent
stub-zone:
    name: "{self.top}."
    stub-addr: {self.auth_host}@{self.auth_port}
remote-control:
    control-enable: no
"""
        )
        unbound = self._spawn([_binary("unbound"), "-c", str(conf)], "unbound.log")
        self._wait("unbound", unbound, self.host, self.port, self.top, "SOA")
