"""The HA topology's TCP proxy (tools/tcpproxy.py), as a process, against two small echo servers: what the
failure drills rely on — round robin past a dead target, a partition that holds traffic and hides a close,
a switch that cuts the old target's connections."""

from __future__ import annotations

import socket
import socketserver
import subprocess
import sys
import threading
import time

import pytest

from tools.servers import free_ports, wait_for_port
from tools.tcpproxy import ProxyControl


class _Echo(socketserver.ThreadingTCPServer):
    """Answers each chunk with `<name>:<chunk>`; counts the connections whose client closed."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, port: int):
        self.name = name
        self.closed = 0

        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                while data := self.request.recv(4096):
                    self.request.sendall(f"{server.name}:".encode() + data)
                server.closed += 1

        super().__init__(("127.0.0.1", port), Handler)


@pytest.fixture
def echoes():
    a_port, b_port, dead_port, listen_port = free_ports(4)
    servers = [_Echo("A", a_port), _Echo("B", b_port)]
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield servers, dead_port, listen_port
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(echoes, tmp_path):
    """A proxy process in front of: a port nobody listens on, A, B."""
    (a, b), dead_port, listen_port = echoes
    control = tmp_path / "p.sock"
    argv = [sys.executable, "-m", "tools.tcpproxy", "--listen", str(listen_port), "--control", str(control)]
    for target_port in (dead_port, a.server_address[1], b.server_address[1]):
        argv += ["--target", f"127.0.0.1:{target_port}"]
    process = subprocess.Popen(argv)
    try:
        assert wait_for_port(listen_port, 10)
        yield listen_port, ProxyControl(control)
    finally:
        process.terminate()
        process.wait(5)


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.settimeout(2)
    return s


def _ask(s: socket.socket, text: str) -> str:
    s.sendall(text.encode())
    return s.recv(4096).decode()


def _silent(s: socket.socket, seconds: float = 0.4) -> bool:
    """Nothing arrives for `seconds`, and the connection is not closed either."""
    s.settimeout(seconds)
    try:
        s.recv(4096)
    except TimeoutError:
        return True
    finally:
        s.settimeout(2)
    return False


def test_round_robin_skips_a_target_that_refuses(proxy):
    port, _ = proxy
    with _connect(port) as first, _connect(port) as second, _connect(port) as third:
        # Targets: dead, A, B. The dead one is skipped wherever the turn falls.
        answers = [_ask(first, "1"), _ask(second, "2"), _ask(third, "3")]
    assert sorted(a[0] for a in answers) in (["A", "A", "B"], ["A", "B", "B"])
    assert {a[0] for a in answers} == {"A", "B"}


def test_a_partition_holds_traffic_and_hides_a_close_until_healed(proxy, echoes):
    port, control = proxy
    (a, b), _, _ = echoes
    established = _connect(port)
    assert _ask(established, "x").endswith(":x")
    control.partition()
    established.sendall(b"held")
    assert _silent(established)  # neither an answer nor a close
    late = _connect(port)  # accepted by the kernel, then nothing
    late.sendall(b"late")
    assert _silent(late)
    closed_before = a.closed + b.closed
    assert control.status()["partitioned"] is True
    control.heal()
    assert established.recv(4096).decode().endswith(":held")
    assert late.recv(4096).decode().endswith(":late")
    # A close during a partition reaches the server only once it heals.
    control.partition()
    established.close()
    time.sleep(0.3)  # an absence has no event to poll for: time for a wrongly forwarded close to arrive
    assert a.closed + b.closed == closed_before
    control.heal()
    deadline = time.monotonic() + 2
    while a.closed + b.closed == closed_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert a.closed + b.closed == closed_before + 1
    late.close()


def test_switching_targets_cuts_the_old_connections(proxy, echoes):
    port, control = proxy
    (_, b), _, _ = echoes
    before = _connect(port)
    assert _ask(before, "x").endswith(":x")
    b_target = f"127.0.0.1:{b.server_address[1]}"
    answer = control.set_targets([b_target], cut=True)
    assert answer["cut"] == 1 and answer["targets"] == [b_target]
    assert _ended(before)
    for _ in range(3):
        with _connect(port) as after:
            assert _ask(after, "y") == "B:y"


def _ended(s: socket.socket) -> bool:
    """The connection was closed or reset."""
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    finally:
        s.close()
