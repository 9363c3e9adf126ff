"""The Go reference clients (clients/go/) against the real services: built once with clients/go/build.sh
(which also fails unless the code is gofmt- and go vet-clean), then run as their users run them.

A client that a test must interfere with while it runs (start a proxy after it began, cut its stream, kill
it) is started in the background (`running`); the others run to their end with `run_client`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.db import connect
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import verdict_pb2
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.clients.conftest import ROOT, Stack, run_client
from tests.clients.running import cursor_of, running, settled_head, until
from tests.clients.tcp_proxy import TcpProxy, free_port
from tests.conftest import REDIS_URL
from tests.pki import TestCA
from tests.publish_svc.conftest import new_partner, until_status_cached

GO = ROOT / "clients" / "go"
FEED_CONSUMER = str(GO / "bin" / "feed-consumer")
LAB_UPLOADER = str(GO / "bin" / "lab-uploader")
CHECKPOINT = str(GO / "bin" / "checkpoint")
EVENT_LINE = re.compile(r"^event position=(\d+) kind=(\S+)", re.MULTILINE)


@pytest.fixture(scope="module", autouse=True)
async def go_clients() -> None:
    """Generate and build the clients once (`check`: and fail unless gofmt- and go vet-clean)."""
    proc = await asyncio.create_subprocess_exec(
        str(GO / "build.sh"), "check", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 600)
    assert proc.returncode == 0, f"clients/go/build.sh check failed:\n{output.decode()}"


def stored(state: Path) -> dict:
    return json.loads(state.read_text()) if state.exists() else {"position": 0, "events": {}}


def positions(stdout: str) -> list[int]:
    return [int(p) for p, _ in EVENT_LINE.findall(stdout)]


def write_results(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A lab's CSV: (sample_barcode, outcome, tested_at) rows with a method and a lab reference."""
    lines = ["sample_barcode,outcome,tested_at,method,lab_reference"]
    lines += [
        f"{barcode},{outcome},{tested_at},RT-PCR cobas,LIS-{i}" for i, (barcode, outcome, tested_at) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def hours_from_now(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


# The lab uploader


async def test_lab_uploader_records_results_and_prints_every_rejected_row(stack: Stack, tmp_path: Path) -> None:
    good, positive, future = await stack.registered_for_the_lab(3)
    tested_at = hours_from_now(-1)
    csv = write_results(
        tmp_path / "results.csv",
        [
            (good, "NEGATIVE", tested_at),
            (positive, "POSITIVE", hours_from_now(-1)),
            (future, "NEGATIVE", hours_from_now(24)),  # results[2]: rejected by the platform
            ("NO-SUCH-SAMPLE", "NEGATIVE", hours_from_now(-1)),  # results[3]: rejected by the platform
            (future, "MAYBE", hours_from_now(-1)),  # line 6: rejected before sending
        ],
    )
    first = await run_client([LAB_UPLOADER, "-results", str(csv)], stack.client_env())
    assert first.returncode == 1, first
    assert "recorded 2, already recorded 0, rejected 3, not sent 0 (of 5 rows)" in first.stdout, first
    assert re.search(rf"rejected line 4 \({future}\): results\[2\]\.tested_at TIME_IN_FUTURE: \S", first.stdout), first
    assert re.search(
        r"rejected line 5 \(NO-SUCH-SAMPLE\): results\[3\]\.sample_barcode SAMPLE_NOT_FOUND: ", first.stdout
    )
    assert f"rejected line 6 ({future}): outcome FIELD_FORMAT_INVALID: " in first.stdout, first

    # Sending the same file again records nothing twice: the two results come back ALREADY_RECORDED.
    again = await run_client([LAB_UPLOADER, "-results", str(csv)], stack.client_env())
    assert again.returncode == 1, again
    assert "recorded 0, already recorded 2, rejected 3, not sent 0 (of 5 rows)" in again.stdout, again

    only_good = write_results(tmp_path / "good.csv", [(good, "NEGATIVE", tested_at)])
    finished = await run_client([LAB_UPLOADER, "-results", str(only_good)], stack.client_env())
    assert finished.returncode == 0, finished  # nothing rejected: success, even though nothing changed


async def test_lab_uploader_retries_a_batch_under_its_request_id_until_the_server_answers(
    stack: Stack, tmp_path: Path, database_url: str
) -> None:
    barcodes = await stack.registered_for_the_lab(150)  # two batches: 100 and 50
    csv = write_results(tmp_path / "results.csv", [(b, "NEGATIVE", hours_from_now(-1)) for b in barcodes])
    calls_before = await record_results_calls(database_url, stack.platform.lab["id"])
    port = free_port()  # nothing listens there until the proxy starts
    env = stack.client_env(COVIDTEST_RESULT_ADDR=f"127.0.0.1:{port}")
    async with running([LAB_UPLOADER, "-results", str(csv)], env) as uploader:
        retried = await uploader.line(
            uploader.stderr, r"batch 1 request_id (\S+) attempt 1 failed \(UNAVAILABLE: .*\); retrying in"
        )
        async with TcpProxy(stack.platform.result_server.port, port):
            done = await uploader.finish()
            assert done.returncode == 0, done
    out = done.stdout
    answered = re.findall(r"^batch (\d) request_id (\S+): recorded (\d+)", out, re.MULTILINE)
    assert answered[0] == ("1", retried[1], "100"), done  # the retry kept the batch's request_id
    assert answered[1][0] == "2" and answered[1][2] == "50", done
    assert "recorded 150, already recorded 0, rejected 0, not sent 0 (of 150 rows)" in out
    # One idempotency row per batch: no attempt reached the platform under another request_id.
    calls = await record_results_calls(database_url, stack.platform.lab["id"])
    assert sorted(calls - calls_before) == sorted(request_id for _, request_id, _ in answered)


async def test_lab_uploader_gives_up_on_a_batch_after_its_retry_time(stack: Stack, tmp_path: Path) -> None:
    csv = write_results(tmp_path / "results.csv", [("S-1", "NEGATIVE", hours_from_now(-1))])
    nobody = stack.client_env(COVIDTEST_RESULT_ADDR=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    done = await run_client([LAB_UPLOADER, "-results", str(csv), "-retry-for", "1s"], nobody, timeout_s=30)
    assert time.monotonic() - started < 10
    assert done.returncode == 1, done
    assert "attempt 2 failed (UNAVAILABLE: " in done.stderr, done  # retried before giving up
    assert "batch 1 (lines 2-2) failed: UNAVAILABLE: " in done.stderr, done
    assert "recorded 0, already recorded 0, rejected 0, not sent 1 (of 1 rows)" in done.stdout, done


async def record_results_calls(database_url: str, lab_id: str) -> set[str]:
    """The request_ids of every RecordResults call the lab made (its idempotency rows)."""
    conn = await connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT request_id FROM idempotency_keys WHERE principal_id = $1::uuid AND method LIKE '%RecordResults'",
            lab_id,
        )
    finally:
        await conn.close()
    return {r["request_id"] for r in rows}


async def test_lab_uploader_waits_the_retry_delay_of_resource_exhausted(stack: Stack, tmp_path: Path) -> None:
    calls: list[tuple[float, str]] = []

    class Busy(result_service_pb2_grpc.ResultServiceServicer):
        async def RecordResults(self, request, context):  # noqa: N802 - the RPC's name
            calls.append((time.monotonic(), request.request_id))
            if len(calls) == 1:
                detail = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="rate limited")
                detail.details.add().Pack(
                    error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=700_000_000))
                )
                await context.abort_with_status(rpc_status.to_status(detail))
            return rpb.RecordResultsResponse(
                results=[rpb.ResultSubmissionResult(index=0, status=rpb.RECORDING_STATUS_RECORDED)], recorded_count=1
            )

    server = grpc.aio.server()
    result_service_pb2_grpc.add_ResultServiceServicer_to_server(Busy(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        csv = write_results(tmp_path / "results.csv", [("S-1", "NEGATIVE", hours_from_now(-1))])
        done = await run_client(
            [LAB_UPLOADER, "-results", str(csv)], stack.client_env(COVIDTEST_RESULT_ADDR=f"127.0.0.1:{port}")
        )
    finally:
        await server.stop(0)
    assert done.returncode == 0, done
    assert "attempt 1 failed (RESOURCE_EXHAUSTED: rate limited); retrying in" in done.stderr, done
    assert len(calls) == 2 and calls[0][1] == calls[1][1], calls  # the same request_id
    assert calls[1][0] - calls[0][0] >= 0.7  # not before the delay RetryInfo asked for


# The feed consumer


async def test_feed_consumer_stops_and_resumes_from_its_store(stack: Stack, tmp_path: Path, database_url: str) -> None:
    partner = await new_partner(database_url, personal_data_access=False)
    await stack.platform.release(3)
    head = await settled_head(stack)
    assert head > 4
    state = tmp_path / "feed.json"
    env = stack.client_env(PARTNER_TOKEN=partner["token"])

    first = await run_client([FEED_CONSUMER, "-state", str(state), "-max-events", "4"], env, timeout_s=30)
    assert first.returncode == 0, first
    assert positions(first.stdout) == [1, 2, 3, 4], first
    assert stored(state)["position"] == 4
    assert await cursor_of(stack, partner) == 4  # acknowledged what it committed before stopping

    second = await run_client([FEED_CONSUMER, "-state", str(state), "-until-idle", "1s"], env, timeout_s=30)
    assert second.returncode == 0, second
    assert positions(second.stdout) == list(range(5, head + 1)), second  # resumed: nothing twice, nothing lost
    kept = stored(state)
    assert kept["position"] == head
    assert sorted(int(p) for p in kept["events"]) == list(range(1, head + 1))
    assert await cursor_of(stack, partner) == head
    # A new store, the partner's cursor already at the head: nothing to do, and it ends (it once waited forever).
    fresh = await run_client([FEED_CONSUMER, "-state", str(tmp_path / "new.json"), "-until-idle", "1s"], env, 30)
    assert fresh.returncode == 0 and positions(fresh.stdout) == [], fresh
    # Nothing personal in the store: ids, barcodes and certificate ids only.
    assert {key for event in kept["events"].values() for key in event} <= {
        "position",
        "kind",
        "sample_barcode",
        "sample_id",
        "result_id",
        "certificate_id",
        "revoked_certificate_id",
    }
    assert any(e["kind"] == "RELEASED" and e["certificate_id"].startswith("URN:UVCI:") for e in kept["events"].values())


async def test_feed_consumer_killed_before_acknowledging_resumes_from_its_store(
    stack: Stack, tmp_path: Path, database_url: str
) -> None:
    partner = await new_partner(database_url, personal_data_access=False)
    head = await settled_head(stack)
    state = tmp_path / "feed.json"
    env = stack.client_env(PARTNER_TOKEN=partner["token"])
    # Acknowledging only every million events or every hour: the store runs ahead of the cursor.
    argv = [FEED_CONSUMER, "-state", str(state), "-ack-every", "1000000", "-ack-interval", "1h"]
    async with running(argv, env) as consumer:
        await until(lambda: stored(state)["position"] == head, "the consumer to commit the backlog")
        consumer.proc.kill()  # no chance to acknowledge on its way out
    assert await cursor_of(stack, partner) == 0

    await stack.platform.release(1)
    new_head = await settled_head(stack)
    resumed = await run_client([FEED_CONSUMER, "-state", str(state), "-until-idle", "1s"], env, timeout_s=30)
    assert resumed.returncode == 0, resumed
    # From its store (head + 1), not from the server's cursor (which would replay from position 1).
    assert positions(resumed.stdout) == list(range(head + 1, new_head + 1)), resumed
    assert await cursor_of(stack, partner) == new_head


async def test_feed_consumer_reconnects_after_its_stream_breaks(
    stack: Stack, tmp_path: Path, database_url: str
) -> None:
    partner = await new_partner(database_url, personal_data_access=False)
    head = await settled_head(stack)
    state = tmp_path / "feed.json"
    async with TcpProxy(stack.platform.publish_server.port) as proxy:
        env = stack.client_env(PARTNER_TOKEN=partner["token"], COVIDTEST_PUBLISH_ADDR=f"127.0.0.1:{proxy.port}")
        # It stops after the backlog and the 4 events of release(2): a registration and a release each.
        argv = [FEED_CONSUMER, "-state", str(state), "-max-events", str(head + 4), "-ack-interval", "100ms"]
        async with running(argv, env) as consumer:
            await until(lambda: stored(state)["position"] == head, "the consumer to catch up")
            await proxy.cut()
            await consumer.line(
                consumer.stderr, rf"stream ended: UNAVAILABLE.*reconnecting in \S+ from position {head + 1}"
            )
            await stack.platform.release(2)
            new_head = await settled_head(stack)
            done = await consumer.finish()
            assert done.returncode == 0, done
    assert new_head == head + 4 and proxy.accepted >= 2
    assert positions(done.stdout) == list(range(1, new_head + 1)), done
    assert await cursor_of(stack, partner) == new_head


# The checkpoint client


async def test_checkpoint_shows_valid_for_a_released_certificate(
    stack: Stack, tmp_path: Path, database_url: str
) -> None:
    entitled = await new_partner(database_url, personal_data_access=True)  # receives the QR text
    head = await settled_head(stack)
    await stack.platform.release(1)
    (event,) = await stack.platform.collect(entitled["token"], head + 1, 1)
    certificate = event.certificate
    await until_status_cached(REDIS_URL, stack.platform.redis_prefix, certificate.certificate_id)
    scanned = tmp_path / "qr.txt"
    scanned.write_text(certificate.qr + "\n")

    done = await run_client([CHECKPOINT, "-qr", str(scanned), "-lang", "en"], stack.client_env(), timeout_s=30)
    assert done.returncode == 0, done
    assert "verdict: VALID\ndecision: ACCEPT\n" in done.stdout, done
    assert f"certificate: {certificate.certificate_id}\n" in done.stdout, done
    assert "signature valid: true" in done.stdout and "status from: CACHE" in done.stdout, done

    # A scanner piping its text in (-qr -); a broken QR is a verdict, not an error.
    proc = await asyncio.create_subprocess_exec(
        CHECKPOINT, "-qr", "-", "-lang", "en", cwd=ROOT, env=stack.client_env(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(b"not a certificate\n"), 30)
    assert proc.returncode == 0, (out, err)
    assert out.decode().startswith("verdict: MALFORMED\ndecision: REFUSE\nreason: "), out
    assert "malformed at: PREFIX\n" in out.decode(), out


async def test_checkpoint_reports_the_status_and_details_of_a_failed_call(stack: Stack, tmp_path: Path) -> None:
    scanned = tmp_path / "qr.txt"
    scanned.write_text("HC1:anything")
    nobody = stack.client_env(COVIDTEST_VERIFY_ADDR=f"127.0.0.1:{free_port()}")
    down = await run_client([CHECKPOINT, "-qr", str(scanned), "-deadline", "1s"], nobody, timeout_s=30)
    assert down.returncode == 1, down
    assert "Verify failed: UNAVAILABLE: " in down.stderr, down
    assert "verdict" not in down.stdout

    refused = await run_client([CHECKPOINT, "-qr", str(scanned)], stack.client_env(DEVICE_TOKEN="not-a-token"))
    assert refused.returncode == 1, refused
    assert "Verify failed: UNAUTHENTICATED: " in refused.stderr, refused
    assert "ErrorInfo: reason CREDENTIAL_INVALID, domain covidtest.bluezone.vn" in refused.stderr, refused


async def test_checkpoint_speaks_tls_with_the_ca_of_covidtest_ca_file(stack: Stack, tmp_path: Path) -> None:
    ca = TestCA()
    server_files = ca.write_server_files(tmp_path)
    (tmp_path / "other-ca.pem").write_bytes(TestCA("another CA").pem)
    seen: list[str] = []

    class Checkpoint(verify_service_pb2_grpc.VerifyServiceServicer):
        async def Verify(self, request, context):  # noqa: N802 - the RPC's name
            seen.append(dict(context.invocation_metadata())["authorization"])
            return vpb.VerifyResponse(verdict=verdict_pb2.VERDICT_REVOKED, reason="revoked by its issuer")

    server = grpc.aio.server()
    verify_service_pb2_grpc.add_VerifyServiceServicer_to_server(Checkpoint(), server)
    key, cert = Path(server_files["TLS_KEY_FILE"]).read_bytes(), Path(server_files["TLS_CERT_FILE"]).read_bytes()
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    await server.start()
    try:
        scanned = tmp_path / "qr.txt"
        scanned.write_text("HC1:anything")
        argv = [CHECKPOINT, "-qr", str(scanned), "-deadline", "1s"]
        env = stack.client_env(COVIDTEST_VERIFY_ADDR=f"127.0.0.1:{port}", DEVICE_TOKEN="device-token")
        trusted = await run_client(argv, {**env, "COVIDTEST_CA_FILE": server_files["TLS_CLIENT_CA_FILE"]})
        untrusted = await run_client(argv, {**env, "COVIDTEST_CA_FILE": str(tmp_path / "other-ca.pem")})
    finally:
        await server.stop(0)
    assert trusted.returncode == 0, trusted
    assert "verdict: REVOKED\ndecision: REFUSE\nreason: revoked by its issuer\n" in trusted.stdout, trusted
    assert seen == ["Bearer device-token"]  # the token went over TLS only; the untrusted server got nothing
    assert untrusted.returncode == 1, untrusted
    assert "Verify failed: UNAVAILABLE: " in untrusted.stderr and "certificate" in untrusted.stderr, untrusted


async def test_the_published_retry_policy_is_in_force(stack: Stack, tmp_path: Path) -> None:
    """grpc-go 1.33 retries by the service config only with GRPC_GO_RETRY=on; the clients set it themselves.
    One UNAVAILABLE is retried by the channel (protos/service_config.json: Verify, 3 attempts), not by the
    client's own loop, which would say so on stderr."""
    attempts = []

    class Flaky(verify_service_pb2_grpc.VerifyServiceServicer):
        async def Verify(self, request, context):  # noqa: N802 - the RPC's name
            attempts.append(request.qr)
            if len(attempts) == 1:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "shutting down")
            return vpb.VerifyResponse(verdict=verdict_pb2.VERDICT_VALID)

    server = grpc.aio.server()
    verify_service_pb2_grpc.add_VerifyServiceServicer_to_server(Flaky(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        scanned = tmp_path / "qr.txt"
        scanned.write_text("HC1:anything")
        env = stack.client_env(COVIDTEST_VERIFY_ADDR=f"127.0.0.1:{port}")
        env.pop("GRPC_GO_RETRY", None)
        done = await run_client([CHECKPOINT, "-qr", str(scanned)], env, timeout_s=30)
    finally:
        await server.stop(0)
    assert done.returncode == 0 and "verdict: VALID" in done.stdout, done
    assert attempts == ["HC1:anything"] * 2
    assert "retrying" not in done.stderr, done
