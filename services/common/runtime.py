"""What every service's entry point does: config, logs, storage clients, server, signals.

A service provides its config class, a `LABEL` and `build(deps) -> [GrpcService]`;
`services/<x>_svc/__main__.py` only calls `run_module(LABEL, config class, build)`, which loads and
checks the config, starts SERVER_PROCESSES - 1 more processes of the same module, and serves until
SIGTERM. Tests call `start_service(...)` to run the very same wiring in-process on port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import asyncpg
import redis.asyncio as redis
from prometheus_client import Counter

from services.common import logs, tracing
from services.common.auth import CredentialResolver
from services.common.cache import create_client
from services.common.config import ConfigError, PersonalDataConfig, ServiceConfig, load
from services.common.db import create_pool
from services.common.errors import Unavailable
from services.common.pii import PiiCipher
from services.common.server import GrpcService, Running, run_until_signal, start
from services.common.threads import batch_helper_threads

log = logging.getLogger("covidtest.runtime")
BACKGROUND_TASKS_ENDED = Counter(
    "covidtest_background_tasks_ended", "Background tasks (relay, bundle builder, …) that ended by an error", ["task"]
)


# A service's build is given its own config class: Deps[VerifyConfig] for verify_svc. Covariant, so a
# part that needs only the common settings (AdminService) takes Deps[ServiceConfig].
ConfigT = TypeVar("ConfigT", bound=ServiceConfig, covariant=True)
C = TypeVar("C", bound=ServiceConfig)


@dataclass(frozen=True)
class Deps(Generic[ConfigT]):
    """Shared clients handed to a service's `build`, which may also add background tasks."""

    config: ConfigT
    pool: asyncpg.Pool
    redis: redis.Redis
    personal_data: PiiCipher | None  # None in a service that holds no personal-data keys (verify_svc)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def pii(self) -> PiiCipher:
        """The personal-data keyring; only a service configured with PersonalDataConfig has one."""
        if self.personal_data is None:
            raise RuntimeError(f"{type(self.config).__name__} holds no personal-data keys (PII_KEYS)")
        return self.personal_data

    def background(self, coroutine, stop: Callable[[], None] | None = None) -> asyncio.Task:
        """Run `coroutine` for the life of the server; on shutdown call `stop` and wait, or cancel."""
        task = asyncio.create_task(coroutine)
        task.add_done_callback(_report_unexpected_end)

        async def finish() -> None:
            if stop is not None:
                stop()
                try:
                    await asyncio.wait_for(asyncio.shield(task), 5)
                    return
                except TimeoutError:
                    pass
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self.on_stop.append(finish)
        return task


def _report_unexpected_end(task: asyncio.Task) -> None:
    # A background loop retries what it expects; anything else ends it, and an operator must hear of
    # it (by the error's type: its message may hold data), in the log and in the metric alerts watch.
    if not task.cancelled() and task.exception() is not None:
        BACKGROUND_TASKS_ENDED.labels(getattr(task.get_coro(), "__qualname__", "?")).inc()
        log.error(
            "background task ended unexpectedly",
            extra={
                "fields": {
                    "task": getattr(task.get_coro(), "__qualname__", "?"),
                    "error": type(task.exception()).__name__,
                }
            },
        )


Build = Callable[[Deps[C]], list[GrpcService]]


async def start_service(
    label: str, config: C, build: Build[C], *, serve_metrics_port: bool = True, serving: bool = True
) -> Running:
    """The service built and listening; its health SERVING unless `serving` is False (then the caller
    turns it on with `Running.set_serving`)."""
    pool = await create_pool(config.database_url, config.db_pool_min, config.db_pool_max)
    cache = create_client(config.redis_url)
    pii = PiiCipher(config.pii_keys, config.pii_pepper) if isinstance(config, PersonalDataConfig) else None
    deps = Deps(config=config, pool=pool, redis=cache, personal_data=pii)
    resolver = CredentialResolver(pool, config.auth_cache_seconds, config.auth_db_timeout_seconds)
    try:
        services = build(deps)
        return await start(
            config,
            label,
            services,
            resolver,
            on_stop=[pool.close, cache.aclose, *deps.on_stop],
            serve_metrics_port=serve_metrics_port,
            serving=serving,
            **_metrics_placement(config),
        )
    except BaseException:
        for finish in reversed(deps.on_stop):
            await finish()
        await pool.close()
        await cache.aclose()
        raise


WORKER_ENV = "COVIDTEST_SERVER_WORKER"


def _metrics_placement(config: ServiceConfig) -> dict:
    """Where this process's /metrics goes. With SERVER_PROCESSES > 1 the pod has one scrape target,
    METRICS_PORT: the first process serves there its metrics and its workers', which each serve their own on
    127.0.0.1 only (METRICS_PORT + n), out of the scraper's reach."""
    if os.environ.get(WORKER_ENV):
        return {"metrics_host": "127.0.0.1"}
    if config.server_processes > 1 and config.metrics_port:
        return {"metrics_workers": [config.metrics_port + n for n in range(1, config.server_processes)]}
    return {}


READY_FD_ENV, GO_FD_ENV = "COVIDTEST_WORKER_READY_FD", "COVIDTEST_WORKER_GO_FD"
WORKERS_READY_TIMEOUT_S = 120.0


@dataclass
class Worker:
    """One more process of this service: it writes a byte to `ready` once it listens (health
    NOT_SERVING), and turns SERVING when the first process writes a byte to `go`. When `go` reaches
    end of file (the first process is gone, even SIGKILLed) the worker stops: no orphan keeps serving."""

    process: subprocess.Popen
    ready: int  # read end, in the first process
    go: int  # write end, in the first process


def _start_workers(label: str, config: ServiceConfig) -> list[Worker]:
    """SERVER_PROCESSES - 1 more processes of this service on the same gRPC port (SO_REUSEPORT: the
    kernel spreads connections over them). Started with exec, never fork, since grpc is imported; each
    serves metrics on METRICS_PORT + its number."""
    workers = []
    for number in range(1, config.server_processes):
        ready_read, ready_write = os.pipe()
        go_read, go_write = os.pipe()
        env = {
            **os.environ,
            WORKER_ENV: str(number),
            READY_FD_ENV: str(ready_write),
            GO_FD_ENV: str(go_read),
            "METRICS_PORT": str(config.metrics_port + number) if config.metrics_port else "0",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{label}"], env=env, pass_fds=(ready_write, go_read)
        )
        os.close(ready_write)
        os.close(go_read)
        workers.append(Worker(process, ready_read, go_write))
    return workers


async def _wait_until_workers_listen(workers: list[Worker], timeout_s: float) -> None:
    """Returns once every worker has said it listens; RuntimeError if one ends first or time runs out.
    Reads the pipes from the event loop (add_reader), so no helper thread is left behind."""
    loop = asyncio.get_running_loop()
    said: list[asyncio.Future[bool]] = []
    for worker in workers:
        future: asyncio.Future[bool] = loop.create_future()

        def on_readable(fd: int = worker.ready, future: asyncio.Future[bool] = future) -> None:
            loop.remove_reader(fd)
            if not future.done():
                future.set_result(bool(os.read(fd, 1)))

        loop.add_reader(worker.ready, on_readable)
        said.append(future)
    try:
        answers = await asyncio.wait_for(asyncio.gather(*said), timeout_s)
    except TimeoutError:
        raise RuntimeError(f"the worker processes did not start within {timeout_s:.0f} s") from None
    finally:
        for worker in workers:
            loop.remove_reader(worker.ready)
            os.close(worker.ready)
    if not all(answers):
        raise RuntimeError("a worker process ended before it served")


def _stop_workers(workers: list[Worker], grace: float) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(grace + 5)
        except subprocess.TimeoutExpired:
            worker.process.kill()
        with contextlib.suppress(OSError):
            os.close(worker.go)


async def _serve_as_worker(running: Running) -> None:
    """A worker's part of the start: say it listens, turn SERVING when told, stop when the first process
    is gone (its end of the go pipe closes)."""
    ready_fd, go_fd = int(os.environ[READY_FD_ENV]), int(os.environ[GO_FD_ENV])
    os.write(ready_fd, b"1")
    os.close(ready_fd)

    loop = asyncio.get_running_loop()

    def on_go_readable() -> None:  # a callback on the loop itself: no thread waits on the pipe
        if os.read(go_fd, 1):
            loop.create_task(running.set_serving(True))
            return
        loop.remove_reader(go_fd)  # end of file: the first process is gone
        log.warning("the first process of this service is gone: stopping this worker")
        os.kill(os.getpid(), signal.SIGTERM)

    loop.add_reader(go_fd, on_go_readable)


# Young-generation collections after this many net container allocations (Python's default is 700).
# A first scan at a checkpoint allocates a few hundred objects (the decoded certificate, its CBOR maps),
# so the default collected every two or three scans; the older generations follow it less often too.
GC_THRESHOLDS = (50_000, 20, 10)


def collect_garbage_for_serving() -> None:
    """Once the service is built: what start-up created (modules, descriptors, the schema) moves out of
    the collector's sight for good (gc.freeze), and collections become rarer. Measured on verify_svc with
    a different QR on every scan: p99 at max load about halved, throughput up to 10 % higher
    (docs/benchmarks.md). Garbage without cycles is freed at once by reference counting either way."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main(label: str, config_cls: type[C], build: Build[C]) -> int:
    try:
        config = load(config_cls)
    except ConfigError as exc:
        print(f"{label}: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level)
    tracing.configure_from_environment(label)  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    worker = bool(os.environ.get(WORKER_ENV))
    workers = [] if worker else _start_workers(label, config)

    async def serve() -> None:
        try:
            # Every process answers health NOT_SERVING until all of them listen: a readiness probe that
            # passes (and a load balancer that sends) while only some do would pin long-lived client
            # connections to those processes, leaving the others idle for the connections' lifetime.
            running = await start_service(label, config, build, serving=not worker and not workers)
            collect_garbage_for_serving()
            changed = batch_helper_threads() if config.helper_threads_batch else 0
            log.info(
                "helper threads scheduled",
                extra={"fields": {"sched_batch": config.helper_threads_batch, "threads": changed}},
            )
            if worker:
                await _serve_as_worker(running)
            elif workers:
                await _wait_until_workers_listen(workers, WORKERS_READY_TIMEOUT_S)
                for w in workers:
                    os.write(w.go, b"1")
                await running.set_serving(True)
                log.info("all processes serving", extra={"fields": {"processes": len(workers) + 1}})
            await run_until_signal(running, config.shutdown_grace_seconds)
        finally:
            await asyncio.to_thread(_stop_workers, workers, config.shutdown_grace_seconds)
            tracing.shutdown()  # the spans still buffered

    try:
        import uvloop

        uvloop.run(serve())
    except Unavailable as exc:
        log.error("cannot start: a dependency is unavailable", extra={"fields": {"error": exc.message}})
        return 1
    except (OSError, RuntimeError) as exc:
        log.error("cannot start", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}})
        return 1
    return 0


def run_module(label: str, config_cls: type[C], build: Build[C]) -> None:
    sys.exit(main(label, config_cls, build))


__all__ = ["Deps", "Build", "start_service", "main", "run_module"]
