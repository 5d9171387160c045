"""The hot-path transport: HTTP/1.1 keep-alive connections of our own, parsed by httptools.

    call(payload, stage):
        an idle connection (the most recent first; closed ones are dropped), or a new one
        → write the request in one piece (a head made once per stage + the body)
        → the response, parsed by httptools (llhttp, the parser of Node.js; uvicorn's)
          as bytes arrive: status, headers, body (Content-Length, chunked, or until close)
        → the connection back to the idle list if both sides keep it alive
        → parse_response (workers/client.py): CallResult or the ProviderError of its class

Why not aiohttp here: per call, aiohttp's client builds a request object, a response object,
a payload object, a timer, a task for connecting and sending, and a stream reader (issue 11:
its request path was 22 % of the engine's samples, 0.08 ms of CPU per call against 0.03 ms for
this on the same server). The engine needs one thing from HTTP: POST a JSON body to one URL on
a pool of keep-alive connections. `AiohttpTransport` stays available (`--transport aiohttp`).

What it does like aiohttp's client: TLS with the system's trust store for https URLs; gzip and
deflate bodies decompressed (it asks for them, as aiohttp does); environment proxies are not
used (aiohttp's default); a response is complete at its Content-Length, its last chunk, or (with
neither) at the server's close; a 1xx interim response is skipped. A call that does not end
within `timeout_s` (connecting included) raises CallTimeout; a connection that breaks raises
TransportError. A connection whose call was cancelled or failed mid-way is closed, never reused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from workers.client import STAGE_HEADER, CallResult, parse_response
from workers.errors import CallTimeout, TransportError

_USER_AGENT = "persona-testbed"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[_Response] | None = None
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        # the response in progress, its headers read, has a body that ends at the close
        self._until_close = False
        self._in_response = False

    # -- the caller's side -------------------------------------------------------------------

    def send(self, data: bytes, waiter: asyncio.Future[_Response]) -> None:
        assert self.transport is not None
        assert self._waiter is None
        self._waiter = waiter
        self.transport.write(data)

    def abort(self) -> None:
        self.closed = True
        self._waiter = None
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(TransportError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"not an HTTP/1.1 response: {exc}"))

    def eof_received(self) -> bool:
        self.closed = True
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._in_response and self._until_close:
            self._complete()  # a body without length or chunks ends here
            return
        reason = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
        self._fail(TransportError(f"{reason} before the response ended"))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._headers = {}
        self._chunks = []
        self._until_close = False
        self._in_response = True

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key not in self._headers:  # the first of repeated headers, as aiohttp's .get()
            self._headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        headers = self._headers
        self._until_close = (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:
            self._in_response = False  # 1xx: the real response follows
            return
        self.keep_alive = self._parser.should_keep_alive()
        self._complete()

    # -- ending a response -------------------------------------------------------------------

    def _complete(self) -> None:
        self._in_response = False
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            self.abort()  # an answer nobody asked for: the connection's state is unknown
            return
        body = b"".join(self._chunks)
        self._chunks = []
        try:
            body = _decoded(self._headers.get("content-encoding", ""), body)
        except zlib.error as exc:
            waiter.set_exception(TransportError(f"a compressed body that does not inflate: {exc}"))
            self.abort()
            return
        waiter.set_result(_Response(self._parser.get_status_code(), self._headers, body))

    def _fail(self, error: TransportError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        self.abort()


def _decoded(encoding: str, body: bytes) -> bytes:
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    raise zlib.error(f"unsupported content-encoding {encoding!r}")


def _header_value(what: str, value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{what} contains a line break or NUL: not sendable as an HTTP header")
    return value


class Http1Transport:
    """POST chat-completion bodies to `{base_url}/chat/completions` over keep-alive
    connections; at most `concurrency` are kept idle."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        concurrency: int,
        timeout_s: float,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        url = urlsplit(base_url.rstrip("/") + "/chat/completions")
        if url.scheme not in _DEFAULT_PORTS or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self._host = url.hostname
        self._port = url.port or _DEFAULT_PORTS[url.scheme]
        self._ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        host = f"[{self._host}]" if ":" in self._host else self._host
        if url.port is not None and url.port != _DEFAULT_PORTS[url.scheme]:
            host = f"{host}:{url.port}"
        target = url.path + (f"?{url.query}" if url.query else "")
        self._head = (
            f"POST {target} HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            f"Authorization: Bearer {_header_value('the API key', api_key)}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
            "Accept-Encoding: gzip, deflate\r\n"
            f"User-Agent: {_USER_AGENT}\r\n"
        )
        self._heads: dict[str, bytes] = {}  # stage → the request head up to Content-Length
        self._keep = concurrency
        self._timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()

    async def call(self, payload: bytes, stage: str) -> CallResult:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Response] = loop.create_future()
        timer = loop.call_later(self._timeout_s, _expire, waiter)
        connection: _Connection | None = None
        try:
            connection = await self._connection(waiter)
            head = self._heads.get(stage) or self._stage_head(stage)
            connection.send(b"%b%d\r\n\r\n%b" % (head, len(payload), payload), waiter)
            response = await waiter
        except CallTimeout:
            raise CallTimeout("request timed out") from None
        except OSError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        finally:
            timer.cancel()
            # (reading the exception also marks it retrieved when the call ended otherwise)
            answered = waiter.done() and not waiter.cancelled() and waiter.exception() is None
            if connection is not None:
                self._busy.discard(connection)
                if answered:
                    self._release(connection)
                else:
                    connection.abort()
        latency_ms = (time.perf_counter() - started) * 1000.0
        return parse_response(response.status, response.headers, response.body, latency_ms)

    async def close(self) -> None:
        for connection in (*self._idle, *self._busy):
            connection.close()
        self._idle.clear()
        self._busy.clear()

    def _stage_head(self, stage: str) -> bytes:
        line = f"{STAGE_HEADER}: {_header_value('the stage name', stage)}\r\n"
        head = self._heads[stage] = (self._head + line + "Content-Length: ").encode("latin-1")
        return head

    async def _connection(self, waiter: asyncio.Future[_Response]) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                self._busy.add(connection)
                return connection
        loop = asyncio.get_running_loop()
        connecting = asyncio.ensure_future(
            loop.create_connection(
                _Connection,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl is not None else None,
            )
        )
        try:
            # the call's timer ends the wait for a server that never accepts
            either: list[asyncio.Future[Any]] = [connecting, waiter]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            _abandon(connecting)  # the call was cancelled
            raise
        if not connecting.done():
            _abandon(connecting)
            waiter.result()  # the timer fired: raises CallTimeout
        _, connection = connecting.result()
        self._busy.add(connection)
        return connection

    def _release(self, connection: _Connection) -> None:
        if connection.keep_alive and not connection.closed and len(self._idle) < self._keep:
            self._idle.append(connection)
        else:
            connection.close()


def _abandon(connecting: asyncio.Future[tuple[asyncio.Transport, _Connection]]) -> None:
    """Stop connecting; a connection made all the same is closed."""
    connecting.cancel()
    connecting.add_done_callback(_close_if_made)


def _close_if_made(connecting: asyncio.Future[tuple[asyncio.Transport, _Connection]]) -> None:
    if not connecting.cancelled() and connecting.exception() is None:
        connecting.result()[1].close()


def _expire(waiter: asyncio.Future[_Response]) -> None:
    if not waiter.done():
        waiter.set_exception(CallTimeout("request timed out"))
