"""The policy fetch's HTTP handling (RFC 8461 §3.3) against a TLS server on loopback: bodies by length, chunked
and to the end of the connection, and the limits (status, type, size, header) that make a fetch fail."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from relentad.queue import mtasts
from relentad.queue.mtasts import FetchError
from tests.support.pki import TestCA

HOST = "mta-sts.c.test"
Fetch = Callable[..., Awaitable[str]]
POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.c.test\r\nmax_age: 60\r\n"


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


async def _serve(ca: TestCA, response: bytes, names: tuple[str, ...] = (HOST,), san: bool = True) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0, ssl=ca.server_context(*names, san=san))


@pytest.fixture
async def fetcher(ca: TestCA) -> AsyncIterator[Fetch]:
    servers: list[asyncio.Server] = []

    async def fetch(response: bytes, names: tuple[str, ...] = (HOST,), san: bool = True) -> str:
        server = await _serve(ca, response, names, san)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        context = mtasts.verified_context(ca.pem)
        async with asyncio.timeout(5):
            return await mtasts._get("127.0.0.1", port, HOST, context)

    yield fetch
    for server in servers:
        server.close()


def _response(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode() + body


async def test_body_by_length_chunked_and_to_the_end(fetcher: Fetch) -> None:
    plain = "Content-Type: text/plain; charset=utf-8"
    assert await fetcher(_response(POLICY, plain, f"Content-Length: {len(POLICY)}")) == POLICY.decode()
    chunked = b"10\r\n" + POLICY[:16] + b"\r\n" + f"{len(POLICY) - 16:x}".encode() + b"\r\n" + POLICY[16:]
    chunked += b"\r\n0\r\n\r\n"
    assert await fetcher(_response(chunked, "content-type: TEXT/PLAIN", "Transfer-Encoding: chunked")) == (
        POLICY.decode()
    )
    assert await fetcher(_response(POLICY, plain)) == POLICY.decode()


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (_response(POLICY, "Content-Type: text/plain", status="302 Found"), "HTTP status 302"),
        (_response(POLICY, "Content-Type: text/plain", status="404 Not Found"), "HTTP status 404"),
        (_response(POLICY, "Content-Type: text/html"), "not text/plain"),
        (_response(POLICY), "Content-Type 'missing'"),
        (_response(b"", "Content-Type: text/plain", "Content-Length: 70000"), "over 65536 bytes"),
        (_response(b"x" * 70_000, "Content-Type: text/plain"), "over 65536 bytes"),
        (_response(b"10001\r\n", "Content-Type: text/plain", "Transfer-Encoding: chunked"), "over 65536 bytes"),
        (_response(b"zz\r\n", "Content-Type: text/plain", "Transfer-Encoding: chunked"), "bad chunk size"),
        (_response(b"abc", "Content-Type: text/plain", "Content-Length: 10"), "closed inside the policy"),
        (_response(b"\xff\xfe", "Content-Type: text/plain"), "not UTF-8"),
        (_response(b"", "X-Long: " + "a" * 20_000), "response header over"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x response"),
    ],
)
async def test_unusable_answers_fail(fetcher: Fetch, response: bytes, error: str) -> None:
    with pytest.raises(FetchError, match=error):
        await fetcher(response)


async def test_certificate_must_name_the_policy_host(fetcher: Fetch) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await fetcher(_response(POLICY, "Content-Type: text/plain"), names=("www.c.test",))


async def test_the_policy_hosts_name_must_be_in_the_subject_alt_name(fetcher: Fetch) -> None:
    """RFC 8461 §4.2 (and RFC 6125 §6.4.4 once a SAN is required): the subject's CN alone does not count."""
    with pytest.raises(ssl.SSLCertVerificationError):
        await fetcher(_response(POLICY, "Content-Type: text/plain"), san=False)
