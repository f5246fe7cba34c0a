"""The shared HTTP/1.x request reader: each malformed or oversized request raises the status it must get."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from relentad import httpserver
from relentad.httpserver import HTTPError, Limits, Request

LIMITS = Limits(head=1024, fields=8, body=64, timeout=5.0, requests=10)


async def read(data: bytes, limits: Limits = LIMITS) -> Request | None:
    reader = asyncio.StreamReader(limit=2048)
    reader.feed_data(data)
    reader.feed_eof()
    return await httpserver.read_request(reader, limits)


async def status_of(data: bytes, limits: Limits = LIMITS) -> int:
    with pytest.raises(HTTPError) as caught:
        await read(data, limits)
    return caught.value.status


async def test_a_request_with_fields_and_body() -> None:
    request = await read(b"\r\nPOST /a/B?x=1 HTTP/1.1\r\nHost: Mail.Example.TEST.:8443\nContent-Length: 5\r\n\r\nhello")
    assert request is not None
    assert (request.method, request.path, request.query, request.version) == ("POST", "/a/B", "x=1", (1, 1))
    assert request.host == "mail.example.test" and request.body == b"hello" and request.keep_alive


async def test_the_absolute_form_names_the_host() -> None:
    request = await read(b"GET https://Autoconfig.a.test/mail/config-v1.1.xml HTTP/1.1\r\nHost: other\r\n\r\n")
    assert request is not None and request.host == "autoconfig.a.test" and request.path == "/mail/config-v1.1.xml"
    ipv6 = await read(b"GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n")
    assert ipv6 is not None and ipv6.host == "[::1]"


async def test_keep_alive_by_version_and_connection_field() -> None:
    for head, wanted in (
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False),
    ):
        request = await read(head)
        assert request is not None and request.keep_alive is wanted


async def test_end_of_input_between_requests_is_none() -> None:
    assert await read(b"") is None
    assert await read(b"\r\n") is None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /\r\n\r\n", 400),  # HTTP/0.9
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS ClientHello on the plain port
        (b"GET / FOO/1.0\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host (RFC 9112 §3.2)
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),  # no userinfo in Host (RFC 9110 §7.2): 400 (RFC 9112 §3.2)
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400),
        (b"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),  # white space before the colon
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Broken\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a", 400),  # the head never ends
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab", 400),  # the body never ends
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n" + b"x" * 65, 413),
        (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),  # beyond the reader's buffer
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 1100 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 3000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: 1\r\n" * 9 + b"\r\n", 431),
        (b"\r\n" * 20 + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ],
)
async def test_bad_requests_get_their_status(data: bytes, status: int) -> None:
    assert await status_of(data) == status


async def test_continue_is_sent_when_the_client_waits_for_it() -> None:
    written: list[bytes] = []

    class Writer:
        def write(self, data: bytes) -> None:
            written.append(data)

    reader = asyncio.StreamReader()
    reader.feed_data(b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok")
    request = await httpserver.read_request(reader, LIMITS, Writer())  # type: ignore[arg-type]
    assert request is not None and request.body == b"ok"
    assert written == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_render_head_has_the_fields_of_get_and_no_content() -> None:
    response = httpserver.text(405, "no", ("Allow", "GET, HEAD"))
    full = httpserver.render(response)
    head = httpserver.render(response, head_only=True, close=False)
    assert full.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n") and full.endswith(b"\r\n\r\nno\n")
    assert b"\r\nAllow: GET, HEAD\r\n" in full and b"\r\nContent-Length: 3\r\n" in head
    assert b"Connection: close" in full and b"Connection: close" not in head and head.endswith(b"\r\n\r\n")


async def exchange_with(limits: Limits, data: bytes) -> bytes:
    """``data`` to a real loopback server running :func:`httpserver.serve`; what it sent until it closed."""

    def handle(request: Request) -> httpserver.Response:
        if request.path == "/boom":
            raise RuntimeError("a bug")
        if request.path.startswith("/stream"):

            async def chunks() -> AsyncGenerator[bytes, None]:
                yield b"ab"
                yield b""
                if request.path == "/stream-fails":
                    raise RuntimeError("a bug halfway")
                yield b"cdefghijklmnopq"

            return httpserver.Response(200, b"", "text/plain", (), chunks)
        return httpserver.text(200, f"{request.method} {request.path}")

    server = await asyncio.start_server(
        lambda r, w: httpserver.serve(r, w, handle, limits), "127.0.0.1", 0, reuse_address=True
    )
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer
    finally:
        server.close()


async def test_a_slow_client_gets_408_and_the_connection_ends() -> None:
    answer = await exchange_with(Limits(timeout=0.2, requests=5), b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: 1")
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"\r\nConnection: close\r\n" in answer


async def test_keep_alive_serves_pipelined_requests_up_to_the_limit() -> None:
    request = b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n"
    answer = await exchange_with(Limits(requests=2), b"".join(request % i for i in range(3)))
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and b"GET /1\n" in answer and b"GET /2" not in answer
    first, second = answer.split(b"HTTP/1.1 200 OK")[1:]
    assert b"Connection: close" not in first and b"Connection: close" in second


async def test_a_failing_handler_is_500_and_the_connection_ends(caplog: pytest.LogCaptureFixture) -> None:
    answer = await exchange_with(Limits(requests=5), b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n")
    assert answer.startswith(b"HTTP/1.1 500 ") and answer.count(b"HTTP/1.1") == 1
    assert "http: GET /boom failed" in caplog.text


async def test_a_kept_alive_connection_left_idle_ends_without_a_408() -> None:
    """RFC 9112 §9.5: a 408 sent into an idle connection would be read as the answer to the client's next request."""
    answer = await exchange_with(Limits(timeout=0.2, requests=5), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.count(b"HTTP/1.1 ") == 1


async def test_an_http10_connection_kept_alive_says_so() -> None:
    """An HTTP/1.0 client keeps the connection only when the response says keep-alive (RFC 9112 §9.3); else it waits
    for the close."""
    data = b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"
    first, second = (await exchange_with(Limits(requests=5), data)).split(b"HTTP/1.1 200 OK")[1:]
    assert b"\r\nConnection: keep-alive\r\n" in first and b"GET /a\n" in first
    assert b"\r\nConnection: close\r\n" in second and b"GET /b\n" in second


async def test_a_streamed_response_is_chunked_and_the_connection_kept() -> None:
    answer = await exchange_with(Limits(requests=5), b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\n\r\n")
    first, second = answer.split(b"HTTP/1.1 ")[1:3]
    assert b"\r\nTransfer-Encoding: chunked\r\n" in first and b"Content-Length" not in first
    assert first.endswith(b"\r\n\r\n2\r\nab\r\nf\r\ncdefghijklmnopq\r\n0\r\n\r\n")
    assert second.startswith(b"400 ")  # the next request on the kept connection was read (and had no Host)


async def test_a_streamed_response_to_http10_ends_with_the_close_and_head_gets_no_content() -> None:
    answer = await exchange_with(Limits(requests=5), b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"chunked" not in answer and b"Connection: close" in answer and answer.endswith(b"\r\n\r\nabcdefghijklmnopq")
    head = await exchange_with(Limits(requests=5), b"HEAD /stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")


async def test_a_stream_failing_halfway_cuts_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    """No final chunk: the client sees an incomplete response, never a complete-looking wrong one."""
    answer = await exchange_with(Limits(requests=5), b"GET /stream-fails HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n")
    assert answer.endswith(b"\r\n\r\n2\r\nab\r\n") and answer.count(b"HTTP/1.1") == 1
    assert "a streamed response failed" in caplog.text


async def test_a_client_that_stops_reading_a_large_answer_is_dropped() -> None:
    """A Content-Length answer was drained without a deadline: a client that asked for a large one (a whole address
    book) and never read it held its connection, its slot and the answer's memory for good."""
    ended = asyncio.Event()

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = httpserver.Response(200, b"x" * (32 << 20))  # more than the loopback socket buffers hold
            await httpserver.serve(reader, writer, lambda request: answer, Limits(timeout=0.2))
        finally:
            ended.set()

    server = await asyncio.start_server(session, "127.0.0.1", 0, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # and nothing is read
        await asyncio.wait_for(ended.wait(), 10)
        writer.close()
    finally:
        server.close()
