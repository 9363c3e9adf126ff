"""A minimal pipelined Redis reader for the verify hot path: MGET over one connection.

redis-py's asyncio client costs about 100 µs of CPU per command (connection pool, retries, stream
readers), which is most of a cache-hit verification. This reader keeps one connection as an asyncio
Protocol, writes commands without waiting (pipelining), parses replies with hiredis's C reader and
hands them to waiting futures in order. It does reads only; writes stay with redis-py.

Failure behaviour matches the rest of the status path: any problem raises ConnectionError (an
OSError) at once, so verification falls back to Postgres; after a failure the next connect is tried
at most once a second, so a Redis outage does not cost a connect attempt per scan.
"""

from __future__ import annotations

import asyncio
import collections
import time
from urllib.parse import unquote, urlsplit

import hiredis

RETRY_AFTER_S = 1.0


def _encode(*args: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Connection(asyncio.Protocol):
    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while self.waiting:
            reply = self.reader.gets()
            if reply is False:
                return
            future = self.waiting.popleft()
            if not future.done():
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(ConnectionError(f"Redis error: {reply}"))
                else:
                    future.set_result(reply)

    def connection_lost(self, exc) -> None:
        self.closed = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError("Redis connection lost"))


class RedisReader:
    def __init__(self, url: str, timeout_s: float = 0.5):
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError("RedisReader supports redis:// URLs only")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._db = int(parts.path.lstrip("/") or 0)
        self._password = unquote(parts.password) if parts.password else None
        self._user = unquote(parts.username) if parts.username else None
        self._timeout = timeout_s
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future | None = None
        self._failed_at = 0.0

    async def _connection(self) -> _Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if time.monotonic() - self._failed_at < RETRY_AFTER_S:
            raise ConnectionError("Redis unreachable (retrying shortly)")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Connection, self._host, self._port), self._timeout)
            setup = []
            if self._password:
                setup.append(("AUTH", self._user, self._password) if self._user else ("AUTH", self._password))
            if self._db:
                setup.append(("SELECT", str(self._db)))
            for command in setup:
                await self._send(conn, command)
        except (OSError, asyncio.TimeoutError) as exc:
            self._failed_at = time.monotonic()
            raise ConnectionError(f"cannot connect to Redis: {type(exc).__name__}") from exc
        self._conn = conn
        return conn

    async def _send(self, conn: _Connection, command) -> object:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        conn.waiting.append(future)
        conn.transport.write(_encode(*command))
        # A plain timer rather than asyncio.wait_for, which costs a task and a second future per command.
        timer = loop.call_later(self._timeout, self._expire, conn, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, conn: _Connection, future: asyncio.Future) -> None:
        if not future.done():
            future.set_exception(ConnectionError("Redis timed out"))
            conn.transport.abort()  # replies would arrive out of step: start over
            self._failed_at = time.monotonic()

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connection()
        return await self._send(conn, ("MGET", *keys))

    async def aclose(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
