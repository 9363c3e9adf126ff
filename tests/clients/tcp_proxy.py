"""A TCP proxy for the reference clients' tests: a client talks to a service through it, and a test breaks
the connections (`cut`), stops the proxy (`close`), starts it only after the client began (`free_port`), or
makes it lose the service's answers (`lose_responses`), to see the client retry and reconnect. Runs in the
test's event loop, like the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

Forward = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice), for a proxy started later on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TcpProxy:
    """Forwards connections to 127.0.0.1:`port` (0: any free port) to 127.0.0.1:`target_port`.

    With `lose_responses` set, a new connection passes the server's connection-level HTTP/2 frames (SETTINGS,
    PING, GOAWAY: stream 0) but drops every frame of a stream: the request arrives and is answered, the answer
    never reaches the client. A connection keeps the mode it was accepted in (`cut` it to change)."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self.port = port
        self.lose_responses = False
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def cut(self) -> None:
        """Break every open connection (abruptly, as a network failure does); new ones are still accepted."""
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop listening (a new connection is refused) and break every connection. Closing twice is harmless."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.cut()
        if server is not None:
            await server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, upstream_writer}
        downstream = self._stream_0_frames if self.lose_responses else self._bytes
        pumps = [
            asyncio.create_task(self._pump(self._bytes, client_reader, upstream_writer)),
            asyncio.create_task(self._pump(downstream, upstream_reader, client_writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            for writer in (client_writer, upstream_writer):
                writer.transport.abort()
                self._writers.discard(writer)

    @staticmethod
    async def _pump(forward: Forward, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward until the sending side ends or either side breaks the connection."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await forward(reader, writer)

    @staticmethod
    async def _bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    @staticmethod
    async def _stream_0_frames(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Only the connection-level HTTP/2 frames (stream 0): a server's side carries no preface, only frames."""
        while True:
            header = await reader.readexactly(9)  # length (24 bits), type, flags, stream id (31 bits)
            payload = await reader.readexactly(int.from_bytes(header[:3], "big"))
            if int.from_bytes(header[5:9], "big") & 0x7FFFFFFF == 0:
                writer.write(header + payload)
                await writer.drain()
