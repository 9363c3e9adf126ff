"""CPU seconds spent by each component of the HA topology (tools/topology.py), read from /proc.

On one machine every component shares the same cores, so a throughput figure says little about what one
pod with cores of its own would do. What does carry over is the CPU one operation costs each component:
`CpuMeter.sample()` before and after a phase, divided by the operations of the phase, gives CPU
milliseconds per scan, per sample, per event for each component; `capacity.md` turns those into cores.

A process's seconds are its own user+system time plus that of its children it has already reaped (fields
14-17 of /proc/<pid>/stat), so a Postgres backend that exited during a phase still counts (in its
postmaster) and nothing counts twice. Components are named from what the topology started:
- `pg:<node>`: every process whose working directory is that Postgres server's data directory;
- `redis:<name>`: a Redis server or Sentinel (its directory under <root>/redis);
- `<service>-<i>`: a service replica, with its worker processes (SERVER_PROCESSES), by its GRPC_PORT;
- `proxy:<name>`: the topology's TCP proxies (rw, ro, publish-<i>, the front doors): the rig, standing in
  for Kubernetes Services, which cost no process of their own in production;
- `haproxy`: the overlay's HAProxy in front of Redis (a Deployment in production).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from tools.topology import Topology

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime + cutime + cstime of `pid`, in seconds; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 is fields[0]
    return sum(int(f) for f in fields[11:15]) / TICKS


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(entry.split("=", 1) for entry in raw.decode(errors="replace").split("\0") if "=" in entry)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds by component at one moment."""

    seconds: dict[str, float]

    def since(self, earlier: CpuSample) -> dict[str, float]:
        """Seconds spent by each component between `earlier` and this sample (components present in both)."""
        return {
            name: round(self.seconds[name] - earlier.seconds[name], 3)
            for name in self.seconds
            if name in earlier.seconds
        }


class CpuMeter:
    """Reads the CPU seconds of every component of a running topology."""

    def __init__(self, topology: Topology):
        self.topology = topology
        self.by_port = {port: name for name, port in topology.ports.items()}

    def component(self, pid: int) -> str | None:
        root = self.topology.root
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return None
        if cwd.is_relative_to(root / "pg"):
            return f"pg:{cwd.relative_to(root / 'pg').parts[0]}"
        if cwd.is_relative_to(root / "redis") and cwd != root / "redis":
            return f"redis:{cwd.relative_to(root / 'redis').parts[0]}"
        argv = _cmdline(pid)
        if argv and Path(argv[0]).name == "haproxy":
            return "haproxy"
        if "tools.tcpproxy" in argv:
            return f"proxy:{self.by_port.get(int(argv[argv.index('--listen') + 1]), '?')}"
        for service in ("result_svc", "publish_svc", "verify_svc", "gateway"):
            if f"services.{service}" in argv:
                port = _environ(pid).get("GRPC_PORT", "")
                return self.by_port.get(int(port), service) if port.isdigit() else service
        return None

    def sample(self) -> CpuSample:
        totals: dict[str, float] = defaultdict(float)
        for pid in self.topology.processes():
            name = self.component(pid)
            seconds = cpu_seconds(pid)
            if name is not None and seconds is not None:
                totals[name] += seconds
        return CpuSample(dict(totals))


def own_cpu() -> dict[str, float]:
    """This process's CPU seconds and its reaped children's (the load generators it ran)."""
    t = os.times()
    return {"bench": t.user + t.system, "loadgen": t.children_user + t.children_system}
