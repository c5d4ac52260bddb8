"""A small HTTP/1.1 client for the daemon's tests, on anyio (so on both backends):
one request per connection, parsed with h11 (the server's own HTTP library)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import attrs
import h11
import orjson


@attrs.frozen
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def _request(
    url: str, method: str, path: str, body: Any, headers: Mapping[str, str] | None, raw: bytes | None
) -> tuple[h11.Request, bytes]:
    parts = urlsplit(url)
    data = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
    sent = {"host": parts.netloc, "connection": "close", "content-length": str(len(data))}
    if body is not None:
        sent["content-type"] = "application/json"
    sent |= {name.lower(): value for name, value in (headers or {}).items()}
    return h11.Request(method=method, target=path, headers=list(sent.items())), data


@asynccontextmanager
async def _connection(url: str) -> AsyncIterator[anyio.abc.ByteStream]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    async with await anyio.connect_tcp(parts.hostname, parts.port) as stream:
        yield stream


async def request(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    raw: bytes | None = None,
) -> Reply:
    """Send one request to the server at ``url``; the whole reply."""
    connection = h11.Connection(h11.CLIENT)
    message, data = _request(url, method, path, body, headers, raw)
    async with _connection(url) as stream:
        await stream.send(connection.send(message) + connection.send(h11.Data(data=data)))
        await stream.send(connection.send(h11.EndOfMessage()))
        status, received, chunks = 0, {}, []
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                try:
                    connection.receive_data(await stream.receive())
                except anyio.EndOfStream:
                    connection.receive_data(b"")
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                received = {name.decode(): value.decode() for name, value in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return Reply(status, received, b"".join(chunks))
