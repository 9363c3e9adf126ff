"""What operators watch about the feed, measured from Postgres every METRICS_OBSERVE_SECONDS on each
publish_svc replica: the relay backlog (events not yet given a feed position, and the age of the oldest),
each partner's lag behind the feed head, and when the active signing and bundle keys' certificates expire.
Alerts (deploy/monitoring) take the maximum over replicas. Labels are partner ids and key purposes only.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Gauge

from services.common.db import BACKGROUND_ERRORS, in_tx
from services.common.errors import Unavailable
from services.publish_svc import repository as repo

log = logging.getLogger("covidtest.observer")
_RETRIED: tuple[type[BaseException], ...] = (*BACKGROUND_ERRORS, Unavailable)

BACKLOG = Gauge("covidtest_relay_backlog_events", "Outbox events not yet given a feed position")
BACKLOG_OLDEST = Gauge(
    "covidtest_relay_backlog_oldest_seconds", "Age of the oldest outbox event not yet given a feed position (0: none)"
)
PARTNER_LAG = Gauge(
    "covidtest_partner_lag_events", "Feed events after the position a partner last acknowledged", ["partner_id"]
)
CERTIFICATE_NOT_AFTER = Gauge(
    "covidtest_signing_certificate_not_after_seconds",
    "When the ACTIVE key's certificate expires (Unix time), by purpose (DCC, BUNDLE); absent while none is active",
    ["purpose"],
)


class Observer:
    def __init__(self, pool: asyncpg.Pool, every_s: float):
        self._pool = pool
        self._every_s = every_s
        self._stopping = asyncio.Event()
        self._purposes_shown: set[str] = set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.observe()
            except _RETRIED as exc:  # Postgres away: the gauges keep their last values meanwhile
                log.warning("feed metrics not measured; retrying", extra={"fields": {"error": type(exc).__name__}})
            try:
                await asyncio.wait_for(self._stopping.wait(), self._every_s)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping.set()

    async def observe(self) -> None:
        status = await in_tx(self._pool, lambda conn: repo.feed_status(conn, None))
        expiries = await repo.active_key_expiries(self._pool)
        now = datetime.now(UTC)
        BACKLOG.set(status.pending_events)
        oldest = status.oldest_pending_at
        BACKLOG_OLDEST.set(max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        for partner in status.partners:
            PARTNER_LAG.labels(str(partner.id)).set(status.head_position - partner.acked_position)
        for purpose, not_after in expiries.items():
            CERTIFICATE_NOT_AFTER.labels(purpose).set(not_after.timestamp())
        for purpose in self._purposes_shown - set(expiries):  # a key retired with none active after it
            CERTIFICATE_NOT_AFTER.remove(purpose)
        self._purposes_shown = set(expiries)
