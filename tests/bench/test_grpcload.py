"""The benchmark's load generator (bench/loadgen/grpcload.c): built from source, against the echo server.

`make bench-verify` rests on it: a different body on every call, failures counted, and a paced mode
that sleeps between calls (it once spun and took a whole core, inflating the latency it measured).
"""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from bench import grpcload
from bench.common import ROOT, wait_for_serving
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from tools.servers import free_port

VERIFY = "/covidtest.verify.v1.VerifyService/Verify"


@pytest.fixture(scope="module")
def echo_port():
    grpcload.build()
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "echo_server.py"), "--port", str(port)], cwd=ROOT)
    try:
        assert wait_for_serving(port, 30), "the echo server did not start"
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def bodies(tmp_path):
    path = tmp_path / "bodies.bin"
    assert grpcload.write_bodies(path, (vpb.VerifyRequest(qr=f"HC1:{i:06d}") for i in range(50))) == 50
    return path


def test_each_call_carries_the_next_body_and_every_call_succeeds(echo_port, bodies):
    r = grpcload.run(echo_port, VERIFY, bodies, connections=2, streams=2, duration=0.5)
    assert r["errors"] == 0 and r["requests"] > 0 and r["bodies"] == 50
    assert r["distinct_sent"] == min(r["sent_total"], 50)
    assert r["repeats"] == (r["sent_total"] > 50)


def test_failed_calls_are_counted_and_raised(echo_port, bodies):
    # The echo server does not implement VerifyBatch: every call ends with grpc-status 12 (UNIMPLEMENTED).
    with pytest.raises(RuntimeError, match="failed calls"):
        grpcload.run(echo_port, "/covidtest.verify.v1.VerifyService/VerifyBatch", bodies, duration=0.3)
    r = grpcload.run(echo_port, "/covidtest.verify.v1.VerifyService/VerifyBatch", bodies, duration=0.3, check=False)
    assert r["errors"] > 0 and r["grpc_errors"] == r["errors"]


def test_the_paced_mode_sleeps_between_calls(echo_port, bodies):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = grpcload.run(echo_port, VERIFY, bodies, connections=2, streams=1, duration=1.0, rate=2000)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r["errors"] == 0 and r["requests"] <= 2000 * 1.0 + 2  # never faster than the schedule
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert cpu < 0.5, f"grpcload used {cpu:.2f} s of CPU for 1 s at 2,000 calls/s: it spins"
