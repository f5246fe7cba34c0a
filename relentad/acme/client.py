"""A small blocking ACME client (RFC 8555): account, order, authorizations, finalize, download. Run it on a
worker thread, never on the event loop.

The challenge answers themselves are not here: ``issue`` calls ``present(kind, name, token, key_authorization)``
and ``cleanup`` for each authorization, and the daemon's HTTP and HTTPS listeners answer the CA (see
:mod:`relentad.acme.challenges`).

Invariants: every POST is JWS-signed with a fresh nonce (one ``badNonce`` retry, RFC 8555 §6.5); every request
has a timeout and its answer a deadline (:data:`RESPONSE_DEADLINE`) and a size limit (:data:`MAX_RESPONSE`); the
polls of one order share a deadline (:data:`POLL_DEADLINE`) and honour Retry-After within bounds; a redirect is
followed only to an https URL; any failure is an :class:`AcmeError` with one line for the log (the CA's problem
type and detail when it sent one).
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from . import jws

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0
"""Seconds any one read or connect may wait."""
RESPONSE_DEADLINE = 60.0
"""Seconds an answer's body may take in all (a server trickling octets does not hold the attempt)."""
POLL_DEADLINE = 300.0
"""Seconds an order's authorizations, readiness and issuance may take in all before the attempt is given up
(retried later); `relentad acme renew` waits a little longer."""
IN_PROGRESS = ("pending", "ready", "processing")
"""The statuses of an order or authorization worth polling again (RFC 8555 §7.1.6); any other one is final."""
MAX_RESPONSE = 1 << 20
"""Octets of an answer (a certificate chain is a few KiB); more is an error, not a truncated chain."""
USER_AGENT = "relentad-acme"


class AcmeError(Exception):
    """An ACME attempt that failed; the message is one line. ``failed_names``: the names whose challenge the CA
    refused (the others may be ordered again without them)."""

    def __init__(self, message: str, failed_names: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.failed_names = list(failed_names)


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (every ACME resource is one); AcmeError otherwise."""
        try:
            value = json.loads(self.body)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise AcmeError(f"the ACME server sent no JSON object (HTTP {self.status})")
        return value


def field_of(resource: dict[str, Any], key: str, what: str) -> str:
    """A URL or string member the protocol needs; AcmeError naming it when the server left it out."""
    value = resource.get(key)
    if not isinstance(value, str) or not value:
        raise AcmeError(f"the ACME server's {what} has no {key}")
    return value


def problem_text(body: bytes, status: int) -> str:
    """One line from an RFC 7807 problem document (type without its namespace, detail, subproblems)."""
    try:
        problem = json.loads(body)
    except ValueError:
        return f"HTTP {status}"
    if not isinstance(problem, dict):
        return f"HTTP {status}"
    kind = str(problem.get("type", "")).removeprefix("urn:ietf:params:acme:error:")
    text = f"{kind}: {problem.get('detail', '')}".strip(": ") or f"HTTP {status}"
    for sub in _dicts(problem.get("subproblems")):
        text += f"; {_identifier(sub)}: {sub.get('detail', '')}"
    return " ".join(text.split())[:500]


def retry_after(headers: dict[str, str], default: float) -> float:
    """Seconds the server asked us to wait (seconds or an HTTP date), within [0.5, 30]; else ``default``."""
    value = headers.get("retry-after", "")
    seconds = default
    if value.isdigit():
        seconds = float(value)
    elif value:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            pass
    return min(max(seconds, 0.5), 30.0)


def csr_der(key: jws.AccountKey, names: Sequence[str]) -> bytes:
    """A CSR for ``names`` (the first also the CN, if short enough for it), signed by the certificate key."""
    builder = x509.CertificateSigningRequestBuilder()
    if len(names[0]) <= 64:
        builder = builder.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


# present(kind, name, token, key_authorization) and cleanup(kind, name, token)
Present = Callable[[str, str, str, str], None]
Cleanup = Callable[[str, str, str], None]


class Client:
    """One ACME server and account key; not thread-safe (one attempt at a time)."""

    def __init__(
        self,
        directory_url: str,
        account_key: jws.AccountKey,
        ca_file: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.directory_url = directory_url
        self.key = account_key
        self.context = ssl.create_default_context(cafile=ca_file)
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.context), _HttpsRedirects)
        self.sleep = sleep
        self.directory: dict[str, Any] = {}
        self.nonce: str | None = None
        self.kid: str | None = None
        self.deadline = 0.0  # of the current order's polls

    # -- transport -------------------------------------------------------------------------------------------

    def _http(self, method: str, url: str, body: bytes | None = None, accept: str = "application/json") -> Response:
        headers = {"User-Agent": USER_AGENT, "Accept": accept}
        if body is not None:
            headers["Content-Type"] = "application/jose+json"
        if not isinstance(url, str) or not url.startswith("https://"):  # URLs come from the server: HTTPS only
            raise AcmeError(f"the ACME server named a URL that is not https: {str(url)[:100]!r}")
        req = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310  # https only
        try:
            with self.opener.open(req, timeout=REQUEST_TIMEOUT) as answer:
                response = Response(answer.status, _headers(answer.headers), _read(answer, url))
        except urllib.error.HTTPError as exc:
            response = Response(exc.code, _headers(exc.headers), _read(exc, url))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AcmeError(f"cannot reach the ACME server {url}: {reason}") from None
        except http.client.HTTPException as exc:  # a status line or headers that are not HTTP
            raise AcmeError(f"the ACME server {url} answered no valid HTTP ({type(exc).__name__})") from None
        if nonce := response.headers.get("replay-nonce"):
            self.nonce = nonce
        return response

    def get_directory(self) -> dict[str, Any]:
        if not self.directory:
            response = self._http("GET", self.directory_url)
            if response.status != 200:
                raise AcmeError(f"ACME directory {self.directory_url}: {problem_text(response.body, response.status)}")
            directory = response.json()
            if not all(isinstance(directory.get(k), str) for k in ("newNonce", "newAccount", "newOrder")):
                raise AcmeError(f"{self.directory_url} is not an ACME directory")
            self.directory = directory
        return self.directory

    def _new_nonce(self) -> str:
        response = self._http("HEAD", self.get_directory()["newNonce"])
        if not self.nonce:
            raise AcmeError(f"the ACME server gave no nonce (HTTP {response.status})")
        return self.nonce

    def post(self, url: str, payload: Any, accept: str = "application/json", use_jwk: bool = False) -> Response:
        """A signed POST (``payload`` None: POST-as-GET); AcmeError on a problem document, after one retry on
        badNonce."""
        for attempt in range(2):
            nonce = self.nonce or self._new_nonce()
            self.nonce = None
            body = jws.request(self.key, url, nonce, payload, kid=None if use_jwk else self.kid)
            response = self._http("POST", url, body, accept)
            if response.status < 400:
                return response
            text = problem_text(response.body, response.status)
            if attempt == 0 and text.startswith("badNonce"):
                continue
            raise AcmeError(text)
        raise AssertionError("unreachable")

    # -- protocol --------------------------------------------------------------------------------------------

    def register(self, email: str) -> str:
        """Find or create the account of our key (RFC 8555 §7.3; an existing key gets 200 and its URL)."""
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if email:
            payload["contact"] = [f"mailto:{email}"]
        response = self.post(self.get_directory()["newAccount"], payload, use_jwk=True)
        kid = response.headers.get("location")
        if not kid:
            raise AcmeError("the ACME server gave no account URL")
        self.kid = kid
        return kid

    def issue(
        self, names: Sequence[str], cert_key: jws.AccountKey, kinds: Sequence[str], present: Present, cleanup: Cleanup
    ) -> str:
        """Order a certificate for ``names``, prove each name with the first of ``kinds`` its authorization offers,
        finalize with a CSR signed by ``cert_key``; the PEM chain."""
        response = self.post(
            self.get_directory()["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in names]}
        )
        self.deadline = time.monotonic() + POLL_DEADLINE
        order_url = response.headers.get("location", "")
        order = response.json()
        authorizations = order.get("authorizations")
        if not isinstance(authorizations, list) or not authorizations:
            raise AcmeError("the ACME server's order has no authorizations")
        self._authorize([str(u) for u in authorizations], kinds, present, cleanup)
        order = self._poll(order_url, order, ("ready", "valid"), "order", fetch=True)
        if order["status"] == "ready":
            finalize = field_of(order, "finalize", "order")
            response = self.post(finalize, {"csr": jws.b64url(csr_der(cert_key, names))})
            order = self._poll(order_url, response.json(), ("valid",), "order")
        certificate_url = field_of(order, "certificate", "valid order")
        pem = self.post(certificate_url, None, accept="application/pem-certificate-chain").body
        if b"-----BEGIN CERTIFICATE-----" not in pem:
            raise AcmeError("the ACME server sent no PEM certificate chain")
        return pem.decode("ascii", "replace")

    def _authorize(self, urls: Sequence[str], kinds: Sequence[str], present: Present, cleanup: Cleanup) -> None:
        """Prove every pending authorization: all challenges are set up and answered first, then polled together
        (one validation round for all names, not one per name)."""
        pending: list[tuple[str, str, str, str, str]] = []  # authz URL, name, kind, token, challenge URL
        try:
            for url in urls:
                authz = self.post(url, None).json()
                name = _identifier(authz)
                if authz.get("status") == "valid":
                    continue
                if authz.get("status") != "pending":
                    raise AcmeError(f"authorization for {name} is {authz.get('status')}")
                offered = {c.get("type"): c for c in _dicts(authz.get("challenges"))}
                kind = next((k for k in kinds if k in offered), None)
                if kind is None:
                    shown = ", ".join(map(str, offered)) or "no challenge"
                    raise AcmeError(f"{name}: the CA offers {shown}, none of {', '.join(kinds)}")
                token = str(offered[kind].get("token", ""))
                if not token or not all(c.isalnum() or c in "-_" for c in token):
                    raise AcmeError(f"{name}: the CA sent a malformed {kind} token")
                present(kind, name, token, jws.key_authorization(token, self.key))
                pending.append((url, name, kind, token, field_of(offered[kind], "url", f"{kind} challenge")))
            for _, _, _, _, challenge_url in pending:
                self.post(challenge_url, {})
            failed: list[tuple[str, str]] = []  # every name's outcome, so that one bad name does not hide others
            for url, name, kind, _, _ in pending:
                authz = self._poll(url, {}, ("valid", "invalid"), f"authorization for {name}", fetch=True)
                if authz["status"] != "valid":
                    errors = [c.get("error") for c in _dicts(authz.get("challenges")) if c.get("error")]
                    detail = problem_text(json.dumps(errors[0]).encode(), 400) if errors else "invalid"
                    failed.append((name, f"{name}: {kind} failed: {detail}"))
            if failed:
                raise AcmeError("; ".join(text for _, text in failed), [name for name, _ in failed])
        finally:
            for _, name, kind, token, _ in pending:
                cleanup(kind, name, token)

    def _poll(
        self, url: str, current: dict[str, Any], done: Sequence[str], what: str, fetch: bool = False
    ) -> dict[str, Any]:
        """POST-as-GET ``url`` (at once with ``fetch``, else after a wait) until its status is one of ``done``;
        AcmeError when it leaves :data:`IN_PROGRESS` otherwise (invalid, unless ``done`` has it; deactivated,
        expired, revoked) or stays in progress past the order's deadline."""
        wait, polls = 0.5, 0
        while True:
            if fetch:
                response = self.post(url, None)
                polls += 1
                current, wait = response.json(), retry_after(response.headers, min(0.25 * 2**polls, 10.0))
            status = current.get("status")
            if status in done:
                return current
            if status not in IN_PROGRESS:  # invalid, or an authorization deactivated, expired or revoked
                raise AcmeError(
                    f"{what} is {status or 'without status'}: "
                    f"{problem_text(json.dumps(current.get('error') or {}).encode(), 400)}"
                )
            if time.monotonic() > self.deadline:
                raise AcmeError(f"{what} still {status} after {POLL_DEADLINE:.0f} s")
            self.sleep(wait)
            fetch = True


class _HttpsRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to an https URL: urllib's default would also follow one to plain http."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if not newurl.startswith("https://"):
            raise AcmeError(f"the ACME server redirected to a URL that is not https: {newurl[:100]!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _read(answer: Any, url: str) -> bytes:
    """The body of an answer, within :data:`MAX_RESPONSE` octets and :data:`RESPONSE_DEADLINE` seconds."""
    deadline = time.monotonic() + RESPONSE_DEADLINE
    body = bytearray()
    while chunk := answer.read1(65536):  # one read of the socket at a time: the deadline is checked between
        body += chunk
        if len(body) > MAX_RESPONSE:
            raise AcmeError(f"the ACME server's answer from {url} is larger than {MAX_RESPONSE >> 10} KiB")
        if time.monotonic() > deadline:
            raise AcmeError(f"the ACME server's answer from {url} took longer than {RESPONSE_DEADLINE:.0f} s")
    if getattr(answer, "length", None):  # octets of its Content-Length still missing: a chain without its end
        raise AcmeError(f"the ACME server's answer from {url} was cut short")
    return bytes(body)


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects in a JSON list from the server (anything else in it, or no list, is nothing)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _identifier(resource: dict[str, Any]) -> str:
    """The name of an authorization or subproblem (its ``identifier.value``), "" when it has none."""
    identifier = resource.get("identifier")
    return str(identifier.get("value", "")) if isinstance(identifier, dict) else ""


def _headers(message: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in (message.items() if message is not None else [])}
