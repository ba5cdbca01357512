"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for ``twittercore load``.

The load generator shares the machine with the server it measures, so its
per-request cost matters: a general client (httpx) spends several times more
CPU per request than this one, which would cap the rate the tool can offer.
It speaks just what the Mastodon API needs: one request at a time per
connection, ``Content-Length`` or chunked bodies, and server-sent events.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["Connection", "HTTPError", "Response", "split_url", "EventStreamParser", "ServerSentEvent"]


class HTTPError(Exception):
    """The connection failed or the server broke the protocol."""


class ServerSentEvent(NamedTuple):
    """One dispatched event: its type (``"message"`` by default), data, and the last event id."""

    event: str
    data: str
    id: str


class EventStreamParser:
    r"""An incremental ``text/event-stream`` parser following the WHATWG HTML rules (section 9.2.6).

    Feed it bytes as they arrive; it returns the events each feed completed.
    Lines end with CRLF, LF or CR (also when a CRLF is split across feeds);
    the text is UTF-8, a leading BOM dropped; a line starting with ``:`` is a
    comment; ``field: value`` loses one space after the colon, a line without
    a colon is a field with an empty value; ``data`` lines are joined with
    ``\n``; ``event`` sets the type (``"message"`` when absent); ``id`` sets
    the last event id (kept for later events; ignored if it holds NUL);
    ``retry`` with only ASCII digits sets :attr:`retry` (ms); other fields are
    ignored.  A blank line dispatches the event, unless no data was given;
    an event not ended by a blank line when the stream closes is dropped.

    >>> p = EventStreamParser()
    >>> p.feed(b": keep-alive\r\nevent: update\r\ndata: {\r\ndata: }\r\nid: 7\r\n\r\ndata: x\n")
    [ServerSentEvent(event='update', data='{\n}', id='7')]
    >>> p.feed(b"\n"), p.comments
    ([ServerSentEvent(event='message', data='x', id='7')], 1)
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._text = ""
        self._started = False  # the BOM is dropped only at the very start
        self._skip_lf = False  # the last feed ended with CR: a LF opening the next one ends the same line
        self._data: list[str] = []
        self._type = ""
        self.last_id = ""
        self.retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Parse ``chunk``; return the events it completed, in order.  O(len(chunk))."""
        text = self._text + self._decoder.decode(chunk)
        if not self._started and text:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            if text[0] == "\n":
                text = text[1:]
            self._skip_lf = False
        out: list[ServerSentEvent] = []
        start, n = 0, len(text)
        while start < n:
            cr, lf = text.find("\r", start), text.find("\n", start)
            if cr < 0 and lf < 0:
                break
            end = lf if cr < 0 or 0 <= lf < cr else cr
            line = text[start:end]
            if text[end] == "\r":
                if end + 1 < n:
                    start = end + 2 if text[end + 1] == "\n" else end + 1
                else:
                    start, self._skip_lf = end + 1, True
            else:
                start = end + 1
            event = self._line(line)
            if event is not None:
                out.append(event)
        self._text = text[start:]
        return out

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:  # dispatch
            data, kind = self._data, self._type
            self._data, self._type = [], ""
            if not data:
                return None
            return ServerSentEvent(kind or "message", "\n".join(data), self.last_id)
        if line[0] == ":":
            self.comments += 1
            return None
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._type = value
        elif field == "id":
            if "\0" not in value:
                self.last_id = value
        elif field == "retry":
            if value and value.isascii() and value.isdigit():
                self.retry = int(value)
        return None


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def split_url(url: str) -> tuple[str, int, str]:
    """``(host, port, base path)`` of an http:// URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"load: {url!r}: expected an http://host:port URL")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


class Connection:
    """One keep-alive connection; reconnects on the next request after a failure."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._host_header = f"{host}:{port}"
        self.received = 0  # response body bytes: shows what a rate carried

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=1 << 22), self.timeout
        )

    @property
    def _in(self) -> asyncio.StreamReader:
        if self._reader is None:
            raise ConnectionError(f"{self._host_header}: the connection is closed")
        return self._reader

    @property
    def _out(self) -> asyncio.StreamWriter:
        if self._writer is None:
            raise ConnectionError(f"{self._host_header}: the connection is closed")
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    def _head(self, method: str, path: str, headers: dict[str, str] | None, body: bytes | None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> Response:
        try:
            # asyncio.timeout, not wait_for: wait_for makes a task per request.
            async with asyncio.timeout(self.timeout):
                return await self._request(method, path, headers, body)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, HTTPError) as exc:
            self.close()
            raise HTTPError(f"{method} {path}: {type(exc).__name__}: {exc}") from None

    async def _request(self, method: str, path: str, headers: dict[str, str] | None, body: bytes | None) -> Response:
        if self._writer is None:
            await self._connect()
        self._out.write(self._head(method, path, headers, body))
        status, response_headers = await self._read_head()
        data = await self._read_body(response_headers)
        self.received += len(data)
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, response_headers, data)

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        raw = await self._in.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise HTTPError(f"bad status line {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await self._in.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            async for chunk in self._chunks():
                chunks.append(chunk)
            return b"".join(chunks)
        return b""

    async def _chunks(self) -> AsyncIterator[bytes]:
        while True:
            size = int((await self._in.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._in.readuntil(b"\r\n")
                return
            chunk = await self._in.readexactly(size)
            await self._in.readexactly(2)
            yield chunk

    async def events(self, path: str, headers: dict[str, str]) -> AsyncIterator[ServerSentEvent]:
        """Open a server-sent-event stream; yield each dispatched :class:`ServerSentEvent`.

        Parsed by :class:`EventStreamParser` (the WHATWG rules; comments,
        such as keep-alives, are not events).

        Runs until the server closes or the caller stops iterating; raises
        HTTPError if the stream cannot be opened.
        """
        try:
            await asyncio.wait_for(self._connect(), self.timeout)
            self._out.write(self._head("GET", path, {**headers, "Accept": "text/event-stream"}, None))
            status, response_headers = await asyncio.wait_for(self._read_head(), self.timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.close()
            raise HTTPError(f"GET {path}: {type(exc).__name__}: {exc}") from None
        if status != 200:
            body = await self._read_body(response_headers)
            self.close()
            raise HTTPError(f"GET {path}: status {status}: {body[:200]!r}")
        chunked = response_headers.get("transfer-encoding", "").lower() == "chunked"
        parser = EventStreamParser()
        try:
            source = self._chunks() if chunked else self._raw()
            async for chunk in source:
                for event in parser.feed(chunk):
                    yield event
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self.close()

    async def _raw(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._in.read(1 << 16)
            if not chunk:
                return
            yield chunk
