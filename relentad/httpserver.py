"""HTTP/1.x for the daemon's small web listeners (``[listen] metrics``, ``https`` and ``http``): reading requests
within limits, writing responses, one connection's request loop.

Invariants:
- Parsing is pure (:func:`parse_request_line`, :func:`parse_fields`) and separate from reading
  (:func:`read_request`). A request that cannot be served raises :class:`HTTPError`, which carries its status; the
  connection loop (:func:`serve`) turns it into the response and closes: never a traceback, never silence.
- Every read is bounded: the head (request line and fields) by :attr:`Limits.head` octets and
  :attr:`Limits.fields` fields, the body by :attr:`Limits.body` octets as announced by Content-Length (a chunked
  body is refused with 411: no client of these endpoints needs one), each request within :attr:`Limits.timeout`,
  a connection to :attr:`Limits.requests` requests (HTTP/1.1 keep-alive; HTTP/1.0 only when it asks).
- Every response goes out in pieces of at most :data:`_PIECE` octets, each taken by the client within
  :attr:`Limits.timeout` (:func:`send`); a client that stops reading is dropped, its slot and the answer's memory
  freed. A response may be streamed (:attr:`Response.stream`): chunked for HTTP/1.1, ended by the close for
  HTTP/1.0; a failure halfway drops the connection.
- Lines may end in CRLF or a bare LF (RFC 9112 §2.2: ``printf … | nc`` sends those). Responses are HTTP/1.1 with
  Date, Content-Length and, when the connection ends, ``Connection: close`` (``keep-alive`` when an HTTP/1.0
  connection is kept); a HEAD response has GET's fields and no content (RFC 9110 §9.3.2). A kept-alive connection
  left idle ends without a response.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import inspect
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

log = logging.getLogger(__name__)

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_TARGET = re.compile(rb"[\x21-\x7e]+")  # visible ASCII: a request-target has no spaces, controls or raw 8-bit
_ABSOLUTE = re.compile(r"^https?://([^/?#]*)(.*)$", re.IGNORECASE)
# uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP literal or a reg-name, no userinfo, no white space
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
_FIELD_VALUE = re.compile(rb"[^\x00-\x08\x0a-\x1f\x7f]*")  # obs-text allowed, controls but HTAB not
_MAX_BLANK_LINES = 8  # empty lines ignored before a request line (RFC 9112 §2.2: at least one)
_PIECE = 64 * 1024  # octets written before waiting for the client to take them


class HTTPError(Exception):
    """A request this server will not serve, with the status that says why (4xx/5xx)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """What one listener accepts from a client."""

    head: int = 8192  # octets of the request line and header fields together
    fields: int = 64  # header fields
    body: int = 0  # octets of content (Content-Length)
    timeout: float = 5.0  # seconds for one request, from waiting for its first line to its last octet
    requests: int = 1  # requests on one connection (1: no keep-alive)


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # as sent
    version: tuple[int, int]
    fields: tuple[tuple[str, str], ...] = ()  # (lower-case name, value) in order
    body: bytes = b""

    def field(self, name: str) -> str | None:
        """The value of header field ``name`` (lower case); several are joined with ", " (RFC 9110 §5.3)."""
        values = [value for key, value in self.fields if key == name]
        return ", ".join(values) if values else None

    @property
    def path(self) -> str:
        """The target's path (the absolute form reduced to it, RFC 9112 §3.2.2), without the query."""
        target = self.target
        absolute = _ABSOLUTE.match(target)
        if absolute is not None:
            target = absolute.group(2) or "/"
        return target.split("?", 1)[0].split("#", 1)[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2].split("#", 1)[0]

    @property
    def host(self) -> str:
        """The host the client asked for, lower case, without port and final dot: from an absolute-form target,
        else the Host field (RFC 9112 §3.2.2); "" when there is none."""
        absolute = _ABSOLUTE.match(self.target)
        authority = absolute.group(1) if absolute is not None else (self.field("host") or "")
        authority = authority.lower()
        if authority.startswith("["):  # an IPv6 literal, with or without a port
            return authority.partition("]")[0] + "]"
        return authority.partition(":")[0].rstrip(".")

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept: HTTP/1.1 unless it says close, HTTP/1.0 when it asks."""
        tokens = {t.strip().lower() for t in (self.field("connection") or "").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Sequence[tuple[str, str]] = field(default_factory=tuple)
    # content made while it is sent (``body`` unused): called once the head is out, never for HEAD
    stream: Callable[[], AsyncGenerator[bytes, None]] | None = None


def text(status: int, message: str, *headers: tuple[str, str]) -> Response:
    """A short plain-text response (errors, refusals): the message and a newline."""
    return Response(status, (message + "\n").encode(), headers=headers)


def redirect(status: int, location: str) -> Response:
    """A redirect (301, 302, 303) to ``location``, which is its text too."""
    return text(status, location, ("Location", location))


def parse_request_line(line: bytes) -> tuple[str, str, tuple[int, int]]:
    """(method, target, version) of a request line without its line end (RFC 9112 §3)."""
    parts = line.split(b" ")
    if len(parts) != 3:  # HTTP/0.9's "GET /path" included
        raise HTTPError(400, "bad request line")
    method, target, version = parts
    matched = _VERSION.fullmatch(version)
    if matched is None or _TOKEN.fullmatch(method) is None or _TARGET.fullmatch(target) is None:
        raise HTTPError(400, "bad request line")
    if matched.group(1) != b"1":
        raise HTTPError(505, "HTTP/1.x only")
    return method.decode(), target.decode(), (1, int(matched.group(2)))


def parse_fields(lines: Sequence[bytes], limits: Limits) -> tuple[tuple[str, str], ...]:
    """Header field lines (without line ends) as (lower-case name, value) pairs (RFC 9112 §5)."""
    if len(lines) > limits.fields:
        raise HTTPError(431, "too many header fields")
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # obs-fold: RFC 9112 §5.2 lets a server reject it with 400
            raise HTTPError(400, "folded header field")
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:  # white space before the colon included (§5.1)
            raise HTTPError(400, "bad header field")
        value = value.strip(b" \t")
        if _FIELD_VALUE.fullmatch(value) is None:
            raise HTTPError(400, "bad header field value")
        fields.append((name.decode().lower(), value.decode("latin-1")))
    return tuple(fields)


def content_length(request: Request) -> int:
    """The body's length (0 without one); 411 for a chunked body, 400 for a bad or ambiguous length."""
    if request.field("transfer-encoding") is not None:
        raise HTTPError(411, "send the body with Content-Length")
    values = [value for name, value in request.fields if name == "content-length"]
    lengths = {part.strip() for value in values for part in value.split(",")}
    if not lengths:
        return 0
    if len(lengths) != 1:
        raise HTTPError(400, "conflicting Content-Length")
    length = lengths.pop()
    if not length.isdigit() or not length.isascii():
        raise HTTPError(400, "bad Content-Length")
    return int(length)


async def _line(reader: asyncio.StreamReader, first: bool) -> bytes | None:
    """One line without its end; None at a clean end of input (before a request begins)."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if first and not exc.partial.strip():
            return None
        raise HTTPError(400, "incomplete request") from None
    except asyncio.LimitOverrunError:  # one line beyond the stream reader's buffer
        raise HTTPError(414 if first else 431, "request line too long" if first else "header too large") from None
    return line.removesuffix(b"\n").removesuffix(b"\r")


async def read_request(
    reader: asyncio.StreamReader,
    limits: Limits,
    writer: asyncio.StreamWriter | None = None,
    started: Callable[[], object] | None = None,
) -> Request | None:
    """The next request on the connection; None when the client closed it between requests. ``writer``, if given,
    gets ``100 Continue`` when the client waits for it before sending the body (RFC 9110 §10.1.1); ``started``, if
    given, is called when the request line has come."""
    line = await _line(reader, first=True)
    blank = 0
    while line == b"":
        blank += 1
        if blank > _MAX_BLANK_LINES:
            raise HTTPError(400, "no request line")
        line = await _line(reader, first=True)
    if line is None:
        return None
    if started is not None:
        started()
    if len(line) > limits.head:
        raise HTTPError(414, "request line too long")
    method, target, version = parse_request_line(line)
    size = len(line) + 2
    lines: list[bytes] = []
    while True:
        field_line = await _line(reader, first=False)
        assert field_line is not None
        if not field_line:
            break
        size += len(field_line) + 2
        lines.append(field_line)
        if size > limits.head:
            raise HTTPError(431, "header too large")
        if len(lines) > limits.fields:
            raise HTTPError(431, "too many header fields")
    request = Request(method, target, version, parse_fields(lines, limits))
    hosts = [value for name, value in request.fields if name == "host"]
    if len(hosts) > 1 or (version >= (1, 1) and not hosts):
        raise HTTPError(400, "a request needs one Host field")  # RFC 9112 §3.2
    authorities = list(hosts)
    if (absolute := _ABSOLUTE.match(target)) is not None:
        authorities.append(absolute.group(1))
    if not all(_AUTHORITY.fullmatch(authority) for authority in authorities):
        raise HTTPError(400, "bad Host")  # RFC 9112 §3.2: a Host field with an invalid value is a 400
    length = content_length(request)
    if length > limits.body:
        raise HTTPError(413, "content too large")
    if length == 0:
        return request
    expect = (request.field("expect") or "").lower()
    if writer is not None and version >= (1, 1) and expect == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise HTTPError(400, "incomplete body") from None
    return Request(method, target, version, request.fields, body)


def render(
    response: Response, *, head_only: bool = False, close: bool = True, keep_alive: bool = False, chunked: bool = False
) -> bytes:
    """The response on the wire; ``head_only`` for HEAD (fields as for GET, no content); ``keep_alive`` says so,
    which an HTTP/1.0 client needs to keep the connection (RFC 9112 §9.3). A streamed response has no length:
    ``chunked`` (HTTP/1.1) or, for HTTP/1.0, the connection's close ends it (RFC 9112 §6.3)."""
    if response.stream is None:
        length = f"Content-Length: {len(response.body)}"
    else:
        length = "Transfer-Encoding: chunked" if chunked else ""
    lines = [
        f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        f"Content-Type: {response.content_type}",
        *([length] if length else []),
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    if close:
        lines.append("Connection: close")
    elif keep_alive:
        lines.append("Connection: keep-alive")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only or response.stream is not None else head + response.body


async def send(writer: asyncio.StreamWriter, data: bytes, patience: float) -> None:
    """Write ``data`` in pieces, each taken by the client within ``patience`` seconds (TimeoutError when it is
    not: a client that stops reading must not hold its connection and the answer's memory for good)."""
    for start in range(0, max(len(data), 1), _PIECE):
        writer.write(data[start : start + _PIECE])
        async with asyncio.timeout(patience):
            await writer.drain()


async def send_stream(writer: asyncio.StreamWriter, response: Response, *, chunked: bool, patience: float) -> bool:
    """Send a streamed response's content (after its head) with :func:`send`; False when it could not be
    finished — a failure while making it is logged and the connection must be dropped, so the client sees a
    cut-off response rather than a complete-looking wrong one."""
    assert response.stream is not None
    try:
        async with contextlib.aclosing(response.stream()) as chunks:
            async for chunk in chunks:
                if chunk:
                    await send(writer, b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk, patience)
    except OSError:  # TimeoutError included
        return False
    except Exception:
        log.exception("http: a streamed response failed")
        return False
    if chunked:
        writer.write(b"0\r\n\r\n")
    return True


Handler = Callable[[Request], Response | Awaitable[Response]]


async def serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handle: Handler,
    limits: Limits,
    on_error: Callable[[HTTPError], None] | None = None,
) -> None:
    """Answer the requests of one connection with ``handle`` until the client or a limit ends it, then close.
    ``on_error`` sees each request refused before it reached ``handle`` (for logs and metrics). A kept-alive
    connection idle for :attr:`Limits.timeout` is closed without a word (RFC 9112 §9.5): a 408 would cross the
    client's next request and be read as its answer."""
    try:
        for count in range(1, limits.requests + 1):
            begun = count == 1

            def start() -> None:
                nonlocal begun
                begun = True

            try:
                async with asyncio.timeout(limits.timeout):
                    request = await read_request(reader, limits, writer, start)
            except TimeoutError:
                if not begun:
                    return
                request, response = None, text(408, "request timeout")
            except HTTPError as exc:
                request, response = None, text(exc.status, exc.reason)
                if on_error is not None:
                    on_error(exc)
            else:
                if request is None:
                    return
                try:
                    answer = handle(request)
                    response = await answer if inspect.isawaitable(answer) else answer
                except Exception:
                    log.exception("http: %s %s failed", request.method, request.path)
                    response = text(500, "internal error")
            keep = request is not None and request.keep_alive and count < limits.requests and response.status < 500
            head_only = request is not None and request.method == "HEAD"
            http10 = request is not None and request.version < (1, 1)
            streaming = response.stream is not None and not head_only
            keep = keep and not (streaming and http10)
            wire = render(response, head_only=head_only, close=not keep, keep_alive=keep and http10, chunked=not http10)
            try:
                await send(writer, wire, limits.timeout)
            except TimeoutError:
                writer.transport.abort()  # a close would wait for the client to take what is buffered
                return
            if streaming and not await send_stream(writer, response, chunked=not http10, patience=limits.timeout):
                writer.transport.abort()
                return
            if not keep:
                return
    except OSError:  # the client went away (ConnectionError), a TLS error on the way
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(limits.timeout):  # a TLS peer that never answers close_notify
                await writer.wait_closed()
