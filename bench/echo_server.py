"""A bare grpc.aio server for `bench/verify.py`: the cost of gRPC itself, nothing else.

Serves the same method path as verify_svc, `/covidtest.verify.v1.VerifyService/Verify`, with the
generated code (the request is parsed, a fixed small VerifyResponse is serialised) and does nothing
else: no interceptor, no authentication, no decoding, no Redis; beside it only the standard health
service. Same grpcio, same uvloop and the same server options as the services; bench/verify.py runs as
many of them on one port as verify_svc has processes. Runs until SIGTERM/SIGINT.

    python bench/echo_server.py --port 50051
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.gen.covidtest.type.v1 import verdict_pb2  # noqa: E402
from services.gen.covidtest.verify.v1 import verify_service_pb2 as pb  # noqa: E402
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc  # noqa: E402

REPLY = pb.VerifyResponse(
    verdict=verdict_pb2.VERDICT_VALID, reason="echo", status_source=verdict_pb2.STATUS_SOURCE_UNCHECKED
)


class EchoServicer(verify_service_pb2_grpc.VerifyServiceServicer):
    async def Verify(self, request, context):
        return REPLY


async def serve(host: str, port: int) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.so_reuseport", 1),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
    )
    verify_service_pb2_grpc.add_VerifyServiceServicer_to_server(EchoServicer(), server)
    # The standard health service, as the services have it (benchmarks wait for SERVING); not on the Verify path.
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"echo_server: cannot bind {host}:{port}")
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    import uvloop

    uvloop.run(serve(arguments.host, arguments.port))
