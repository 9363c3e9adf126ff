"""The HTTP/JSON gateway in front of real services: result_svc, publish_svc and verify_svc in-process on one
database, a released certificate's feed, and the gateway forwarding to them over real gRPC."""

from dataclasses import dataclass

import aiohttp
import pytest

from services.common.config import load
from services.gateway.app import RunningGateway, start_gateway
from services.gateway.config import GatewayConfig
from tests.verify_svc.conftest import verify_platform


def gateway_env(result_port: int, publish_port: int, verify_port: int, **overrides: str) -> dict[str, str]:
    return {
        "GATEWAY_HTTP_HOST": "127.0.0.1",
        "GATEWAY_HTTP_PORT": "0",
        "RESULT_SVC_TARGET": f"127.0.0.1:{result_port}",
        "PUBLISH_SVC_TARGET": f"127.0.0.1:{publish_port}",
        "VERIFY_SVC_TARGET": f"127.0.0.1:{verify_port}",
        "UPSTREAM_INSECURE": "true",
        "SHUTDOWN_GRACE_SECONDS": "1",
        **overrides,
    }


async def start_test_gateway(platform, **overrides: str) -> RunningGateway:
    """A gateway in front of `platform` (which must have a verify_server)."""
    env = gateway_env(
        platform.result_server.port, platform.publish_server.port, platform.verify_server.port, **overrides
    )
    return await start_gateway(load(GatewayConfig, env), serve_metrics_port=False)


@dataclass
class Stack:
    platform: object  # tests.publish_svc.conftest.Platform, with verify, device and partner
    gateway: RunningGateway
    http: aiohttp.ClientSession

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"

    @property
    def device_token(self) -> str:
        return self.platform.device["token"]  # type: ignore[attr-defined]

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        """Authorization for `token` (the checkpoint device's by default)."""
        return {"authorization": f"Bearer {token or self.device_token}", **extra}


@pytest.fixture(scope="module")
async def stack(database_url):
    """verify_svc's test platform (tests/verify_svc/conftest.py) with a gateway in front of it."""
    async with verify_platform(database_url) as platform:
        gateway = await start_test_gateway(platform)
        try:
            async with aiohttp.ClientSession() as http:
                yield Stack(platform, gateway, http)
        finally:
            await gateway.stop()
