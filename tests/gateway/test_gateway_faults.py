"""The gateway in front of a service that is down, frozen or slow: UNAVAILABLE or DEADLINE_EXCEEDED as
google.rpc.Status JSON under 503 / 504, within the configured deadline, never a hang or a 500; and CORS
only for the configured origins."""

import asyncio
import json
import socket
import time

import aiohttp
import pytest

from services.common.config import load
from services.gateway.app import start_gateway
from services.gateway.config import GatewayConfig
from tests.fault.delaying_proxy import DelayingProxy
from tests.gateway.conftest import gateway_env, start_test_gateway
from tools.servers import free_port

ORIGIN = "https://checkpoint.example.vn"


async def post_verify(port: int, token: str = "ctk_x", **headers):
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.post(
            f"http://127.0.0.1:{port}/v1/verify",
            json={"qr": "HC1:x"},
            headers={"authorization": f"Bearer {token}", **headers},
        ) as response:
            return response.status, await response.json(), time.monotonic() - started, response.headers


async def test_a_service_that_is_down_is_503_unavailable():
    dead = free_port()
    gateway = await start_gateway(load(GatewayConfig, gateway_env(dead, dead, dead)), serve_metrics_port=False)
    try:
        status, error, _, _ = await post_verify(gateway.port)
    finally:
        await gateway.stop()
    assert status == 503
    assert error["code"] == 14


async def test_a_frozen_service_is_504_deadline_exceeded_within_the_deadline():
    """A server that accepts the connection and never answers (a frozen process: the kernel completes the
    handshake from its backlog)."""
    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(16)
    port = frozen.getsockname()[1]
    env = gateway_env(port, port, port, UPSTREAM_DEADLINE_SECONDS="0.5")
    gateway = await start_gateway(load(GatewayConfig, env), serve_metrics_port=False)
    try:
        status, error, elapsed, _ = await post_verify(gateway.port)
    finally:
        await gateway.stop()
        frozen.close()
    assert status == 504
    assert error["code"] == 4
    assert elapsed < 3


async def test_a_slow_service_answers_through_the_gateway_when_within_the_deadline(stack):
    """Slow, not down: a proxy holding every chunk 100 ms still gets the verdict (the deadline is 10 s)."""
    platform = stack.platform
    proxy = await DelayingProxy("127.0.0.1", platform.verify_server.port).start()
    proxy.delay = 0.1
    slow = await start_test_gateway(platform, VERIFY_SVC_TARGET=f"127.0.0.1:{proxy.port}")
    try:
        status, body, elapsed, _ = await post_verify(slow.port, stack.device_token)
    finally:
        await slow.stop()
        await proxy.stop()
    assert status == 200 and body["verdict"] == "VERDICT_MALFORMED"
    assert elapsed >= 0.2  # it really went through the slow link


@pytest.fixture(scope="module")
async def cors_gateway(stack):
    gateway = await start_test_gateway(stack.platform, CORS_ORIGINS=ORIGIN)
    yield gateway
    await gateway.stop()


async def preflight(port: int, origin: str):
    async with aiohttp.ClientSession() as http:
        async with http.options(
            f"http://127.0.0.1:{port}/v1/verify",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        ) as response:
            return response.status, response.headers


async def test_cors_preflight_and_answer_for_a_configured_origin(stack, cors_gateway):
    status, headers = await preflight(cors_gateway.port, ORIGIN)
    assert status == 204
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in headers["access-control-allow-headers"]
    status, _, _, headers = await post_verify(cors_gateway.port, stack.device_token, origin=ORIGIN)
    assert status == 200 and headers["access-control-allow-origin"] == ORIGIN


async def test_cors_is_refused_for_any_other_origin(stack, cors_gateway):
    status, headers = await preflight(cors_gateway.port, "https://evil.example")
    assert status == 403 and "access-control-allow-origin" not in headers
    _, _, _, headers = await post_verify(cors_gateway.port, stack.device_token, origin="https://evil.example")
    assert "access-control-allow-origin" not in headers
    # The default gateway allows no origin at all.
    status, headers = await preflight(stack.gateway.port, ORIGIN)
    assert status == 403 and "access-control-allow-origin" not in headers


async def test_rate_limited_calls_carry_retry_after():
    """RetryInfo in the service's status becomes Retry-After (rounded up to whole seconds)."""
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import code_pb2, error_details_pb2, status_pb2

    from services.gateway.transcode import from_status

    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=100)))
    error = from_status(status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="slow down", details=[detail]))
    assert (error.http_status, error.retry_after_s) == (429, 3)
    assert json.loads(error.body())["details"][0]["retryDelay"] == "2.000000100s"


async def test_metrics_label_routes_by_template_never_by_value(stack):
    from services.gateway.app import REQUESTS

    for _ in range(2):
        async with stack.http.get(f"{stack.gateway_url}/v1/samples/{'0' * 8}-0000-0000-0000-000000000000") as r:
            await r.read()
    routes = {route for route, _ in REQUESTS.values}
    assert "/v1/samples/{sample_id}" in routes
    assert not [route for route in routes if "0000" in route]


async def test_a_malformed_http_request_is_400_and_one_log_line_without_traceback(stack, caplog):
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.gateway.port)
    writer.write(
        b"POST /v1/verify HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ctk_\x7f\r\ncontent-length: 2\r\n\r\n{}"
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.split(b" ")[1] == b"400"
    refused = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert refused and all(r.exc_info is None and r.levelname == "INFO" for r in refused)
    assert "malformed HTTP request refused" in refused[0].getMessage()


async def test_an_unexpected_failure_is_internal_with_a_request_id_and_one_log_line(stack, monkeypatch, caplog):
    from services.gateway import transcode

    def broken(*args, **kwargs):
        raise RuntimeError("a bug with a value in its message: 024000000000")

    monkeypatch.setattr(transcode, "build_request", broken)
    async with stack.http.post(stack.gateway_url + "/v1/verify", json={"qr": "HC1:x"}, headers=stack.headers()) as r:
        assert r.status == 500
        error = await r.json()
    assert error["code"] == 13
    [info] = [d for d in error["details"] if d["@type"].endswith("google.rpc.RequestInfo")]
    [logged] = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert logged.fields["request_id"] == info["requestId"]
    assert "024000000000" not in str(logged.fields) and logged.exc_info is None
