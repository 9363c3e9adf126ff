"""The one server interceptor every service runs: identity, role check, error mapping, metrics.

For each RPC of our own services it
1. gives the call a request id (the client's `x-request-id` metadata, or a fresh one) for the logs;
2. resolves the caller (services.common.auth) and checks the RPC's declared roles — an RPC with no
   declaration is refused (fail closed); the standard health and reflection services need none;
3. runs the handler and maps a `DomainError` to its gRPC code with `google.rpc.Status` details, a
   `NotImplementedError` (an RPC whose issue has not landed) to UNIMPLEMENTED, and anything else to
   INTERNAL with a generic message: the traceback goes to the log with the request id, never to the
   client;
4. counts the call and its latency by method and code.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import Mapping

import grpc
from grpc_status import rpc_status

from services.common import logs
from services.common.auth import Authenticator, Role, current_principal
from services.common.errors import DomainError, Internal, PermissionDenied, Unimplemented
from services.common.metrics import AUTH_DENIED, RPC_HANDLED, RPC_LATENCY

log = logging.getLogger("covidtest.rpc")

# Infrastructure services any caller (a kubelet probe, grpcurl) may use without a credential.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                   "/grpc.reflection.v1.ServerReflection/")


def _request_id(metadata) -> str:
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable():
            return value
    return uuid.uuid4().hex


class CallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service_label: str, authenticator: Authenticator, policy: Mapping[str, frozenset[Role]]):
        """`policy` maps full method names (`/pkg.Service/Method`) to the roles allowed to call them."""
        self._service = service_label
        self._auth = authenticator
        self._policy = dict(policy)
        self._latency: dict[str, object] = {}
        self._handled: dict[tuple[str, str], object] = {}

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith(PUBLIC_PREFIXES):
            return handler
        roles = self._policy.get(details.method, frozenset())
        method = details.method.rsplit("/", 1)[-1]
        metadata = details.invocation_metadata
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, roles, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method, roles, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, roles, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(handler.stream_stream, method, roles, metadata),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _admit(self, method: str, roles: frozenset[Role], metadata, context) -> None:
        logs.request_id_var.set(_request_id(metadata))
        try:
            principal = await self._auth.authenticate(metadata, context)
        except DomainError as exc:
            AUTH_DENIED.labels(self._service, exc.grpc_code.name).inc()
            log.warning("caller refused", extra={"fields": {"method": method, "code": exc.grpc_code.name,
                                                            "reason": exc.reason}})
            raise
        logs.principal_var.set(principal.label())
        if principal.role not in roles:
            AUTH_DENIED.labels(self._service, "PERMISSION_DENIED").inc()
            log.warning("role not allowed", extra={"fields": {"method": method, "role": principal.role.value}})
            raise PermissionDenied(f"role {principal.role.value} may not call {method}", reason="ROLE_NOT_ALLOWED")
        current_principal.set(principal)

    def _wrap_unary(self, inner, method, roles, metadata):
        async def behaviour(request, context):
            started = time.perf_counter()
            code = "OK"
            try:
                await self._admit(method, roles, metadata, context)
                result = inner(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except Exception as exc:  # noqa: BLE001 - every failure becomes a clean status
                code = "SET_BY_HANDLER"
                error = self._as_domain_error(exc, method)
                code = error.grpc_code.name
                await context.abort_with_status(rpc_status.to_status(error.to_rpc_status()))
            finally:
                self._observe(method, code, started)

        return behaviour

    def _wrap_stream(self, inner, method, roles, metadata):
        async def behaviour(request, context):
            started = time.perf_counter()
            code = "OK"
            try:
                await self._admit(method, roles, metadata, context)
                async for item in inner(request, context):
                    yield item
            except Exception as exc:  # noqa: BLE001
                code = "SET_BY_HANDLER"
                error = self._as_domain_error(exc, method)
                code = error.grpc_code.name
                await context.abort_with_status(rpc_status.to_status(error.to_rpc_status()))
            finally:
                self._observe(method, code, started)

        return behaviour

    def _as_domain_error(self, exc: Exception, method: str) -> DomainError:
        """What the client is told about `exc`. grpc's AbortError (the handler set its own status) passes."""
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        if isinstance(exc, DomainError):
            return exc
        if isinstance(exc, NotImplementedError):
            return Unimplemented(f"{method} is not implemented yet")
        log.error("unexpected error", exc_info=exc, extra={"fields": {"method": method}})
        return Internal("internal error; quote the request id to the operator", logs.request_id_var.get())

    def _observe(self, method: str, code: str, started: float) -> None:
        # Metric children are kept: labels() costs several microseconds per call on the verify hot path.
        latency = self._latency.get(method)
        if latency is None:
            latency = self._latency[method] = RPC_LATENCY.labels(self._service, method)
        latency.observe(time.perf_counter() - started)
        handled = self._handled.get((method, code))
        if handled is None:
            handled = self._handled[(method, code)] = RPC_HANDLED.labels(self._service, method, code)
        handled.inc()
