"""Property: nothing a client can send to the gateway gets a 500, an INTERNAL or UNKNOWN status, or a body
that is not JSON. For every route Hypothesis draws JSON bodies (the canonical JSON of request messages
built with extreme values, arbitrary JSON, raw bytes), path values, query strings and credentials (a
token of every role, none, garbage), and sends them over real HTTP to the gateway in front of the real
services. Hypothesis runs in a worker thread with a blocking HTTP client while the in-process services
keep answering on the test's event loop."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import time
import urllib.parse

from google.protobuf import json_format
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from services.gateway.routes import Route, public_routes
from tests.fuzz.messages import MessageStrategies

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
SETTINGS = dict(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=os.environ.get("FUZZ_RANDOM", "") != "1",
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
NEVER = {2, 13}  # UNKNOWN, INTERNAL

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
SEGMENTS = st.text(min_size=1, max_size=40).map(lambda s: urllib.parse.quote(s, safe=""))


def canonical_json(message) -> bytes:
    """The canonical JSON of `message`; a timestamp outside RFC 3339's years (which the JSON mapping cannot
    write) is sent as the out-of-range text a client could still type."""
    try:
        return json.dumps(json_format.MessageToDict(message)).encode()
    except json_format.SerializeToJsonError:
        fields = [f.json_name for f in message.DESCRIPTOR.fields]
        return json.dumps({name: "10000-01-01T00:00:60.9999999999Z" for name in fields}).encode()


def bodies(route: Route, strategies: MessageStrategies) -> st.SearchStrategy[bytes]:
    canonical = strategies.message(route.request_type.DESCRIPTOR).map(canonical_json)
    arbitrary = JSON_VALUES.map(lambda v: json.dumps(v).encode())
    objects = st.dictionaries(
        st.sampled_from([f.json_name for f in route.request_type.DESCRIPTOR.fields] + ["x"]), JSON_VALUES, max_size=4
    ).map(lambda v: json.dumps(v).encode())
    return st.one_of(canonical, arbitrary, objects, st.binary(max_size=200))


def queries(route: Route) -> st.SearchStrategy[str]:
    names = [f.json_name for f in route.request_type.DESCRIPTOR.fields] + ["x", "a.b"]
    pairs = st.lists(st.tuples(st.sampled_from(names), st.text(max_size=30)), max_size=4)
    return pairs.map(urllib.parse.urlencode)


def path_of(route: Route, values: list[str]) -> str:
    path = route.template
    for (_, field), value in zip(route.variables, values):
        path = path.replace("{" + field + "}", value, 1)
    return path


def send(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def fuzz_route(port: int, route: Route, strategies: MessageStrategies, tokens: list[str]) -> None:
    @settings(**SETTINGS)
    @given(
        body=bodies(route, strategies),
        query=queries(route),
        segments=st.lists(SEGMENTS, min_size=len(route.variables), max_size=len(route.variables)),
        token=st.sampled_from([*tokens, "", "ctk_garbage", "x" * 2000, "ctk_é"]),
        language=st.sampled_from(["", "en", "vi-VN;q=0.5, en;q=0.9", "*", "zz" * 300]),
    )
    def never_internal(body: bytes, query: str, segments: list[str], token: str, language: str) -> None:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if language:
            headers["accept-language"] = language
        path = path_of(route, segments) + (f"?{query}" if query else "")
        note(f"{route.http_method} {path} {body[:200]!r}")
        status, answer = send(port, route.http_method, path, body if route.body else None, headers)
        assert status < 500 or status in (503, 504), (status, answer[:300])
        decoded = json.loads(answer)  # always JSON, errors included
        if status >= 400:
            assert decoded["code"] not in NEVER, decoded
            assert any(d["@type"].endswith("google.rpc.ErrorInfo") for d in decoded["details"]), decoded

    never_internal()


async def test_no_route_answers_internal_to_anything(stack):
    platform = stack.platform
    tokens = [
        platform.device["token"],
        platform.lab["token"],
        platform.unit["token"],
        platform.partner["token"],
        platform.operator["token"],
    ]
    strategies = MessageStrategies(int(time.time()))

    def run() -> list[str]:
        failures = []
        for route in public_routes():
            try:
                fuzz_route(stack.gateway.port, route, strategies, tokens)
            except Exception as exc:  # noqa: BLE001 - every route is fuzzed; the failures are reported together
                causes = getattr(exc, "exceptions", [exc])
                failures += [f"{route.http_method} {route.template}: {cause!r}"[:600] for cause in causes]
        return failures

    failures = await asyncio.to_thread(run)
    assert not failures, "\n".join(failures)
