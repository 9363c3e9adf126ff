"""Traces with OpenTelemetry, off by default.

On when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set and OTEL_SDK_DISABLED is
not "true": spans go by OTLP/gRPC to that endpoint, configured by the standard OTEL_* variables (service
name OTEL_SERVICE_NAME, else the process's label). What is traced: each RPC the call guard admits (a
server span, continuing the caller's `traceparent` metadata), each asyncpg query, and a result's way
through the platform — intake writes the span's `traceparent` into the outbox event, the relay continues
it (a span per relayed event, stored with the feed event), and the feed continues that when it delivers
the event to a partner — so one trace runs from RecordResults to the feed delivery.

Off, nothing is wrapped or patched: the guard checks `enabled()` once per method when the server starts,
and the helpers return at once. A traceparent is an id, never personal data.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("covidtest.tracing")

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()


class _State:
    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None


def enabled() -> bool:
    return _State.tracer is not None


def enable(provider: TracerProvider) -> None:
    """Trace with `provider` from now on (tests give one with an in-memory exporter): servers started
    afterwards wrap their methods, asyncpg queries get spans."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    _State.provider = provider
    _State.tracer = provider.get_tracer("covidtest")
    AsyncPGInstrumentor().instrument(tracer_provider=provider)


def disable() -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    if _State.tracer is not None:
        AsyncPGInstrumentor().uninstrument()
    _State.provider = _State.tracer = None


def configure_from_environment(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Enable OTLP export when the standard variables ask for it; returns whether tracing is on."""
    environ = os.environ if environ is None else environ
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", service_name)})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint, headers, TLS: OTEL_* too
    enable(provider)
    log.info("tracing on", extra={"fields": {"service": service_name}})
    return True


def shutdown() -> None:
    """Flush what is buffered (on SIGTERM)."""
    if _State.provider is not None:
        _State.provider.shutdown()


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The trace context a stored or received `traceparent` continues; None without one."""
    if not traceparent:
        return None
    return _PROPAGATOR.extract({TRACEPARENT: traceparent})


def current_traceparent() -> str | None:
    """The active span's `traceparent`, to store beside what continues later; None when not tracing."""
    if _State.tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


@contextlib.contextmanager
def span(name: str, *, parent: str | None = None, kind: SpanKind = SpanKind.INTERNAL, **attributes) -> Iterator[None]:
    """A span named `name`, continuing `parent` (a traceparent) or the current span; nothing when off."""
    tracer = _State.tracer
    if tracer is None:
        yield
        return
    with tracer.start_as_current_span(name, context=context_of(parent), kind=kind, attributes=attributes):
        yield


def record(name: str, *, parent: str | None, started_ns: int, **attributes) -> None:
    """A span of `name` that began at `started_ns` (time.time_ns()) and ends now, continuing `parent`:
    for work measured around a point where a context manager cannot sit (a generator's yield)."""
    tracer = _State.tracer
    if tracer is None or not parent:
        return
    tracer.start_span(name, context=context_of(parent), start_time=started_ns, attributes=attributes).end()


def server_span(method_path: str, metadata) -> contextlib.AbstractContextManager:
    """The server span of one admitted RPC, continuing the caller's `traceparent` metadata."""
    parent = next((value for key, value in metadata or () if key == TRACEPARENT), None)
    return span(method_path, parent=parent if isinstance(parent, str) else None, kind=SpanKind.SERVER)
