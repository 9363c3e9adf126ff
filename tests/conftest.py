"""Shared fixtures: real Postgres and Redis, isolated per test session, module and test.

- One template database with every migration per test session; each test module gets its own
  database cloned from it (`CREATE DATABASE … TEMPLATE …`), dropped at the end.
- Redis isolation by key prefix: each test gets a fresh prefix; its keys are deleted afterwards.
- DATABASE_URL / REDIS_URL point at the servers (defaults: the local ones); nothing assumes an empty
  server.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as redis

from services.common import migrate
from services.common.auth import PrincipalKind, Role
from services.common.db import connect, create_pool
from services.registry import principals
from services.registry.key_sealing import new_kek
from tools.servers import dsn_with_user

SERVER_DSN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# verify_svc's own database role (migrations/0009_verify_role.sql): tests run verify_svc as it, as production does.
VERIFY_DB_ROLE = "covidtest_verify"
# result_svc's (with AdminService) and publish_svc's own roles (migrations/0010_service_roles.sql): every test
# runs them as these, as production does, so a grant a service lacks fails the suite. Fixtures that set up
# rows directly (make_principal, `db`, key activation) keep the owner's URL.
RESULT_DB_ROLE = "covidtest_result"
PUBLISH_DB_ROLE = "covidtest_publish"
# result_svc and publish_svc hold the personal-data keys, verify_svc holds no key at all
PERSONAL_DATA_KEYS = ("PII_KEYS", "PII_PEPPER")
KEYS_VERIFY_SVC_NEVER_HOLDS = (*PERSONAL_DATA_KEYS, "SIGNING_KEYS_KEK", "SIGNING_KEYS_KEK_PUBLIC")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def dsn_for(database: str) -> str:
    parts = urlsplit(SERVER_DSN)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(SERVER_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_db():
    name = f"ct_tpl_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        await migrate.apply(dsn_for(name))
        yield name
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def clone_database(template: str) -> str:
    name = f"ct_{uuid.uuid4().hex[:16]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


@pytest.fixture(scope="module")
async def database_url(template_db):
    name = await clone_database(template_db)
    try:
        yield dsn_for(name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_db():
    """A database with no migration applied (for migration tests)."""
    name = f"ct_mig_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    yield dsn_for(name)
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def own_database(template_db):
    """(url, pool) of a database for one test alone: for tests whose processes seal data with keys of
    their own, or that count every row."""
    name = await clone_database(template_db)
    pool = await create_pool(dsn_for(name), min_size=1, max_size=4)
    try:
        yield dsn_for(name), pool
    finally:
        await pool.close()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
async def result_server(database_url):
    """A real result_svc (which also hosts AdminService) on a free port, on this module's database."""
    running = await start_result_svc(service_env(database_url))
    yield running
    await running.stop(0)


@pytest.fixture(scope="module")
async def db(database_url):
    pool = await create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def redis_prefix():
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def fresh_secrets() -> dict[str, str]:
    """Fresh personal-data key and pepper and signing-key KEK, generated per run: no secret lives in the
    repository."""
    kek, kek_public = new_kek()
    return {
        "SIGNING_KEYS_KEK": kek,
        "SIGNING_KEYS_KEK_PUBLIC": kek_public,
        "PII_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "PII_PEPPER": base64.b64encode(secrets.token_bytes(32)).decode(),
    }


def service_env(database_url: str, **overrides: str) -> dict[str, str]:
    """Environment for a service under test: plaintext on a free port, real Postgres and Redis."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": "0",
        "METRICS_PORT": "0",
        "BUNDLE_HTTP_PORT": "0",  # verify_svc's bundle over HTTP: off unless a test asks for a port
        "GRPC_INSECURE": "true",
        "AUTH_CACHE_SECONDS": "0.2",
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "4",
        **fresh_secrets(),
    }
    env.update(overrides)
    return env


async def make_principal(
    database_url: str, role: Role, province: str = "24", *, personal_data_access: bool = False
) -> dict:
    """Create a principal able to hold `role` and issue it a token: {'id', 'token', 'credential_id'}.
    `personal_data_access`: a partner entitled to personal data (names, birth dates, QR codes)."""
    conn = await connect(database_url)
    try:
        async with conn.transaction():
            label = uuid.uuid4().hex[:8]
            if role in (Role.SAMPLER, Role.LAB):
                kind = PrincipalKind.ORGANISATION
                pid = await principals.create_organisation(
                    conn, None, f"org-{label}", "SAMPLING_UNIT" if role is Role.SAMPLER else "LAB", province
                )
            elif role is Role.PARTNER:
                kind = PrincipalKind.PARTNER
                pid = await principals.create_partner(conn, None, f"partner-{label}", personal_data_access)
            elif role is Role.CHECKPOINT:
                kind = PrincipalKind.CHECKPOINT_DEVICE
                pid = await principals.create_checkpoint_device(conn, None, f"device-{label}", province)
            else:
                kind, pid = PrincipalKind.OPERATOR, f"operator-{label}"
            credential_id, token = await principals.issue_token(conn, None, kind, pid, role)
    finally:
        await conn.close()
    return {"id": pid, "kind": kind, "token": token, "credential_id": credential_id}


def verify_svc_env(env: dict[str, str], **overrides: str) -> dict[str, str]:
    """verify_svc's environment from a platform's, as in production: its own database role for DATABASE_URL
    and READ_DATABASE_URL (the latter when set), and no personal-data keys."""
    own = {name: value for name, value in {**env, **overrides}.items() if name not in KEYS_VERIFY_SVC_NEVER_HOLDS}
    for name in ("DATABASE_URL", "READ_DATABASE_URL"):
        if own.get(name):
            own[name] = dsn_with_user(own[name], VERIFY_DB_ROLE)
    return own


def _as_role(env: dict[str, str], role: str, overrides: dict[str, str]) -> dict[str, str]:
    own = {**env, **overrides}
    for name in ("DATABASE_URL", "READ_DATABASE_URL"):
        if own.get(name):
            own[name] = dsn_with_user(own[name], role)
    return own


def result_svc_env(env: dict[str, str], **overrides: str) -> dict[str, str]:
    """result_svc's environment (AdminService included) from a platform's, as in production: its own database
    role for DATABASE_URL (and READ_DATABASE_URL when set)."""
    return _as_role(env, RESULT_DB_ROLE, overrides)


def publish_svc_env(env: dict[str, str], **overrides: str) -> dict[str, str]:
    """publish_svc's environment from a platform's, as in production: its own database role for DATABASE_URL
    (and READ_DATABASE_URL when set)."""
    return _as_role(env, PUBLISH_DB_ROLE, overrides)


def own_service_env(service: str, env: dict[str, str], **overrides: str) -> dict[str, str]:
    """The environment of `service` ("result_svc", "publish_svc" or "verify_svc") as production runs it."""
    helpers = {"result_svc": result_svc_env, "publish_svc": publish_svc_env, "verify_svc": verify_svc_env}
    return helpers[service](env, **overrides)


async def start_result_svc(env: dict[str, str], **overrides: str):
    """A real result_svc (with the AdminService it hosts) on a free port, with result_svc_env(env, **overrides)."""
    from services.common.config import load
    from services.common.runtime import start_service
    from services.result_svc import __main__ as result_process
    from services.result_svc.config import ResultConfig

    config = load(ResultConfig, result_svc_env(env, **overrides))
    return await start_service("result_svc", config, result_process.build, serve_metrics_port=False)


async def start_publish_svc(env: dict[str, str], **overrides: str):
    """A real publish_svc on a free port, with publish_svc_env(env, **overrides)."""
    from services.common.config import load
    from services.common.runtime import start_service
    from services.publish_svc import service as publish_service
    from services.publish_svc.config import PublishConfig

    config = load(PublishConfig, publish_svc_env(env, **overrides))
    return await start_service("publish_svc", config, publish_service.build, serve_metrics_port=False)


async def start_verify_svc(env: dict[str, str], **overrides: str):
    """A real verify_svc on a free port, with verify_svc_env(env, **overrides)."""
    from services.common.config import load
    from services.common.runtime import start_service
    from services.verify_svc import service as verify_service
    from services.verify_svc.config import VerifyConfig

    config = load(VerifyConfig, verify_svc_env(env, **overrides))
    return await start_service("verify_svc", config, verify_service.build, serve_metrics_port=False)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def lookups(monkeypatch) -> list[bytes]:
    """The digests of the credential lookups services in this process send to Postgres, in order."""
    from services.common import auth

    seen: list[bytes] = []
    fetchrow = asyncpg.Pool.fetchrow

    async def counting(self, query, *args, **kwargs):
        if query == auth._LOOKUP:
            seen.append(args[0])
        return await fetchrow(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Pool, "fetchrow", counting)
    return seen
