"""One trace from intake to feed delivery: RecordResults (a server span), its queries, the relay publishing
the event, and the feed delivering it to a partner, all with the same trace id and each step a descendant of
the intake call; with tracing off nothing is recorded and nothing is wrapped."""

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import tracing
from services.common.auth import Role
from services.common.db import connect
from tests.conftest import make_principal
from tests.publish_svc.conftest import running_platform

RECORD = "/covidtest.result.v1.ResultService/RecordResults"


@pytest.fixture
def exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)  # before the servers start: they wrap their methods when they start
    try:
        yield exporter
    finally:
        tracing.disable()


def ancestors(span, by_id) -> list:
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


async def test_one_trace_runs_from_record_results_to_the_feed_delivery(exporter, database_url):
    async with running_platform(database_url) as platform:
        partner = await make_principal(database_url, Role.PARTNER, personal_data_access=True)
        start = await platform.head() + 1
        await platform.release(1)
        [event] = await platform.collect(partner["token"], start, 1)
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    [record] = [s for s in spans if s.name == RECORD]
    trace_id = record.context.trace_id
    [relayed] = [s for s in spans if s.name == "relay RELEASED" and s.context.trace_id == trace_id]
    delivered = [s for s in spans if s.name == "feed delivery" and s.attributes["position"] == event.position]
    assert [s.context.trace_id for s in delivered] == [trace_id]
    assert record in ancestors(relayed, by_id) and relayed in ancestors(delivered[0], by_id)
    queries = [s for s in spans if s.context.trace_id == trace_id and record in ancestors(s, by_id)]
    assert any(s.attributes.get("db.system") == "postgresql" for s in queries), "asyncpg queries are in it"
    assert delivered[0].attributes["partner_id"] == str(partner["id"])


async def test_with_tracing_off_no_trace_context_is_stored(database_url):
    assert not tracing.enabled()
    async with running_platform(database_url) as platform:
        partner = await make_principal(database_url, Role.PARTNER, personal_data_access=True)
        start = await platform.head() + 1
        await platform.release(1)
        [event] = await platform.collect(partner["token"], start, 1)
    conn = await connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT f.traceparent, o.payload FROM feed_events f JOIN outbox o ON o.id = f.outbox_id"
            " WHERE position = $1",
            event.position,
        )
    finally:
        await conn.close()
    assert row["traceparent"] is None and "traceparent" not in row["payload"]


def test_tracing_is_off_unless_an_otlp_endpoint_is_configured():
    assert tracing.configure_from_environment("verify_svc", {}) is False
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_SDK_DISABLED": "true"}
    assert tracing.configure_from_environment("verify_svc", disabled) is False
    assert not tracing.enabled()
