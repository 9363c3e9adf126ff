"""A small TCP proxy for the HA topology (tools/topology.py): what a Kubernetes Service is to its clients.

One process per proxy: `python -m tools.tcpproxy --listen PORT --target HOST:PORT [--target …] --control SOCK`.
- Targets: each new connection goes to the next target in turn (round robin), skipping one that refuses:
  the per-service front doors spread clients over two replicas as a ClusterIP Service does, and skip a
  replica that is down as the Service drops a pod that is not ready.
- Switch: the targets can be replaced at run time, which is what CloudNativePG does to the `-rw` Service on
  failover. Connections to the old target are cut (reset) by default, as they are when the old primary's
  pod goes: a client must never keep writing to a demoted primary.
- Partition: traffic can be held in both directions without closing anything, as a network partition
  drops packets. New connections are accepted (the kernel completes the handshake before the proxy sees
  them) but not forwarded; a client's close is not passed on either, so the server cannot tell that its
  client gave up. Healing lets everything held flow again.

The control socket (a Unix socket) takes one JSON object per line and answers one: `{"op": "status"}`,
`{"op": "targets", "targets": ["127.0.0.1:5432"], "cut": true}`, `{"op": "partition"}`, `{"op": "heal"}`.
`ProxyControl` is its client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
from pathlib import Path

CHUNK = 65536


def parse_target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


class Proxy:
    def __init__(self, targets: list[tuple[str, int]]):
        self.targets = list(targets)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.accepted = 0
        self._turn = 0
        # Open pairs (client writer, upstream writer), to cut them when the targets change.
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await self.flowing.wait()  # partitioned: the connection hangs, as if its SYN were dropped
        upstream = await self._connect()
        if upstream is None:  # no target accepts: refuse, as a Service without ready endpoints does
            client_writer.transport.abort()
            return
        upstream_reader, upstream_writer = upstream
        pair = (client_writer, upstream_writer)
        self._open.add(pair)
        try:
            await asyncio.gather(self._pump(client_reader, upstream_writer), self._pump(upstream_reader, client_writer))
        finally:
            self._open.discard(pair)
            for writer in pair:
                writer.transport.abort()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.targets)):
            host, port = self.targets[self._turn % len(self.targets)]
            self._turn += 1
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            except (OSError, TimeoutError):
                continue
        return None

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self.flowing.wait()
                try:
                    data = await reader.read(CHUNK)
                except OSError:  # a reset: an end like any other
                    data = b""
                # Bytes read, or an end seen, during a partition are held until it heals: the other side
                # must not learn of a close across the partition either.
                await self.flowing.wait()
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            # One side ended: end the other too (the services never half-close).
            writer.transport.abort()

    def set_targets(self, targets: list[tuple[str, int]], cut: bool) -> int:
        self.targets = list(targets)
        self._turn = 0
        if not cut:
            return 0
        pairs = list(self._open)
        for pair in pairs:
            for writer in pair:
                writer.transport.abort()
        return len(pairs)

    def status(self) -> dict:
        return {
            "targets": [f"{h}:{p}" for h, p in self.targets],
            "partitioned": not self.flowing.is_set(),
            "connections": len(self._open),
            "accepted": self.accepted,
        }

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = self._command(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    def _command(self, request: dict) -> dict:
        op = request["op"]
        if op == "targets":
            cut = self.set_targets([parse_target(t) for t in request["targets"]], bool(request.get("cut", True)))
            return {**self.status(), "cut": cut}
        if op == "partition":
            self.flowing.clear()
        elif op == "heal":
            self.flowing.set()
        elif op != "status":
            raise ValueError(f"unknown op {op!r}")
        return self.status()


async def serve(listen_port: int, targets: list[tuple[str, int]], control_path: Path) -> None:
    proxy = Proxy(targets)
    control_path.unlink(missing_ok=True)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", listen_port, reuse_address=True)
    control = await asyncio.start_unix_server(proxy.control, str(control_path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server, control:
        await stop.wait()
    control_path.unlink(missing_ok=True)


class ProxyControl:
    """The control socket's client (synchronous: the topology's API is)."""

    def __init__(self, path: Path | str):
        self.path = str(path)

    def call(self, op: str, timeout: float = 5.0, **fields) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.path)
            s.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        reply = json.loads(answer)
        if "error" in reply:
            raise RuntimeError(f"proxy {self.path}: {reply['error']}")
        return reply

    def status(self) -> dict:
        return self.call("status")

    def set_targets(self, targets: list[str], cut: bool = True) -> dict:
        return self.call("targets", targets=targets, cut=cut)

    def partition(self) -> dict:
        return self.call("partition")

    def heal(self) -> dict:
        return self.call("heal")

    def ready(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            self.status()
            return True
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--target", action="append", required=True, type=parse_target, help="HOST:PORT")
    parser.add_argument("--control", type=Path, required=True, help="Unix socket of the control commands")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.target, args.control))


if __name__ == "__main__":
    main()
