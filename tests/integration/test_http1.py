"""The hot-path HTTP/1.1 transport against real servers on 127.0.0.1: the simulator (aiohttp's
server), a raw socket server that answers what each test scripts (chunks, gzip, a close for
an end, interim 1xx, broken and silent peers), and a TLS server with a certificate of its own."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import shutil
import ssl
import subprocess
from asyncio import StreamWriter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from tests.helpers import serving
from workers.client import STAGE_HEADER, AiohttpTransport
from workers.errors import CallTimeout, RateLimited, TransportError
from workers.http1 import Http1Transport
from workers.sim.app import create_app
from workers.sim.config import SimConfig

BODY = b'{"model":"sim-small","messages":[{"role":"user","content":"Is it fair?"}]}'
COMPLETION = (
    b'{"id":"chatcmpl-9","object":"chat.completion","model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"yes"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
)


# --- a raw server: each connection's requests answered by the test's script -------------------

#: (the request's number from 1, the connection's reader and writer) → None; may write
#: anything, close, or hang
Answer = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                await self.answer(len(self.requests), reader, writer)
                if writer.is_closing():
                    return
        except ConnectionError:
            return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def raw_server(
    answer: Answer, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[RawServer, str]]:
    server = RawServer(answer)
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    try:
        yield server, f"{scheme}://127.0.0.1:{port}/v1"
    finally:
        listening.close()
        await listening.wait_closed()


def response(
    body: bytes = COMPLETION, status: str = "200 OK", headers: tuple[str, ...] = ()
) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def replies(*data: bytes) -> Answer:
    async def answer(number: int, reader: asyncio.StreamReader, writer: StreamWriter) -> None:
        for part in data:
            writer.write(part)
        await writer.drain()

    return answer


def transport(base_url: str, timeout_s: float = 30.0, **kw: ssl.SSLContext) -> Http1Transport:
    return Http1Transport(base_url, "sk-test", 4, timeout_s, **kw)


# --- against the simulator ---------------------------------------------------------------------


def _without_id(body: bytes) -> dict[str, object]:
    completion: dict[str, object] = msgspec.json.decode(body)
    completion.pop("id")
    completion.pop("created", None)
    return completion


async def test_the_same_results_as_the_aiohttp_transport() -> None:
    config = SimConfig(rpm=1_000_000)
    async with serving(create_app(config)) as url:
        ours, theirs = transport(url), AiohttpTransport(url, "sk-test", 4, 30.0)
        try:
            for stage in ("answer", "critique"):
                a = await ours.call(BODY, stage)
                b = await theirs.call(BODY, stage)
                assert (a.status_code, a.prompt_tokens, a.completion_tokens) == (
                    b.status_code,
                    b.prompt_tokens,
                    b.completion_tokens,
                )
                assert _without_id(a.body) == _without_id(b.body)
                assert a.ratelimit is not None
                assert b.ratelimit is not None
                assert a.ratelimit.limit_requests == b.ratelimit.limit_requests
                assert a.request_id
                assert a.request_id != b.request_id
        finally:
            await ours.close()
            await theirs.close()


async def test_a_429_is_rate_limited_with_its_retry_after() -> None:
    answer = replies(response(b'{"error":{"message":"slow"}}', "429 Too Many", ("Retry-After: 7",)))
    async with raw_server(answer) as (_, url):
        client = transport(url)
        with pytest.raises(RateLimited) as info:
            await client.call(BODY, "answer")
        assert info.value.retry_after_s == 7.0
        await client.close()


# --- the request on the wire ---------------------------------------------------------------------


async def test_the_request_names_the_host_the_key_the_stage_and_its_length() -> None:
    async with raw_server(replies(response())) as (server, url):
        client = transport(url)
        result = await client.call(BODY, "revise")
        await client.close()
    assert result.body == COMPLETION
    assert result.request_id == "chatcmpl-9"
    [(head, body)] = server.requests
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert f"Host: 127.0.0.1:{port}" in lines
    assert "Authorization: Bearer sk-test" in lines
    assert f"{STAGE_HEADER}: revise" in lines
    assert f"Content-Length: {len(BODY)}" in lines
    assert body == BODY


def test_line_breaks_in_a_header_value_are_refused() -> None:
    with pytest.raises(ValueError, match="API key"):
        Http1Transport("http://127.0.0.1:1/v1", "sk-a\r\nX-Evil: 1", 4, 30.0)
    with pytest.raises(ValueError, match="http"):
        Http1Transport("ftp://127.0.0.1/v1", "sk", 4, 30.0)


async def test_a_stage_name_with_a_line_break_is_refused() -> None:
    async with raw_server(replies(response())) as (server, url):
        client = transport(url)
        with pytest.raises(ValueError, match="stage"):
            await client.call(BODY, "a\r\nX-Evil: 1")
        await client.close()
    assert server.requests == []


# --- bodies however they are framed ----------------------------------------------------------


async def until_closed(reader: asyncio.StreamReader) -> None:
    """Wait until the client closes its end (what it sent is already read)."""
    assert await reader.read() == b""


async def test_a_chunked_body_is_joined() -> None:
    chunks = [COMPLETION[:10], COMPLETION[10:50], COMPLETION[50:]]
    framed = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    async def answer(number: int, reader: asyncio.StreamReader, writer: StreamWriter) -> None:
        writer.write(head)  # the head first, then the chunks as they come
        await writer.drain()
        for part in framed[:30], framed[30:]:
            writer.write(part)
            await writer.drain()

    async with raw_server(answer) as (server, url):
        client = transport(url)
        assert (await client.call(BODY, "answer")).body == COMPLETION
        assert (await client.call(BODY, "answer")).body == COMPLETION  # the same connection
        await client.close()
    assert server.connections == 1


async def test_a_gzip_body_is_inflated() -> None:
    packed = gzip.compress(COMPLETION)
    answer = replies(response(packed, headers=("Content-Encoding: gzip",)))
    async with raw_server(answer) as (server, url):
        client = transport(url)
        assert (await client.call(BODY, "answer")).body == COMPLETION
        await client.close()
    assert b"Accept-Encoding: gzip, deflate" in server.requests[0][0]


async def test_a_body_without_length_ends_at_the_close() -> None:
    async def answer(number: int, reader: asyncio.StreamReader, writer: StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + COMPLETION)
        await writer.drain()
        writer.close()

    async with raw_server(answer) as (server, url):
        client = transport(url)
        assert (await client.call(BODY, "answer")).body == COMPLETION
        assert (await client.call(BODY, "answer")).body == COMPLETION
        await client.close()
    assert server.connections == 2  # not kept: the server closed it


async def test_an_interim_response_is_skipped() -> None:
    answer = replies(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n", response())
    async with raw_server(answer) as (_, url):
        client = transport(url)
        assert (await client.call(BODY, "answer")).body == COMPLETION
        await client.close()


async def test_the_first_of_repeated_headers_and_any_case_of_a_name() -> None:
    headers = ("X-REQUEST-ID: req-first", "x-request-id: req-second")
    body = COMPLETION.replace(b'"chatcmpl-9"', b'"other"')
    async with raw_server(replies(response(body, headers=headers))) as (_, url):
        client = transport(url)
        assert (await client.call(BODY, "answer")).request_id == "req-first"
        await client.close()


# --- connections: kept, closed, broken -------------------------------------------------------


async def test_connections_are_kept_alive_and_closed_when_the_server_says_so() -> None:
    async with raw_server(replies(response())) as (server, url):
        client = transport(url)
        for _ in range(3):
            await client.call(BODY, "answer")
        assert server.connections == 1
        await client.close()
    async with raw_server(replies(response(headers=("Connection: close",)))) as (server, url):
        client = transport(url)
        for _ in range(3):
            await client.call(BODY, "answer")
        assert server.connections == 3
        await client.close()


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async def answer(number: int, reader: asyncio.StreamReader, writer: StreamWriter) -> None:
        writer.write(response())
        await writer.drain()
        writer.close()  # keep-alive said, then closed while idle (a server's idle timeout)

    async with raw_server(answer) as (server, url):
        client = transport(url)
        await client.call(BODY, "answer")
        for _ in range(1000):  # until the client has read the server's close
            if all(c.closed for c in client._idle):
                break
            await asyncio.sleep(0.01)
        assert (await client.call(BODY, "answer")).body == COMPLETION
        await client.close()
    assert server.connections == 2


async def test_a_close_mid_body_is_a_transport_error_and_the_next_call_connects_anew() -> None:
    async def answer(number: int, reader: asyncio.StreamReader, writer: StreamWriter) -> None:
        if number == 1:
            writer.write(response()[:-20])  # part of the body, then gone
            await writer.drain()
            writer.close()
            return
        writer.write(response())

    async with raw_server(answer) as (server, url):
        client = transport(url)
        with pytest.raises(TransportError, match="before the response ended"):
            await client.call(BODY, "answer")
        assert (await client.call(BODY, "answer")).body == COMPLETION
        await client.close()
    assert server.connections == 2


async def test_garbage_is_a_transport_error() -> None:
    async with raw_server(replies(b"SPDY/9 what\r\n\r\n")) as (_, url):
        client = transport(url)
        with pytest.raises(TransportError, match=r"not an HTTP/1\.1 response"):
            await client.call(BODY, "answer")
        await client.close()


async def test_a_refused_connection_is_a_transport_error() -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    client = transport(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(TransportError, match="ConnectionRefused"):
        await client.call(BODY, "answer")
    await client.close()


def first_unanswered(arrived: asyncio.Event, closed: asyncio.Event) -> Answer:
    """The first request never answered: `arrived` when it came, `closed` when the client
    gave up on it and closed the connection; later requests answered at once."""

    async def answer(number: int, reader: asyncio.StreamReader, writer: StreamWriter) -> None:
        if number == 1:
            arrived.set()
            await until_closed(reader)
            closed.set()
            writer.close()
            return
        writer.write(response())

    return answer


async def test_a_silent_server_times_out_and_its_connection_is_dropped() -> None:
    arrived, closed = asyncio.Event(), asyncio.Event()
    async with raw_server(first_unanswered(arrived, closed)) as (server, url):
        client = transport(url, timeout_s=0.2)
        with pytest.raises(CallTimeout):
            await client.call(BODY, "answer")
        assert client._idle == []
        await closed.wait()
        assert (await client.call(BODY, "answer")).body == COMPLETION
        await client.close()
    assert server.connections == 2


async def test_a_cancelled_call_closes_its_connection() -> None:
    arrived, closed = asyncio.Event(), asyncio.Event()
    async with raw_server(first_unanswered(arrived, closed)) as (server, url):
        client = transport(url)
        call = asyncio.create_task(client.call(BODY, "answer"))
        await arrived.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await closed.wait()
        assert (await client.call(BODY, "answer")).body == COMPLETION
        await client.close()
    assert server.connections == 2


# --- TLS ------------------------------------------------------------------------------------


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_with_a_trusted_certificate(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    async with raw_server(replies(response()), tls=server_tls) as (server, url):
        trusting = transport(url, ssl_context=ssl.create_default_context(cafile=str(cert)))
        assert (await trusting.call(BODY, "answer")).body == COMPLETION
        assert (await trusting.call(BODY, "answer")).body == COMPLETION
        await trusting.close()
        assert server.connections == 1
        default = transport(url)  # the system's trust store does not know this certificate
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await default.call(BODY, "answer")
        await default.close()
