"""Redis of the HA topology (tools/topology.py): the production overlay's Redis on one machine.

Two redis-servers (`redis-0` the master at the start, `redis-1` its replica), three Sentinels (quorum 2)
and HAProxy sending clients to the current master, all from the overlay's own files
(deploy/overlays/prod/redis/):
- redis.conf and sentinel.conf are what the overlay's `redis-bootstrap.sh` writes, run here with a stub
  `hostname` (the pod's name) and a stub `redis-cli` (answering the master's pod name that the real
  Sentinels give, or nothing on a cold start), then localised: ports, bind address, directory, the
  addresses announced and the master's, and the client-reconfig-script's path;
- the client-reconfig-script is the overlay's `on-failover.sh`, unchanged (it reads REDIS_PASSWORD, which
  the Sentinels pass on from their environment);
- haproxy.cfg is the overlay's, localised: bind ports, the servers' addresses (no DNS resolvers: the
  addresses are literal).
Each localisation fails loudly when the overlay's file no longer has the line it rewrites.
Passwords as in production: every server and Sentinel requires REDIS_PASSWORD.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import time
from pathlib import Path
from typing import cast

import redis

from tools.servers import RedisServer, spawn

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = ROOT / "deploy" / "overlays" / "prod" / "redis"
BOOTSTRAP = OVERLAY / "redis-bootstrap.sh"
ON_FAILOVER = OVERLAY / "on-failover.sh"
HAPROXY_CFG = OVERLAY / "haproxy.cfg"
# The init container's environment in redis-server.yaml.
STATEFULSET = HEADLESS_SERVICE = "redis-server"
MASTER_NAME = "covidtest"
QUORUM = "2"
MAXMEMORY = "768mb"
DOWN_AFTER_MS = 5000  # the overlay's sentinel down-after-milliseconds (redis-bootstrap.sh)
SERVERS = ("redis-0", "redis-1")
SENTINELS = ("sentinel-0", "sentinel-1", "sentinel-2")


def pod_name(index: int) -> str:
    return f"{STATEFULSET}-{index}.{HEADLESS_SERVICE}"


def rewrite(text: str, rules: list[tuple[str, str]], what: str) -> str:
    """Applies each (pattern, replacement) to the lines of `text`; a pattern that matches nothing is an
    error: the overlay's file changed, and this localisation must change with it."""
    for pattern, replacement in rules:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if count == 0:
            raise RuntimeError(f"{what}: no line matches {pattern!r}; has the overlay's file changed?")
    return text


def run_bootstrap(workdir: Path, index: int, replicas: int, password: str, master_pod: str | None) -> tuple[str, str]:
    """(redis.conf, sentinel.conf) as the overlay's redis-bootstrap.sh writes them for pod `index`.
    `master_pod`: what the (stub) redis-cli answers when the script asks a peer Sentinel for the master;
    None is a cold start (no Sentinel answers, so pod 0 is the master)."""
    stubs = workdir / "bin"
    stubs.mkdir(parents=True, exist_ok=True)
    for name, body in (
        ("hostname", 'echo "$STUB_HOSTNAME"'),
        ("redis-cli", '[ -n "$STUB_MASTER" ] && echo "$STUB_MASTER"'),
    ):
        stub = stubs / name
        stub.write_text(f"#!/bin/sh\n# a stand-in for the pod's {name} (tools/ha_redis.py)\n{body}\n")
        stub.chmod(0o755)
    out = workdir / f"bootstrap-{index}"
    out.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{stubs}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "STUB_HOSTNAME": f"{STATEFULSET}-{index}",
        "STUB_MASTER": master_pod or "",
        "REDIS_PASSWORD": password,
        "STATEFULSET": STATEFULSET,
        "HEADLESS_SERVICE": HEADLESS_SERVICE,
        "REPLICAS": str(replicas),
        "MASTER_NAME": MASTER_NAME,
        "QUORUM": QUORUM,
        "MAXMEMORY": MAXMEMORY,
        "CONF_DIR": str(out),
    }
    subprocess.run(["sh", str(BOOTSTRAP)], env=env, check=True, capture_output=True, text=True)
    return (out / "redis.conf").read_text(), (out / "sentinel.conf").read_text()


def localise_redis_conf(text: str, port: int, directory: Path, master_port: int | None) -> str:
    rules = [
        (r"^port 6379$", f"port {port}"),
        (r"^bind .*$", "bind 127.0.0.1"),
        (r"^dir /data$", f"dir {directory}"),
        (r"^replica-announce-ip .*$", "replica-announce-ip 127.0.0.1"),
    ]
    if master_port is not None:
        rules.append((r"^replicaof \S+ 6379$", f"replicaof 127.0.0.1 {master_port}"))
    return rewrite(text, rules, "redis.conf")


def localise_sentinel_conf(text: str, port: int, directory: Path, master_port: int, down_after_ms: int) -> str:
    name = MASTER_NAME
    return rewrite(
        text,
        [
            (r"^port 26379$", f"port {port}"),
            (r"^bind .*$", "bind 127.0.0.1"),
            (r"^dir /data$", f"dir {directory}"),
            (r"^sentinel announce-ip .*$", "sentinel announce-ip 127.0.0.1"),
            (rf"^sentinel monitor {name} \S+ 6379 (\d+)$", rf"sentinel monitor {name} 127.0.0.1 {master_port} \1"),
            (
                rf"^sentinel down-after-milliseconds {name} \d+$",
                f"sentinel down-after-milliseconds {name} {down_after_ms}",
            ),
            (
                rf"^sentinel client-reconfig-script {name} /scripts/on-failover.sh$",
                f"sentinel client-reconfig-script {name} {ON_FAILOVER}",
            ),
        ],
        "sentinel.conf",
    )


def localise_haproxy_cfg(
    text: str, port: int, health_port: int, servers: list[tuple[str, int]], sentinels: list[tuple[str, int]]
) -> str:
    """The overlay's haproxy.cfg on local ports, without the DNS resolvers that literal addresses do not
    need. Its pod addresses become local ones by index: `redis-server-<i>` (port 6379) is servers[i] and
    `sentinel-<i>` (port 26379) is sentinels[i], each on 127.0.0.1; an index with no local counterpart loses
    its server line (that backend has no server, so it is never chosen). The Sentinels here announce
    127.0.0.1 and a port, not a pod name: the check that a quorum names server i master expects servers[i]'s
    port in their answer instead of its name."""

    def address(match: re.Match) -> str:
        indent, name, index, pod_port = match.group(1), match.group(2), int(match.group(3)), match.group(4)
        local = (servers if pod_port == "6379" else sentinels)[index : index + 1]
        return f"{indent}server {name} 127.0.0.1:{local[0][1]}\n" if local else ""

    def named_master(match: re.Match) -> str:
        index = int(match.group(2))
        if index >= len(servers):
            return match.group(0)
        return f'{match.group(1)}"\\n{servers[index][1]}\\r"\n'

    # HAProxy needs about two descriptors per connection: maxconn within this machine's hard limit.
    maxconn = min(10000, (resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 100) // 2)
    text = rewrite(
        text,
        [
            (r"^(\s*maxconn) 10000$", rf"\g<1> {maxconn}"),
            (r"^(\s*bind\s+):6379$", rf"\g<1>127.0.0.1:{port}"),
            (r"^(\s*bind\s+):8404$", rf"\g<1>127.0.0.1:{health_port}"),
            (r"^resolvers cluster\n(?:[ \t]+\S.*\n)*", ""),
            (r"^(\s*default-server .*?) resolvers cluster", r"\1"),
        ],
        "haproxy.cfg",
    )
    text, addresses = re.subn(
        r'^(\s*)server ((?:redis-server|sentinel)-(\d+)) "redis-server-\d+\.[^"]*:(6379|26379)"\n',
        address,
        text,
        flags=re.M,
    )
    text, expectations = re.subn(
        r'^(\s*tcp-check expect string )"\\nredis-server-(\d+)\."\n', named_master, text, flags=re.M
    )
    if not addresses or not expectations:
        raise RuntimeError(
            "haproxy.cfg: the server lines or the Sentinel checks are not where they were; has the overlay's "
            "file changed?"
        )
    return f"# deploy/overlays/prod/redis/haproxy.cfg localised by tools/ha_redis.py\n{text}"


class RedisCluster:
    """The servers, the Sentinels and HAProxy under `root`; `ports` names a port for each of SERVERS,
    SENTINELS, `haproxy` and `haproxy-health`. `env` is the environment of every process (the topology's
    marker)."""

    def __init__(
        self,
        root: Path,
        ports: dict[str, int],
        password: str,
        down_after_ms: int = DOWN_AFTER_MS,
        env: dict[str, str] | None = None,
    ):
        self.root = Path(root)
        self.ports = ports
        self.password = password
        self.down_after_ms = down_after_ms
        self.env = {**(env or os.environ), "REDIS_PASSWORD": password}

    def server(self, name: str) -> RedisServer:
        kind = "sentinel" if name.startswith("sentinel") else "redis"
        return RedisServer(
            self.root / name,
            port=self.ports[name],
            config_file=self.root / name / f"{kind}.conf",
            extra_args=["--sentinel"] if kind == "sentinel" else [],
            env=self.env,
            name=kind,
        )

    def client(self, name: str, **options) -> redis.Redis:
        port = self.ports[name] if name in self.ports else self.ports["haproxy"]
        options.setdefault("socket_timeout", 2)
        options.setdefault("socket_connect_timeout", 2)
        return redis.Redis(host="127.0.0.1", port=port, password=self.password, **options)

    # --- bringing it up ---------------------------------------------------------------------------

    def start(self, pids: Path, logs: Path) -> int:
        """Servers, Sentinels (once they know the replica and each other), then HAProxy (once it reaches the
        master). Returns HAProxy's PID."""
        for index, name in enumerate(SERVERS):
            self.write_server_conf(name, master=None if index == 0 else SERVERS[0])
            self.server(name).start()
        _, sentinel_conf = run_bootstrap(self.root, 0, len(SERVERS), self.password, None)
        for name in SENTINELS:
            directory = self.root / name
            directory.mkdir(parents=True, exist_ok=True)
            conf = localise_sentinel_conf(
                sentinel_conf, self.ports[name], directory, self.ports[SERVERS[0]], self.down_after_ms
            )
            (directory / "sentinel.conf").write_text(conf)
            self.server(name).start()
        self.wait_sentinels(SERVERS[0])
        cfg = self.root / "haproxy.cfg"
        cfg.write_text(
            localise_haproxy_cfg(
                HAPROXY_CFG.read_text(),
                self.ports["haproxy"],
                self.ports["haproxy-health"],
                [(name, self.ports[name]) for name in SERVERS],
                [(name, self.ports[name]) for name in SENTINELS],
            )
        )
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)], env=self.env, capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c {cfg}: {check.stdout}{check.stderr}")
        pids.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        # As the redis-proxy Deployment runs it: master-worker, in the foreground, logging to stdout.
        pid = spawn(["haproxy", "-W", "-db", "-f", str(cfg)], logs / "haproxy.log", env=self.env)
        (pids / "haproxy.pid").write_text(str(pid))
        self.wait_proxy(SERVERS[0])
        return pid

    def write_server_conf(self, name: str, master: str | None) -> None:
        index = SERVERS.index(name)
        master_pod = None if master is None else pod_name(SERVERS.index(master))
        redis_conf, _ = run_bootstrap(self.root, index, len(SERVERS), self.password, master_pod)
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        master_port = None if master is None or master == name else self.ports[master]
        (directory / "redis.conf").write_text(localise_redis_conf(redis_conf, self.ports[name], directory, master_port))

    def wait_sentinels(self, master: str, timeout: float = 30) -> None:
        """Until every Sentinel names `master`, knows its replica and the two other Sentinels: only then can
        they agree on a failover."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = [cast(dict, self.client(s).sentinel_master(MASTER_NAME)) for s in SENTINELS]
                if all(
                    state["port"] == self.ports[master]
                    and state["num-other-sentinels"] == len(SENTINELS) - 1
                    and state["num-slaves"] >= len(SERVERS) - 1
                    for state in states
                ):
                    return
            except redis.RedisError:
                states = []
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Sentinels did not settle on {master}: {states}")
            time.sleep(0.2)

    def wait_proxy(self, master: str, timeout: float = 30) -> None:
        """Until HAProxy's port leads to `master` (its checks run each second, every 250 ms on a down server)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.client("haproxy").info("server")["tcp_port"] == self.ports[master]:
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"HAProxy does not lead to {master}; see its log")
            time.sleep(0.1)

    def stop(self) -> None:
        """The Sentinels first (none may start a failover while the servers stop), then the servers."""
        for name in (*SENTINELS, *SERVERS):
            self.server(name).stop()

    # --- state and failures -------------------------------------------------------------------------

    def sentinel_masters(self) -> dict[str, str | None]:
        """Each Sentinel's answer to get-master-addr-by-name, as a server name (None: no answer)."""
        by_port = {self.ports[name]: name for name in SERVERS}
        answers: dict[str, str | None] = {}
        for sentinel in SENTINELS:
            try:
                address = self.client(sentinel).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
                answers[sentinel] = by_port.get(int(address[1])) if address else None
            except redis.RedisError:
                answers[sentinel] = None
        return answers

    def master(self) -> str:
        """The master a quorum of the Sentinels names."""
        answers = [a for a in self.sentinel_masters().values() if a is not None]
        for name in SERVERS:
            if answers.count(name) >= int(QUORUM):
                return name
        raise RuntimeError(f"no quorum of Sentinels names a master: {self.sentinel_masters()}")

    def kill(self, name: str) -> None:
        self.server(name).kill()

    def freeze(self, name: str) -> None:
        """SIGSTOP: the server stops answering but keeps its sockets and data (a paused VM, a GC-like stall,
        a node under memory pressure); thaw() resumes it as it was."""
        os.kill(self._pid(name), signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        os.kill(self._pid(name), signal.SIGCONT)

    def _pid(self, name: str) -> int:
        pid = self.server(name).pid()
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        return pid

    def restart(self, name: str) -> None:
        """Starts a killed server again as its pod would restart: the bootstrap asks the Sentinels for the
        master, so it comes back as the master's replica."""
        master = self.master()
        self.write_server_conf(name, master=master)
        self.server(name).start()
