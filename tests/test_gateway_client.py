"""The gateway's HTTP/1.1 client (gateway/client.py) against a raw loopback server that
answers with scripted bytes: framing, encodings, keep-alive, timeouts, and a provider that
answers what is not HTTP. The whole gateway path through it is in test_gateway*.py."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import zlib

import pytest

from spendtrail.gateway import client as client_module
from spendtrail.gateway.client import (
    Disconnected,
    Malformed,
    Unreachable,
    UpstreamClient,
)

CLOSE = object()  # in a script: close the connection instead of answering
SILENT = object()  # in a script: read the request, never answer


class RawServer:
    """Reads each request (head and Content-Length body) and answers with the next scripted
    item: bytes or a tuple of pieces, written as separate sends (CLOSE as the last piece
    closes the connection after them); CLOSE alone or SILENT."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if answer is CLOSE:
                    break
                if answer is SILENT:
                    await asyncio.sleep(3600)
                for piece in answer if isinstance(answer, tuple) else (answer,):
                    if piece is CLOSE:  # after what was written
                        return
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)  # separate arrivals
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes, *headers: str) -> bytes:
    extra = "".join(f"{header}\r\n" for header in headers)
    return (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


async def call(client: UpstreamClient, url: str, path: str = "/chat/completions",
               body: bytes | None = b'{"model":"m"}', method: str = "POST",
               headers: dict | None = None):
    response = await client.request(method, url, path, headers or {}, body)
    try:
        return response.status, response.headers, await response.read()
    finally:
        response.release()


def make_client(read_timeout: float = 5.0) -> UpstreamClient:
    return UpstreamClient(connect_timeout=5.0, read_timeout=read_timeout)


def assert_call_fails(answer, error: type[Exception], match: str | None = None,
                      read_timeout: float = 5.0) -> None:
    """A call answered with `answer` (a RawServer script item) raises `error`."""
    async def main():
        async with RawServer(answer) as url:
            client = make_client(read_timeout)
            with pytest.raises(error, match=match):
                await call(client, url)
            client.close()

    run(main())


def test_a_call_is_one_http11_request_and_its_answer_is_read():
    async def main():
        server = RawServer(ok(b'{"id":"x"}', "X-Oneapi-Request-Id: r-1", "Set-Cookie: a=b"))
        async with server as url:
            client = make_client()
            status, headers, body = await call(
                client, url, headers={"Authorization": "Bearer up", "X-Test": "é"})
            client.close()
        return server, status, headers, body

    server, status, headers, body = run(main())
    assert (status, body) == (200, b'{"id":"x"}')
    assert headers["x-oneapi-request-id"] == "r-1"
    head, _, sent = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert lines[1].startswith(b"Host: 127.0.0.1:")
    assert b"Authorization: Bearer up" in lines
    assert "X-Test: é".encode() in lines
    assert b"Content-Length: 13" in lines and sent == b'{"model":"m"}'
    assert b"Accept-Encoding: gzip, deflate" in lines
    assert not any(line.lower().startswith((b"cookie", b"user-agent")) for line in lines)


def test_keep_alive_reuses_one_connection_and_a_closed_one_is_replaced():
    async def main():
        server = RawServer(ok(b"1"), ok(b"2", "Connection: close"), ok(b"3"), ok(b"4"))
        async with server as url:
            client = make_client()
            bodies = [(await call(client, url))[2] for _ in range(2)]
            after_close = server.connections
            bodies.append((await call(client, url))[2])
            for connection in client._idle[client_module.origin_of(url)]:
                connection.transport.close()  # as a provider ending an idle keep-alive
            await asyncio.sleep(0.05)
            bodies.append((await call(client, url))[2])
            client.close()
        return server, bodies, after_close

    server, bodies, after_close = run(main())
    assert bodies == [b"1", b"2", b"3", b"4"]
    assert after_close == 1  # the first two calls shared one connection
    assert server.connections == 3  # 'Connection: close', then a connection closed idle


def test_an_idle_connection_past_its_time_is_not_reused(monkeypatch):
    monkeypatch.setattr(client_module, "IDLE_SECONDS", 0.0)

    async def main():
        server = RawServer(ok(b"1"), ok(b"2"))
        async with server as url:
            client = make_client()
            await call(client, url)
            await call(client, url)
            client.close()
        return server.connections

    assert run(main()) == 2


def test_a_chunked_body_arriving_in_pieces_with_extensions_and_trailers():
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
              b"lo\r\n", b"7\r\n, world\r\n0\r\nX-Trailer: t\r\n", b"\r\n")

    async def main():
        server = RawServer(answer, ok(b"again"))
        async with server as url:
            client = make_client()
            first = await call(client, url)
            second = await call(client, url)
            client.close()
        return server.connections, first[2], second[2]

    assert run(main()) == (1, b"hello, world", b"again")  # reused after a chunked body


def test_a_stream_is_read_as_it_arrives():
    events = [b"data: %d\n\n" % n for n in range(3)]
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n",
              *(b"%x\r\n%s\r\n" % (len(event), event) for event in events), b"0\r\n\r\n")

    async def main():
        async with RawServer(answer) as url:
            client = make_client()
            response = await client.request("POST", url, "/chat/completions", {}, b"{}")
            pieces = [response.read_nowait()]
            while data := await response.read_some():
                pieces.append(data)
            done = response.at_eof()
            response.release()
            client.close()
        return b"".join(pieces), done

    assert run(main()) == (b"".join(events), True)


@pytest.mark.parametrize("encoding, packed", [
    ("gzip", gzip.compress(b'{"a":1}' * 50)),
    ("deflate", zlib.compress(b'{"a":1}' * 50)),
    ("deflate", zlib.compress(b'{"a":1}' * 50)[2:-4]),  # raw deflate, as some servers send
])
def test_compressed_bodies_are_decompressed(encoding, packed):
    async def main():
        async with RawServer(ok(packed, f"Content-Encoding: {encoding}")) as url:
            client = make_client()
            result = await call(client, url)
            client.close()
        return result[2]

    assert run(main()) == b'{"a":1}' * 50


def test_until_close_and_http10_bodies_end_with_the_connection():
    async def main():
        server = RawServer((b"HTTP/1.0 200 OK\r\n\r\nall ", b"of it", CLOSE))
        async with server as url:
            client = make_client()
            result = await call(client, url)
            assert client._idle.get(client_module.origin_of(url), []) == []
            client.close()
        return result

    assert run(main())[::2] == (200, b"all of it")


def test_informational_answers_are_skipped_and_empty_bodies_need_no_bytes():
    async def main():
        server = RawServer(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after"),
                           b"HTTP/1.1 204 No Content\r\n\r\n",
                           b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
        async with server as url:
            client = make_client()
            results = [await call(client, url), await call(client, url),
                       await call(client, url, method="HEAD", body=None)]
            client.close()
        return server, [(status, body) for status, _, body in results]

    server, results = run(main())
    assert results == [(200, b"after"), (204, b""), (200, b"")]
    assert server.connections == 1
    assert b"Content-Length" not in server.requests[2]  # a HEAD without a body says none


@pytest.mark.parametrize("answer, problem", [
    (b"HTTP/2 200 OK\r\n\r\n", "status line"),
    (b"ICY 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nX-Split: a\nInjected: b\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\n\r\n", "header line"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Many: a\r\n" * 8000 + b"\r\n", "exceeds"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx", "'br'"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched"),
])
def test_a_head_that_is_not_http_is_malformed(answer, problem):
    assert_call_fails(answer, Malformed, problem)


@pytest.mark.parametrize("body, problem", [
    (b"zz\r\nab\r\n0\r\n\r\n", "chunk size"),
    (b"2\r\nabXX0\r\n\r\n", "CRLF"),
    (b"1" * 9000, "too long"),
])
def test_a_chunked_body_that_is_not_chunked_is_malformed(body, problem):
    assert_call_fails(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
                      Malformed, problem)


def test_a_corrupt_compressed_body_is_malformed():
    assert_call_fails(ok(b"not gzip at all", "Content-Encoding: gzip"), Malformed, "corrupt")


def test_a_body_cut_short_is_a_disconnect_and_its_connection_is_not_reused():
    async def main():
        server = RawServer((b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", CLOSE))
        async with server as url:
            client = make_client()
            response = await client.request("POST", url, "/x", {}, b"{}")
            with pytest.raises(Disconnected, match="before the body was complete"):
                while await response.read_some():
                    pass
            response.release()
            assert client._idle.get(client_module.origin_of(url), []) == []
            client.close()

    run(main())


def test_a_connection_closed_before_the_answer_is_a_disconnect():
    assert_call_fails(CLOSE, Disconnected, "before answering")


def test_a_provider_that_does_not_answer_times_out():
    assert_call_fails(SILENT, TimeoutError, read_timeout=0.2)


def test_a_port_nobody_listens_on_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused

        async def main():
            client = make_client()
            with pytest.raises(Unreachable, match=f"127.0.0.1:{port}"):
                await call(client, f"http://127.0.0.1:{port}/v1")

        run(main())


def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent():
    async def main():
        server = RawServer(ok(b"never"))
        async with server as url:
            client = make_client()
            with pytest.raises(ValueError, match="line break"):
                await call(client, url, headers={"X-Evil": "a\r\nInjected: yes"})
            client.close()
        return server.requests

    assert run(main()) == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (apt install openssl): no "
                    "certificate for the TLS tests")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


def test_https_verifies_the_provider_and_keeps_its_connection(certificate):
    async def main():
        served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        served.load_cert_chain(*certificate)
        server = RawServer(ok(b"secure 1"), ok(b"secure 2"))
        listener = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=served)
        port = listener.sockets[0].getsockname()[1]
        url = f"https://localhost:{port}/v1"
        trusting = UpstreamClient(connect_timeout=5, read_timeout=5,
                                  ssl_context=ssl.create_default_context(cafile=certificate[0]))
        bodies = [(await call(trusting, url))[2] for _ in range(2)]
        trusting.close()
        default = make_client()  # the system's authorities: a self-signed provider is refused
        with pytest.raises(Unreachable, match=f"localhost:{port}"):
            await call(default, url)
        listener.close()
        return server, bodies

    server, bodies = run(main())
    assert bodies == [b"secure 1", b"secure 2"]
    assert server.connections == 1  # both calls on one; the refused handshake never served
    assert b"Host: localhost:" in server.requests[0]


def test_a_body_framed_two_ways_is_read_as_chunked_and_its_connection_closed():
    async def main():
        server = RawServer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5"
                           b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n", ok(b"next"))
        async with server as url:
            client = make_client()
            bodies = [(await call(client, url))[2], (await call(client, url))[2]]
            client.close()
        return bodies, server.connections

    assert run(main()) == ([b"abc", b"next"], 2)  # RFC 9112 6.3: close after such an answer
