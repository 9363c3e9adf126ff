"""A Postgres crash and restart under verify_svc, and a listening connection that goes silent without closing:
the checkpoint bundle it serves catches up with the next version within seconds, not at the next periodic
refresh (TRUST_REFRESH_SECONDS, 300 s here). A failover drill found verify_svc serving an old bundle for 30+ s
after the new primary issued the next one, so an offline device answered VALID for a revoked certificate."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import asyncpg
import grpc

from services.common import migrate
from services.common.auth import Role
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from services.registry import signing_keys
from tests.conftest import bearer, fresh_secrets, make_principal, start_verify_svc
from tests.publish_svc.conftest import activate_new_key, running_platform
from tools.servers import free_port

CATCH_UP_S = 5.0  # far below TRUST_REFRESH_SECONDS: only noticing the lost connection can meet it
SILENT_CATCH_UP_S = 20.0  # a connection gone silent is noticed only when a check of it goes unanswered


class FreezingProxy:
    """A TCP proxy to Postgres. `freeze()` makes every connection open now go silent without closing, as one
    to a primary killed behind a switched proxy (or across a dead network) does; connections made later are
    forwarded as before, like the proxy's to the promoted standby. `thaw()` lets the held bytes through."""

    def __init__(self, upstream_port: int):
        self._upstream_port = upstream_port
        self._gates: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def freeze(self) -> None:
        for gate in self._gates:
            gate.clear()

    def thaw(self) -> None:
        for gate in self._gates:
            gate.set()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        gate = asyncio.Event()
        gate.set()
        self._gates.append(gate)
        try:
            try:
                server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(
                self._pipe(client_reader, server_writer, gate), self._pipe(server_reader, client_writer, gate)
            )
        finally:
            self._gates.remove(gate)
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event) -> None:
        try:
            while chunk := await reader.read(65536):
                await gate.wait()  # frozen: held, neither passed on nor refused
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def issued_version(dsn: str) -> int:
    """The newest bundle version in Postgres (0: none yet)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT coalesce(max(version), 0) FROM checkpoint_bundles")
    finally:
        await conn.close()


async def until_issued_after(dsn: str, version: int, timeout_s: float) -> int:
    """Poll until publish_svc has issued a version after `version`; returns it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            newest = await issued_version(dsn)
            if newest > version:
                return newest
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # Postgres is still coming back
        assert time.monotonic() < deadline, f"publish_svc issued no bundle after version {version}"
        await asyncio.sleep(0.1)


async def test_verify_serves_the_next_bundle_promptly_after_postgres_restarts(private_postgres):
    dsn = private_postgres.url()
    await migrate.apply(dsn)
    # Builds every half second, so the next version follows the change (and the restart) at once.
    async with running_platform(dsn, BUNDLE_BUILD_SECONDS="0.5") as platform:
        await activate_new_key(dsn, platform.env, purpose=signing_keys.BUNDLE)
        device = await make_principal(dsn, Role.CHECKPOINT, province="24")
        http_port = free_port()
        verify_server = await start_verify_svc(
            platform.env, TRUST_REFRESH_SECONDS="300", BUNDLE_HTTP_PORT=str(http_port)
        )
        try:
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{verify_server.port}") as channel,
                aiohttp.ClientSession() as http,
            ):
                stub = verify_service_pb2_grpc.VerifyServiceStub(channel)

                async def served() -> tuple[int, int]:
                    """(gRPC version, HTTP version) verify_svc serves now; 0 where it has none or cannot say."""
                    try:
                        answer = await stub.GetCheckpointBundle(
                            vpb.GetCheckpointBundleRequest(since_version=0),
                            metadata=bearer(device["token"]),
                            timeout=2,
                        )
                        rpc = answer.version
                    except grpc.aio.AioRpcError as err:
                        # Authentication reads Postgres: while it restarts, UNAVAILABLE.
                        assert err.code() == grpc.StatusCode.UNAVAILABLE, err
                        rpc = 0
                    async with http.get(f"http://127.0.0.1:{http_port}/bundle/v1/latest") as response:
                        plain = int(response.headers["X-Bundle-Version"]) if response.status == 200 else 0
                    return rpc, plain

                async def until_served(version: int, timeout_s: float) -> float:
                    """Seconds until both endpoints serve `version` or a later one; fails after `timeout_s`."""
                    started = time.monotonic()
                    while True:
                        now = await served()
                        if min(now) >= version:
                            return time.monotonic() - started
                        assert time.monotonic() - started < timeout_s, (
                            f"verify_svc serves {now}, not version {version} or later, {timeout_s} s after its issue"
                        )
                        await asyncio.sleep(0.1)

                # The NOTIFY path works before the crash: each version is served within seconds.
                first = await until_issued_after(dsn, 0, 30)
                await until_served(await issued_version(dsn), 20)
                await activate_new_key(dsn, fresh_secrets())
                before = await until_issued_after(dsn, first, 30)
                await until_served(await issued_version(dsn), CATCH_UP_S)

                await asyncio.to_thread(private_postgres.stop, "immediate")
                await asyncio.to_thread(private_postgres.start)  # the same port, as a proxy's switch looks
                # A change every bundle carries (another DCC key on the trust list), made after the restart.
                await activate_new_key(dsn, fresh_secrets())
                after = await until_issued_after(dsn, before, 30)
                assert await until_served(after, CATCH_UP_S) < CATCH_UP_S
        finally:
            await verify_server.stop(0)


async def http_version(http: aiohttp.ClientSession, port: int) -> int:
    """The bundle version verify_svc serves over HTTP (0: none yet)."""
    async with http.get(f"http://127.0.0.1:{port}/bundle/v1/latest") as response:
        return int(response.headers["X-Bundle-Version"]) if response.status == 200 else 0


async def test_verify_notices_a_listening_connection_gone_silent_and_serves_the_next_bundle(private_postgres):
    dsn = private_postgres.url()
    await migrate.apply(dsn)
    proxy = await FreezingProxy(private_postgres.port).start()
    async with running_platform(dsn, BUNDLE_BUILD_SECONDS="0.5") as platform:
        await activate_new_key(dsn, platform.env, purpose=signing_keys.BUNDLE)
        http_port = free_port()
        # Only verify_svc goes through the proxy; publish_svc keeps issuing versions on the real server.
        verify_server = await start_verify_svc(
            platform.env,
            DATABASE_URL=dsn.replace(f":{private_postgres.port}/", f":{proxy.port}/"),
            TRUST_REFRESH_SECONDS="300",
            BUNDLE_HTTP_PORT=str(http_port),
        )
        try:
            async with aiohttp.ClientSession() as http:

                async def until_served(version: int, timeout_s: float) -> None:
                    deadline = time.monotonic() + timeout_s
                    while (served := await http_version(http, http_port)) < version:
                        assert time.monotonic() < deadline, (
                            f"verify_svc serves {served}, not {version}, after {timeout_s} s"
                        )
                        await asyncio.sleep(0.1)

                first = await until_issued_after(dsn, 0, 30)
                await until_served(first, 20)
                proxy.freeze()
                # The NOTIFY of the next version reaches the silent connection's proxy and goes no further.
                await activate_new_key(dsn, fresh_secrets())
                after = await until_issued_after(dsn, first, 30)
                # Noticed by the liveness check (trust.LIVENESS_CHECK_SECONDS, 5 s, answered within
                # LIVENESS_TIMEOUT_SECONDS, 5 s), then a reconnect after the usual 2 s pause: well below 300 s.
                await until_served(after, SILENT_CATCH_UP_S)
        finally:
            proxy.thaw()  # the pool's frozen connections must close when verify_svc stops
            await verify_server.stop(0)
            await proxy.stop()
