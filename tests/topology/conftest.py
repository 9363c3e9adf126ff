"""The HA topology (tools/topology.py) for the tests in tests/topology: one per test module, in a temporary
directory on free ports, never the machine's own Postgres and Redis.

`start_topology(**options)` is what a module's fixture calls (drills pass e.g. sentinel_down_after_ms);
its teardown stops everything and fails the module if any process of the topology is left running.
`db`: a pool on the module's topology as the schema owner, through the rw proxy (the drills' checks).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from tools.servers import postgres_bindir
from tools.topology import Topology


@contextmanager
def start_topology(**options) -> Iterator[Topology]:
    assert postgres_bindir() is not None, "the HA topology needs Postgres server binaries (Debian: postgresql)"
    assert shutil.which("haproxy"), "the HA topology needs HAProxy: apt-get install -y haproxy (.ci/run does)"
    # Under /tmp, not pytest's tmp_path: the Unix sockets of the proxies must stay short (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="ct-ha-", dir="/tmp"))
    topology = Topology(root, **options)
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()
        leftovers = topology.processes()
        if not leftovers:
            shutil.rmtree(root, ignore_errors=True)
    assert not leftovers, f"processes of the topology still running after stop(): {leftovers} (see {root})"


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    with start_topology() as running:
        yield running


@pytest.fixture(scope="module")
async def db(topology: Topology):
    pool = await asyncpg.create_pool(topology.owner_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()
