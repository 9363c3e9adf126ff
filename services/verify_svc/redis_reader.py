"""A minimal pipelined Redis reader for the verify hot path: MGET over one connection, and optionally a
local mirror of what it read, kept fresh by Redis's server-assisted invalidation.

redis-py's asyncio client costs about 100 µs of CPU per command (connection pool, retries, stream
readers), which is most of a cache-hit verification. This reader keeps one connection as an asyncio
Protocol, writes commands without waiting (pipelining), parses replies with hiredis's C reader and
hands them to waiting futures in order. It does reads only; writes stay with redis-py.

With `track=True` it also keeps the values it read in memory, so a repeat read needs no round trip.
Redis itself says when one of them changes (CLIENT TRACKING, redirected to a second connection
subscribed to `__redis__:invalidate`), and the mirror drops it at once. What keeps that safe:
- a reply is remembered only if no invalidation of its key arrived after the read was sent (the two
  connections' messages may arrive in either order);
- anything that could hide an invalidation — either connection lost, a reconnect, a flush — forgets
  the whole mirror, so reads go back to Redis (and, Redis down, to Postgres);
- a PING on the invalidation connection every second bounds how late an invalidation can be: not
  answered within the timeout, the mirror is forgotten and stays off until that PING is answered
  (reads meanwhile go to Redis by MGET, which has its own timeout); not answered within
  RECONNECT_AFTER_S, both connections are closed. A Redis that is only slow for a moment (a CPU
  spike) so costs a few MGETs, not a reconnect and a second of every read going to Postgres;
- the mirror is bounded; when full it starts afresh.

With `broadcast_prefix` (verify_svc's mode) the mirror holds every key under the prefix, not only
what was read: tracking runs in BCAST mode (Redis names every changed key under the prefix), all keys
are loaded after each connect (SCAN + MGET, in the background) and each key Redis names is read again
at once. At a checkpoint nearly every scan is a certificate this process never saw; its status is
then in memory already, and the Redis round trip per scan (system calls and a wake-up of each side,
about as much CPU as the whole verification) is gone. The rules above keep it safe as before; when
full, the mirror keeps what it holds and the rest is read from Redis. Invalidations are remembered
only as long as a read in flight may need them.

Failure behaviour matches the rest of the status path: any problem raises ConnectionError (an
OSError) at once, so verification falls back to Postgres; after a failure the next connect is tried
at most once a second, so a Redis outage does not cost a connect attempt per scan.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

RETRY_AFTER_S = 1.0
HEARTBEAT_S = 1.0
RECONNECT_AFTER_S = 5.0  # a heartbeat PING unanswered this long: the invalidation connection is dead
MIRROR_LIMIT = 100_000
_FETCH_CHUNK = 1000  # keys per MGET when reading changed keys again
_PRUNE_INVALIDATED_AT = 10_000  # invalidations remembered before the ones no read needs are dropped
INVALIDATE_CHANNEL = b"__redis__:invalidate"


def _write(conn: _Connection, data: bytes) -> None:
    """Send on `conn`, or ConnectionError. A connection the peer already dropped (HAProxy accepting, then
    closing while no Redis master is up) is closed or closing; writing to it raises RuntimeError under
    uvloop, which must not reach a caller as anything but a lost connection."""
    if conn.closed or conn.transport.is_closing():
        raise ConnectionError("Redis connection closed")
    try:
        conn.transport.write(data)
    except RuntimeError as exc:
        raise ConnectionError("Redis connection closed") from exc


def _encode(*args: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


_PING = _encode("PING")


class _Connection(asyncio.Protocol):
    """One Redis connection: replies handed to the futures waiting for them, in the order sent."""

    # Set by connection_made, which asyncio calls before create_connection hands the connection out.
    transport: asyncio.Transport

    def __init__(
        self,
        on_message: Callable[[list], None] | None = None,
        on_lost: Callable[[_Connection], None] | None = None,
    ):
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.closed = False
        self._on_message = on_message  # pub/sub messages (never the answer to a command)
        self._on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP connection's transport is read-write (uvloop's is, without asyncio.Transport as a base class).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if self._on_message is not None and isinstance(reply, list) and reply and reply[0] == b"message":
                self._on_message(reply)
                continue
            if not self.waiting:
                continue
            future = self.waiting.popleft()
            if not future.done():
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(ConnectionError(f"Redis error: {reply}"))
                else:
                    future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError("Redis connection lost"))
        if self._on_lost is not None:
            self._on_lost(self)

    def abort(self) -> None:
        self.transport.abort()


class RedisReader:
    def __init__(
        self,
        url: str,
        timeout_s: float = 0.5,
        track: bool = False,
        broadcast_prefix: str | None = None,
        mirror_limit: int = MIRROR_LIMIT,
    ):
        """`track`: mirror what was read (see the module notes). `broadcast_prefix` (with `track`): mirror
        every key under that prefix, read or not: all of them are loaded after each connect, and each
        one Redis says changed is read again at once, so a first read of any key finds it in memory.
        `mirror_limit`: the most keys mirrored."""
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
        self._track = track or broadcast_prefix is not None
        self._prefix = broadcast_prefix
        self._limit = mirror_limit
        self._to_fetch: set[str] = set()  # broadcast: keys Redis said changed, to be read again
        self._fetching = False
        self._loader: asyncio.Task | None = None
        self._reads: collections.Counter[int] = collections.Counter()  # in-flight reads by invalidation count
        self._invalidations: _Connection | None = None
        self._heartbeat: asyncio.Task | None = None
        self._mirror: dict[str, bytes] = {}
        self._invalidated: dict[str, int] = {}  # key → number of the invalidation that last named it
        self._invalidation_count = 0
        self._epoch = 0  # bumped whenever the whole mirror is forgotten
        self._mirroring = True  # off while a heartbeat PING is overdue

    # --- the mirror ------------------------------------------------------------------------------

    def known(self, key: str) -> bytes | None:
        """The value last read for `key` if Redis has not said since that it changed; else None."""
        return self._mirror.get(key)

    def _forget_all(self) -> None:
        self._mirror.clear()
        self._invalidated.clear()
        self._epoch += 1
        conn = self._conn
        if self._prefix is not None and self._mirroring and conn is not None and not conn.closed:
            if self._loader is not None:  # a broadcast mirror is loaded again from the start
                self._loader.cancel()
            self._loader = asyncio.ensure_future(self._load_all(conn, self._prefix))

    def _on_invalidation(self, message: list) -> None:
        _, channel, keys = message[:3]
        if channel != INVALIDATE_CHANNEL:
            return
        if keys is None:  # FLUSHDB / FLUSHALL: everything changed
            self._forget_all()
            return
        self._invalidation_count += 1
        if len(self._invalidated) + len(keys) > _PRUNE_INVALIDATED_AT:
            self._prune_invalidated()
        for key in keys:
            name = key.decode() if isinstance(key, bytes) else str(key)
            self._mirror.pop(name, None)
            self._invalidated[name] = self._invalidation_count
            if self._prefix is not None:
                self._to_fetch.add(name)
        if self._to_fetch and not self._fetching:
            self._fetching = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._fetch_changed()))

    def _prune_invalidated(self) -> None:
        """Invalidations matter only to replies of reads sent before them: keep those newer than the
        oldest read in flight. If that is still too many, forget everything (in-flight reads then
        change nothing: their epoch is over)."""
        oldest = min(self._reads) if self._reads else self._invalidation_count
        self._invalidated = {k: n for k, n in self._invalidated.items() if n > oldest}
        if len(self._invalidated) > _PRUNE_INVALIDATED_AT // 2:
            self._forget_all()

    def _remember(self, keys, values, sent_at_invalidation: int, sent_in_epoch: int) -> None:
        if sent_in_epoch != self._epoch or not self._mirroring:
            return
        if len(self._mirror) + len(keys) > self._limit and self._prefix is None:
            self._forget_all()
            return
        mirror, room = self._mirror, self._limit - len(self._mirror)
        for key, value in zip(keys, values):
            # An invalidation that arrived after the read was sent may be about a newer value than
            # this reply carries: do not keep it.
            if value is not None and self._invalidated.get(key, 0) <= sent_at_invalidation:
                if key not in mirror:
                    if room <= 0:
                        continue  # broadcast mirror full: this key is read from Redis when scanned
                    room -= 1
                mirror[key] = value

    async def _read(self, conn: _Connection, keys: list[str]) -> list[bytes | None]:
        """MGET `keys` on `conn`, remembering the replies the rules above allow."""
        sent_at, epoch = self._invalidation_count, self._epoch
        self._reads[sent_at] += 1
        try:
            values = await self._send(conn, ("MGET", *keys))
        finally:
            self._reads[sent_at] -= 1
            if not self._reads[sent_at]:
                del self._reads[sent_at]
        self._remember(keys, values, sent_at, epoch)
        return values

    async def _fetch_changed(self) -> None:
        """Broadcast: read again what Redis said changed (one MGET per moment), so the next scan of a
        new or changed certificate finds it in memory."""
        try:
            while self._to_fetch:
                keys = list(self._to_fetch)[:_FETCH_CHUNK]
                self._to_fetch.difference_update(keys)
                conn = self._conn
                if conn is None or conn.closed or not self._mirroring:
                    self._to_fetch.clear()  # read from Redis on demand; a reconnect loads everything again
                    return
                try:
                    await self._read(conn, keys)
                except ConnectionError:
                    self._to_fetch.clear()
                    return
        finally:
            self._fetching = False

    async def _load_all(self, conn: _Connection, prefix: str) -> None:
        """Broadcast: every key under the prefix read once after a connect (SCAN, then MGET per page).
        Tracking is on before, so a key that changes meanwhile is either invalidated after its read was
        sent (not kept) or read again by _fetch_changed."""
        cursor = b"0"
        try:
            while not conn.closed and conn is self._conn and len(self._mirror) < self._limit:
                cursor, keys = await self._send(conn, ("SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000"))
                if keys:
                    await self._read(conn, [k.decode() for k in keys])
                if cursor in (b"0", 0, "0"):
                    return
        except ConnectionError:
            return  # the lost connection forgets the mirror; the next connect loads again

    # --- connections ---------------------------------------------------------------------------

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

    async def _open(self, **protocol) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: _Connection(**protocol), self._host, self._port), self._timeout
        )
        if self._password:
            await self._send(conn, ("AUTH", self._user, self._password) if self._user else ("AUTH", self._password))
        return conn

    async def _connect(self) -> _Connection:
        self._close_connections()
        self._conn = self._invalidations = None  # callbacks of the old connections change nothing now
        conn = None  # not self._conn until tracking is on: no read may use it before
        try:
            if self._track:
                # The invalidation connection first: tracking on the data connection names its client id.
                invalidations = await self._open(on_message=self._on_invalidation, on_lost=self._lost)
                self._invalidations = invalidations
                client_id = await self._send(invalidations, ("CLIENT", "ID"))
                await self._send(invalidations, ("SUBSCRIBE", INVALIDATE_CHANNEL))
            conn = await self._open(on_lost=self._lost if self._track else None)
            if self._db:
                await self._send(conn, ("SELECT", str(self._db)))
            if self._track:
                broadcast = ("BCAST", "PREFIX", self._prefix) if self._prefix is not None else ()
                await self._send(conn, ("CLIENT", "TRACKING", "on", "REDIRECT", str(client_id), *broadcast))
        except (TimeoutError, OSError) as exc:
            self._close_connections()
            if conn is not None:
                conn.closed = True
                conn.abort()
            self._failed_at = time.monotonic()
            raise ConnectionError(f"cannot connect to Redis: {type(exc).__name__}") from exc
        self._forget_all()
        self._mirroring = True
        self._conn = conn
        if self._track:
            self._heartbeat = asyncio.ensure_future(self._beat(invalidations))
        if self._prefix is not None:
            self._loader = asyncio.ensure_future(self._load_all(conn, self._prefix))
        return conn

    def _lost(self, conn: _Connection) -> None:
        """Either connection of a tracking reader is gone: invalidations may be missed, so forget
        everything and let the next read reconnect both."""
        if conn is self._conn or conn is self._invalidations:
            self._forget_all()
            self._close_connections()

    def _close_connections(self) -> None:
        for conn in (self._conn, self._invalidations):
            if conn is not None and not conn.closed:
                conn.closed = True
                conn.abort()
        if self._heartbeat is not None and self._heartbeat is not asyncio.current_task():
            self._heartbeat.cancel()
        self._heartbeat = None
        if self._loader is not None and self._loader is not asyncio.current_task():
            self._loader.cancel()
        self._loader = None

    async def _beat(self, invalidations: _Connection) -> None:
        """A hung Redis closes no socket, and a slow one delays invalidations: see the module notes."""
        loop = asyncio.get_running_loop()
        while not invalidations.closed:
            await asyncio.sleep(HEARTBEAT_S)
            if invalidations.closed:
                return
            pong = loop.create_future()
            try:
                _write(invalidations, _PING)
                invalidations.waiting.append(pong)
                try:
                    await asyncio.wait_for(asyncio.shield(pong), self._timeout)
                except TimeoutError:
                    self._mirroring = False  # invalidations may be as late as this PING: stop trusting
                    self._forget_all()
                    await asyncio.wait_for(pong, RECONNECT_AFTER_S)
                    self._mirroring = True
                    self._forget_all()  # what was read while off is not remembered (a broadcast mirror reloads)
            except (TimeoutError, ConnectionError):
                self._lost(invalidations)
                return

    async def _send(self, conn: _Connection, command: tuple[str | bytes, ...]) -> Any:
        """The reply to `command` (hiredis's parse: bytes, int, list, …); ConnectionError on any failure."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        _write(conn, _encode(*command))
        conn.waiting.append(future)
        # A plain timer rather than asyncio.wait_for, which costs a task and a second future per command.
        timer = loop.call_later(self._timeout, self._expire, conn, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, conn: _Connection, future: asyncio.Future) -> None:
        if not future.done():
            future.set_exception(ConnectionError("Redis timed out"))
            conn.abort()  # replies would arrive out of step: start over
            self._failed_at = time.monotonic()

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connection()
        if not self._track:
            return await self._send(conn, ("MGET", *keys))
        return await self._read(conn, keys)

    async def aclose(self) -> None:
        self._close_connections()
        self._forget_all()
