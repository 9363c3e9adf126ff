"""The DCC value sets intake checks against, held in memory and refreshed in the background.

Intake never reads them from Postgres per sample: a refresher task loads the current versions
(services.registry.value_sets: the latest imported, else the shipped file) on a dedicated connection, at
once on NOTIFY value_sets (an operator's `valueset import`) and every REFRESH_SECONDS in case a
notification was missed, swapping in a new immutable CurrentValueSets. If Postgres is down or refuses the
read, the last copy stays in use. Until the first load a registration that needs the device list waits
for it (a few seconds at most), so a device imported before this process started is never refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common.db import BACKGROUND_ERRORS, connect
from services.common.errors import Unavailable
from services.registry.value_sets import CurrentValueSets, builtin, load_current

log = logging.getLogger("covidtest.value_sets")
REFRESH_SECONDS = 60.0
FIRST_LOAD_WAIT_SECONDS = 5.0


class ValueSetStore:
    """Holds the current value sets; `run()` keeps them fresh."""

    channel = "value_sets"

    def __init__(self, dsn: str, refresh_seconds: float = REFRESH_SECONDS):
        self._dsn = dsn
        self._refresh = refresh_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self.current: CurrentValueSets = builtin()
        self.loaded = asyncio.Event()  # read from Postgres at least once

    async def rat_devices(self) -> frozenset[str]:
        """The active rapid antigen test devices of the current version; UNAVAILABLE if this process has not
        read the value sets yet after waiting a few seconds (the database is unreachable since start-up)."""
        if not self.loaded.is_set():
            try:
                await asyncio.wait_for(self.loaded.wait(), FIRST_LOAD_WAIT_SECONDS)
            except TimeoutError:
                raise Unavailable(
                    "the rapid-test device list is not loaded yet; retry", reason="SERVER_UNAVAILABLE"
                ) from None
        return self.current.rat_devices

    async def run(self) -> None:
        while not self._stopping:
            conn = None
            try:
                conn = await connect(self._dsn)
                await conn.add_listener(self.channel, self._notified)
                while not self._stopping and not conn.is_closed():
                    self._wake.clear()  # a notification from here on triggers another reload
                    self.current = await load_current(conn, self.current if self.loaded.is_set() else None)
                    self.loaded.set()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._refresh)
                    except TimeoutError:
                        pass
            except BACKGROUND_ERRORS as exc:
                log.warning(
                    "value set refresh failed; keeping the last ones", extra={"fields": {"error": type(exc).__name__}}
                )
                await self._pause()
            except Exception as exc:  # noqa: BLE001 - the refresh must outlive any one bad reload
                log.error(
                    "value set refresh failed unexpectedly; keeping the last ones",
                    extra={"fields": {"error": type(exc).__name__}},
                )
                await self._pause()
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()

    async def _pause(self) -> None:
        """A short wait before the next attempt, cut short by stop()."""
        if not self._stopping:
            self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), min(self._refresh, 2.0))

    def _notified(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
