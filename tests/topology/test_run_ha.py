"""`make run-ha`'s topology comes up as production runs (deploy/overlays/prod) and the demo passes through it.

One topology for the module (tests/topology/conftest.py), started through the same API the failure drills
use: Postgres streams to a synchronous standby and an asynchronous read replica, the Sentinels agree on the
master and HAProxy leads to it, both replicas of every service are SERVING, exactly one publish_svc replica
relays, and the demo passes through the services' front doors and the gateway. The teardown fails if any
process of the topology outlives stop().
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager

import pytest

from services.gen.covidtest.type.v1 import verdict_pb2
from tools import demo
from tools.ha_redis import HAPROXY_CFG, MASTER_NAME, ON_FAILOVER, SENTINELS, localise_haproxy_cfg, rewrite
from tools.servers import psql
from tools.topology import REPLICAS, SERVICE_NAMES


def test_postgres_commits_wait_for_the_standby_and_the_replica_streams_asynchronously(topology):
    rows = {r["application_name"]: (r["state"], r["sync_state"]) for r in topology.replication()}
    assert rows == {"standby": ("streaming", "sync"), "replica": ("streaming", "async")}
    assert topology.sql("primary", "SHOW synchronous_standby_names") == [["FIRST 1 (standby)"]]
    assert topology.sql("primary", "SHOW synchronous_commit") == [["on"]]
    # The overlay's parameters, not the machine's defaults.
    assert topology.sql("primary", "SHOW max_connections") == [["500"]]
    assert topology.sql("replica", "SHOW idle_in_transaction_session_timeout") == [["1min"]]
    # rw leads to the primary, ro to the read replica, as CloudNativePG's Services do.
    assert topology.sql("rw", "SELECT pg_is_in_recovery(), current_setting('cluster_name')") == [["f", "primary"]]
    assert topology.sql("ro", "SELECT pg_is_in_recovery(), current_setting('cluster_name')") == [["t", "replica"]]
    topology.sql("rw", "CREATE TABLE ha_probe (v text)")
    # A commit waits for the standby: with the standby frozen it does not return; with the replica frozen it does.
    with _frozen(topology, "replica"):
        topology.sql("rw", "INSERT INTO ha_probe VALUES ('replica frozen')")
    with _frozen(topology, "standby"):
        with pytest.raises(subprocess.TimeoutExpired):
            psql(
                topology.pg.nodes["primary"].bindir,
                topology.ports["rw"],
                "INSERT INTO ha_probe VALUES ('w')",
                "covidtest",
                timeout=1.5,
            )
    # Once the standby is back, the waiting commit completes; both copies replay it.
    for node in ("primary", "standby", "replica"):
        deadline = time.monotonic() + 5
        while topology.sql(node, "SELECT count(*) FROM ha_probe") != [["2"]]:
            assert time.monotonic() < deadline, f"{node} never had both rows"
            time.sleep(0.05)


@contextmanager
def _frozen(topology, node: str):
    """Every process of one Postgres server stopped (SIGSTOP), then resumed."""
    pids = topology.pg.nodes[node].processes()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_each_service_logs_in_as_its_own_role_through_the_proxies(topology):
    roles = {
        row[0]
        for row in topology.sql("primary", "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'covidtest'")
    }
    assert {"covidtest_result", "covidtest_publish", "covidtest_verify"} <= roles
    # Every service connection arrives through a proxy: none of them names the primary's own port.
    assert topology.sql("rw", "SELECT current_user", user="covidtest_verify") == [["covidtest_verify"]]
    assert topology.sql("ro", "SELECT current_user", user="covidtest_verify") == [["covidtest_verify"]]


def test_sentinels_agree_on_the_master_and_haproxy_leads_to_it(topology):
    assert topology.sentinel_masters() == {name: "redis-0" for name in SENTINELS}
    assert topology.redis_master() == "redis-0"
    through_haproxy = topology.redis_client()
    assert through_haproxy.info("replication")["role"] == "master"
    assert through_haproxy.info("server")["tcp_port"] == topology.ports["redis-0"]
    replica = topology.redis_client("redis-1").info("replication")
    assert replica["role"] == "slave" and replica["master_link_status"] == "up"
    # As in production, nothing answers without the password.
    with socket.create_connection(("127.0.0.1", topology.ports["haproxy"]), timeout=2) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(100).startswith(b"-NOAUTH")
    # The overlay's Sentinel settings and failover hook, and the down-after this topology was given.
    for sentinel in SENTINELS:
        settings = topology.redis_client(sentinel).sentinel_master(MASTER_NAME)
        assert settings["quorum"] == 2 and settings["num-other-sentinels"] == 2 and settings["num-slaves"] == 1
        assert settings["down-after-milliseconds"] == topology.sentinel_down_after_ms == 5000
        assert (settings["failover-timeout"], settings["parallel-syncs"]) == (30000, 1)
        assert settings["client-reconfig-script"] == str(ON_FAILOVER)


def test_the_overlay_haproxy_cfg_is_localised_not_copied():
    sentinels = [("sentinel-0", 5555), ("sentinel-1", 6666), ("sentinel-2", 7777)]
    local = localise_haproxy_cfg(HAPROXY_CFG.read_text(), 1111, 2222, [("redis-0", 3333), ("redis-1", 4444)], sentinels)
    assert "bind 127.0.0.1:1111" in local and "bind 127.0.0.1:2222" in local
    assert "server redis-server-0 127.0.0.1:3333\n" in local and "server redis-server-1 127.0.0.1:4444\n" in local
    assert local.count("server sentinel-1 127.0.0.1:6666\n") == 3  # in each server's "Sentinels name it" backend
    assert "resolvers" not in local and ".svc." not in local and "server redis-server-2 " not in local
    # A quorum of Sentinels must name a server by its (local) port; the third server has none here.
    assert 'tcp-check expect string "\\n3333\\r"' in local and 'tcp-check expect string "\\n4444\\r"' in local
    # Every other check and the routing rules are the overlay's own lines.
    overlay = HAPROXY_CFG.read_text().splitlines()
    checks = [line for line in overlay if ("tcp-check" in line and "redis-server-" not in line) or "_backend" in line]
    assert len(checks) > 20 and all(line in local.splitlines() for line in checks)
    with pytest.raises(RuntimeError, match="has the overlay's file changed"):
        rewrite("port 6379\n", [(r"^bind .*$", "bind 127.0.0.1")], "redis.conf")


def test_both_replicas_of_every_service_are_serving(topology):
    for name in SERVICE_NAMES:
        assert [topology.service_health(name, i) for i in range(REPLICAS)] == ["SERVING"] * REPLICAS, name


def test_exactly_one_publish_replica_relays(topology):
    deadline = time.monotonic() + 10
    while True:
        leader, gauges = topology.relay_leader(), topology.relay_leader_gauges()
        if leader is not None and sorted(gauges) == [0.0, 1.0]:
            break
        assert time.monotonic() < deadline, f"lease holder {leader}, leader gauges {gauges}"
        time.sleep(0.2)
    assert gauges[leader] == 1.0  # the lease's holder is the replica that says it leads


def test_the_demo_passes_through_the_topology(topology, tmp_path):
    token = topology.operator_token()
    shown, gateway_verdict = topology.run_demo(token, tmp_path / "demo", tmp_path / "demo.log")
    assert shown["verdicts"] == (verdict_pb2.VERDICT_VALID, verdict_pb2.VERDICT_REVOKED)
    assert shown["offline_verdict"] == "REVOKED"
    assert len(shown["events"]) == demo.POOL_SIZE
    assert gateway_verdict == "VERDICT_VALID"
    # It went through the services' front doors; each publish_svc replica reaches Postgres through its own proxy.
    for name in SERVICE_NAMES:
        assert topology.proxy(name).status()["accepted"] > 0, name
    assert all(topology.proxy(f"publish-{i}").status()["connections"] > 0 for i in range(REPLICAS))
