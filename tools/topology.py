"""`make run-ha`: the production topology on this machine, and the API the failure drills drive.

What runs (every address 127.0.0.1, every port free at the start; `Topology` names them all):
- Postgres (tools/ha_postgres.py): `primary`, a synchronous `standby` and an asynchronous read `replica`,
  with the overlay's parameters. The services reach them as CloudNativePG's Services lead there: through
  the `rw` proxy (the current primary; every service's DATABASE_URL) and the `ro` proxy (the replica;
  verify_svc's READ_DATABASE_URL), small TCP proxies (tools/tcpproxy.py) whose target `switch_rw_to`
  changes, as CloudNativePG does on failover. Each service logs in as its own role.
- Redis (tools/ha_redis.py): master `redis-0`, replica `redis-1`, three Sentinels (quorum 2) running the
  overlay's on-failover.sh, and HAProxy with the overlay's haproxy.cfg: REDIS_URL of every service.
- Two replicas of each service, each on its own ports, behind a front door per service (a round-robin TCP
  proxy, as a ClusterIP Service spreads connections); each publish_svc replica reaches the `rw` proxy
  through a proxy of its own, which `partition_publish` cuts off (traffic held, nothing closed). Both
  publish_svc replicas compete for the relay lease (RELAY_ENABLED, the production default).
- The HTTP/JSON gateway in front of the three front doors (optional).

`python tools/topology.py up` (make run-ha) starts it fresh under .run/ha/, runs the demo through the front
doors and prints the topology; `down` (make stop) stops it; `status` prints who is primary, master and
relay leader now. From Python (the drills):

    with Topology(tmp_dir, sentinel_down_after_ms=1000).start() as topology:
        topology.kill_redis_master()
        ...

The API is synchronous (psql, redis-py, subprocesses): from async tests call it through
asyncio.to_thread when load runs on the same event loop. Every process the topology starts is stopped by
its PID (stop()); each carries COVIDTEST_TOPOLOGY=<root> in its environment or runs inside <root>, which
is how `processes()` finds any left over.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools import localstack  # noqa: E402
from tools.ha_postgres import NODES, PostgresCluster  # noqa: E402
from tools.ha_redis import DOWN_AFTER_MS, SENTINELS, SERVERS, RedisCluster  # noqa: E402
from tools.servers import free_ports, pid_alive, postgres_bindir, psql, terminate_all  # noqa: E402
from tools.tcpproxy import ProxyControl  # noqa: E402

RUN_HA = ROOT / ".run" / "ha"
MARKER = "COVIDTEST_TOPOLOGY"
DATABASE = "covidtest"
SERVICE_NAMES = ("result_svc", "publish_svc", "verify_svc")
REPLICAS = 2
PYTHON = sys.executable
# Ports never handed out: the machine's own Postgres and Redis, and the fixed ports of `make run`.
RESERVED_PORTS = frozenset(
    {5432, 6379, 55432, 56379, localstack.BUNDLE_HTTP_PORT, localstack.GATEWAY[1], localstack.GATEWAY[2]}
    | {port for ports in localstack.SERVICES.values() for port in ports}
)


def say(msg: str) -> None:
    print(f"[make run-ha] {msg}", flush=True)


def _quiet(_: str) -> None:
    pass


class Topology:
    """The HA topology under `root`. `sentinel_down_after_ms`: how long the Sentinels wait before they call
    a silent master down (the overlay's 5000 ms; drills shorten it). `gateway`: start the HTTP/JSON gateway.
    `service_settings`: settings of one service's replicas on top of their own (service name → name → value;
    `make bench-capacity` lifts verify_svc's per-device scan limit with it)."""

    def __init__(
        self,
        root: Path | str,
        *,
        sentinel_down_after_ms: int = DOWN_AFTER_MS,
        gateway: bool = True,
        service_settings: dict[str, dict[str, str]] | None = None,
        say: Callable[[str], None] = _quiet,
    ):
        self.root = Path(root).resolve()
        self.service_settings = service_settings or {}
        self.sentinel_down_after_ms = sentinel_down_after_ms
        self.with_gateway = gateway
        self.say = say
        self.pids_dir = self.root / "pids"
        self.logs_dir = self.root / "logs"
        self.state_file = self.root / "state.json"
        self.ports: dict[str, int] = {}
        self.redis_password = ""
        self.rw_node = "primary"
        self.pg: PostgresCluster | None = None
        self.redis: RedisCluster | None = None

    # --- addresses --------------------------------------------------------------------------------

    def dsn(self, port_name: str, user: str = "postgres", database: str = DATABASE) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.ports[port_name]}/{database}"

    @property
    def owner_dsn(self) -> str:
        """The schema owner's URL through the `rw` proxy: migrations, the operator CLI."""
        return self.dsn("rw")

    def rw_dsn(self, user: str = "postgres") -> str:
        return self.dsn("rw", user)

    def ro_dsn(self, user: str = "postgres") -> str:
        return self.dsn("ro", user)

    def node_dsn(self, node: str, user: str = "postgres") -> str:
        """Straight to one Postgres server, past the proxies."""
        return self.dsn(node, user)

    def publish_dsn(self, index: int) -> str:
        """publish_svc replica `index`'s DATABASE_URL: its own proxy, in front of `rw`."""
        return self.dsn(f"publish-{index}", localstack.SERVICE_DB_ROLES["publish_svc"])

    @property
    def redis_url(self) -> str:
        """Through HAProxy, to whichever server is master."""
        return f"redis://:{self.redis_password}@127.0.0.1:{self.ports['haproxy']}/0"

    def redis_node_url(self, name: str) -> str:
        return f"redis://:{self.redis_password}@127.0.0.1:{self.ports[name]}/0"

    def service_address(self, name: str) -> str:
        """The service's front door (both replicas behind it)."""
        return f"127.0.0.1:{self.ports[name]}"

    def service_addresses(self, name: str) -> list[str]:
        """Each replica's own address."""
        return [f"127.0.0.1:{self.ports[f'{name}-{i}']}" for i in range(REPLICAS)]

    def metrics_url(self, name: str, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[f'{name}-{index}-metrics']}/metrics"

    @property
    def gateway_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ports['gateway']}" if self.with_gateway else None

    @property
    def postgres_primary(self) -> str:
        return self._pg().primary

    # --- bringing it up and down --------------------------------------------------------------------

    def _allocate_ports(self) -> None:
        names = [*NODES, *SERVERS, *SENTINELS, "haproxy", "haproxy-health", "rw", "ro"]
        names += [f"publish-{i}" for i in range(REPLICAS)]
        for service in SERVICE_NAMES:
            names.append(service)
            for i in range(REPLICAS):
                names += [f"{service}-{i}", f"{service}-{i}-metrics"]
                if service == "verify_svc":
                    names.append(f"{service}-{i}-bundle")
        names += ["gateway", "gateway-metrics"]
        self.ports = dict(zip(names, free_ports(len(names), avoid=RESERVED_PORTS)))

    def _env(self) -> dict[str, str]:
        return {**os.environ, MARKER: str(self.root)}

    def _build(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("the HA topology needs Postgres server binaries (Debian: postgresql)")
        if shutil.which("haproxy") is None:
            raise RuntimeError("the HA topology needs HAProxy (Debian: apt-get install haproxy)")
        self.pg = PostgresCluster(self.root / "pg", bindir, self.ports)
        redis_ports = {name: self.ports[name] for name in (*SERVERS, *SENTINELS, "haproxy", "haproxy-health")}
        self.redis = RedisCluster(
            self.root / "redis", redis_ports, self.redis_password, self.sentinel_down_after_ms, env=self._env()
        )

    def start(self) -> Topology:
        """Everything, fresh, in `root` (absent or empty: a topology is never restarted from old data, whose
        standbys would follow ports of the past); returns self once every service replica is SERVING. On a
        failure, what was started is stopped again."""
        if self.root.exists() and any(self.root.iterdir()):
            raise RuntimeError(f"{self.root} is not empty: a topology starts in a fresh directory")
        self.root.mkdir(parents=True, exist_ok=True)
        self._allocate_ports()
        self.redis_password = secrets.token_hex(16)
        self._build()
        self.save()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        t0 = time.monotonic()
        redis_failed: list[BaseException] = []

        def start_redis() -> None:
            try:
                self._redis().start(self.pids_dir, self.logs_dir)
            except BaseException as exc:  # re-raised below, in the caller's thread
                redis_failed.append(exc)

        # Redis waits mostly for its Sentinels to find each other: meanwhile Postgres is built.
        redis_thread = threading.Thread(target=start_redis, name="redis")
        redis_thread.start()
        try:
            self._pg().create()
        finally:
            redis_thread.join()
        if redis_failed:
            raise redis_failed[0]
        self.say(
            f"Postgres primary, sync standby, async replica; Redis, Sentinels, HAProxy: {time.monotonic() - t0:.1f} s"
        )
        self._start_proxy("rw", [self.ports[self.rw_node]])
        self._start_proxy("ro", [self.ports["replica"]])
        for i in range(REPLICAS):
            self._start_proxy(f"publish-{i}", [self.ports["rw"]])
        for name in SERVICE_NAMES:
            self._start_proxy(name, [self.ports[f"{name}-{i}"] for i in range(REPLICAS)])
        self._wait_proxies()
        localstack.run_async(localstack.ensure_database(self.dsn(self.rw_node, database="postgres"), DATABASE))
        from services.common import migrate

        applied = localstack.run_async(migrate.apply(self.owner_dsn))
        self.say(f"migrations applied through the rw proxy: {len(applied)}")
        self._start_services()
        if self.with_gateway:
            doors = {name: self.service_address(name) for name in SERVICE_NAMES}
            env = localstack.gateway_env(doors, self.ports["gateway"], self.ports["gateway-metrics"])
            env[MARKER] = str(self.root)
            argv = [PYTHON, "-m", "services.gateway"]
            pid = localstack.start_process("gateway", argv, env, self.pids_dir, self.logs_dir)
            localstack.wait_gateway(self.gateway_url or "", pid, self.logs_dir / "gateway.log", say=self.say)
        self.save()
        self.say(f"topology up in {time.monotonic() - t0:.1f} s")

    def _start_proxy(self, name: str, targets: list[int]) -> None:
        argv = [PYTHON, "-m", "tools.tcpproxy", "--listen", str(self.ports[name])]
        argv += ["--control", str(self._control(name))]
        argv += [arg for port in targets for arg in ("--target", f"127.0.0.1:{port}")]
        self._control(name).parent.mkdir(parents=True, exist_ok=True)
        localstack.start_process(f"proxy-{name}", argv, self._env(), self.pids_dir, self.logs_dir)

    def _control(self, name: str) -> Path:
        return self.root / "proxies" / f"{name}.sock"

    def proxy(self, name: str) -> ProxyControl:
        """The control of proxy `name`: rw, ro, publish-<i>, or a service's front door (result_svc, …)."""
        return ProxyControl(self._control(name))

    def _wait_proxies(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        names = ["rw", "ro", *(f"publish-{i}" for i in range(REPLICAS)), *SERVICE_NAMES]
        for name in names:
            while not self.proxy(name).ready():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"proxy {name} did not start; see {self.logs_dir / f'proxy-{name}.log'}")
                time.sleep(0.05)

    def _start_services(self) -> None:
        keys = localstack.local_secrets(self.root / "secrets.env")
        env_base = {"DATABASE_URL": self.owner_dsn, "REDIS_URL": self.redis_url, **keys}
        ports = {}
        for name in SERVICE_NAMES:
            for i in range(REPLICAS):
                label = f"{name}-{i}"
                env = localstack.service_env(
                    name,
                    env_base,
                    self.ports[label],
                    self.ports[f"{label}-metrics"],
                    self.ports.get(f"{label}-bundle", 0),
                )
                env.update(self.service_settings.get(name, {}))
                env[MARKER] = str(self.root)
                if name == "publish_svc":
                    env["DATABASE_URL"] = self.publish_dsn(i)
                if name == "verify_svc":
                    env["READ_DATABASE_URL"] = self.ro_dsn(localstack.SERVICE_DB_ROLES["verify_svc"])
                argv = [PYTHON, "-m", f"services.{name}"]
                localstack.start_process(label, argv, env, self.pids_dir, self.logs_dir)
                ports[label] = self.ports[label]
        localstack.wait_serving(ports, deadline_s=60, logs=self.logs_dir, say=self.say)

    def stop(self) -> None:
        """Everything started, by PID: the gateway and the services (partitions healed first, so they can
        close their connections), the proxies and HAProxy, the Sentinels and Redis, Postgres."""
        for i in range(REPLICAS):
            if self._control(f"publish-{i}").exists():
                try:
                    self.proxy(f"publish-{i}").heal()
                except (OSError, RuntimeError, ValueError):
                    pass
        pids = self._pids()
        first = {k: v for k, v in pids.items() if not k.startswith(("proxy-", "haproxy"))}
        terminate_all(first, timeout=15, say=self.say)
        terminate_all({k: v for k, v in pids.items() if k not in first}, timeout=10, say=self.say)
        for pidfile in self.pids_dir.glob("*.pid"):
            pidfile.unlink()
        if self.redis is not None:
            self.redis.stop()
        if self.pg is not None:
            self.pg.stop()
        self.state_file.unlink(missing_ok=True)

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- state on disk ---------------------------------------------------------------------------------

    def save(self) -> None:
        state = {
            "ports": self.ports,
            "redis_password": self.redis_password,
            "rw_node": self.rw_node,
            "pg_primary": self.pg.primary if self.pg else "primary",
            "pg_synchronous": self.pg.synchronous if self.pg else [],
            "sentinel_down_after_ms": self.sentinel_down_after_ms,
            "gateway": self.with_gateway,
        }
        fd = os.open(self.state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the password
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=1)

    @classmethod
    def load(cls, root: Path | str, say: Callable[[str], None] = _quiet) -> Topology:
        """The topology running in `root` (started by another process: make run-ha, a test)."""
        topology = cls(root, say=say)
        state = json.loads(topology.state_file.read_text())
        topology.ports = state["ports"]
        topology.redis_password = state["redis_password"]
        topology.rw_node = state["rw_node"]
        topology.sentinel_down_after_ms = state["sentinel_down_after_ms"]
        topology.with_gateway = state["gateway"]
        topology._build()
        topology._pg().primary = state["pg_primary"]
        topology._pg().synchronous = state["pg_synchronous"]
        return topology

    def _pids(self) -> dict[str, int]:
        if not self.pids_dir.exists():
            return {}
        return {f.stem: int(f.read_text()) for f in sorted(self.pids_dir.glob("*.pid"))}

    def pid(self, label: str) -> int:
        """The PID of a process the topology spawned: `<service>-<i>`, `proxy-<name>`, haproxy, gateway."""
        return int((self.pids_dir / f"{label}.pid").read_text())

    def _running_pids(self) -> list[int]:
        return [pid for pid in self._pids().values() if pid_alive(pid)]

    def processes(self) -> list[int]:
        """Every process still running that belongs to this topology: its environment names the topology
        or it runs inside its directory (Postgres, Redis and the Sentinels chdir there). After stop(): none."""
        found = []
        marker = f"{MARKER}={self.root}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if marker in environ or Path(cwd).is_relative_to(self.root):
                if pid_alive(int(entry.name)):
                    found.append(int(entry.name))
        return found

    def _pg(self) -> PostgresCluster:
        if self.pg is None:
            raise RuntimeError("the topology is not built (start() or load())")
        return self.pg

    def _redis(self) -> RedisCluster:
        if self.redis is None:
            raise RuntimeError("the topology is not built (start() or load())")
        return self.redis

    # --- Postgres: state, failures, failover -------------------------------------------------------------

    def sql(self, port_name: str, query: str, user: str = "postgres", database: str = DATABASE) -> list[list[str]]:
        """Rows of `query` through a proxy (rw, ro, publish-<i>) or straight on a server (primary, …)."""
        return psql(self._pg().nodes[NODES[0]].bindir, self.ports[port_name], query, database, user)

    def replication(self) -> list[dict[str, str]]:
        """pg_stat_replication on the current primary: application_name, state, sync_state, replay_lsn."""
        return self._pg().replication()

    def postgres_primary_kill(self) -> str:
        """SIGKILL to the current primary and all its processes (its machine died); returns its name.
        The rw proxy keeps pointing at it until switch_rw_to."""
        name = self._pg().primary
        self._pg().kill(name)
        return name

    def promote_standby(self, node: str | None = None) -> str:
        """`pg_ctl promote` of `node` (default: the synchronous standby, which holds every acknowledged
        commit), which then requires the remaining copy as its synchronous standby; returns its name.
        The services still reach the old primary until switch_rw_to(node)."""
        pg = self._pg()
        node = node or pg.synchronous[0]
        pg.promote(node)
        self.save()
        return node

    def switch_rw_to(self, node: str) -> dict:
        """Point the `rw` proxy (every service's DATABASE_URL, the publish proxies behind it) at `node`,
        cutting the connections to the old target, as CloudNativePG moves the -rw Service's endpoint."""
        answer = self.proxy("rw").set_targets([f"127.0.0.1:{self.ports[node]}"], cut=True)
        self.rw_node = node
        self.save()
        return answer

    def pause_replica_replay(self) -> None:
        """The read replica keeps receiving WAL but stops applying it (pg_wal_replay_pause())."""
        self._pg().pause_replay("replica")

    def resume_replica_replay(self) -> None:
        self._pg().resume_replay("replica")

    # --- Redis -------------------------------------------------------------------------------------

    def sentinel_masters(self) -> dict[str, str | None]:
        """Each Sentinel's master (a server name: redis-0, redis-1), None where a Sentinel does not answer."""
        return self._redis().sentinel_masters()

    def redis_master(self) -> str:
        """The master a quorum of the Sentinels names."""
        return self._redis().master()

    def agreed_redis_master(self) -> str | None:
        """redis_master(), or None while no quorum of the Sentinels names one (during a failover)."""
        try:
            return self.redis_master()
        except RuntimeError:
            return None

    def kill_redis_master(self) -> str:
        """SIGKILL to the current master; returns its name."""
        name = self.redis_master()
        self._redis().kill(name)
        return name

    def freeze_redis_master(self) -> str:
        """SIGSTOP to the current master (it answers nothing, keeps its data); returns its name."""
        name = self.redis_master()
        self._redis().freeze(name)
        return name

    def thaw_redis(self, name: str) -> None:
        """SIGCONT to a frozen server: it resumes believing what it believed when frozen."""
        self._redis().thaw(name)

    def restart_redis(self, name: str) -> None:
        """Starts a killed server again; it rejoins as the current master's replica."""
        self._redis().restart(name)

    def redis_client(self, name: str = "haproxy", **options):
        """A redis-py client of a server, a Sentinel, or (default) HAProxy."""
        return self._redis().client(name, **options)

    # --- publish_svc: partitions and the relay -------------------------------------------------------

    def partition_publish(self, index: int) -> dict:
        """Cut publish_svc replica `index` off Postgres: its proxy holds all traffic, closing nothing."""
        return self.proxy(f"publish-{index}").partition()

    def heal_publish(self, index: int) -> dict:
        return self.proxy(f"publish-{index}").heal()

    def relay_leader(self) -> int | None:
        """Which publish_svc replica holds the relay lease now (relay_lease: holder is host:pid of the
        leader, expires_at by the primary's clock), read on the primary itself; None when the lease has
        expired, its holder is none of the replicas, or the primary does not answer (no lease can be held
        then)."""
        primary = self._pg().nodes[self._pg().primary]
        try:
            rows = primary.query("SELECT holder, expires_at > clock_timestamp() FROM relay_lease", DATABASE, timeout=3)
        except (RuntimeError, subprocess.TimeoutExpired):
            return None
        if not rows or rows[0][1] != "t":
            return None
        holder_pid = rows[0][0].rpartition(":")[2]
        for i in range(REPLICAS):
            if holder_pid == str(self.pid(f"publish_svc-{i}")):
                return i
        return None

    def relay_leader_gauges(self) -> list[float | None]:
        """Each publish_svc replica's covidtest_relay_leader gauge (1 while it holds the lease; None when
        its metrics do not answer)."""
        values: list[float | None] = []
        for i in range(REPLICAS):
            try:
                with urllib.request.urlopen(self.metrics_url("publish_svc", i), timeout=2) as answer:
                    text = answer.read().decode()
                match = re.search(r"^covidtest_relay_leader (\S+)$", text, re.MULTILINE)
                values.append(float(match.group(1)) if match else None)
            except OSError:
                values.append(None)
        return values

    # --- services -------------------------------------------------------------------------------------

    def service_health(self, name: str, index: int) -> str:
        """gRPC health of one replica: SERVING, NOT_SERVING, UNREACHABLE, …"""
        return localstack.health(self.ports[f"{name}-{index}"])

    def operator_token(self) -> str:
        return localstack.run_async(localstack.operator_token(self.owner_dsn))

    def run_demo(self, token: str, demo_dir: Path, demo_log: Path) -> tuple[dict, str | None]:
        """tools/demo.py through the front doors (and one Verify through the gateway, if it runs)."""
        doors = {name: self.service_address(name) for name in SERVICE_NAMES}
        return localstack.run_demo(doors, token, demo_dir, demo_log, self.gateway_url)

    def summary(self, token: str) -> str:
        """What make run-ha ends with: the topology and its addresses, short."""
        p = self.ports
        pg = self._pg()
        standbys = ", ".join(f"{n} :{p[n]}" for n in pg.standbys())

        def replicas(name: str) -> str:
            return " ".join(f":{p[f'{name}-{i}']}" for i in range(REPLICAS))

        leader = self.relay_leader()
        master = self.redis_master()
        lines = [
            "",
            f"The HA topology is up under {localstack.rel(self.root)} (plaintext, local use only):",
            f"  Postgres     primary {pg.primary} :{p[pg.primary]}; {standbys}",
            f"               rw proxy :{p['rw']} (DATABASE_URL)   ro proxy :{p['ro']} (verify's READ_DATABASE_URL)",
            f"  Redis        master {master} :{p[master]}, 3 Sentinels "
            + " ".join(f":{p[s]}" for s in SENTINELS)
            + f" (quorum 2), HAProxy :{p['haproxy']}",
            f"  result_svc   127.0.0.1:{p['result_svc']} → replicas {replicas('result_svc')}",
            f"  publish_svc  127.0.0.1:{p['publish_svc']} → replicas {replicas('publish_svc')}, relay leader: "
            + (f"publish_svc-{leader}" if leader is not None else "none yet"),
            f"               their own Postgres proxies :{p['publish-0']} :{p['publish-1']} (partition drills)",
            f"  verify_svc   127.0.0.1:{p['verify_svc']} → replicas {replicas('verify_svc')}",
        ]
        if self.gateway_url:
            lines.append(f"  HTTP/JSON    {self.gateway_url}/v1/…   checkpoint page {self.gateway_url}/checkpoint/")
        lines += [
            "",
            f"Operator token: {token}",
            f"Operator CLI, clients: set -a; . {localstack.rel(self.root / 'operator.env')}; set +a  (or clients.env)",
            f"Logs: {localstack.rel(self.logs_dir)}/   demo: {localstack.rel(self.root / 'demo.log')}   state: "
            f"{localstack.rel(self.state_file)}",
            "Status: .venv/bin/python tools/topology.py status   Stop: make stop (make run-ha starts fresh)",
        ]
        return "\n".join(lines)


# --- the command line ---------------------------------------------------------------------------------


def up(root: Path, down_after_ms: int) -> int:
    if (root / "state.json").exists():
        running = Topology.load(root)
        if running._running_pids():
            say("already running (make stop first)")
            return 1
        running.stop()
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.monotonic()
    topology = Topology(root, sentinel_down_after_ms=down_after_ms, say=say)
    try:
        topology.start()
        token = topology.operator_token()
        demo_log = root / "demo.log"
        say(f"running the demo through the front doors (its steps: {localstack.rel(demo_log)})")
        shown, verdict = topology.run_demo(token, root / "demo", demo_log)
        keys = localstack.local_secrets(root / "secrets.env")
        localstack.write_env_file(
            root / "operator.env", localstack.operator_env(topology.owner_dsn, topology.redis_url, keys, token)
        )
        doors = {name: topology.ports[name] for name in SERVICE_NAMES}
        localstack.write_env_file(root / "clients.env", localstack.clients_env(doors, shown))
    except Exception as exc:
        say(f"failed: {type(exc).__name__}: {exc}")
        say(f"logs: {localstack.rel(root / 'logs')}/, Postgres: {localstack.rel(root / 'pg')}/*/postgres.log")
        topology.stop()
        return 1
    localstack.say_demo_done(shown, verdict, say=say)
    say(f"up and the demo done in {time.monotonic() - t0:.1f} s")
    print(topology.summary(token))
    return 0


def down(root: Path) -> int:
    if not (root / "state.json").exists():
        return 0
    Topology.load(root, say=say).stop()
    say(f"stopped the HA topology; {localstack.rel(root)} stays until make clean (make run-ha starts fresh)")
    return 0


def status(root: Path) -> int:
    if not (root / "state.json").exists():
        print("no HA topology running (make run-ha)")
        return 1
    topology = Topology.load(root)
    print(f"Postgres primary: {topology.postgres_primary}; rw proxy → {topology.rw_node}")
    for row in topology.replication():
        print(f"  {row['application_name']}: {row['state']} {row['sync_state']} (replayed to {row['replay_lsn']})")
    print(f"Redis master (Sentinels): {topology.sentinel_masters()}")
    print(f"relay leader: publish_svc-{topology.relay_leader()}")
    for name in SERVICE_NAMES:
        print(f"  {name}: " + ", ".join(topology.service_health(name, i) for i in range(REPLICAS)))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--root", type=Path, default=RUN_HA, help="directory of the topology (default .run/ha)")
    parser.add_argument(
        "--down-after-ms",
        type=int,
        default=DOWN_AFTER_MS,
        help="Sentinel down-after-milliseconds (the overlay's 5000)",
    )
    args = parser.parse_args()
    if args.command == "up":
        return up(args.root, args.down_after_ms)
    if args.command == "down":
        return down(args.root)
    return status(args.root)


if __name__ == "__main__":
    sys.exit(main())
