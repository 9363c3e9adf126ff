"""The HTTP/1.1 load generator (bench/loadgen/httpload.c): built from source, against a real aiohttp server.

It is grpcload's twin for the HTTP/JSON gateway: a different body on every request, failures counted
(and the connection reopened), a paced mode that sleeps between requests. The server runs in this
process, on its own event loop in a thread, and counts what it received, so the tests check on the
server's side that the bodies really differ and that the connections are kept alive.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import threading
from collections import Counter, defaultdict

import pytest
from aiohttp import web

from bench import httpload

VERIFY = "/v1/verify"
TOKEN = "t0ken-for-the-test"


class Server:
    """aiohttp on its own loop in a thread. Every path echoes the JSON body it got ({"echo": body})
    except as its name says; each request's body, headers and client address are noted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: dict[str, Counter] = defaultdict(Counter)
        self.peers: dict[str, set] = defaultdict(set)
        self.headers: dict[str, dict] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        app = web.Application()
        for path, handler in {
            VERIFY: self.echo,
            "/v1/fail": self.fail,  # 500
            "/v1/empty": self.empty,  # 200 without a body
            "/v1/chunked": self.chunked,  # the echo, with Transfer-Encoding: chunked
            "/v1/close": self.close,  # the echo, then Connection: close
            "/v1/flaky": self.flaky,  # every third request: the connection closed, no answer
            "/v1/drop": self.drop,  # every request: the connection closed, no answer
            "/v1/slow": self.slow,  # the echo after 50 ms
        }.items():
            app.router.add_post(path, handler)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)

    def start(self) -> int:
        self.thread.start()

        async def setup() -> int:
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", 0).start()
            return self.runner.addresses[0][1]

        self.port = asyncio.run_coroutine_threadsafe(setup(), self.loop).result(10)
        return self.port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def seen(self, path: str) -> tuple[Counter, set, dict]:
        with self.lock:
            return Counter(self.bodies[path]), set(self.peers[path]), dict(self.headers.get(path, {}))

    async def note(self, request: web.Request) -> bytes:
        raw = await request.read()
        with self.lock:
            self.bodies[request.path][raw] += 1
            self.peers[request.path].add(request.transport.get_extra_info("peername"))
            self.headers[request.path] = dict(request.headers)
        return raw

    async def echo(self, request: web.Request) -> web.Response:
        return web.json_response({"echo": json.loads(await self.note(request))})

    async def fail(self, request: web.Request) -> web.Response:
        await self.note(request)
        return web.json_response({"error": "boom"}, status=500)

    async def empty(self, request: web.Request) -> web.Response:
        await self.note(request)
        return web.Response(status=200)

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        payload = json.dumps({"echo": json.loads(await self.note(request))}).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (payload[:7], payload[7:20], payload[20:]):  # three chunks
            await response.write(part)
        await response.write_eof()
        return response

    async def close(self, request: web.Request) -> web.Response:
        response = await self.echo(request)
        response.force_close()
        return response

    async def flaky(self, request: web.Request) -> web.Response:
        raw = await self.note(request)
        with self.lock:
            count = sum(self.bodies[request.path].values())
        if count % 3 == 0:
            request.transport.abort()
            raise web.HTTPInternalServerError()  # never written: the connection is gone
        return web.json_response({"echo": json.loads(raw)})

    async def drop(self, request: web.Request) -> web.Response:
        await self.note(request)
        request.transport.abort()
        raise web.HTTPInternalServerError()

    async def slow(self, request: web.Request) -> web.Response:
        raw = await self.note(request)
        await asyncio.sleep(0.05)
        return web.json_response({"echo": json.loads(raw)})


@pytest.fixture(scope="module", autouse=True)
def binary():
    return httpload.build()  # before any run: the CPU test must not count the compiler


@pytest.fixture
def server():
    srv = Server()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


QRS = [json.dumps({"qr": f"HC1:{i:06d}"}, separators=(",", ":")).encode() for i in range(50)]
ECHO_LEN = len(json.dumps({"echo": json.loads(QRS[0])}).encode())  # aiohttp's json_response, the same for all


@pytest.fixture
def bodies(tmp_path):
    path = tmp_path / "bodies.jsonl"
    assert httpload.write_bodies(path, QRS) == 50
    return path


def test_each_request_carries_the_next_body_over_kept_alive_connections(server, bodies):
    header = f"authorization: Bearer {TOKEN}"
    r = httpload.run(server.port, VERIFY, bodies, connections=2, duration=0.5, headers=[header])
    assert r["errors"] == 0 and r["requests"] > 0 and r["bodies"] == 50 and r["streams"] == 1
    assert r["sent_total"] > 50, "too few requests to cycle through the bodies"
    assert r["distinct_sent"] == 50 and r["repeats"] is True
    # the whole of every response body was read, no more: each is ECHO_LEN bytes
    assert r["response_bytes"] % ECHO_LEN == 0 and r["response_bytes"] >= ECHO_LEN * r["requests"]
    seen, peers, headers = server.seen(VERIFY)
    assert set(seen) == set(QRS), "the server did not receive exactly the 50 bodies, byte for byte"
    # request k carries body k mod 50: the counts differ by one at most, plus the requests still in flight
    assert max(seen.values()) - min(seen.values()) <= 1 + 2
    assert r["requests"] + r["warmup_calls"] <= sum(seen.values()) <= r["sent_total"]
    assert len(peers) == 2 and r["reconnects"] == 0, "keep-alive: every request on one of the 2 connections"
    assert headers["Authorization"] == f"Bearer {TOKEN}" and headers["Content-Type"] == "application/json"
    assert headers["Host"] == f"127.0.0.1:{server.port}"


def test_a_chunked_response_is_read_whole(server, bodies):
    r = httpload.run(server.port, "/v1/chunked", bodies, connections=2, duration=0.3)
    assert r["errors"] == 0 and r["requests"] > 10 and r["reconnects"] == 0
    assert r["response_bytes"] % ECHO_LEN == 0 and r["response_bytes"] >= ECHO_LEN * r["requests"]


def test_failed_requests_are_counted_and_raised(server, bodies):
    with pytest.raises(RuntimeError, match="failed calls"):
        httpload.run(server.port, "/v1/fail", bodies, connections=2, duration=0.3)
    r = httpload.run(server.port, "/v1/fail", bodies, connections=2, duration=0.3, check=False)
    assert r["errors"] > 0 and r["http_errors"] == r["errors"] and r["requests"] == 0
    assert r["reconnects"] == 0  # a 500 with a body leaves the connection usable
    r = httpload.run(server.port, "/v1/empty", bodies, connections=2, duration=0.3, check=False)
    assert r["errors"] > 0 and r["empty_errors"] == r["errors"] and r["requests"] == 0


def test_a_connection_closed_by_the_server_fails_its_request_and_is_reopened(server, bodies):
    r = httpload.run(server.port, "/v1/flaky", bodies, connections=2, duration=0.5, check=False)
    assert r["errors"] > 0 and r["reset_errors"] == r["errors"]
    assert r["requests"] > 10 and r["requests"] >= r["errors"], "the reopened connections carry on"
    assert r["reconnects"] >= r["errors"]
    seen, peers, _ = server.seen("/v1/flaky")
    assert len(peers) > 2  # new connections
    assert sum(seen.values()) >= r["requests"] + r["errors"]


def test_a_server_dropping_every_connection_does_not_make_it_spin(server, bodies):
    r = httpload.run(server.port, "/v1/drop", bodies, connections=2, duration=0.5, check=False)
    assert r["requests"] == 0 and r["errors"] > 0 and r["reset_errors"] == r["errors"]
    # a connection lost before any response is reopened after 50 ms: about 10 tries each in 0.5 s
    assert r["errors"] <= 2 * (0.5 / 0.05 + 2)


def test_a_connection_close_answer_is_not_an_error(server, bodies):
    r = httpload.run(server.port, "/v1/close", bodies, connections=2, duration=0.3)
    assert r["errors"] == 0 and r["requests"] > 10 and r["reconnects"] >= r["requests"]
    _, peers, _ = server.seen("/v1/close")
    assert len(peers) >= r["requests"]  # a new connection for every request


def test_the_paced_mode_reaches_the_rate_and_sleeps_between_requests(server, bodies):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = httpload.run(server.port, VERIFY, bodies, connections=2, duration=1.0, rate=2000)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert r["errors"] == 0 and r["skipped_after_warmup"] == 0
    assert 0.9 * 2000 <= r["requests"] <= 2000 * 1.0 + 2, "about the rate, never faster than the schedule"
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert cpu < 0.5, f"httpload used {cpu:.2f} s of CPU for 1 s at 2,000 requests/s: it spins"


def test_the_warmup_backlog_is_dropped_and_late_requests_are_counted(server, bodies):
    # One connection, 50 ms per answer: at most ~20 requests/s of the 100/s asked for.
    r = httpload.run(server.port, "/v1/slow", bodies, connections=1, duration=0.5, warmup=0.5, rate=100)
    assert r["errors"] == 0 and 5 <= r["warmup_calls"] <= 11
    assert r["skipped_after_warmup"] >= 50 - 12  # 50 due in the warm-up, at most ~11 sent
    assert 5 <= r["requests"] <= 11 and r["late"] >= r["requests"] - 2
    # latency runs from the moment a request is sent, not from its due time (up to 400 ms behind)
    assert 50 <= r["p50_ms"] < 150


def run_raw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(httpload.build()), *args], capture_output=True, text=True, timeout=30)


def test_bad_usage_exits_2(server, bodies, tmp_path):
    ok = ["--port", str(server.port), "--path", VERIFY, "--bodies", str(bodies), "--duration", "0.1"]
    assert run_raw(*ok).returncode == 0  # the baseline the variants below break
    assert run_raw().returncode == 2
    assert run_raw(*ok, "--streams", "4").returncode == 2  # HTTP/1.1: one request in flight per connection
    assert run_raw(*ok, "--connections", "0").returncode == 2
    assert run_raw(*ok, "--duration", "soon").returncode == 2
    assert run_raw(*ok, "--header", "no colon").returncode == 2
    assert run_raw(*ok, "--header", "Content-Length: 5").returncode == 2
    gap = tmp_path / "gap.jsonl"
    gap.write_bytes(QRS[0] + b"\n\n" + QRS[1] + b"\n")
    assert run_raw(*ok[:-4], "--bodies", str(gap), "--duration", "0.1").returncode == 2
    with pytest.raises(ValueError, match="newline"):
        httpload.write_bodies(tmp_path / "bad.jsonl", [QRS[0], b'{"qr":\n"x"}'])
    with pytest.raises(ValueError, match="empty"):
        httpload.write_bodies(tmp_path / "bad.jsonl", [QRS[0], b""])
