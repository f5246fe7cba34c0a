"""MTA-STS (RFC 8461) for outbound delivery: policy discovery, parsing, the SQLite cache and MX matching.

Discovery for a recipient domain D: the ``_mta-sts.D`` TXT record (exactly one ``v=STSv1`` record with an ``id``,
§3.1) says a policy exists; the policy comes from ``https://mta-sts.D/.well-known/mta-sts.txt`` (§3.3): resolved
through OUR resolver, certificate verified for ``mta-sts.D``, no redirects, ``200`` and ``text/plain`` only, at
most 64 KB, a short timeout. A policy is kept in ``mta_sts_policies`` until ``max_age`` runs out and used while the
TXT id stays the same; when the id changes it is fetched again, and when DNS or the fetch fails an unexpired cached
policy still applies (§5.1). A policy in use is also fetched again ahead of its expiry (:data:`REFRESH_AFTER`), so
steady mail never meets an expired policy, the moment an attacker blocking the fetch would strip it (§10.2); a
failed refresh keeps the cached one. Anything invalid is "no policy" (logged), never a delivery error.

Enforcement lives in :mod:`relentad.queue.deliver`; this module says which MX hosts a policy allows.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import ssl
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dns.asyncresolver

from .. import dns as relentad_dns
from .. import metrics

log = logging.getLogger("relentad.queue")

Mode = Literal["enforce", "testing", "none"]
MODES: tuple[Mode, ...] = ("enforce", "testing", "none")
MAX_AGE_LIMIT = 31_557_600  # §3.2: about a year
MAX_BODY = 65_536  # §3.3: senders limit the policy's size; 64 KB is far more than any real one
MAX_HEAD = 16_384
HTTPS_PORT = 443
FETCH_TIMEOUT = 20.0  # connect, TLS and the whole response together
FAILED_FETCH_PAUSE = 300.0  # a failed fetch is not repeated for the same (domain, id) within this time
REFRESH_AFTER = 86_400.0  # a policy in use is fetched again once this old, or half its max_age if that is less
WELL_KNOWN = "/.well-known/mta-sts.txt"

_TXT_START = re.compile(r"v=STSv1[ \t]*;")
_TXT_ID = re.compile(r"id=([A-Za-z0-9]{1,32})")
_TXT_EXTENSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}=[\x21-\x3a\x3c\x3e-\x7e]+")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_POLICY_LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,31}):[ \t]*(.*?)[ \t]*")


class PolicyError(ValueError):
    """A TXT record or policy text that does not follow RFC 8461: treated as no policy."""


class FetchError(Exception):
    """The policy could not be fetched over HTTPS (DNS, connection, certificate, HTTP status, type, size)."""


@dataclass(frozen=True)
class Policy:
    """One domain's policy as fetched, with the TXT id it was fetched under."""

    domain: str
    id: str
    mode: Mode
    mx: tuple[str, ...]
    max_age: int
    text: str
    fetched: float

    @property
    def expires(self) -> float:
        return self.fetched + self.max_age

    def stale(self, now: float) -> bool:
        """Old enough to be fetched again although its TXT id is unchanged (:data:`REFRESH_AFTER`)."""
        return now - self.fetched > min(REFRESH_AFTER, self.max_age / 2)

    def allows(self, host: str) -> bool:
        """True when MX host ``host`` matches one of the policy's ``mx`` patterns (§4.1)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


# -- parsing ---------------------------------------------------------------------------------------------------


def txt_id(records: list[bytes]) -> str | None:
    """The policy id from a domain's ``_mta-sts`` TXT records (each the concatenation of its strings), None when
    no record starts with ``v=STSv1;``. Raises PolicyError for several such records or an invalid one (§3.1)."""
    candidates = [r for r in records if _TXT_START.match(r.decode("latin-1"))]
    if not candidates:
        return None
    if len(candidates) > 1:
        raise PolicyError(f"{len(candidates)} v=STSv1 TXT records")
    try:
        text = candidates[0].decode("ascii")
    except UnicodeDecodeError:
        raise PolicyError("TXT record is not ASCII") from None
    fields = [f.strip(" \t") for f in text.split(";")]
    if fields[-1] == "":
        fields.pop()  # one trailing separator is allowed
    found: str | None = None
    for item in fields[1:]:
        if (match := _TXT_ID.fullmatch(item)) is not None:
            found = found or match.group(1)
        elif not _TXT_EXTENSION.fullmatch(item):
            raise PolicyError(f"bad TXT field {item[:40]!r}")
    if found is None:
        raise PolicyError("TXT record without a valid id")
    return found


def parse_policy(text: str) -> tuple[Mode, tuple[str, ...], int]:
    """(mode, mx patterns, max_age) from a policy body (§3.2); PolicyError when it is not a valid STSv1 policy.

    Lines end in LF or CRLF; unknown fields are ignored; of a field given twice (other than ``mx``) the first
    counts. ``mx`` is required unless the mode is ``none``."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        match = _POLICY_LINE.fullmatch(line)
        if match is None:
            raise PolicyError(f"line {number} is not 'key: value'")
        key, value = match.groups()
        if key == "mx":
            mx.append(_mx_pattern(value))
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        raise PolicyError("version is not STSv1")
    mode = fields.get("mode", "")
    if mode not in MODES:
        raise PolicyError(f"bad mode {mode[:20]!r}")
    age = fields.get("max_age", "")
    if not (age.isascii() and age.isdigit() and len(age) <= 10) or int(age) > MAX_AGE_LIMIT:
        raise PolicyError(f"bad max_age {age[:20]!r} (0 to {MAX_AGE_LIMIT})")
    if not mx and mode != "none":
        raise PolicyError("no mx")
    return mode, tuple(mx), int(age)


def _mx_pattern(value: str) -> str:
    """An ``mx`` value, ``[*.]domain``, lower case without a final dot; PolicyError when it is no domain name."""
    name = value.lower().rstrip(".")
    labels = name.split(".")
    rest = labels[1:] if labels[0] == "*" else labels
    if len(rest) < 1 or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in rest):
        raise PolicyError(f"bad mx {value[:80]!r}")
    return name


def mx_matches(pattern: str, host: str) -> bool:
    """§4.1: an exact name, or ``*.domain`` for exactly one more label in front of ``domain`` (not ``domain``
    itself, not two labels). Case-insensitive, final dots ignored."""
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, parent = host.partition(".")
        return bool(first) and bool(dot) and parent == pattern[2:]
    return host == pattern


# -- fetching --------------------------------------------------------------------------------------------------


def verified_context(ca_file: Path | None, *, cn_fallback: bool = False) -> ssl.SSLContext:
    """A client context that verifies chain and host name against the system's CAs plus ``ca_file``'s; cached per
    file version (loading the system store costs milliseconds). A ``ca_file`` that went missing or bad since the
    configuration was checked is logged and left out: the system's CAs still verify, and delivery goes on.

    The host name must be a DNS name in the certificate's subjectAltName (RFC 8461 §4.2, for the MX and the policy
    host alike); OpenSSL's fallback to the subject's CN, for certificates without a DNS SAN, only with
    ``cn_fallback`` (the smarthost, verified as Postfix's "secure" level does)."""
    try:
        stamp = ca_file.stat().st_mtime_ns if ca_file is not None else 0
    except OSError:
        stamp = -1
    key = (str(ca_file or ""), stamp, cn_fallback)
    context = _CONTEXTS.get(key)
    if context is None:
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.hostname_checks_common_name = cn_fallback
        if ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                log.error("queue: [queue] ca_file %s not loaded, only the system's CAs are trusted: %s", ca_file, exc)
        for old in [k for k in _CONTEXTS if k[:2] != key[:2]]:  # another file version: never used again
            del _CONTEXTS[old]
        _CONTEXTS[key] = context
    return context


_CONTEXTS: dict[tuple[str, int, bool], ssl.SSLContext] = {}


async def fetch(
    domain: str,
    resolver: dns.asyncresolver.Resolver,
    context: ssl.SSLContext,
    *,
    port: int = HTTPS_PORT,
    time_limit: float = FETCH_TIMEOUT,
) -> str:
    """The policy text of ``domain`` from its policy host (§3.3); FetchError for anything but a valid answer."""
    host = f"mta-sts.{domain}"
    try:
        addresses = [r.to_text() for r in await relentad_dns.lookup(resolver, host, "A")]
        addresses += [r.to_text() for r in await relentad_dns.lookup(resolver, host, "AAAA")]
    except relentad_dns.DnsTemporaryError as exc:
        raise FetchError(f"DNS: {exc}") from exc
    if not addresses:
        raise FetchError(f"{host} has no address")
    last = ""
    for ip in addresses:
        try:
            async with asyncio.timeout(time_limit):
                return await _get(ip, port, host, context)
        except TimeoutError:
            last = f"{host}[{ip}]: timeout"
        except ssl.SSLError as exc:
            raise FetchError(f"{host}[{ip}]: TLS: {exc}") from exc  # the host answered: no other address
        except OSError as exc:
            last = f"{host}[{ip}]: {exc.strerror or exc}"
    raise FetchError(last)


async def _get(ip: str, port: int, host: str, context: ssl.SSLContext) -> str:
    reader, writer = await asyncio.open_connection(ip, port, ssl=context, server_hostname=host, limit=MAX_HEAD)
    try:
        request = (
            f"GET {WELL_KNOWN} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: relentad\r\nAccept: text/plain\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise FetchError(f"{host}: response header over {MAX_HEAD} bytes") from None
        except asyncio.IncompleteReadError:
            raise FetchError(f"{host}: connection closed before a full response header") from None
        status, headers = _parse_head(host, head)
        if status != 200:
            raise FetchError(f"{host}: HTTP status {status} (redirects are not followed)")
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "text/plain":
            raise FetchError(f"{host}: Content-Type {kind or 'missing'!r}, not text/plain")
        body = await _body(reader, headers, host)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass  # a peer that drops without close_notify: the body is already complete
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError(f"{host}: policy is not UTF-8 text") from None


def _parse_head(host: str, head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise FetchError(f"{host}: not an HTTP/1.x response")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    return int(parts[1]), headers


async def _body(reader: asyncio.StreamReader, headers: dict[str, str], host: str) -> bytes:
    """The response body: chunked, by Content-Length, or up to the end; FetchError over MAX_BODY."""
    too_big = FetchError(f"{host}: policy over {MAX_BODY} bytes")
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size_text = size_line.split(b";")[0].strip()
                if not size_text or len(size_text) > 8 or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
                    raise FetchError(f"{host}: bad chunk size")
                size = int(size_text, 16)
                if size == 0:
                    return body
                if len(body) + size > MAX_BODY:
                    raise too_big
                body += await reader.readexactly(size)
                await reader.readexactly(2)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise FetchError(f"{host}: bad Content-Length")
            if int(length) > MAX_BODY:
                raise too_big
            return await reader.readexactly(int(length))
        body = await reader.read(MAX_BODY + 1)
        while len(body) <= MAX_BODY and (more := await reader.read(MAX_BODY + 1 - len(body))):
            body += more
        if len(body) > MAX_BODY:
            raise too_big
        return body
    except asyncio.IncompleteReadError:
        raise FetchError(f"{host}: connection closed inside the policy") from None
    except asyncio.LimitOverrunError:
        raise FetchError(f"{host}: bad chunked encoding") from None


# -- the cache -------------------------------------------------------------------------------------------------


def cached(conn: sqlite3.Connection, domain: str) -> Policy | None:
    """The cached policy of ``domain``, expired or not; None when there is none (or it no longer parses)."""
    row = conn.execute(
        "SELECT domain, policy_id, policy, fetched, mode, mx, max_age FROM mta_sts_policies WHERE domain = ?",
        (domain,),
    ).fetchone()
    return None if row is None else _policy_of(row)


def cached_all(conn: sqlite3.Connection) -> list[Policy]:
    rows = conn.execute(
        "SELECT domain, policy_id, policy, fetched, mode, mx, max_age FROM mta_sts_policies ORDER BY domain"
    ).fetchall()
    return [policy for policy in map(_policy_of, rows) if policy is not None]


def _policy_of(row: Any) -> Policy | None:
    mode = str(row[4])
    if mode not in MODES:
        return None
    mx = tuple(str(row[5]).split()) if row[5] else ()
    return Policy(str(row[0]), str(row[1]), mode, mx, int(row[6]), str(row[2]), float(row[3]))


def keep(conn: sqlite3.Connection, policy: Policy) -> None:
    """Store ``policy`` as its domain's (replacing the previous one), and drop expired policies: they never apply
    again (a fetch renews them), so the table holds at most the domains mailed within the last max_age."""
    conn.execute("DELETE FROM mta_sts_policies WHERE expires < ?", (policy.fetched,))
    conn.execute(
        """INSERT INTO mta_sts_policies (domain, policy_id, policy, mode, mx, max_age, fetched, expires)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id, policy = excluded.policy,
               mode = excluded.mode, mx = excluded.mx, max_age = excluded.max_age, fetched = excluded.fetched,
               expires = excluded.expires""",
        (
            policy.domain,
            policy.id,
            policy.text,
            policy.mode,
            " ".join(policy.mx),
            policy.max_age,
            policy.fetched,
            policy.expires,
        ),
    )


def forget(conn: sqlite3.Connection, domain: str) -> bool:
    return conn.execute("DELETE FROM mta_sts_policies WHERE domain = ?", (domain,)).rowcount > 0


# -- discovery -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """What discovery came to: the policy to apply (or None) and how (``fetched``, ``cached``, ``none``...)."""

    policy: Policy | None
    how: str
    detail: str = ""
    txt_id: str = ""  # the id DNS published, when it did


async def discover(
    domain: str,
    resolver: dns.asyncresolver.Resolver,
    context: ssl.SSLContext,
    known: Policy | None,
    *,
    port: int = HTTPS_PORT,
    time_limit: float = FETCH_TIMEOUT,
    now: float | None = None,
    paused: Collection[str] = (),
) -> Found:
    """The policy for ``domain`` given the cached one (``known``): no database access, the caller keeps a
    ``fetched`` result. Without a live policy (no or bad TXT, DNS or fetch failing, invalid policy) an unexpired
    cached one still applies (§5.1); a stale one under the same id is fetched again. ``paused``: TXT ids whose
    fetch failed a moment ago, not tried again yet."""
    now = time.time() if now is None else now
    valid = known if known is not None and known.expires > now else None
    try:
        records = await relentad_dns.lookup(resolver, f"_mta-sts.{domain}", "TXT")
        policy_id = txt_id([b"".join(getattr(r, "strings", ())) for r in records])
    except relentad_dns.DnsTemporaryError as exc:
        return _fallback(valid, "dns_failed", str(exc))
    except PolicyError as exc:
        return _fallback(valid, "invalid_txt", str(exc))
    if policy_id is None:
        return _fallback(valid, "no_txt", "")
    if valid is not None and valid.id == policy_id and (policy_id in paused or not valid.stale(now)):
        return Found(valid, "cached")
    if policy_id in paused:
        return _fallback(valid, "fetch_paused", "the last fetch failed moments ago", policy_id)
    try:
        text = await fetch(domain, resolver, context, port=port, time_limit=time_limit)
        mode, mx, max_age = parse_policy(text)
    except FetchError as exc:
        return _fallback(valid, "fetch_failed", str(exc), policy_id)
    except PolicyError as exc:
        return _fallback(valid, "invalid_policy", str(exc), policy_id)
    return Found(Policy(domain, policy_id, mode, mx, max_age, text, now), "fetched", txt_id=policy_id)


def _fallback(valid: Policy | None, how: str, detail: str, policy_id: str = "") -> Found:
    """No live policy: the unexpired cached one, if any (``how`` then ends in ``_cached``)."""
    return Found(valid, how if valid is None else f"{how}_cached", detail, policy_id)


class Policies:
    """The queue runner's MTA-STS policies: discovery with the SQLite cache, and a pause of
    :data:`FAILED_FETCH_PAUSE` after a failed fetch so a domain's many queued messages do not each fetch again."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._failed: dict[tuple[str, str], float] = {}  # (domain, TXT id) -> when its fetch failed

    async def for_domain(
        self,
        domain: str,
        resolver: dns.asyncresolver.Resolver,
        context: ssl.SSLContext,
        *,
        port: int = HTTPS_PORT,
        time_limit: float = FETCH_TIMEOUT,
    ) -> Found:
        """What discovery came to for ``domain``: the policy to apply (``.policy``) and how (for TLS reports)."""
        known = self.store.read(lambda conn: cached(conn, domain))
        now = time.time()
        self._failed = {k: t for k, t in self._failed.items() if now - t < FAILED_FETCH_PAUSE}
        paused = {i for d, i in self._failed if d == domain}
        try:
            found = await discover(
                domain, resolver, context, known, port=port, time_limit=time_limit, now=now, paused=paused
            )
        except Exception:  # a bug here must not stop the domain's mail: treat it as a failed lookup
            log.exception("mta-sts domain=%s: lookup failed unexpectedly", domain)
            found = _fallback(known if known is not None and known.expires > now else None, "error", "see above")
        metrics.mta_sts_lookup(found.how)
        if found.how == "fetched" and found.policy is not None:
            policy = found.policy
            await self.store.write(lambda conn: keep(conn, policy))
            log.info(
                "mta-sts domain=%s id=%s mode=%s mx=%s max_age=%d fetched",
                domain,
                policy.id,
                policy.mode,
                ",".join(policy.mx),
                policy.max_age,
            )
        elif found.how.startswith(("fetch_failed", "invalid")):
            if found.txt_id:
                self._failed[(domain, found.txt_id)] = now
            using = f"using the cached policy id={found.policy.id}" if found.policy else "no policy applied"
            log.warning("mta-sts domain=%s %s: %s; %s", domain, found.how, found.detail, using)
        return found
