"""The HTTP/1.1 client the gateway calls providers with: keep-alive connections per origin,
the response's head parsed in one pass, its body handed on as it arrives.

Why not aiohttp's client: at concurrency 1 it took ~90 µs a call of the ~320 the gateway
added (docs/benchmarks.md, "Gateway"), for a request object, timer contexts, a task to write
the body, cookies and redirects, none of which a proxy uses. This client writes a request
in one send, follows no redirect, keeps no cookie (a cookie one caller's call received
must not ride on the next caller's) and never retries (a POST sent twice may be billed
twice). Timeouts: `connect_timeout` to connect (TLS included), `read_timeout` for each wait
for the provider's bytes; both raise TimeoutError.

The provider is an input too: a head over MAX_HEAD_BYTES or a line over MAX_LINE_BYTES, a
status line or header that is not HTTP/1.x, a body framed two ways or cut short, an encoding
that was not asked for: each raises an `UpstreamError`, and that connection is closed, never
reused.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import zlib
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

MAX_LINE_BYTES = 8190  # a status or header line, a chunk-size line (aiohttp's limit)
MAX_HEAD_BYTES = 64 * 1024  # status line and headers together, and a chunked body's trailer
# Closed before a provider's own keep-alive ends it (60 s and more at the large ones), so a
# pooled connection is seldom found closed just as a call is sent on it.
IDLE_SECONDS = 15.0
ACCEPT_ENCODING = "gzip, deflate"

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?")
_UNSAFE = re.compile(r"[\r\n\0]")
_BREAK = re.compile(rb"[\r\n\0]")
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class UpstreamError(Exception):
    """The provider's connection failed, or its answer could not be read."""


class Unreachable(UpstreamError):
    """No connection to the provider could be made."""


class Disconnected(UpstreamError):
    """The provider closed the connection before its answer was complete."""


class Malformed(UpstreamError):
    """The provider's answer is not HTTP/1.x this client reads."""


class Origin(NamedTuple):
    https: bool
    host: str
    port: int
    authority: str  # the Host header: as the URL spells it
    path: str  # the base path the call's own path follows


@lru_cache(maxsize=256)
def origin_of(base_url: str) -> Origin:
    """Where an upstream's base URL (``https://api.example.com/v1``) sends calls."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    https = parts.scheme == "https"
    return Origin(https, parts.hostname, parts.port or (443 if https else 80),
                  parts.netloc.rpartition("@")[2], parts.path.rstrip("/"))


class _Connection(asyncio.Protocol):
    """One connection: what has arrived, whether the provider has closed, flow control."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # by the provider, by an error, or by us
        self.error: BaseException | None = None
        self.idle_since = 0.0
        self._waiter: asyncio.Future | None = None
        self._writable: asyncio.Future | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Until more bytes arrive or the connection closes; TimeoutError after `timeout`."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter) if timeout else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def send(self, data: bytes, timeout: float | None) -> None:
        self.transport.write(data)
        if self._writable is not None:  # a large body: wait until the provider reads it
            async with asyncio.timeout(timeout):
                await self._writable
        if self.closed:
            raise Disconnected("the provider closed the connection while the call was sent")

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class UpstreamClient:
    """Keep-alive connections to providers, reused one call at a time, without limit."""

    def __init__(self, *, connect_timeout: float | None, read_timeout: float | None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}

    async def request(self, method: str, base_url: str, path: str,
                      headers: dict[str, str] | CIMultiDict[str],
                      body: bytes | None) -> UpstreamResponse:
        """Send one call (`path` follows the base URL's path) and read the head of its
        answer. Raises TimeoutError, UpstreamError, or ValueError for a header value
        holding a line break (nothing is sent then)."""
        origin = origin_of(base_url)
        head = _request_head(method, origin, path, headers, body)
        connection = self._pooled(origin) or await self._connect(origin)
        try:
            await connection.send(head + body if body else head, self.read_timeout)
            return await self._response(connection, method)
        except BaseException:  # cancelled included: the connection's state is unknown
            connection.close()
            raise

    def close(self) -> None:
        """Close the idle connections; those in use close when their call ends."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    def _pooled(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if origin.https:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin), origin.host, origin.port, ssl=context,
                    server_hostname=origin.host if context else None)
        except OSError as exc:  # refused, no route, DNS, TLS (ssl.SSLError is an OSError)
            raise Unreachable(f"cannot connect to {origin.authority}: "
                              f"{exc.strerror or type(exc).__name__}") from exc
        return connection

    def _keep(self, connection: _Connection) -> None:
        now = connection.idle_since = time.monotonic()
        idle = self._idle.setdefault(connection.origin, [])
        # The oldest are first: those past their time, or closed by the provider, go now,
        # so a burst's connections do not linger after it.
        while idle and (idle[0].closed or now - idle[0].idle_since >= IDLE_SECONDS):
            idle.pop(0).close()
        idle.append(connection)

    async def _response(self, connection: _Connection, method: str) -> UpstreamResponse:
        while True:
            status, version, headers = await self._head(connection)
            if not 100 <= status < 200:
                break
            if status == 101:
                raise Malformed("the provider switched protocols, which was not asked for")
        framing = _framing(method, status, headers)
        return UpstreamResponse(self, connection, status, CIMultiDictProxy(headers), framing,
                                _reusable(version, framing, headers),
                                _decoder(headers.get("Content-Encoding")))

    async def _head(self, connection: _Connection) -> tuple[int, int, CIMultiDict[str]]:
        buffer = connection.buffer
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise Malformed(f"the provider's response head exceeds {MAX_HEAD_BYTES} bytes")
            if connection.closed:
                raise Disconnected("the provider closed the connection before answering")
            await connection.wait(self.read_timeout)
        if end > MAX_HEAD_BYTES:
            raise Malformed(f"the provider's response head exceeds {MAX_HEAD_BYTES} bytes")
        lines = bytes(buffer[:end]).split(b"\r\n")
        del buffer[:end + 4]
        status_line = _STATUS_LINE.fullmatch(lines[0])
        if status_line is None:
            raise Malformed("the provider's status line is not HTTP/1.x")
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if (not colon or len(line) > MAX_LINE_BYTES or not _TOKEN.fullmatch(name)
                    or _BREAK.search(value)):
                raise Malformed("the provider sent a header line that is not 'name: value'")
            # Bytes that are not UTF-8 stay as lone surrogates, as aiohttp's server hands
            # them on; the proxy drops such values rather than pass them back.
            headers.add(name.decode("ascii"),
                        value.strip(b" \t").decode("utf-8", "surrogateescape"))
        return int(status_line[2]), int(status_line[1]), headers


def _request_head(method: str, origin: Origin, path: str,
                  headers: dict[str, str] | CIMultiDict[str], body: bytes | None) -> bytes:
    fields = [f"{name}: {value}" for name, value in headers.items()]
    if _UNSAFE.search("".join(fields)):  # a header carrying a line of its own
        raise ValueError("a request header holds a line break or NUL")
    target = origin.path + path
    fields.append(f"Accept-Encoding: {ACCEPT_ENCODING}")
    if body is not None or method not in _NO_BODY:  # as aiohttp did: a POST says 0
        fields.append(f"Content-Length: {len(body or b'')}")
    return (f"{method} {target if target.startswith('/') else '/' + target} HTTP/1.1\r\n"
            f"Host: {origin.authority}\r\n" + "\r\n".join(fields) + "\r\n\r\n").encode()


def _framing(method: str, status: int, headers: CIMultiDict[str]) -> str | int:
    """How the body ends: its length, "chunked", or "close" (when the connection does)."""
    if method == "HEAD" or status in (204, 304):
        return 0
    coding = headers.get("Transfer-Encoding")
    if coding is not None:
        # chunked as the last coding frames the body; any other is read until close
        return "chunked" if coding.rsplit(",", 1)[-1].strip().lower() == "chunked" else "close"
    lengths = {value.strip() for value in headers.getall("Content-Length", ())}
    if not lengths:
        return "close"
    length = lengths.pop()
    if lengths or not length.isdigit() or len(length) > 18:
        raise Malformed("the provider's Content-Length is not one number")
    return int(length)


def _reusable(version: int, framing: str | int, headers: CIMultiDict[str]) -> bool:
    """Whether the connection may carry the next call once this answer is read: HTTP/1.1,
    not closed by the provider's word or by the framing, not framed two ways (RFC 9112 6.3)."""
    closing = {token.strip().lower() for value in headers.getall("Connection", ())
               for token in value.split(",")}
    return (version == 1 and framing != "close" and "close" not in closing
            and not ("Transfer-Encoding" in headers and "Content-Length" in headers))


def _decoder(encoding: str | None):
    """A decompressor for the encodings asked for (ACCEPT_ENCODING), None for none."""
    coding = (encoding or "").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return _Deflate()
    raise Malformed(f"the provider's answer is encoded as '{encoding}', which was not asked for")


class _Deflate:
    """'deflate' as servers send it: zlib-wrapped, or (often) raw."""

    def __init__(self) -> None:
        self._inner = zlib.decompressobj()
        self._started = False

    def decompress(self, data: bytes) -> bytes:
        if not self._started and data:
            self._started = True
            try:
                return self._inner.decompress(data)
            except zlib.error:
                self._inner = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._inner.decompress(data)

    def flush(self) -> bytes:
        return self._inner.flush()


class UpstreamResponse:
    """A provider's answer: status and headers read, the body read as it arrives.
    `release()` hands the connection back for the next call once the body is complete."""

    def __init__(self, client: UpstreamClient, connection: _Connection, status: int,
                 headers: CIMultiDictProxy[str], framing: str | int, reusable: bool,
                 decoder) -> None:
        self.status = status
        self.headers = headers
        self._client = client
        self._connection: _Connection | None = connection
        self._left = framing if isinstance(framing, int) else 0  # of the length or chunk
        self._chunked = framing == "chunked"
        self._until_close = framing == "close"
        self._reusable = reusable
        self._decoder = decoder
        self._state = "size"  # chunked: size line, data, its CRLF, trailer
        self._ready: list[bytes] = []
        self.complete = framing == 0  # every byte of the body has arrived
        self._collect()

    def read_nowait(self) -> bytes:
        """The body bytes that have arrived and were not read yet (maybe none)."""
        self._collect()
        return self._take()

    async def read_some(self) -> bytes:
        """The next bytes of the body, waiting for them; b"" once it is all read."""
        while True:
            self._collect()
            if self._ready:
                return self._take()
            if self.complete:
                return b""
            connection = self._connection
            if connection is None:
                raise Disconnected("the response was released before its body was read")
            if connection.closed:
                raise Disconnected("the provider closed the connection before the body was "
                                   "complete")
            await connection.wait(self._client.read_timeout)

    async def read(self) -> bytes:
        """The rest of the body."""
        parts = []
        while data := await self.read_some():
            parts.append(data)
        return b"".join(parts)

    def at_eof(self) -> bool:
        """All of the body has arrived and been read."""
        self._collect()
        return self.complete and not self._ready

    def release(self) -> None:
        """Done with this answer: a complete one leaves its connection for the next call,
        anything else closes it. Called once; later calls do nothing."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if (self.complete and self._reusable and not connection.closed
                and not connection.buffer):
            self._client._keep(connection)
        else:
            connection.close()

    def _take(self) -> bytes:
        ready, self._ready = self._ready, []
        return ready[0] if len(ready) == 1 else b"".join(ready)

    def _emit(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
                if self.complete:
                    data += self._decoder.flush()
            except zlib.error as exc:
                raise Malformed(f"the provider's compressed body is corrupt ({exc})") from None
        if data:
            self._ready.append(data)

    def _collect(self) -> None:
        """Move what has arrived from the connection into the body, as the framing says."""
        connection = self._connection
        if self.complete or connection is None:
            return
        buffer = connection.buffer
        if self._chunked:
            self._collect_chunked(buffer)
        elif self._until_close:
            data = bytes(buffer)
            buffer.clear()
            if connection.closed:
                if connection.error is not None:
                    raise Disconnected("the provider's connection failed mid-body")
                self.complete = True
            if data or self.complete:
                self._emit(data)
        elif buffer:
            data = self._take_left(buffer)
            self.complete = not self._left
            self._emit(data)

    def _take_left(self, buffer: bytearray) -> bytes:
        """What `buffer` holds of the bytes left of the body or of the chunk."""
        data = bytes(buffer[:self._left])
        del buffer[:len(data)]
        self._left -= len(data)
        return data

    def _collect_chunked(self, buffer: bytearray) -> None:
        while not self.complete:
            if self._state == "data":
                if not buffer:
                    return
                data = self._take_left(buffer)
                if not self._left:
                    self._state = "crlf"
                self._emit(data)
            elif self._state == "crlf":
                if len(buffer) < 2:
                    return
                if buffer[:2] != b"\r\n":
                    raise Malformed("a chunk of the provider's body does not end in CRLF")
                del buffer[:2]
                self._state = "size"
            else:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > (MAX_LINE_BYTES if self._state == "size"
                                      else MAX_HEAD_BYTES):
                        raise Malformed("a chunk-size line or trailer of the provider's body "
                                        "is too long")
                    return
                line = bytes(buffer[:end])
                del buffer[:end + 2]
                if self._state == "trailer":  # trailers are dropped; an empty line ends them
                    if not line:
                        self.complete = True
                        self._emit(b"")
                    continue
                size = line.split(b";", 1)[0].strip()
                if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                    raise Malformed("the provider's chunk size is not a hex number")
                self._left = int(size, 16)
                self._state = "data" if self._left else "trailer"
