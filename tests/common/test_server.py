"""Server bootstrap over real gRPC: health, reflection, metrics, error mapping, graceful SIGTERM."""

import asyncio
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from services.common.auth import CredentialResolver, Role
from services.common.config import load
from services.common.errors import FieldViolation, InvalidArgument
from services.common.runtime import Deps, start_service
from services.common.server import GrpcService, start
from services.gen.covidtest.result.v1 import result_service_pb2, result_service_pb2_grpc
from services.result_svc import __main__ as result_process
from services.result_svc import service as result_service
from services.result_svc.config import ResultConfig
from tests.conftest import bearer, make_principal, own_service_env, result_svc_env, service_env, start_result_svc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ExplodingServicer(result_service_pb2_grpc.ResultServiceServicer):
    """Raises on purpose, to see what a client would be told."""

    async def GetSample(self, request, context):
        raise RuntimeError("connection to 10.0.0.7 failed for citizen 001234567890")

    async def ListResults(self, request, context):
        raise InvalidArgument("bad filter", [FieldViolation("filter.outcome", "unknown outcome")])


@pytest.fixture(scope="module")
async def exploding(database_url):
    import asyncpg

    config = load(ResultConfig, service_env(database_url))
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    servicer = ExplodingServicer()
    service = GrpcService(
        "covidtest.result.v1.ResultService",
        lambda server: result_service_pb2_grpc.add_ResultServiceServicer_to_server(servicer, server),
        result_service.RESULT_ROLES,
    )
    running = await start(config, "test", [service], CredentialResolver(pool, 1.0), on_stop=[pool.close])
    lab = await make_principal(database_url, Role.LAB)
    yield running, lab["token"]
    await running.stop(0)


async def test_unexpected_exception_is_internal_without_details(exploding):
    running, token = exploding
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = result_service_pb2_grpc.ResultServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetSample(result_service_pb2.GetSampleRequest(), metadata=bearer(token))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    text = err.value.details() + repr(err.value.trailing_metadata())
    assert "Traceback" not in text and "10.0.0.7" not in text and "001234567890" not in text
    info = error_details_pb2.ErrorInfo()
    assert rpc_status.from_call(err.value).details[0].Unpack(info)
    assert info.metadata["request_id"]  # the handle an operator finds the logged details by


async def test_domain_error_carries_field_violations(exploding):
    running, token = exploding
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = result_service_pb2_grpc.ResultServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListResults(result_service_pb2.ListResultsRequest(), metadata=bearer(token))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = rpc_status.from_call(err.value).details
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in details)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [("filter.outcome", "unknown outcome")]


async def test_rpc_of_an_issue_not_landed_is_unimplemented(exploding):
    running, token = exploding
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = result_service_pb2_grpc.ResultServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.AmendResult(result_service_pb2.AmendResultRequest(), metadata=bearer(token))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_health_reflection_and_metrics(database_url):
    running = await start_service(
        "result_svc", load(ResultConfig, result_svc_env(service_env(database_url))), result_process.build
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", "covidtest.result.v1.ResultService", "covidtest.admin.v1.AdminService"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            async for answer in reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            ):
                names = {s.name for s in answer.list_services_response.service}
                assert {"covidtest.result.v1.ResultService", "covidtest.admin.v1.AdminService"} <= names
                break
            with pytest.raises(grpc.aio.AioRpcError):
                await result_service_pb2_grpc.ResultServiceStub(channel).GetSample(
                    result_service_pb2.GetSampleRequest()
                )
        body = await asyncio.to_thread(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=5).read().decode()
            )
        )
        assert 'covidtest_auth_denied_total{code="UNAUTHENTICATED",service="result_svc"}' in body
        # The refused GetSample is counted by code, and its latency observed.
        assert 'covidtest_rpc_handled_total{code="UNAUTHENTICATED",method="GetSample",service="result_svc"}' in body
        assert 'covidtest_rpc_duration_seconds_count{method="GetSample",service="result_svc"}' in body
    finally:
        await running.stop(0)


@pytest.mark.parametrize("service", ["result_svc", "publish_svc", "verify_svc"])
async def test_process_reports_serving_then_not_serving_first_on_sigterm(database_url, service):
    env = {
        **os.environ,
        **own_service_env(service, service_env(database_url, GRPC_PORT="0", SHUTDOWN_GRACE_SECONDS="2")),
    }
    # A subprocess needs a port we know: pick a free one now.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env["GRPC_PORT"] = str(port)
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await asyncio.wait_for(channel.channel_ready(), 30)  # the process has bound its port
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
            # NOT_SERVING until the process has loaded what it answers from (verify_svc: trust list, value
            # sets, checkpoint bundle), then SERVING.
            first = await asyncio.wait_for(watch.read(), 20)
            while first.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                first = await asyncio.wait_for(watch.read(), 20)
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            proc.send_signal(signal.SIGTERM)
            second = await asyncio.wait_for(watch.read(), 10)
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read().decode()
    assert "draining" in output and "Traceback" not in output


def test_bad_configuration_exits_2_with_every_problem():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"GRPC_PORT": "99999", "PII_KEYS": "x"})
    proc = subprocess.run(
        [sys.executable, "-m", "services.result_svc"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    for name in ("DATABASE_URL", "REDIS_URL", "GRPC_PORT", "PII_KEYS", "PII_PEPPER"):
        assert name in proc.stderr


async def test_health_port_answers_probes_in_plaintext_under_mutual_tls(database_url, tmp_path):
    from tests.pki import TestCA
    from tools.servers import free_port

    health_port = free_port()
    env = service_env(
        database_url, GRPC_INSECURE="false", HEALTH_PORT=str(health_port), **TestCA().write_server_files(tmp_path)
    )
    running = await start_result_svc(env)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as err:  # nothing but health on this port
                await result_service_pb2_grpc.ResultServiceStub(channel).GetSample(
                    result_service_pb2.GetSampleRequest()
                )
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        await running.set_serving(False)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await running.stop(0)


def test_server_processes_share_the_port_and_stop_together(database_url):
    """SERVER_PROCESSES=2: two processes answer on one port; SIGTERM to the first stops both."""
    proc, port = verify_process(database_url, SERVER_PROCESSES="2")
    children: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            # Both processes ready: ten connections in a row answered (the worker may still be loading
            # while the first process already answers; a connection the kernel gives it then is refused).
            if children and all(health_ok(port) for _ in range(10)):
                break
            time.sleep(0.1)
        assert children, "no worker process was started"
        assert len(children) == 1
        for _ in range(10):  # every new connection is answered, whichever process the kernel picks
            assert health_ok(port)
        for pid in (proc.pid, int(children[0])):  # the event loop keeps its policy, grpc's threads yield
            deadline = time.monotonic() + 10
            while (
                (policies := thread_policies(pid))[pid] != os.SCHED_OTHER
                or len(policies) < 3
                or any(policy != os.SCHED_BATCH for tid, policy in policies.items() if tid != pid)
            ):
                assert time.monotonic() < deadline, f"thread policies of {pid}: {policies}"
                time.sleep(0.05)  # polling with a deadline (the process may still be starting grpc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert all(subprocess.run(["kill", "-0", c], capture_output=True).returncode != 0 for c in children)
    finally:
        if proc.poll() is None:  # the test failed midway: no orphaned worker may outlive it
            for child in children:
                subprocess.run(["kill", "-9", child], capture_output=True)
            proc.kill()


def test_a_worker_serves_only_when_told_and_stops_when_the_first_process_is_gone(database_url):
    """The worker side of SERVER_PROCESSES: it says when it listens, answers health NOT_SERVING until
    the first process writes to its go pipe, and stops by itself when that pipe closes (the first
    process gone, even by SIGKILL), instead of serving on as an orphan."""
    from services.common.runtime import GO_FD_ENV, READY_FD_ENV, WORKER_ENV
    from tools.servers import free_port

    port = free_port()
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    env = {
        **os.environ,
        **service_env(database_url, GRPC_PORT=str(port), SHUTDOWN_GRACE_SECONDS="1"),
        WORKER_ENV: "1",
        READY_FD_ENV: str(ready_write),
        GO_FD_ENV: str(go_read),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.verify_svc"], cwd=ROOT, env=env, pass_fds=(ready_write, go_read)
    )
    os.close(ready_write)
    os.close(go_read)
    try:
        readable, _, _ = select.select([ready_read], [], [], 30)
        assert readable and os.read(ready_read, 1) == b"1", "the worker never said it listens"
        assert health_status(port) == health_pb2.HealthCheckResponse.NOT_SERVING
        os.write(go_write, b"1")
        deadline = time.monotonic() + 10
        while health_status(port) != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "the worker did not turn SERVING when told"
            time.sleep(0.05)
        os.close(go_write)
        go_write = -1
        assert proc.wait(30) == 0, "the worker did not stop when the first process was gone"
    finally:
        os.close(ready_read)
        if go_write >= 0:
            os.close(go_write)
        if proc.poll() is None:
            proc.kill()


def test_workers_of_a_killed_first_process_stop(database_url):
    proc, port = verify_process(database_url, SERVER_PROCESSES="2")
    children: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not (children and health_ok(port)):
            assert time.monotonic() < deadline, "the processes did not start serving"
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            time.sleep(0.05)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 30
        while subprocess.run(["kill", "-0", children[0]], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "the worker outlived its first process"
            time.sleep(0.05)
    finally:
        for child in children:
            subprocess.run(["kill", "-9", child], capture_output=True)
        if proc.poll() is None:
            proc.kill()


def thread_policies(pid: int) -> dict[int, int]:
    """The scheduling policy of each thread of `pid`."""
    policies = {}
    for entry in os.listdir(f"/proc/{pid}/task"):
        try:
            policies[int(entry)] = os.sched_getscheduler(int(entry))
        except ProcessLookupError:  # the thread ended meanwhile
            pass
    return policies


def verify_process(database_url: str, output=subprocess.PIPE, **settings: str) -> tuple[subprocess.Popen, int]:
    """verify_svc started as operators start it (`python -m`), on a free port; returns it and the port."""
    from tools.servers import free_port

    port = free_port()
    env = {**os.environ, **service_env(database_url, GRPC_PORT=str(port), SHUTDOWN_GRACE_SECONDS="1", **settings)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.verify_svc"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
    )
    return proc, port


def test_helper_threads_keep_their_policy_when_the_setting_is_off(database_url, tmp_path):
    log_file = tmp_path / "verify.log"
    with log_file.open("w") as output:
        proc, _ = verify_process(database_url, output=output, HELPER_THREADS_BATCH="false")
    try:
        deadline = time.monotonic() + 30
        # The process logs its decision once grpc's threads exist and the setting has been applied.
        while '"msg": "helper threads scheduled"' not in log_file.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, "verify_svc did not start"
            time.sleep(0.1)  # polling with a deadline
        assert '"sched_batch": false' in log_file.read_text()
        policies = thread_policies(proc.pid)
        assert len(policies) >= 3 and set(policies.values()) == {os.SCHED_OTHER}, policies
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def health_status(port: int) -> int | None:
    """The health status one new connection to `port` is given; None if none answers."""
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            return reply.status
    except grpc.RpcError:
        return None


def health_ok(port: int) -> bool:
    return health_status(port) == health_pb2.HealthCheckResponse.SERVING


async def test_a_background_task_that_ends_on_an_error_is_reported_without_its_message(caplog):
    caplog.set_level(logging.ERROR, logger="covidtest.runtime")

    async def relay_like_loop():
        raise ValueError("Nguyen Van A, 1990-01-01")  # a message may carry data; only the type is logged

    deps = Deps(config=None, pool=None, redis=None, personal_data=None)
    ended = REGISTRY.get_sample_value("covidtest_background_tasks_ended_total", {"task": relay_like_loop.__qualname__})
    task = deps.background(relay_like_loop())
    await asyncio.gather(task, return_exceptions=True)  # the report, added first, has run by now
    [record] = [r for r in caplog.records if r.getMessage() == "background task ended unexpectedly"]
    assert record.fields == {"task": relay_like_loop.__qualname__, "error": "ValueError"}
    assert "Nguyen" not in caplog.text
    # …and counted where the alert BackgroundTaskEnded looks (deploy/monitoring).
    now = REGISTRY.get_sample_value("covidtest_background_tasks_ended_total", {"task": relay_like_loop.__qualname__})
    assert now == (ended or 0) + 1


def _two_free_ports() -> int:
    """A port p with p + 1 free too (METRICS_PORT and its worker's)."""
    import socket

    from tools.servers import free_port

    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def _scrape(port: int) -> dict[str, list]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return {f.name: f.samples for f in text_string_to_metric_families(answer.read().decode())}


async def test_one_scrape_target_serves_every_process_of_the_pod(database_url):
    """SERVER_PROCESSES=2: METRICS_PORT answers for both processes (each sample labelled `process`), so the
    pod annotation's one port sees every call; the worker's own port listens on loopback only."""
    from services.gen.covidtest.verify.v1 import verify_service_pb2, verify_service_pb2_grpc
    from tests.conftest import bearer, make_principal

    device = await make_principal(database_url, Role.CHECKPOINT, province="24")
    metrics_port = _two_free_ports()
    proc, port = verify_process(database_url, SERVER_PROCESSES="2", METRICS_PORT=str(metrics_port))
    try:
        deadline = time.monotonic() + 30
        while not health_ok(port):
            assert proc.poll() is None and time.monotonic() < deadline, "verify_svc did not start"
            await asyncio.sleep(0.1)
        calls = 24
        for _ in range(calls):  # a connection each: the kernel spreads them over the two processes
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await verify_service_pb2_grpc.VerifyServiceStub(channel).Verify(
                    verify_service_pb2.VerifyRequest(qr="HC1:x"), metadata=bearer(device["token"])
                )
        families = _scrape(metrics_port)
        up = {s.labels["process"]: s.value for s in families["covidtest_metrics_process_up"]}
        assert up == {"0": 1.0, "1": 1.0}
        resident = {s.labels["process"] for s in families["process_resident_memory_bytes"]}
        assert resident == {"0", "1"}, "each process's own figures, told apart by the label"
        verified = [
            s
            for s in families["covidtest_rpc_handled"]
            if s.labels.get("method") == "Verify" and s.name == "covidtest_rpc_handled_total"
        ]
        assert sum(s.value for s in verified) == calls
        # A frozen worker costs one scrape at most its timeout, and says so; the first process still answers.
        [worker] = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        os.kill(int(worker), signal.SIGSTOP)
        try:
            started = time.monotonic()
            frozen = await asyncio.to_thread(_scrape, metrics_port)
            assert time.monotonic() - started < 5
        finally:
            os.kill(int(worker), signal.SIGCONT)
        up = {s.labels["process"]: s.value for s in frozen["covidtest_metrics_process_up"]}
        assert up == {"0": 1.0, "1": 0.0}
        assert {s.labels["process"] for s in frozen["process_resident_memory_bytes"]} == {"0"}
        addresses = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
        for address in [a for a in addresses if ":" not in a][:1]:  # the worker's port: loopback only
            with pytest.raises(OSError):
                import socket

                socket.create_connection((address, metrics_port + 1), timeout=1).close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
