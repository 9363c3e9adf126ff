"""The lean Redis reader of the verify hot path, against the real Redis and a stopped one."""

import asyncio
import contextlib
import os
import signal
import time

import pytest
import redis.asyncio as redis

from services.verify_svc.redis_reader import RedisReader
from tests.conftest import REDIS_URL
from tools.servers import RedisServer, free_port


async def test_mget_pipelines_many_concurrent_reads(redis_prefix):
    client = redis.Redis.from_url(REDIS_URL)
    await client.mset({f"{redis_prefix}:a": b"1:VALID:9", f"{redis_prefix}:b": b"2:REVOKED:9"})
    await client.aclose()
    reader = RedisReader(REDIS_URL)
    try:
        keys = [f"{redis_prefix}:a", f"{redis_prefix}:missing", f"{redis_prefix}:b"]
        assert await reader.mget(keys) == [b"1:VALID:9", None, b"2:REVOKED:9"]
        answers = await asyncio.gather(*(reader.mget([keys[i % 3]]) for i in range(300)))
        assert answers == [[[b"1:VALID:9"], [None], [b"2:REVOKED:9"]][i % 3][0:1] for i in range(300)]
    finally:
        await reader.aclose()


async def test_unreachable_redis_fails_fast_and_is_retried_later():
    reader = RedisReader(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    with pytest.raises(ConnectionError):
        await reader.mget(["x"])
    started = time.monotonic()
    with pytest.raises(ConnectionError):  # within the retry pause: no new connect attempt
        await reader.mget(["x"])
    assert time.monotonic() - started < 0.05


async def test_hung_redis_times_out_and_the_reader_recovers(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    reader = RedisReader(server.url(), timeout_s=0.2)
    pid = int(server.pidfile.read_text())
    try:
        assert await reader.mget(["x"]) == [None]
        os.kill(pid, signal.SIGSTOP)  # Redis alive but not answering
        started = time.monotonic()
        pending = [asyncio.ensure_future(reader.mget([f"k{i}"])) for i in range(5)]
        for call in pending:
            with pytest.raises(ConnectionError):
                await call
        assert time.monotonic() - started < 1.0
        os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while True:  # the reader reconnects once its retry pause is over
            try:
                assert await reader.mget(["x"]) == [None]
                break
            except ConnectionError:
                assert time.monotonic() < deadline, "the reader did not recover"
                await asyncio.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)
        await reader.aclose()
        server.stop()


async def test_a_redis_without_tracking_is_treated_as_unreachable(tmp_path):
    # CLIENT renamed away (as some managed Redis services do): no mirror can be kept safely, so the
    # reader reports Redis unreachable and verification reads Postgres instead.
    server = RedisServer(tmp_path / "redis", extra_args=["--rename-command", "CLIENT", ""])
    server.start()
    try:
        plain = RedisReader(server.url())
        assert await plain.mget(["k"]) == [None]
        await plain.aclose()
        tracking = RedisReader(server.url(), track=True)
        with pytest.raises(ConnectionError):
            await tracking.mget(["k"])
        assert tracking.known("k") is None
        await tracking.aclose()
    finally:
        server.stop()


def test_only_plain_redis_urls():
    with pytest.raises(ValueError):
        RedisReader("rediss://example:6380/0")


@contextlib.asynccontextmanager
async def _tracking_reader_on_private_redis(tmp_path):
    """A private Redis (it gets stopped), a writer and a tracking reader on it, and its pid."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    writer = redis.Redis.from_url(server.url())
    reader = RedisReader(server.url(), timeout_s=0.3, track=True)
    pid = int(server.pidfile.read_text())
    try:
        yield server, writer, reader, pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        await reader.aclose()
        await writer.aclose()
        server.stop()


async def _until(check, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_tracking_mirror_serves_repeat_reads_and_drops_changed_keys(redis_prefix):
    writer = redis.Redis.from_url(REDIS_URL)
    a, b = f"{redis_prefix}:a", f"{redis_prefix}:b"
    await writer.mset({a: b"1:VALID:9", b: b"1:VALID:9"})
    reader = RedisReader(REDIS_URL, track=True)
    try:
        assert await reader.mget([a, b, f"{redis_prefix}:none"]) == [b"1:VALID:9", b"1:VALID:9", None]
        assert reader.known(a) == b"1:VALID:9" and reader.known(f"{redis_prefix}:none") is None
        await writer.set(a, b"2:REVOKED:9")  # Redis tells the reader; the mirror drops it
        await _until(lambda: reader.known(a) is None, 2)
        assert reader.known(b) == b"1:VALID:9"
        assert await reader.mget([a]) == [b"2:REVOKED:9"] and reader.known(a) == b"2:REVOKED:9"
        await writer.delete(b)
        await _until(lambda: reader.known(b) is None, 2)
    finally:
        await reader.aclose()
        await writer.aclose()


def test_an_invalidation_arriving_before_the_reply_it_overtook_wins():
    reader = RedisReader(REDIS_URL, track=True)
    sent_at, epoch = reader._invalidation_count, reader._epoch
    reader._on_invalidation([b"message", b"__redis__:invalidate", [b"k"]])  # the key changed meanwhile
    reader._remember(["k", "j"], [b"old", b"fine"], sent_at, epoch)
    assert reader.known("k") is None and reader.known("j") == b"fine"
    reader._on_invalidation([b"message", b"__redis__:invalidate", None])  # FLUSHALL
    assert reader.known("j") is None


async def test_tracking_mirror_is_forgotten_when_redis_flushes_or_stops(tmp_path):
    # A hung Redis (no socket closes, only the heartbeat can tell): the two tests below.
    async with _tracking_reader_on_private_redis(tmp_path) as (server, writer, reader, pid):
        await writer.set("k", b"1:VALID:9")
        assert await reader.mget(["k"]) == [b"1:VALID:9"] and reader.known("k") == b"1:VALID:9"
        await writer.flushall()
        await _until(lambda: reader.known("k") is None, 2)

        await writer.set("k", b"1:VALID:9")
        await _read_until_mirrored(reader, "k", 2)
        server.stop()
        await _until(lambda: reader.known("k") is None, 2)
        with pytest.raises(ConnectionError):
            await reader.mget(["k"])


async def _read_until_mirrored(reader: RedisReader, key: str, seconds: float) -> None:
    """Reads `key` until the mirror holds it; reads may fail while the reader reconnects."""
    deadline = time.monotonic() + seconds
    while reader.known(key) is None:
        assert time.monotonic() < deadline, "the reader did not mirror the key again"
        with contextlib.suppress(ConnectionError):
            await reader.mget([key])
        await asyncio.sleep(0.05)


async def _connections_received(client) -> int:
    return (await client.info("stats"))["total_connections_received"]


async def test_a_moment_of_slow_redis_pauses_the_mirror_without_a_reconnect(tmp_path):
    """A PING answered late (a CPU spike on the Redis host) turns the mirror off until it is answered,
    but keeps the connections: reads go on by MGET, not to Postgres for a retry pause."""
    from services.verify_svc import redis_reader

    async with _tracking_reader_on_private_redis(tmp_path) as (server, writer, reader, pid):
        await writer.set("k", b"1:VALID:9")
        assert await reader.mget(["k"]) == [b"1:VALID:9"] and reader.known("k") == b"1:VALID:9"
        connections = await _connections_received(writer)
        os.kill(pid, signal.SIGSTOP)
        await _until(lambda: reader.known("k") is None, redis_reader.HEARTBEAT_S + 0.3 + 1)  # PING overdue
        os.kill(pid, signal.SIGCONT)
        assert await reader.mget(["k"]) == [b"1:VALID:9"]  # at once: no reconnect, no retry pause

        await _read_until_mirrored(reader, "k", redis_reader.HEARTBEAT_S + 2)  # on once the PING is answered
        assert await _connections_received(writer) == connections


async def test_a_silent_invalidation_connection_is_closed_and_replaced(tmp_path, monkeypatch):
    from services.verify_svc import redis_reader

    monkeypatch.setattr(redis_reader, "RECONNECT_AFTER_S", 0.5)
    async with _tracking_reader_on_private_redis(tmp_path) as (server, writer, reader, pid):
        await writer.set("k", b"1:VALID:9")
        await reader.mget(["k"])
        connections = await _connections_received(writer)
        os.kill(pid, signal.SIGSTOP)
        await _until(
            lambda: reader._invalidations is None or reader._invalidations.closed,
            redis_reader.HEARTBEAT_S + 0.3 + 0.5 + 1,
        )
        assert reader.known("k") is None
        os.kill(pid, signal.SIGCONT)
        await _read_until_mirrored(reader, "k", 5)  # the next reads connect afresh and mirror again
        assert await _connections_received(writer) == connections + 2  # data and invalidation


async def test_a_broadcast_mirror_holds_every_key_under_its_prefix_read_or_not(redis_prefix):
    """verify_svc's mode: all certificate statuses in memory, so a first scan needs no round trip.
    Keys written before the reader connected are loaded; keys written later are read again as soon as
    Redis says they changed; a change (a revocation) replaces the old value; other keys stay out."""
    prefix = f"{redis_prefix}:cs:v1:"
    writer = redis.Redis.from_url(REDIS_URL)
    await writer.mset({f"{prefix}{i}": f"1:VALID:{i}".encode() for i in range(2500)})  # several SCAN pages
    await writer.set(f"{redis_prefix}:other", b"x")
    reader = RedisReader(REDIS_URL, broadcast_prefix=prefix)
    try:
        await reader.mget([f"{prefix}none"])  # connects; the load runs in the background
        await _until(lambda: all(reader.known(f"{prefix}{i}") == f"1:VALID:{i}".encode() for i in range(2500)), 10)
        await writer.set(f"{prefix}new", b"1:VALID:9")  # never read by the reader
        await _until(lambda: reader.known(f"{prefix}new") == b"1:VALID:9", 2)
        await writer.set(f"{prefix}new", b"2:REVOKED:9")
        await _until(lambda: reader.known(f"{prefix}new") == b"2:REVOKED:9", 2)
        assert reader.known(f"{redis_prefix}:other") is None
    finally:
        await reader.aclose()
        await writer.aclose()


async def test_a_full_broadcast_mirror_keeps_what_it_holds_and_reads_the_rest(redis_prefix):
    prefix = f"{redis_prefix}:cs:v1:"
    writer = redis.Redis.from_url(REDIS_URL)
    await writer.mset({f"{prefix}{i}": b"1:VALID:9" for i in range(10)})
    reader = RedisReader(REDIS_URL, broadcast_prefix=prefix, mirror_limit=4)
    try:
        await reader.mget([f"{prefix}none"])
        await _until(lambda: sum(reader.known(f"{prefix}{i}") is not None for i in range(10)) == 4, 5)
        assert await reader.mget([f"{prefix}{i}" for i in range(10)]) == [b"1:VALID:9"] * 10
        assert sum(reader.known(f"{prefix}{i}") is not None for i in range(10)) == 4
    finally:
        await reader.aclose()
        await writer.aclose()


async def test_invalidations_are_pruned_but_never_the_ones_a_read_in_flight_needs(monkeypatch):
    from services.verify_svc import redis_reader

    monkeypatch.setattr(redis_reader, "_PRUNE_INVALIDATED_AT", 10)
    reader = RedisReader(REDIS_URL, broadcast_prefix="p:")
    for i in range(5):
        reader._on_invalidation([b"message", b"__redis__:invalidate", [f"old{i}".encode()]])
    sent_at, epoch = reader._invalidation_count, reader._epoch
    reader._reads[sent_at] += 1  # a read sent now, not answered yet
    for i in range(8):  # past the pruning mark: the five older ones may go, these must stay
        reader._on_invalidation([b"message", b"__redis__:invalidate", [f"k{i}".encode()]])
    assert all(f"old{i}" not in reader._invalidated for i in range(5))
    reader._remember([f"k{i}" for i in range(8)] + ["fine"], [b"stale"] * 8 + [b"1"], sent_at, epoch)
    assert all(reader.known(f"k{i}") is None for i in range(8)) and reader.known("fine") == b"1"


def test_a_connection_dropped_as_soon_as_it_is_accepted_is_a_connection_error_under_uvloop():
    """HAProxy with no Redis master up accepts a connection and drops it at once. Writing to such a closed
    transport raises RuntimeError under uvloop (the servers' loop); the reader must report it as the lost
    connection it is (ConnectionError: verification then reads Postgres), never let it out (INTERNAL).
    Found by the Redis failover drill (tests/topology/test_drill_redis_failover.py)."""
    import uvloop

    async def scenario() -> list[type[BaseException]]:
        async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.transport.abort()

        server = await asyncio.start_server(drop, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        raised: list[type[BaseException]] = []
        try:
            for track in (False, True):
                reader = RedisReader(f"redis://127.0.0.1:{port}/0", timeout_s=0.5, track=track)
                try:
                    for _ in range(3):
                        try:
                            await reader.mget(["x"])
                        except Exception as exc:  # noqa: BLE001 - what matters is which kind
                            raised.append(type(exc))
                        reader._failed_at = 0.0  # skip the retry pause: connect again at once
                finally:
                    await reader.aclose()
        finally:
            server.close()
            await server.wait_closed()
        return raised

    loop = uvloop.new_event_loop()
    try:
        raised = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert raised and all(issubclass(kind, ConnectionError) for kind in raised), raised
