"""The `make run` demo runs end to end against real result_svc and publish_svc (so the front door cannot rot)."""

import asyncio
import subprocess

import PIL.Image
import zxingcpp

from services.common.auth import Role
from services.gen.covidtest.type.v1 import verdict_pb2
from tests.conftest import (
    make_principal,
    service_env,
    start_publish_svc,
    start_result_svc,
    start_verify_svc,
)
from tools import demo


async def test_demo_releases_a_pool_and_its_certificates_reach_the_feed(database_url, db, tmp_path):
    env = service_env(database_url, RELAY_POLL_SECONDS="0.05", BUNDLE_BUILD_SECONDS="0.5")
    running = await start_result_svc(env)
    publishing = await start_publish_svc(env)
    verifying = await start_verify_svc(env)
    try:
        operator = await make_principal(database_url, Role.OPERATOR)
        lines: list[str] = []
        outcome = await asyncio.to_thread(
            demo.run,
            f"127.0.0.1:{running.port}",
            f"127.0.0.1:{publishing.port}",
            f"127.0.0.1:{verifying.port}",
            operator["token"],
            lines.append,
            False,
            tmp_path,
        )
    finally:
        await verifying.stop(0)
        await publishing.stop(0)
        await running.stop(0)
    assert outcome["verdicts"] == (verdict_pb2.VERDICT_VALID, verdict_pb2.VERDICT_REVOKED)
    assert outcome["offline_verdict"] == "REVOKED"  # from the signed checkpoint bundle, as an offline device
    assert len(outcome["events"]) == demo.POOL_SIZE
    assert all(e.certificate.qr.startswith("HC1:") for e in outcome["events"])
    assert len(outcome["sample_barcodes"]) == demo.POOL_SIZE
    assert sum("RESULTED" in line and "RELEASED" in line for line in lines) == demo.POOL_SIZE
    # "Result pending" before the lab's result: in the lookup, and as SAMPLE_REGISTERED events in the feed.
    assert any("citizen lookup before the result" in line and "REGISTERED" in line for line in lines)
    assert sum("SAMPLE_REGISTERED" in line and "result pending" in line for line in lines) == demo.POOL_SIZE
    events = await db.fetchval(
        "SELECT count(*) FROM outbox o JOIN samples s ON s.id = o.sample_id WHERE s.barcode = ANY($1::text[]) "
        "AND o.kind = 'RELEASED'",
        outcome["sample_barcodes"],
    )
    assert events == demo.POOL_SIZE
    assert not any(name.split(" ", 1)[1] in "\n".join(lines) for name in demo.NAMES)  # only initials printed
    # The printable certificate it names: a PDF whose printed QR is the first certificate's.
    document = outcome["document_path"]
    assert document.parent == tmp_path and any(str(document) in line for line in lines)
    subprocess.run(["pdftoppm", "-r", "150", "-png", "-singlefile", str(document), str(tmp_path / "page")], check=True)
    codes = zxingcpp.read_barcodes(PIL.Image.open(tmp_path / "page.png"), formats=zxingcpp.BarcodeFormat.QRCode)
    assert [c.text for c in codes] == [outcome["events"][0].certificate.qr]
