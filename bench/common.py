"""What the benchmark drivers share: a scratch database, service processes, percentiles, the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
SERVER_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
MACHINE = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextlib.asynccontextmanager
async def scratch_database(prefix: str):
    """A fresh, migrated database on the server at DATABASE_URL; dropped afterwards. Yields its URL."""
    from services.common import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(SERVER_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = urlunsplit(urlsplit(SERVER_DSN)._replace(path=f"/{name}"))
    try:
        await migrate.apply(dsn)
        yield dsn
    finally:
        admin = await asyncpg.connect(SERVER_DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


class ServiceProcesses:
    """`python -m services.<name>` processes on free ports, stopped together."""

    def __init__(self, env: dict[str, str]):
        self.env = {
            **os.environ,
            "GRPC_HOST": "127.0.0.1",
            "METRICS_PORT": "0",
            "GRPC_INSECURE": "true",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        self.processes: list[subprocess.Popen] = []

    def start(self, name: str, **env: str) -> int:
        from tools.servers import free_port, wait_for_port

        port = free_port()
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"], cwd=ROOT, env={**self.env, **env, "GRPC_PORT": str(port)}
            )
        )
        if not wait_for_port(port, 30) or not wait_for_serving(port, 60):
            raise RuntimeError(f"{name} did not start")
        return port

    def stop(self) -> None:
        for proc in self.processes:
            proc.terminate()
            proc.wait(30)


def wait_for_serving(port: int, deadline_s: float) -> bool:
    """Whether the gRPC health service on `port` answers SERVING within the deadline: with
    SERVER_PROCESSES > 1 only once every process listens, so the load's connections spread over all."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return True
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    return False


async def delete_redis_keys(prefix: str) -> None:
    """Remove what a benchmark's services cached under their REDIS_PREFIX."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def bench_platform(name: str, **env: str):
    """A scratch database, fresh personal-data secrets and a ServiceProcesses on them with a Redis
    prefix of its own; yields (database URL, secrets, services); stops everything and deletes the
    prefix's keys afterwards."""
    from tests.conftest import fresh_secrets

    async with scratch_database(f"bench_{name}") as dsn:
        secrets = fresh_secrets()
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        services = ServiceProcesses(
            {**secrets, "DATABASE_URL": dsn, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix, **env}
        )
        try:
            yield dsn, secrets, services
        finally:
            services.stop()
            await delete_redis_keys(prefix)
