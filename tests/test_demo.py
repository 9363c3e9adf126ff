"""The `make run` demo runs end to end against a real result_svc (so the front door cannot rot)."""

import asyncio

from services.common.auth import Role
from services.common.config import load
from services.common.runtime import start_service
from services.result_svc import service as result_service
from services.result_svc.config import ResultConfig
from tests.conftest import make_principal, service_env
from tools import demo


async def test_demo_registers_a_pool_and_releases_its_negative_results(database_url, db):
    running = await start_service("result_svc", load(ResultConfig, service_env(database_url)), result_service.build,
                                  serve_metrics_port=False)
    try:
        operator = await make_principal(database_url, Role.OPERATOR)
        lines: list[str] = []
        outcome = await asyncio.to_thread(demo.run, f"127.0.0.1:{running.port}", operator["token"], lines.append)
    finally:
        await running.stop(0)
    assert len(outcome["sample_barcodes"]) == demo.POOL_SIZE
    assert sum("RESULTED" in line and "RELEASED" in line for line in lines) == demo.POOL_SIZE
    events = await db.fetchval(
        "SELECT count(*) FROM outbox o JOIN samples s ON s.id = o.sample_id WHERE s.barcode = ANY($1::text[]) "
        "AND o.kind = 'RELEASED'", outcome["sample_barcodes"])
    assert events == demo.POOL_SIZE
    assert not any(name in "\n".join(lines) for name in demo.NAMES)  # no personal data printed
