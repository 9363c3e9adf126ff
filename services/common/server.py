"""gRPC server bootstrap shared by the three services.

`start(...)` builds a grpc.aio server with the call guard (identity, roles, error mapping, metrics)
around every method of our services, the standard health service and reflection, binds TLS, mutual
TLS or — only when configured explicitly — plaintext, and starts the Prometheus /metrics port.
Requests larger than the service's `MAX_REQUEST_BYTES` are refused by grpc itself (RESOURCE_EXHAUSTED)
from the message's length prefix, before it is parsed or its caller checked; lookups of credentials the
process does not know are rate limited per client address (services.common.auth).
`Running.stop()` is the graceful shutdown: health flips to NOT_SERVING first so load balancers stop
sending, then in-flight calls drain within the grace period. `run_until_signal` does that on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.auth import Authenticator, CredentialResolver, PeerRateLimiter, Role
from services.common.config import ServiceConfig
from services.common.guard import CallGuard, GuardedServer
from services.common.metrics import serve_metrics

log = logging.getLogger("covidtest.server")


@dataclass(frozen=True)
class GrpcService:
    """One gRPC service a process hosts, with the roles allowed per method (short names)."""

    full_name: str  # e.g. "covidtest.result.v1.ResultService"
    register: Callable[[GuardedServer], None]  # adds the servicer to the server, behind the call guard
    roles: Mapping[str, Iterable[Role]]
    # Set once the service can answer (verify_svc: its trust list is loaded); health says NOT_SERVING
    # until then, so no probe routes traffic to a process that would answer UNAVAILABLE.
    ready: asyncio.Event | None = None

    def policy(self) -> dict[str, frozenset[Role]]:
        """Full method name → allowed roles. Every RPC of the contract must be declared, none invented."""
        declared = set(self.roles)
        methods = {m.name for m in descriptor_pool.Default().FindServiceByName(self.full_name).methods}
        if declared != methods:
            raise RuntimeError(
                f"{self.full_name}: roles undeclared for {sorted(methods - declared)}, "
                f"declared for unknown {sorted(declared - methods)}"
            )
        return {f"/{self.full_name}/{method}": frozenset(roles) for method, roles in self.roles.items()}


@dataclass
class Running:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    services: list[GrpcService]
    metrics_port: int | None = None
    health_server: grpc.aio.Server | None = None  # plaintext, health only (HEALTH_PORT)
    _metrics_http: WSGIServer | None = None
    _on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _wants_serving: bool = False
    _waiting: asyncio.Task | None = None

    async def set_serving(self, serving: bool) -> None:
        """SERVING (once every service is ready: until then it stays NOT_SERVING and turns SERVING by
        itself when they are) or NOT_SERVING."""
        self._wants_serving = serving
        unready = [s.ready for s in self.services if s.ready is not None and not s.ready.is_set()]
        if serving and unready:
            await self._set_health(False)
            if self._waiting is None or self._waiting.done():
                self._waiting = asyncio.ensure_future(self._serve_when_ready(unready))
            return
        await self._set_health(serving)

    async def _serve_when_ready(self, events: list[asyncio.Event]) -> None:
        for event in events:
            await event.wait()
        if self._wants_serving:
            await self._set_health(True)

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *(s.full_name for s in self.services)]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING first, then drain in-flight calls for up to `grace` seconds, then release resources."""
        self._wants_serving = False
        if self._waiting is not None:
            self._waiting.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        for close in reversed(self._on_stop):
            await close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
        log.info("stopped", extra={"fields": {"port": self.port}})


def _credentials(config: ServiceConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert_file:
        return None
    with open(config.tls_key_file, "rb") as f:
        key = f.read()
    with open(config.tls_cert_file, "rb") as f:
        chain = f.read()
    client_ca = None
    if config.tls_client_ca_file:
        with open(config.tls_client_ca_file, "rb") as f:
            client_ca = f.read()
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def start(
    config: ServiceConfig,
    service_label: str,
    services: list[GrpcService],
    resolver: CredentialResolver,
    *,
    on_stop: list[Callable[[], Awaitable[None]]] | None = None,
    serve_metrics_port: bool = True,
    serving: bool = True,
    metrics_host: str = "0.0.0.0",
    metrics_workers: list[int] | None = None,
) -> Running:
    policy: dict[str, frozenset[Role]] = {}
    for service in services:
        policy.update(service.policy())
    authenticator = Authenticator(
        resolver,
        mutual_tls=bool(config.tls_client_ca_file),
        unknown_limiter=PeerRateLimiter(config.auth_unknown_lookups_per_second, config.auth_unknown_lookup_burst),
    )
    server = grpc.aio.server(
        options=[
            # grpc refuses a larger message (RESOURCE_EXHAUSTED) before our handler or its parser runs.
            ("grpc.max_receive_message_length", config.max_request_bytes),
            ("grpc.so_reuseport", 1),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ],
    )
    guarded = GuardedServer(server, CallGuard(service_label, authenticator, policy, config.default_language))
    for service in services:
        service.register(guarded)
    # Health and reflection go on the server itself: any caller (a kubelet probe, grpcurl) may use them.
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [s.full_name for s in services] + [health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    address = f"{config.grpc_host}:{config.grpc_port}"
    credentials = _credentials(config)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC port {address}")
    await server.start()
    running = Running(server=server, port=port, health=health_servicer, services=services, _on_stop=list(on_stop or []))
    if config.health_port:
        # Kubelet gRPC probes cannot present a client certificate: under mutual TLS they ask this
        # plaintext port, which serves nothing but the same health status.
        running.health_server = grpc.aio.server(options=[("grpc.max_receive_message_length", 4096)])
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, running.health_server)
        running.health_server.add_insecure_port(f"{config.grpc_host}:{config.health_port}")
        await running.health_server.start()
    if serve_metrics_port:
        http, _thread = serve_metrics(config.metrics_port, metrics_host, metrics_workers)
        running._metrics_http = http
        running.metrics_port = http.server_port
    await running.set_serving(serving)
    log.info(
        "serving" if serving else "listening; health NOT_SERVING until told",
        extra={
            "fields": {
                "service": service_label,
                "port": port,
                "tls": credentials is not None,
                "mutual_tls": bool(config.tls_client_ca_file),
                "metrics_port": running.metrics_port,
            }
        },
    )
    return running


async def run_until_signal(running: Running, grace: float) -> None:
    """Serve until SIGTERM/SIGINT, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received: draining", extra={"fields": {"grace_s": grace}})
    await running.stop(grace)
