"""Kill the relay leader: a standby publish_svc takes over within 5 s; the feed has no gap and no duplicate."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request

import grpc

from services.common.auth import Role
from services.common.config import load, parse_keyring, parse_secret_bytes
from services.common.pii import PiiCipher
from services.common.runtime import start_service
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.result_svc import __main__ as result_process
from services.result_svc.config import ResultConfig
from tests.conftest import bearer, make_principal, service_env
from tests.publish_svc.conftest import activate_new_key
from tests.result_svc.helpers import result, rid, sample, unique
from tools.servers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def is_leader(metrics_port: int) -> bool:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
    except OSError:
        return False
    return "covidtest_relay_leader 1.0" in body


async def test_standby_takes_over_when_the_leader_is_killed(database_url, db):
    env = service_env(database_url, RELAY_POLL_SECONDS="0.05", LOG_LEVEL="WARNING")
    await activate_new_key(
        database_url, PiiCipher(parse_keyring(env["PII_KEYS"]), parse_secret_bytes(env["PII_PEPPER"]))
    )
    unit, lab = await make_principal(database_url, Role.SAMPLER), await make_principal(database_url, Role.LAB)
    partner = await make_principal(database_url, Role.PARTNER)
    processes = []
    for _ in range(2):
        grpc_port, metrics_port = free_port(), free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.publish_svc"],
            cwd=ROOT,
            env={**os.environ, **env, "GRPC_PORT": str(grpc_port), "METRICS_PORT": str(metrics_port)},
        )
        processes.append((proc, grpc_port, metrics_port))
    intake = await start_service("result_svc", load(ResultConfig, env), result_process.build, serve_metrics_port=False)
    try:
        deadline = time.monotonic() + 30
        leaders = []
        while not leaders:
            leaders = [p for p in processes if await asyncio.to_thread(is_leader, p[2])]
            assert time.monotonic() < deadline, "no relay leader elected"
            await asyncio.sleep(0.1)
        assert len(leaders) == 1
        leader = leaders[0]
        standby = next(p for p in processes if p is not leader)

        async with grpc.aio.insecure_channel(f"127.0.0.1:{intake.port}") as channel:
            results = result_service_pb2_grpc.ResultServiceStub(channel)

            async def release(n: int, tag: int) -> None:
                items = [sample(unique("FO"), lab["id"], tag * 1000 + i) for i in range(n)]
                await results.RegisterSamples(
                    rpb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=bearer(unit["token"])
                )
                await results.RecordResults(
                    rpb.RecordResultsRequest(
                        request_id=rid(),
                        results=[result(t.OUTCOME_NEGATIVE, sample_barcode=i.sample_barcode) for i in items],
                    ),
                    metadata=bearer(lab["token"]),
                )

            writers = asyncio.gather(*(release(20, tag) for tag in range(10)))
            await asyncio.sleep(0.3)  # the leader is relaying: kill it mid-work
            leader[0].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await writers
            while not await asyncio.to_thread(is_leader, standby[2]):
                assert time.monotonic() - killed_at < 5, "the standby did not take over within 5 s"
                await asyncio.sleep(0.05)
            await release(20, 99)  # and new work is relayed by the new leader

        expected = 220
        async with grpc.aio.insecure_channel(f"127.0.0.1:{standby[1]}") as channel:
            feed = publish_service_pb2_grpc.PublishServiceStub(channel)
            call = feed.StreamResultEvents(
                ppb.StreamResultEventsRequest(from_position=1), metadata=bearer(partner["token"])
            )
            events = []
            try:
                while len(events) < expected:
                    events += list((await asyncio.wait_for(call.read(), 20)).events)
            finally:
                call.cancel()
        assert [e.position for e in events] == list(range(1, expected + 1))
        assert len({e.result.result_id for e in events}) == expected
        assert len({e.certificate.certificate_id for e in events}) == expected
        assert await db.fetchval("SELECT count(*) FROM certificates") == expected
        assert await db.fetchval("SELECT count(*) FROM outbox WHERE relayed_at IS NULL") == 0
    finally:
        await intake.stop(0)
        for proc, _, _ in processes:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(30)
