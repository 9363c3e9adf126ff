"""With tracing on, an HTTP request's trace continues through the gateway into the service: the caller's
`traceparent` header is the parent of the gateway's span, which is the parent of the service's RPC span."""

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import tracing
from tests.conftest import start_verify_svc
from tests.gateway.conftest import gateway_env

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


async def test_the_callers_trace_continues_through_the_gateway_into_the_service(stack):
    from services.common.config import load
    from services.gateway.app import start_gateway
    from services.gateway.config import GatewayConfig

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    verify = gateway = None
    try:
        verify = await start_verify_svc(stack.platform.env)  # started with tracing on: its methods are traced
        port = verify.port
        gateway = await start_gateway(load(GatewayConfig, gateway_env(port, port, port)), serve_metrics_port=False)
        async with stack.http.post(
            f"http://127.0.0.1:{gateway.port}/v1/verify",
            json={"qr": "HC1:x"},
            headers=stack.headers(traceparent=f"00-{TRACE_ID}-{CALLER_SPAN}-01"),
        ) as response:
            assert response.status == 200
    finally:
        if gateway is not None:
            await gateway.stop()
        if verify is not None:
            await verify.stop(0)
        tracing.disable()
    spans = exporter.get_finished_spans()
    [http] = [s for s in spans if s.name == "POST /v1/verify"]
    [rpc] = [s for s in spans if s.name == "/covidtest.verify.v1.VerifyService/Verify"]
    assert format(http.context.trace_id, "032x") == TRACE_ID and format(http.parent.span_id, "016x") == CALLER_SPAN
    assert rpc.context.trace_id == http.context.trace_id and rpc.parent.span_id == http.context.span_id
