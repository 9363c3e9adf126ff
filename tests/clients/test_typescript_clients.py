"""The TypeScript reference clients (clients/typescript/) against the real services: generated with buf and
protoc-gen-es once per module, type-checked with tsc, each run with tsx as its README says.

Interruptions are real: a TCP proxy in this test's event loop stands between a client and a service, and
is cut, stopped or made to lose the service's responses (the HTTP/2 frames of every stream)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.common.db import connect
from tests.clients.conftest import ROOT, run_client
from tests.clients.running import cursor_of, running, settled_head, until
from tests.clients.tcp_proxy import TcpProxy, free_port
from tests.conftest import REDIS_URL
from tests.publish_svc.conftest import new_partner, until_status_cached
from tests.result_svc.helpers import person

BIN = ROOT / "node_modules" / ".bin"
SRC = ROOT / "clients" / "typescript" / "src"
TEMPLATE = "clients/typescript/buf.gen.yaml"


def tsx(client: str, *args: str) -> list[str]:
    """The command line of a client, as clients/typescript/README.md gives it (tsx runs the TypeScript)."""
    return [str(BIN / "tsx"), str(SRC / f"{client}.ts"), *args]


@pytest.fixture(scope="module")
async def generated() -> None:
    """clients/typescript/src/gen/ generated from protos/ once for the module, as the README says."""
    for tool in ("buf", "tsx", "tsc", "protoc-gen-es"):
        if not (BIN / tool).exists():
            pytest.fail(f"node_modules/.bin/{tool} is missing: run `npm ci` (make does it for `make lint`)")
    done = await run_client([str(BIN / "buf"), "generate", "--template", TEMPLATE], dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert (SRC / "gen" / "covidtest" / "result" / "v1" / "result_service_pb.ts").is_file()


def positions(stdout: str) -> list[int]:
    """The feed positions the consumer logged as processed, in order."""
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("position ")]


async def test_clients_type_check(generated):
    done = await run_client([str(BIN / "tsc"), "-p", "clients/typescript"], dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr


async def test_lab_uploader_records_results_and_prints_each_rejected_item(stack, generated, database_url, tmp_path):
    good = await stack.registered_for_the_lab(3)
    vn = timezone(timedelta(hours=7))
    tested = (datetime.now(UTC) - timedelta(hours=1)).astimezone(vn).replace(microsecond=123456)
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    csv = tmp_path / "results.csv"
    csv.write_text(
        "sample_barcode,outcome,tested_at,method,lab_reference\n"
        f'{good[0]},NEGATIVE,{tested.isoformat()},"RT-PCR, cobas 6800",LIS-1\n'
        f"{good[1]},POSITIVE,{tested.isoformat()},RT-PCR,LIS-2\n"
        f"NO-SUCH-{good[0]},NEGATIVE,{tested.isoformat()},RT-PCR,LIS-3\n"
        f"{good[2]},NEGATIVE,{future},RT-PCR,LIS-4\n"
        f"{good[2]},NEGATIVE,yesterday,RT-PCR,LIS-5\n"
    )
    done = await run_client(tsx("lab_uploader", "--results", str(csv)), stack.client_env())
    assert done.returncode == 1, done  # items were rejected
    lines = done.stdout.splitlines()
    # Server-side violations with the item's path in the request, and the line of the file it came from.
    [unknown] = [line for line in lines if "results[2].sample_barcode SAMPLE_NOT_FOUND: " in line]
    assert unknown.startswith("rejected line 4 sample NO-SUCH-"), unknown
    [too_late] = [line for line in lines if "results[3].tested_at TIME_IN_FUTURE: " in line]
    assert too_late.startswith(f"rejected line 5 sample {good[2]}"), too_late
    # A time that is not RFC 3339 never leaves the client.
    [bad_time] = [line for line in lines if "tested_at FIELD_FORMAT_INVALID" in line]
    assert bad_time.startswith("rejected line 6") and "not sent" in bad_time, bad_time
    assert "total: 2 recorded, 0 already recorded, 3 rejected of 5 lines" in done.stdout

    conn = await connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT s.barcode, r.outcome, r.tested_at, r.method, r.lab_reference
               FROM results r JOIN samples s ON s.id = r.sample_id WHERE s.barcode = ANY($1::text[])""",
            good,
        )
    finally:
        await conn.close()
    recorded = {r["barcode"]: (r["outcome"], r["tested_at"], r["method"], r["lab_reference"]) for r in rows}
    assert recorded == {
        good[0]: ("NEGATIVE", tested, "RT-PCR, cobas 6800", "LIS-1"),
        good[1]: ("POSITIVE", tested, "RT-PCR", "LIS-2"),
    }

    # The same file again: nothing recorded twice, the accepted rows are ALREADY_RECORDED.
    again = await run_client(tsx("lab_uploader", "--results", str(csv)), stack.client_env())
    assert again.returncode == 1, again
    assert "total: 0 recorded, 2 already recorded, 3 rejected of 5 lines" in again.stdout


async def test_lab_uploader_retries_a_lost_response_under_the_same_request_id(stack, generated, database_url, tmp_path):
    barcodes = await stack.registered_for_the_lab(2)
    tested = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    csv = tmp_path / "results.csv"
    csv.write_text(
        "sample_barcode,outcome,tested_at,method,lab_reference\n"
        + "".join(f"{b},NEGATIVE,{tested},RT-PCR,LIS-{i}\n" for i, b in enumerate(barcodes))
    )
    proxy = TcpProxy(stack.platform.result_server.port)
    proxy.lose_responses = True
    await proxy.start()
    conn = await connect(database_url)
    env = stack.client_env(COVIDTEST_RESULT_ADDR=f"127.0.0.1:{proxy.port}")
    try:
        async with running(tsx("lab_uploader", "--results", str(csv), "--deadline", "2"), env) as uploader:
            sending = await uploader.line(uploader.stderr, r"request_id=([^:]*).*sending 2 results")
            request_id = sending[1]

            async def idempotency_rows() -> int:
                return await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE request_id = $1", request_id)

            # The server committed the batch; its answer was lost on the way back.
            await until(idempotency_rows, "the request to reach result_svc", timeout_s=10)
            await uploader.line(uploader.stderr, re.escape(f"request_id={request_id}: retrying in"))
            proxy.lose_responses = False
            await proxy.cut()  # the next attempt connects again, and its answer gets through
            done = await uploader.finish()
        assert done.returncode == 0, done
        assert "DEADLINE_EXCEEDED" in done.stderr
        # The retry under the same request_id returned the first call's answer: both recorded, once.
        assert f"batch 1/1 request_id={request_id}: 2 recorded, 0 already recorded, 0 rejected" in done.stdout
        assert await idempotency_rows() == 1
        versions = await conn.fetchval(
            "SELECT count(*) FROM results r JOIN samples s ON s.id = r.sample_id WHERE s.barcode = ANY($1::text[])",
            barcodes,
        )
        assert versions == 2
        assert proxy.accepted >= 2
    finally:
        await conn.close()
        await proxy.close()


async def test_lab_uploader_gives_up_after_its_retry_budget(stack, generated, tmp_path):
    csv = tmp_path / "results.csv"
    csv.write_text(
        "sample_barcode,outcome,tested_at,method,lab_reference\n"
        f"ANY-1,NEGATIVE,{datetime.now(UTC).isoformat()},RT-PCR,LIS-1\n"
    )
    env = stack.client_env(COVIDTEST_RESULT_ADDR=f"127.0.0.1:{free_port()}")
    done = await run_client(tsx("lab_uploader", "--results", str(csv), "--retry-for", "2.5"), env, timeout_s=30)
    assert done.returncode == 2, done
    assert "failed: UNAVAILABLE" in done.stdout and "1 results (lines 2 onwards) not recorded" in done.stdout
    assert "retrying in" in done.stderr  # it did retry before giving up


async def test_feed_consumer_resumes_from_its_store_without_duplicates(stack, generated, database_url, tmp_path):
    partner = await new_partner(database_url, personal_data_access=True)
    released = await stack.platform.release(2)
    head = await settled_head(stack)
    assert head >= 4
    env = stack.client_env(PARTNER_TOKEN=partner["token"])
    state = tmp_path / "feed-state.json"

    first = await run_client(tsx("feed_consumer", "--state", str(state), "--max-events", "3", "--ack-every", "2"), env)
    assert first.returncode == 0, first
    assert positions(first.stdout) == [1, 2, 3]
    assert json.loads(state.read_text())["position"] == 3
    assert await cursor_of(stack, partner) == 3

    # Resumed from its store (position 4 on), not from the start, acknowledged once, in one batch, at the end.
    second = await run_client(
        tsx("feed_consumer", "--state", str(state), "--until-idle", "1", "--ack-interval-ms", "60000"), env
    )
    assert second.returncode == 0, second
    assert positions(second.stdout) == list(range(4, head + 1))
    assert "streaming from position 4" in second.stderr
    assert [line for line in second.stderr.splitlines() if line.startswith("acknowledged ")] == [
        f"acknowledged position {head} (cursor {head}, head {head})"
    ]
    assert await cursor_of(stack, partner) == head

    store = json.loads(state.read_text())
    assert store["position"] == store["acknowledged"] == head
    assert sorted(int(p) for p in store["events"]) == list(range(1, head + 1))
    for barcode in released:
        [kind] = [
            e["kind"] for e in store["events"].values() if e.get("sample_barcode") == barcode and "result_id" in e
        ]
        assert kind == "RELEASED"
        assert f"RELEASED sample {barcode} result " in second.stdout
    # The partner receives names and QR texts; neither reaches its store nor its log.
    for text in (state.read_text(), first.stdout + second.stdout, first.stderr + second.stderr):
        assert person().full_name not in text and "HC1:" not in text and person().date_of_birth not in text


async def test_feed_consumer_reconnects_after_the_stream_breaks(stack, generated, database_url, tmp_path):
    partner = await new_partner(database_url, personal_data_access=False)
    head = await settled_head(stack)
    proxy = TcpProxy(stack.platform.publish_server.port)
    await proxy.start()
    env = stack.client_env(PARTNER_TOKEN=partner["token"], COVIDTEST_PUBLISH_ADDR=f"127.0.0.1:{proxy.port}")
    state = tmp_path / "feed-state.json"
    argv = tsx("feed_consumer", "--state", str(state), "--max-events", str(head + 2), "--ack-interval-ms", "100")
    try:
        async with running(argv, env) as consumer:
            await consumer.line(consumer.stdout, f"^position {head} ")
            await proxy.close()  # the stream breaks, and reconnecting is refused for a while
            await consumer.line(consumer.stderr, "^reconnecting in ")
            proxy = TcpProxy(stack.platform.publish_server.port, proxy.port)
            await proxy.start()
            [barcode] = await stack.platform.release(1)  # two events more: registered, then released
            done = await consumer.finish()
    finally:
        await proxy.close()
    assert done.returncode == 0, done
    assert "stream broken: UNAVAILABLE" in done.stderr
    assert positions(done.stdout) == list(range(1, head + 3))
    assert done.stdout.splitlines()[-1].startswith(f"position {head + 2} RELEASED sample {barcode} ")
    assert f"streaming from position {head + 1}" in done.stderr
    assert await cursor_of(stack, partner) == head + 2


async def test_checkpoint_shows_the_verdict_for_a_released_certificate(stack, generated, database_url, tmp_path):
    partner = await new_partner(database_url, personal_data_access=True)
    head = await settled_head(stack)
    await stack.platform.release(1)
    [event] = await stack.platform.collect(partner["token"], head + 1, 1)
    certificate = event.certificate
    await until_status_cached(REDIS_URL, stack.platform.redis_prefix, certificate.certificate_id)
    qr = tmp_path / "certificate-qr.txt"
    qr.write_text(certificate.qr + "\n")

    done = await run_client(tsx("checkpoint", "--qr", str(qr)), stack.client_env())
    assert done.returncode == 0, done
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert lines[0] == "VALID", done.stdout
    assert f"certificate     {certificate.certificate_id}" in lines
    assert "status from     CACHE" in lines
    assert "test            NAAT" in lines

    # Whatever the verdict, a verdict is exit 0: a scan of something else, read from stdin.
    proc = await asyncio.create_subprocess_exec(
        *tsx("checkpoint", "--qr", "-"),
        cwd=ROOT,
        env=stack.client_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(b"not a certificate\n"), 60)
    assert proc.returncode == 0, (out, err)
    assert out.decode().splitlines()[0] == "MALFORMED", out
    assert "malformed at    PREFIX" in out.decode()


async def test_checkpoint_reports_an_rpc_error_with_its_status(stack, generated, tmp_path):
    qr = tmp_path / "qr.txt"
    qr.write_text("HC1:anything")
    env = stack.client_env(COVIDTEST_VERIFY_ADDR=f"127.0.0.1:{free_port()}")
    done = await run_client(tsx("checkpoint", "--qr", str(qr), "--deadline", "1"), env, timeout_s=30)
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert "no verdict within 1 s: " in done.stderr and "UNAVAILABLE: " in done.stderr
    assert "retrying in" in done.stderr

    # An error the platform explains: a token it does not know, with the reason from google.rpc.ErrorInfo.
    refused = await run_client(tsx("checkpoint", "--qr", str(qr)), stack.client_env(DEVICE_TOKEN="not-a-token"))
    assert refused.returncode == 2, refused
    assert "UNAUTHENTICATED: " in refused.stderr and "reason CREDENTIAL_INVALID" in refused.stderr
