"""Postgres of the HA topology (tools/topology.py): the production CloudNativePG cluster on one machine.

Three servers, each a `tools.servers.PostgresServer` named by its first role:
- `primary`;
- `standby`, a streaming copy (pg_basebackup -R, its own replication slot), synchronous: a commit on the
  primary returns only once the standby has flushed it, as the overlay's `synchronous` block demands;
- `replica`, a streaming copy too, asynchronous: the read replica behind the `ro` proxy.

The servers run the overlay's own parameters (deploy/overlays/prod/postgres/cluster.yaml), less the memory
sizes of its 4 GiB pods. Each server's `cluster_name` is its name, which its WAL receiver sends as its
application_name: the name `synchronous_standby_names` and pg_stat_replication know it by.

After a failover (`promote`), what CloudNativePG does is done here too: the promoted server requires the
remaining replica as its synchronous standby, and that replica streams from it (re-cloned from it if it
cannot follow the new timeline, as CloudNativePG re-clones a diverged instance).
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from tools.servers import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
OVERLAY_CLUSTER = ROOT / "deploy" / "overlays" / "prod" / "postgres" / "cluster.yaml"
NODES = ("primary", "standby", "replica")
SYNCHRONOUS = "standby"  # the one synchronous candidate at the start; `replica` stays asynchronous
# Sized for the overlay's 4 GiB pods, not for three servers sharing this machine with everything else.
POD_SIZED = {"shared_buffers", "effective_cache_size"}


def overlay_postgresql() -> dict:
    """spec.postgresql of the overlay's CloudNativePG Cluster."""
    for document in yaml.safe_load_all(OVERLAY_CLUSTER.read_text()):
        if document and document.get("kind") == "Cluster":
            return document["spec"]["postgresql"]
    raise RuntimeError(f"no Cluster in {OVERLAY_CLUSTER}")


def local_parameters(postgresql: dict) -> dict[str, str]:
    """The overlay's Postgres parameters this machine runs (all but the pod-sized memory settings)."""
    return {k: str(v) for k, v in postgresql.get("parameters", {}).items() if k not in POD_SIZED}


def synchronous_standby_names(postgresql: dict, candidates: list[str]) -> str:
    """The overlay's `synchronous: {method: any, number: N}` over `candidates`. CloudNativePG writes
    `ANY N (…all replicas…)`; here one server is the synchronous candidate and the other the asynchronous
    read replica, and with one candidate `FIRST N` guarantees exactly what `ANY N` does (every commit waits
    for it), while pg_stat_replication then reports it as 'sync' rather than 'quorum'."""
    number = int(postgresql.get("synchronous", {}).get("number", 1))
    return f"FIRST {number} ({', '.join(candidates)})"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresCluster:
    def __init__(self, root: Path, bindir: Path, ports: dict[str, int], primary: str = "primary"):
        self.root = Path(root)
        self.nodes = {
            name: PostgresServer(self.root / name, bindir, ports[name], settings={"cluster_name": name})
            for name in NODES
        }
        self.primary = primary  # the server that is primary now (promote changes it)
        self.synchronous = [SYNCHRONOUS]  # the primary's synchronous standby candidates
        self.postgresql = overlay_postgresql()

    def server(self, name: str) -> PostgresServer:
        return self.nodes[name]

    def standbys(self) -> list[str]:
        return [name for name in NODES if name != self.primary]

    # --- bringing it up ---------------------------------------------------------------------------

    def create(self) -> None:
        """A fresh cluster: the primary, then its two copies, then synchronous replication on."""
        primary = self.nodes["primary"]
        primary.init()
        # In postgresql.conf, so that the copies inherit the same parameters (a standby refuses to start
        # with fewer max_connections than its primary).
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# the overlay's parameters (deploy/overlays/prod/postgres/cluster.yaml)\n")
            for name, value in local_parameters(self.postgresql).items():
                conf.write(f"{name} = {_quote(value)}\n")
        primary.start()
        for name in self.standbys():
            self.nodes[name].init_replica_of(primary, slot=name)
            self.nodes[name].start()
        # Set after the copies are made, so that they do not inherit it: a standby promoted later gets
        # its own (promote()).
        self.set_synchronous(self.primary, [SYNCHRONOUS])
        self.wait_streaming({SYNCHRONOUS: "sync", "replica": "async"})

    def set_synchronous(self, primary: str, candidates: list[str]) -> None:
        names = synchronous_standby_names(self.postgresql, candidates)
        self.nodes[primary].query(f"ALTER SYSTEM SET synchronous_standby_names = {_quote(names)}")
        self.nodes[primary].query("SELECT pg_reload_conf()")
        self.synchronous = list(candidates)

    def stop(self) -> None:
        """Every server: the primary first (a fast shutdown sends its last WAL to the standbys), each
        killed one's leftover shared memory removed."""
        for name in [self.primary, *self.standbys()]:
            server = self.nodes[name]
            if (server.data / "postmaster.pid").exists():
                server.stop("fast")
            server.remove_crash_leftovers()

    # --- state --------------------------------------------------------------------------------------

    def replication(self, on: str | None = None) -> list[dict[str, str]]:
        """pg_stat_replication of the primary (or of `on`): one row per WAL sender."""
        rows = self.nodes[on or self.primary].query(
            "SELECT application_name, state, sync_state, replay_lsn FROM pg_stat_replication ORDER BY 1"
        )
        return [dict(zip(("application_name", "state", "sync_state", "replay_lsn"), row)) for row in rows]

    def wait_streaming(self, expected: dict[str, str], timeout: float = 30) -> None:
        """Until each standby of `expected` streams from the primary with that sync_state."""
        deadline = time.monotonic() + timeout
        while True:
            seen = {r["application_name"]: (r["state"], r["sync_state"]) for r in self.replication()}
            if all(seen.get(name) == ("streaming", state) for name, state in expected.items()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"replication to {expected} not established; pg_stat_replication: {seen}")
            time.sleep(0.1)

    def in_recovery(self, name: str) -> bool:
        return self.nodes[name].query("SELECT pg_is_in_recovery()")[0][0] == "t"

    # --- failures and failover ------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        self.nodes[name].kill()

    def promote(self, name: str, timeout: float = 30) -> None:
        """`name` becomes the primary (pg_ctl promote), with the remaining copy as its synchronous standby,
        streaming from it. The former primary is left as it is (killed, typically)."""
        others = [n for n in NODES if n not in (name, self.primary)]
        self.nodes[name].promote()
        self.primary = name
        # Commits on the new primary wait for the remaining copy, as CloudNativePG keeps them waiting for a
        # synchronous replica (docs/operations.md, "Postgres failover").
        self.set_synchronous(name, others)
        for other in others:
            self.follow(other, name, timeout)

    def follow(self, name: str, primary: str, timeout: float = 30) -> None:
        """Point standby `name` at `primary` (its connection settings reload without a restart); if it
        cannot follow the new timeline within `timeout` (it had received WAL the new primary never had),
        clone it again from `primary`."""
        source = self.nodes[primary]
        if not source.query(f"SELECT 1 FROM pg_replication_slots WHERE slot_name = {_quote(name)}"):
            source.query(f"SELECT pg_create_physical_replication_slot({_quote(name)}, true)")
        server = self.nodes[name]
        conninfo = f"host=127.0.0.1 port={source.port} user=postgres application_name={name}"
        server.query(f"ALTER SYSTEM SET primary_conninfo = {_quote(conninfo)}")
        server.query(f"ALTER SYSTEM SET primary_slot_name = {_quote(name)}")
        server.query("SELECT pg_reload_conf()")
        try:
            self.wait_streaming({name: self._expected_state(name)}, timeout)
        except RuntimeError:
            self.reclone(name)

    def reclone(self, name: str) -> None:
        """Standby `name` made anew from the primary: stop it, remove its data, pg_basebackup again."""
        server = self.nodes[name]
        server.stop("immediate")
        server.remove_crash_leftovers()
        primary = self.nodes[self.primary]
        primary.query(
            f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {_quote(name)}"
        )
        server.remove_data()
        server.init_replica_of(primary, slot=name)
        server.start()
        self.wait_streaming({name: self._expected_state(name)})

    def _expected_state(self, name: str) -> str:
        return "sync" if name in self.synchronous else "async"

    def pause_replay(self, name: str = "replica") -> None:
        """The standby keeps receiving WAL but stops applying it: its reads fall behind the primary."""
        self.nodes[name].query("SELECT pg_wal_replay_pause()")
        deadline = time.monotonic() + 10
        while self.nodes[name].query("SELECT pg_get_wal_replay_pause_state()")[0][0] != "paused":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: WAL replay did not pause")
            time.sleep(0.02)

    def resume_replay(self, name: str = "replica") -> None:
        self.nodes[name].query("SELECT pg_wal_replay_resume()")
