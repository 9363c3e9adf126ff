"""The HTTP/JSON gateway: every public RPC as HTTP/JSON, forwarded to the gRPC services, and the
checkpoint page.

It holds no business logic and no state: each request becomes one gRPC call to the service that owns
the RPC, with the caller's own `Authorization: Bearer` token (the service checks role and scope, as for
any gRPC caller) and `Accept-Language`, under a deadline; the answer or the service's google.rpc.Status
comes back as JSON. The gateway refuses by itself only what never reaches a service: a request without
a bearer token, a body over MAX_REQUEST_BYTES, a body that is not a JSON object of the request type,
an unknown route. Built on aiohttp (HTTP) and grpc.aio (upstream), with protobuf's own JSON mapping.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from google.rpc import code_pb2
from opentelemetry.trace import SpanKind

from services.common import i18n, tracing
from services.common.errors import DomainError, Internal, Unauthenticated
from services.common.logs import exception_outline
from services.common.metrics import LoopCounter, LoopHistogram, serve_metrics
from services.common.runtime import collect_garbage_for_serving
from services.common.threads import batch_helper_threads
from services.gateway import transcode
from services.gateway.config import DNS_SCHEME, GatewayConfig
from services.gateway.routes import PUBLISH_SERVICE, RESULT_SERVICE, ROUTE, VERIFY_SERVICE, Route, public_routes

log = logging.getLogger("covidtest.gateway")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ASSETS = REPO / "node_modules" / "zxing-wasm" / "dist"
CORS_ALLOWED_HEADERS = "authorization, content-type, accept-language"
CORS_MAX_AGE_S = "600"
UPSTREAM_MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a printable certificate (PDF) is the largest answer


REQUESTS = LoopCounter(
    "covidtest_gateway_requests", "HTTP requests answered, by route template and HTTP status", ["route", "status"]
)
LATENCY = LoopHistogram(
    "covidtest_gateway_request_duration_seconds",
    "HTTP request latency in the gateway, upstream call included",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class RouteNotFound(DomainError):
    rpc_code = code_pb2.NOT_FOUND
    grpc_code = grpc.StatusCode.NOT_FOUND
    default_reason = "ROUTE_NOT_FOUND"


class RequestTooLarge(DomainError):
    rpc_code = code_pb2.RESOURCE_EXHAUSTED
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "REQUEST_TOO_LARGE"


@dataclass
class GatewayState:
    """What the handlers share: the upstream channels, and whether the process is draining."""

    config: GatewayConfig
    # By full service name. Emptied on stop, as are the calls: a grpc.aio object left to the collector
    # after its event loop has closed fails at interpreter exit.
    channels: dict[str, grpc.aio.Channel]
    calls: dict[str, grpc.aio.UnaryUnaryMultiCallable] = field(default_factory=dict)  # by gRPC method path
    draining: bool = False


@dataclass
class RunningGateway:
    runner: web.AppRunner
    port: int
    state: GatewayState
    metrics_port: int | None = None
    _metrics_http: WSGIServer | None = None

    async def stop(self) -> None:
        """Readiness fails first; then in-flight requests get up to SHUTDOWN_GRACE_SECONDS; then the channels
        close."""
        self.state.draining = True
        await self.runner.cleanup()
        self.state.calls.clear()
        for channel in self.state.channels.values():
            await channel.close()
        self.state.channels.clear()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()


class _MalformedHttpWithoutTraceback(logging.Filter):
    """aiohttp logs a request it cannot parse (a control character in a header, a broken request line)
    with a traceback; that is the client's mistake, answered 400 by aiohttp, so one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            error = record.exc_info[1]
            first_line = (error.message.splitlines() or [""])[0][:120]  # later lines quote the request
            record.msg = f"malformed HTTP request refused: {error.code} {first_line}"
            record.args = ()
            record.exc_info = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("aiohttp.server").addFilter(_MalformedHttpWithoutTraceback())


def language_of(request: web.Request) -> str:
    return i18n.language_of(request.headers.get("accept-language", "")) or i18n.DEFAULT_LANGUAGE


def _error_response(error: transcode.HttpError) -> web.Response:
    response = web.Response(status=error.http_status, body=error.body(), content_type=transcode.JSON)
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


def _domain_error(request: web.Request, error: DomainError, http_status: int | None = None) -> web.Response:
    status = error.to_rpc_status(language_of(request))
    http = transcode.from_status(status)
    return _error_response(transcode.HttpError(http_status or http.http_status, status, http.retry_after_s))


def _printable_ascii(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    """The caller's credential and language as gRPC metadata. A request without a bearer token is
    refused here, so the gateway's own TLS client certificate can never stand in for a caller."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "no credential: send 'Authorization: Bearer <token>'",
            reason="CREDENTIAL_MISSING",
        )
    if not _printable_ascii(authorization) or len(authorization) > 1024:
        raise Unauthenticated("the credential is not valid", reason="CREDENTIAL_INVALID")
    metadata = [("authorization", f"Bearer {token.strip()}")]
    language = request.headers.get("accept-language", "")
    if language and _printable_ascii(language) and len(language) <= 512:
        metadata.append(("accept-language", language))
    traceparent = tracing.current_traceparent()  # this request's span, when tracing is on
    if traceparent:
        metadata.append((tracing.TRACEPARENT, traceparent))
    return tuple(metadata)


def route_handler(route: Route, channel: grpc.aio.Channel, state: GatewayState):
    """The aiohttp handler of one HTTP binding: one gRPC call to `channel`."""
    state.calls[route.rpc] = channel.unary_unary(
        route.rpc,
        request_serializer=route.request_type.SerializeToString,
        response_deserializer=route.response_type.FromString,
    )

    async def handle(request: web.Request) -> web.Response:
        request[ROUTE] = route.template
        parent = request.headers.get(tracing.TRACEPARENT)
        with tracing.span(f"{route.http_method} {route.template}", parent=parent, kind=SpanKind.SERVER):
            return await forward(request)

    async def forward(request: web.Request) -> web.Response:
        metadata = _metadata(request)
        # The body is read as JSON whatever its Content-Type says: `curl -d` sends form-urlencoded, and
        # a cross-site form cannot forge the Authorization header anyway.
        body = await request.read() if route.body else b""
        message = transcode.build_request(route, body, request.match_info, _query(request))
        try:
            call = state.calls[route.rpc]
            reply = await call(message, metadata=metadata, timeout=state.config.deadline_seconds)
        except grpc.aio.AioRpcError as exc:
            return _error_response(transcode.from_rpc_error(exc))
        return web.Response(body=transcode.render(reply), content_type=transcode.JSON)

    return handle


def _query(request: web.Request) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for key, value in request.query.items():
        query.setdefault(key, []).append(value)
    return query


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin", "Access-Control-Expose-Headers": "Retry-After"}


def middlewares(state: GatewayState) -> list:
    allowed = state.config.cors_origins

    @web.middleware
    async def cors(request: web.Request, handler) -> web.StreamResponse:
        """CORS for the configured origins only; a preflight from any other origin is refused."""
        origin = request.headers.get("origin", "")
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            if origin not in allowed:
                return web.Response(status=403, headers={"Vary": "Origin"})
            return web.Response(
                status=204,
                headers={
                    **_cors_headers(origin),
                    "Access-Control-Allow-Methods": "GET, POST",
                    "Access-Control-Allow-Headers": CORS_ALLOWED_HEADERS,
                    "Access-Control-Max-Age": CORS_MAX_AGE_S,
                },
            )
        response = await handler(request)
        if origin and origin in allowed:
            response.headers.update(_cors_headers(origin))
        return response

    @web.middleware
    async def errors_and_metrics(request: web.Request, handler) -> web.StreamResponse:
        """Every failure as a google.rpc.Status in JSON, never a traceback; one count per answer."""
        started = time.perf_counter()
        try:
            response = await handler(request)
        except DomainError as exc:
            response = _domain_error(request, exc)
        except web.HTTPRequestEntityTooLarge:
            too_large = RequestTooLarge(f"the request body is larger than {state.config.max_request_bytes} bytes")
            response = _domain_error(request, too_large, http_status=413)
        except web.HTTPException as exc:
            if exc.status >= 400:
                not_found = RouteNotFound(f"no RPC is mapped to {request.method} {request.path}")
                response = _domain_error(request, not_found, http_status=exc.status if exc.status == 405 else 404)
            else:
                raise
        except Exception as exc:  # noqa: BLE001 - the one place an unexpected failure becomes INTERNAL
            request_id = uuid.uuid4().hex
            log.error(
                "request failed",
                extra={
                    "fields": {
                        "route": request.get(ROUTE, "unmatched"),
                        "request_id": request_id,  # the id the caller quotes to support (RequestInfo)
                        "error": exception_outline(exc),
                    }
                },
            )
            response = _domain_error(request, Internal("internal error", request_id))
        route = request.get(ROUTE, "unmatched")
        REQUESTS.values[(route, str(response.status))] += 1
        LATENCY.labels(route).observe(time.perf_counter() - started)
        return response

    return [cors, errors_and_metrics]


def build_app(state: GatewayState, routes: list[Route] | None = None) -> web.Application:
    app = web.Application(client_max_size=state.config.max_request_bytes, middlewares=middlewares(state))
    for route in routes if routes is not None else public_routes():
        handler = route_handler(route, state.channels[route.service], state)
        app.router.add_route(route.http_method, route.pattern, handler)

    async def healthz(request: web.Request) -> web.Response:
        request[ROUTE] = "/healthz"
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        request[ROUTE] = "/readyz"
        if state.draining:
            return web.Response(status=503, text="draining\n")
        return web.Response(text="ready\n")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    from services.gateway.page import add_checkpoint_page

    assets = Path(state.config.checkpoint_assets_dir) if state.config.checkpoint_assets_dir else DEFAULT_ASSETS
    add_checkpoint_page(app, assets)
    return app


def _channel(config: GatewayConfig, target: str) -> grpc.aio.Channel:
    options: list[tuple[str, object]] = [
        ("grpc.max_receive_message_length", UPSTREAM_MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
    ]
    if target.startswith(DNS_SCHEME):
        # Every address of the name (a headless Service: each ready pod), each call to the next one; a
        # ClusterIP would pin the channel's one connection, and so all of this pod's calls, to one pod.
        options.append(("grpc.lb_policy_name", "round_robin"))
    if config.upstream_insecure:
        return grpc.aio.insecure_channel(target, options=options)
    if config.upstream_server_name:
        options.append(("grpc.ssl_target_name_override", config.upstream_server_name))
    key = chain = None
    if config.upstream_client_cert_file:
        key = Path(config.upstream_client_key_file).read_bytes()
        chain = Path(config.upstream_client_cert_file).read_bytes()
    credentials = grpc.ssl_channel_credentials(Path(config.upstream_ca_file).read_bytes(), key, chain)
    return grpc.aio.secure_channel(target, credentials, options=options)


async def start_gateway(config: GatewayConfig, *, serve_metrics_port: bool = True) -> RunningGateway:
    channels = {
        RESULT_SERVICE: _channel(config, config.result_target),
        PUBLISH_SERVICE: _channel(config, config.publish_target),
        VERIFY_SERVICE: _channel(config, config.verify_target),
    }
    for channel in channels.values():
        channel.get_state(try_to_connect=True)  # connect now, not on the first request
    state = GatewayState(config=config, channels=channels)
    runner = web.AppRunner(
        build_app(state), access_log=None, handle_signals=False, shutdown_timeout=config.shutdown_grace_seconds
    )
    await runner.setup()
    site = web.TCPSite(runner, config.http_host, config.http_port, reuse_port=True)
    await site.start()
    port = runner.addresses[0][1]
    running = RunningGateway(runner=runner, port=port, state=state)
    if serve_metrics_port:
        http, _thread = serve_metrics(config.metrics_port)
        running._metrics_http = http
        running.metrics_port = http.server_port
    log.info(
        "serving",
        extra={"fields": {"port": port, "services": list(channels), "tls": not config.upstream_insecure}},
    )
    return running


async def serve_until_signal(config: GatewayConfig) -> None:
    import signal

    running = await start_gateway(config)
    # As the services do: what start-up made leaves the collector's sight and collections get rarer (a
    # request allocates a few hundred objects; the default threshold collected every few requests), and
    # grpc's helper threads stop preempting the event loop.
    collect_garbage_for_serving()
    batch_helper_threads()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received: draining", extra={"fields": {"grace_s": config.shutdown_grace_seconds}})
    await running.stop()
