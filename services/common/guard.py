"""The one call guard every RPC of our services runs through: identity, role check, error mapping, metrics.

Each method handler of our services is wrapped once, when it is registered (`GuardedServer`), not per
call by a grpc.aio ServerInterceptor: an interceptor builds a new handler on every call, which cost the
verify hot path tens of microseconds per scan. The standard health and reflection services are
registered on the server directly and need no credential. For each RPC of our own services it
1. gives the call a request id (the client's `x-request-id` metadata, or a fresh one) for the logs, and
   the language the client asks for in `accept-language` (services.common.i18n), if it names one;
2. resolves the caller (services.common.auth) and checks the RPC's declared roles — an RPC with no
   declaration is refused (fail closed); the standard health and reflection services need none;
   then parses the request bytes: bytes that are no valid request message are INVALID_ARGUMENT (left to
   grpc.aio, its deserializer's failure would be UNKNOWN, and come before the caller is checked);
3. runs the handler and maps a `DomainError` to its gRPC code with `google.rpc.Status` details (a
   `LocalizedMessage` among them, in the caller's language or the service's DEFAULT_LANGUAGE), a
   `NotImplementedError` (an RPC whose issue has not landed) to UNIMPLEMENTED, an error that means
   Postgres or Redis is not reachable now (wherever it was raised, streams included) to UNAVAILABLE
   with a one-line warning, and anything else to INTERNAL with a generic message: the traceback goes
   to the log with the request id, never to the client;
4. counts the call and its latency by method and code.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import secrets
import time
from collections.abc import Coroutine, Mapping

import grpc
import redis.exceptions
from google.protobuf.message import DecodeError
from grpc_status import rpc_status

from services.common import db, i18n, logs, tracing
from services.common.auth import Authenticator, Role, current_principal
from services.common.errors import (
    DomainError,
    Internal,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
    Unimplemented,
)
from services.common.metrics import AUTH_DENIED, RPC_HANDLED, RPC_LATENCY

log = logging.getLogger("covidtest.rpc")

# Redis errors that mean "not reachable or not serving now" (down, loading its data, a replica during a
# failover, a cluster re-sharding). Authentication and authorisation failures derive from ConnectionError
# too, but they are a configuration fault that no retry by the client fixes, so they stay INTERNAL.
_REDIS_UNREACHABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
_REDIS_MISCONFIGURED = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)


def dependency_unreachable(exc: BaseException) -> bool:
    """Whether `exc` means Postgres or Redis cannot be reached now: the client is told UNAVAILABLE and
    retries. One rule for every RPC, streams included, wherever the dependency was read (inside `in_tx` or
    not); errors that mean bad input or a bug are excluded and stay INTERNAL."""
    if isinstance(exc, _REDIS_UNREACHABLE):
        return not isinstance(exc, _REDIS_MISCONFIGURED)
    return db.unreachable(exc)


# A fresh request id is this process's random prefix and a counter: unique, and far cheaper per call
# than a uuid4.
_REQUEST_ID_PREFIX = secrets.token_hex(8)
_request_numbers = itertools.count(1)


def _read_call_metadata(metadata, default_language: str) -> None:
    """Sets the call's request id (the client's `x-request-id`, or a fresh one) and its language: the one a
    usable `accept-language` names, else the service's default (services.common.i18n; whatever answers the
    call, per-item texts in a batch reply included, reads it): one pass over the metadata."""
    request_id, language = None, None
    for key, value in metadata or ():
        if key == "x-request-id":
            if request_id is None and isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable():
                request_id = value
        elif key == "accept-language" and isinstance(value, str):
            language = i18n.language_of(value) or language
    i18n.language_var.set(language or default_language)
    logs.request_id_var.set(request_id or f"{_REQUEST_ID_PREFIX}{next(_request_numbers):016x}")


class CallGuard:
    """Wraps method handlers with the guard; `policy` maps full method names (`/pkg.Service/Method`)
    to the roles allowed to call them. A method without an entry is refused (fail closed)."""

    def __init__(
        self,
        service_label: str,
        authenticator: Authenticator,
        policy: Mapping[str, frozenset[Role]],
        default_language: str = i18n.DEFAULT_LANGUAGE,
    ):
        self._service = service_label
        self._auth = authenticator
        self._policy = dict(policy)
        self._default_language = default_language  # of the LocalizedMessage when the caller names none

    def wrap(self, method_path: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        roles = self._policy.get(method_path, frozenset())
        method = method_path.rsplit("/", 1)[-1]
        # Metric children are kept: labels() costs several microseconds per call on the verify hot path.
        metrics = _CallMetrics(self._service, method)
        if handler.unary_unary:
            # A unary request arrives as bytes and is parsed inside the guard (after the caller is
            # admitted): grpc.aio answers UNKNOWN when its own deserializer fails on bytes that are no
            # valid message, where the client must hear INVALID_ARGUMENT.
            behaviour = self._wrap_unary(handler.unary_unary, method, roles, metrics, handler.request_deserializer)
            return grpc.unary_unary_rpc_method_handler(
                _traced_unary(method_path, behaviour) if tracing.enabled() else behaviour,
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method, roles, metrics),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            streaming = self._wrap_stream(handler.unary_stream, method, roles, metrics, handler.request_deserializer)
            return grpc.unary_stream_rpc_method_handler(
                _traced_stream(method_path, streaming) if tracing.enabled() else streaming,
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(handler.stream_stream, method, roles, metrics),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _admit(self, method: str, roles: frozenset[Role], context) -> Coroutine | None:
        """Admits the caller, or raises; returns a coroutine to await instead when the caller's
        credential must first be looked up. A caller resolved moments ago is admitted without an
        await: three coroutines fewer per call on the verify hot path."""
        metadata = context.invocation_metadata()
        _read_call_metadata(metadata, self._default_language)
        principal = self._auth.known(metadata)
        if principal is None:
            return self._admit_looked_up(method, roles, metadata, context)
        self._authorize(method, roles, principal)
        return None

    async def _admit_looked_up(self, method: str, roles: frozenset[Role], metadata, context) -> None:
        try:
            principal = await self._auth.authenticate(metadata, context)
        except DomainError as exc:
            AUTH_DENIED.labels(self._service, exc.grpc_code.name).inc()
            log.warning(
                "caller refused", extra={"fields": {"method": method, "code": exc.grpc_code.name, "reason": exc.reason}}
            )
            raise
        self._authorize(method, roles, principal)

    def _authorize(self, method: str, roles: frozenset[Role], principal) -> None:
        logs.principal_var.set(principal.label())
        if principal.role not in roles:
            AUTH_DENIED.labels(self._service, "PERMISSION_DENIED").inc()
            log.warning("role not allowed", extra={"fields": {"method": method, "role": principal.role.value}})
            raise PermissionDenied(f"role {principal.role.value} may not call {method}", reason="ROLE_NOT_ALLOWED")
        current_principal.set(principal)

    def _wrap_unary(self, inner, method, roles, metrics, parse=None):
        is_coroutine = inspect.iscoroutinefunction(inner)  # decided once, not per call

        async def behaviour(request, context):
            started = time.perf_counter()
            code = "OK"
            try:
                pending = self._admit(method, roles, context)
                if pending is not None:
                    await pending
                if parse is not None:
                    request = _parsed(parse, request, method)
                if is_coroutine:
                    return await inner(request, context)
                result = inner(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except Exception as exc:  # noqa: BLE001 - every failure becomes a clean status
                code = "SET_BY_HANDLER"  # stays so when the handler aborted with its own status
                error = self._as_domain_error(exc, method)
                code = error.grpc_code.name
                await context.abort_with_status(rpc_status.to_status(self._status_of(error)))
            finally:
                metrics.observe(code, started)

        return behaviour

    def _wrap_stream(self, inner, method, roles, metrics, parse=None):
        async def behaviour(request, context):
            started = time.perf_counter()
            code = "OK"
            try:
                pending = self._admit(method, roles, context)
                if pending is not None:
                    await pending
                if parse is not None:
                    request = _parsed(parse, request, method)
                async for item in inner(request, context):
                    yield item
            except Exception as exc:  # noqa: BLE001 - every failure becomes a clean status
                code = "SET_BY_HANDLER"  # stays so when the handler aborted with its own status
                error = self._as_domain_error(exc, method)
                code = error.grpc_code.name
                await context.abort_with_status(rpc_status.to_status(self._status_of(error)))
            finally:
                metrics.observe(code, started)

        return behaviour

    def _status_of(self, error: DomainError):
        """The error's google.rpc.Status, its LocalizedMessage in the caller's language."""
        return error.to_rpc_status(i18n.language_var.get() or self._default_language)

    def _as_domain_error(self, exc: Exception, method: str) -> DomainError:
        """What the client is told about `exc`. grpc's AbortError (the handler set its own status) passes."""
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        if isinstance(exc, DomainError):
            return exc
        if isinstance(exc, NotImplementedError):
            return Unimplemented(f"{method} is not implemented yet")
        if dependency_unreachable(exc):
            # An outage is expected and said to the client; a traceback per call would flood the log.
            log.warning("dependency unreachable", extra={"fields": {"method": method, "error": type(exc).__name__}})
            return Unavailable("the database or the cache is not reachable now; retry with backoff")
        log.error("unexpected error", exc_info=exc, extra={"fields": {"method": method}})
        return Internal("internal error; quote the request id to the operator", logs.request_id_var.get())


def _traced_unary(method_path: str, behaviour):
    """`behaviour` inside the RPC's server span (only when tracing is on: decided when the server starts)."""

    async def traced(request, context):
        with tracing.server_span(method_path, context.invocation_metadata()):
            return await behaviour(request, context)

    return traced


def _traced_stream(method_path: str, behaviour):
    async def traced(request, context):
        with tracing.server_span(method_path, context.invocation_metadata()):
            async for item in behaviour(request, context):
                yield item

    return traced


def _parsed(parse, data: bytes, method: str):
    """The request message of `data`; INVALID_ARGUMENT when the bytes are no valid message of its type."""
    try:
        return parse(data)
    except DecodeError:
        raise InvalidArgument(f"the request bytes are no valid {method} request message") from None


class _CallMetrics:
    """Latency and outcome counts of one method, with its histogram child and label tuples kept."""

    def __init__(self, service: str, method: str):
        self._service, self._method = service, method
        self._latency = RPC_LATENCY.labels(service, method)
        self._handled = RPC_HANDLED.values
        self._keys: dict[str, tuple[str, str, str]] = {}

    def observe(self, code: str, started: float) -> None:
        self._latency.observe(time.perf_counter() - started)
        key = self._keys.get(code)
        if key is None:
            key = self._keys[code] = (self._service, self._method, code)
        self._handled[key] += 1


class _GuardedHandlers(grpc.GenericRpcHandler):
    """A service's generic handler whose method handlers come out wrapped, each wrapped once."""

    def __init__(self, inner: grpc.GenericRpcHandler, guard: CallGuard):
        self._inner, self._guard = inner, guard
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, handler_call_details):
        method = handler_call_details.method
        try:
            return self._wrapped[method]
        except KeyError:
            handler = self._inner.service(handler_call_details)
            wrapped = None if handler is None else self._guard.wrap(method, handler)
            if handler is not None:  # unknown paths are not remembered: callers choose them
                self._wrapped[method] = wrapped
            return wrapped


class GuardedServer:
    """What a generated `add_*Servicer_to_server` is given: registers on `server` with every method
    handler wrapped by the guard."""

    def __init__(self, server: grpc.aio.Server, guard: CallGuard):
        self._server, self._guard = server, guard

    def add_generic_rpc_handlers(self, handlers) -> None:
        self._server.add_generic_rpc_handlers(tuple(_GuardedHandlers(h, self._guard) for h in handlers))

    def add_registered_method_handlers(self, service_name, method_handlers) -> None:
        # grpc.aio (1.74) serves through the generic handlers above and ignores this registration.
        # Not passing these unwrapped handlers on keeps every call behind the guard should it start to.
        pass
