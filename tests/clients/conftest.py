"""The reference clients (clients/<language>/) run as their users run them, against real services.

Every client reads the same environment (clients/README.md): COVIDTEST_RESULT_ADDR, COVIDTEST_PUBLISH_ADDR,
COVIDTEST_VERIFY_ADDR (host:port, plaintext here) and the token of its caller: LAB_TOKEN (lab uploader),
PARTNER_TOKEN (feed consumer), DEVICE_TOKEN (checkpoint client). The services run in this test process's
event loop, so a client is always started with asyncio's subprocesses (never a blocking subprocess.run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.common.auth import Role
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from tests.conftest import bearer, make_principal, start_verify_svc
from tests.publish_svc.conftest import Platform, new_partner, running_platform
from tests.result_svc.helpers import rid, sample, unique

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    """result_svc, publish_svc and verify_svc on one database, with a lab, a partner and a checkpoint device."""

    platform: Platform
    verify_port: int
    partner: dict
    device: dict

    def client_env(self, **overrides: str) -> dict[str, str]:
        """The environment every reference client reads (clients/README.md)."""
        env = {
            **os.environ,
            "COVIDTEST_RESULT_ADDR": f"127.0.0.1:{self.platform.result_server.port}",
            "COVIDTEST_PUBLISH_ADDR": f"127.0.0.1:{self.platform.publish_server.port}",
            "COVIDTEST_VERIFY_ADDR": f"127.0.0.1:{self.verify_port}",
            "LAB_TOKEN": self.platform.lab["token"],
            "PARTNER_TOKEN": self.partner["token"],
            "DEVICE_TOKEN": self.device["token"],
        }
        env.update(overrides)
        return env

    async def registered_for_the_lab(self, count: int) -> list[str]:
        """Barcodes of `count` new samples sent to the lab, without results: the lab uploader's work."""
        items = [sample(unique("C"), self.platform.lab["id"], i) for i in range(count)]
        for first in range(0, count, 1000):
            reply = await self.platform.results.RegisterSamples(
                rpb.RegisterSamplesRequest(request_id=rid(), samples=items[first : first + 1000]),
                metadata=bearer(self.platform.unit["token"]),
            )
            assert reply.rejected_count == 0, reply
        return [i.sample_barcode for i in items]


@pytest.fixture(scope="module")
async def stack(database_url):
    async with running_platform(database_url, FEED_HEARTBEAT_SECONDS="1") as platform:
        verifying = await start_verify_svc(platform.env)
        try:
            partner = await new_partner(database_url, personal_data_access=False)
            device = await make_principal(database_url, Role.CHECKPOINT)
            yield Stack(platform, verifying.port, partner, device)
        finally:
            await verifying.stop(0)


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


async def run_client(argv: Sequence[str], env: dict[str, str], timeout_s: float = 120, cwd: Path = ROOT) -> Finished:
    """Run a client to its end (killed after `timeout_s`, which fails the test)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"{argv} ran past {timeout_s} s\nstdout: {out.decode()}\nstderr: {err.decode()}") from None
    assert proc.returncode is not None
    return Finished(proc.returncode, out.decode(), err.decode())
