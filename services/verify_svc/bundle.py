"""The checkpoint bundle as verify_svc serves it: the bytes publish_svc signed and stored, never rebuilt.

BundleStore holds the latest full bundle and the deltas of recent versions, reloaded with the trust list
(on NOTIFY checkpoint_bundle and every TRUST_REFRESH_SECONDS). It answers GetCheckpointBundle (full, or the
deltas since a version) and the plain HTTP endpoints, whose responses are cacheable so that operators can
put them behind a CDN or copy them to a USB stick:

    GET /bundle/v1/latest    the full bundle; Cache-Control max-age=30, ETag, If-None-Match → 304
    GET /bundle/v1/delta/N   the delta from version N to N + 1: immutable, cached for a year; 404 while
                             N + 1 is not issued; 410 Gone when it is no longer kept (fetch latest)

Until the store has read the table once, both answer "not ready" (UNAVAILABLE / 503 with Retry-After):
never an empty or made-up bundle. The bytes are signed, so plain HTTP is enough for their integrity.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from aiohttp import web
from prometheus_client import Gauge

from services.verify_svc import repository

log = logging.getLogger("covidtest.bundle")
SERVED_VERSION = Gauge("covidtest_bundle_served_version", "The checkpoint bundle version this process serves")
SERVED_ISSUED_AT = Gauge(
    "covidtest_bundle_served_issued_at_seconds", "issued_at of the bundle this process serves (Unix time)"
)
MAX_DELTAS_HELD = 10_000  # whatever publish_svc keeps, a process holds at most this many
CONTENT_TYPE = 'application/cose; cose-type="cose-sign1"'
LATEST_MAX_AGE_S = 30  # with BUNDLE_BUILD_SECONDS of 10, a cached copy is at most ~40 s behind


@dataclass(frozen=True)
class LatestBundle:
    version: int
    issued_at: datetime
    valid_until: datetime
    full: bytes


@dataclass(frozen=True)
class BundleAnswer:
    """What a device holding `since` version gets: the full bundle, or the deltas to apply in order."""

    version: int
    full: bytes | None = None
    deltas: list[bytes] = field(default_factory=list)


class BundleStore:
    channels: tuple[str, ...] = ("checkpoint_bundle",)

    def __init__(self) -> None:
        self.latest: LatestBundle | None = None
        self.loaded = asyncio.Event()  # the table has been read once (it may hold no bundle yet)
        self._deltas: dict[int, bytes] = {}  # version → the delta taking version - 1 to it

    async def reload(self, conn: asyncpg.Connection) -> None:
        row = await repository.latest_bundle(conn)
        if row is None:
            self.latest = None
        elif self.latest is None or row.version != self.latest.version:
            first = max(max(self._deltas, default=0), row.version - MAX_DELTAS_HELD)
            for version, delta in await repository.bundle_deltas(conn, first, row.version):
                self._deltas[version] = delta
            for version in [v for v in self._deltas if v <= row.version - MAX_DELTAS_HELD or v > row.version]:
                del self._deltas[version]
            self.latest = LatestBundle(row.version, row.issued_at, row.valid_until, row.full_bundle)
            SERVED_VERSION.set(row.version)
            SERVED_ISSUED_AT.set(row.issued_at.timestamp())
        self.loaded.set()

    def answer(self, since: int) -> BundleAnswer | None:
        """None when no bundle has been issued yet."""
        latest = self.latest
        if latest is None:
            return None
        if since == latest.version:
            return BundleAnswer(latest.version)
        # Never walk more versions than are held: a device asking from version 1 of millions costs nothing.
        if 0 < since < latest.version and latest.version - since <= len(self._deltas):
            deltas = [self._deltas.get(v) for v in range(since + 1, latest.version + 1)]
            if all(d is not None for d in deltas):
                chain = [d for d in deltas if d is not None]
                if sum(map(len, chain)) < len(latest.full):
                    return BundleAnswer(latest.version, deltas=chain)
        return BundleAnswer(latest.version, full=latest.full)

    def delta_from(self, version: int) -> bytes | None:
        return self._deltas.get(version + 1)


# --- HTTP ---------------------------------------------------------------------------------------------------


def _not_ready(store: BundleStore) -> web.Response | None:
    if not store.loaded.is_set():
        return web.Response(status=503, text="the bundle is not loaded yet; retry\n", headers={"Retry-After": "1"})
    if store.latest is None:
        return web.Response(
            status=503, text="no checkpoint bundle has been issued yet\n", headers={"Retry-After": "10"}
        )
    return None


def http_app(store: BundleStore) -> web.Application:
    async def latest(request: web.Request) -> web.StreamResponse:
        refused = _not_ready(store)
        if refused is not None:
            return refused
        bundle = store.latest
        assert bundle is not None  # _not_ready said so
        etag = f'"v{bundle.version}"'
        headers = {
            "ETag": etag,
            "Cache-Control": f"public, max-age={LATEST_MAX_AGE_S}",
            "X-Bundle-Version": str(bundle.version),
        }
        if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=bundle.full, headers={**headers, "Content-Type": CONTENT_TYPE})

    async def delta(request: web.Request) -> web.StreamResponse:
        raw = request.match_info["version"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            return web.Response(status=400, text="the version is a whole number\n")
        refused = _not_ready(store)
        if refused is not None:
            return refused
        since = int(raw)
        found = store.delta_from(since)
        if found is not None:
            return web.Response(
                body=found,
                headers={
                    "Content-Type": CONTENT_TYPE,
                    "Cache-Control": "public, max-age=31536000, immutable",
                    "X-Bundle-Version": str(since + 1),
                },
            )
        assert store.latest is not None  # _not_ready said so
        if since >= store.latest.version:
            return web.Response(
                status=404, text="no newer version yet\n", headers={"Cache-Control": "public, max-age=5"}
            )
        return web.Response(status=410, text="this delta is no longer kept: fetch /bundle/v1/latest\n")

    app = web.Application(client_max_size=1024)
    app.router.add_get("/bundle/v1/latest", latest)
    app.router.add_get("/bundle/v1/delta/{version}", delta)
    return app


async def serve_http_until(store: BundleStore, host: str, port: int, stopping: asyncio.Event) -> None:
    """Serves the HTTP endpoints on (host, port) until `stopping` is set; the processes of one pod share
    the port (SO_REUSEPORT), as they share the gRPC port."""
    runner = web.AppRunner(http_app(store), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=True).start()
        log.info("bundle HTTP endpoints listening", extra={"fields": {"port": port}})
        await stopping.wait()
    finally:
        await runner.cleanup()
