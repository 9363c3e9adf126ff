"""Private Postgres and Redis servers that a fault test may stop and start without touching the shared ones."""

import shutil
import tempfile
from pathlib import Path

import pytest

from tools.servers import PostgresServer, RedisServer, postgres_bindir


@pytest.fixture
def private_postgres():
    bindir = postgres_bindir()
    assert bindir is not None, "Postgres server binaries (initdb, pg_ctl) are required for fault tests"
    root = Path(tempfile.mkdtemp(prefix="ct-pg-", dir="/tmp"))
    server = PostgresServer(root, bindir)
    server.init()
    server.start()
    yield server
    server.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private_redis():
    root = Path(tempfile.mkdtemp(prefix="ct-redis-", dir="/tmp"))
    server = RedisServer(root)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)
