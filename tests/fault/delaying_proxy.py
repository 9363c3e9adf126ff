"""A TCP proxy on 127.0.0.1 that forwards to a real server and can be switched to delay every chunk.

It makes a server slow, not down: every chunk read from either side is held `delay` seconds before it
is passed on (in order, per direction), so each round trip to Postgres takes about twice the delay.
Connections made before the delay is switched on are delayed too, which is what a pool sees.

`response_delay` holds only what the server sends back: the query runs at once (its snapshot is taken
now) and its answer arrives late, like a read replica's answer crossing a slow link. `holding` is set
once such an answer is being held, so a test can act between the read and its arrival.
"""

from __future__ import annotations

import asyncio
import contextlib


class DelayingProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self._upstream = (upstream_host, upstream_port)
        self.delay = 0.0  # seconds each chunk is held; 0 forwards at once
        self.response_delay = 0.0  # seconds each chunk from the server is held, on top of `delay`
        self.holding = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> DelayingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                server_reader, server_writer = await asyncio.open_connection(*self._upstream)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(
                self._pipe(client_reader, server_writer, response=False),
                self._pipe(server_reader, client_writer, response=True),
            )
        finally:
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, response: bool) -> None:
        try:
            while chunk := await reader.read(65536):
                delay = self.delay + (self.response_delay if response else 0.0)
                if response and self.response_delay > 0:
                    self.holding.set()
                if delay > 0:
                    await asyncio.sleep(delay)  # the fault itself, not synchronisation
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
