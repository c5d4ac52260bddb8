"""A small HTTP/1.1 client for the daemon's tests, on anyio (so on both backends):
one request per connection, parsed with h11 (the server's own HTTP library)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
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
    url: str,
    method: str,
    path: str,
    body: Any,
    headers: Mapping[str, str] | None,
    raw: bytes | None,
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
    assert parts.hostname is not None
    assert parts.port is not None
    async with await anyio.connect_tcp(parts.hostname, parts.port) as stream:
        yield stream


async def _events(connection: h11.Connection, stream: anyio.abc.ByteStream) -> AsyncIterator[Any]:
    """What the server sends, as h11 events, reading as they need."""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            try:
                connection.receive_data(await stream.receive())
            except anyio.EndOfStream:
                connection.receive_data(b"")
            continue
        yield event


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
        async with aclosing(_events(connection, stream)) as events:
            async for event in events:
                if isinstance(event, h11.Response):
                    status = event.status_code
                    received = {name.decode(): value.decode() for name, value in event.headers}
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
        return Reply(status, received, b"".join(chunks))


@attrs.frozen
class ServerEvent:
    """One server-sent event: its id, its name and its data (JSON, or else text)."""

    id: str | None
    event: str
    data: Any


def _parse_events(text: str) -> tuple[list[ServerEvent], str]:
    """The complete events in ``text`` and what is left of it."""
    found = []
    while "\n\n" in text:
        block, text = text.split("\n\n", 1)
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in block.splitlines():
            if line.startswith(":"):
                continue  # a comment (keep-alive)
            name, _, value = line.partition(": ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        if "event" in fields:
            text_data = "\n".join(data)
            try:
                value = orjson.loads(text_data)
            except orjson.JSONDecodeError:
                value = text_data
            found.append(ServerEvent(fields.get("id"), fields["event"], value))
    return found, text


async def read_events(
    url: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    until: Any = None,
    started: anyio.Event | None = None,
) -> tuple[int, list[ServerEvent]]:
    """Open an event stream; read it until the server ends it, or until
    ``until(events)`` holds (then hang up). The status and the events read;
    ``started`` is set once the stream's first bytes came (it listens)."""
    connection = h11.Connection(h11.CLIENT)
    message, _ = _request(url, "GET", path, None, headers, None)
    received: list[ServerEvent] = []
    status, text = 0, ""
    async with _connection(url) as stream:
        await stream.send(connection.send(message) + connection.send(h11.EndOfMessage()))
        async with aclosing(_events(connection, stream)) as events:
            async for event in events:
                if isinstance(event, h11.Response):
                    status = event.status_code
                    if status != 200:
                        return status, []
                elif isinstance(event, h11.Data):
                    if started is not None:
                        started.set()
                    found, text = _parse_events(text + bytes(event.data).decode())
                    received += found
                    if until is not None and until(received):
                        return status, received
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
    return status, received
