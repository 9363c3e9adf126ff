"""verify_svc holds least privilege: its database role (migrations/0009_verify_role.sql) reads what
verification needs and is refused everything personal and every key, and it runs without the personal-data
keys. The other verify tests run verify_svc as this role and without the keys (tests/conftest.py
start_verify_svc), so a grant or key it lacks fails them; these check that what it must not have stays out."""

import asyncpg
import pytest

from services.common.config import ConfigError, load
from services.publish_svc.config import PublishConfig
from services.result_svc.config import ResultConfig
from services.verify_svc.config import VerifyConfig
from tests.conftest import PERSONAL_DATA_KEYS, VERIFY_DB_ROLE, service_env, verify_svc_env
from tools.servers import dsn_with_user

REFUSED = [
    "SELECT * FROM persons",
    "SELECT identity_enc FROM persons",
    "SELECT phone_hash, dob_hash FROM persons",
    "SELECT * FROM samples",
    "SELECT * FROM results",
    "SELECT * FROM pools",
    "SELECT * FROM outbox",
    "SELECT qr_enc FROM certificates",
    "SELECT person_id FROM certificates",
    "SELECT payload_enc FROM feed_events",
    "SELECT person_id FROM feed_events",
    "SELECT private_key_enc FROM signing_keys",
    "SELECT private_key_ref FROM signing_keys",
    "SELECT * FROM audit_log",
    "SELECT * FROM idempotency_keys",
    "SELECT label FROM credentials",
    "SELECT * FROM partners",
    "SELECT * FROM partner_cursors",
    "UPDATE certificates SET status = 'VALID'",
    "DELETE FROM verification_counts",
    "INSERT INTO trusted_certificates (certificate_der, country) VALUES ('\\x00', 'VN')",
    "INSERT INTO value_sets (name) VALUES ('x')",
    "UPDATE value_sets SET set_values = '{}'",
    "SELECT imported_by FROM value_sets",
]

ALLOWED = [
    "SELECT uvci, status, status_version, expires_at FROM certificates LIMIT 1",
    "SELECT COALESCE(max(position), 0) FROM feed_events",
    "SELECT certificate_der FROM signing_keys WHERE state <> 'RETIRED'",
    "SELECT * FROM province_rules LIMIT 1",
    "SELECT count(*) FROM verification_counts",
    "SELECT name, version, value_set_date, set_values, content_sha256 FROM value_sets LIMIT 1",
]


@pytest.fixture(scope="module")
async def as_verify(database_url):
    conn = await asyncpg.connect(dsn_with_user(database_url, VERIFY_DB_ROLE))
    yield conn
    await conn.close()


@pytest.mark.parametrize("statement", REFUSED)
async def test_verify_role_is_refused_personal_data_and_keys(as_verify, statement):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_verify.execute(statement)


@pytest.mark.parametrize("statement", ALLOWED)
async def test_verify_role_reads_what_verification_needs(as_verify, statement):
    await as_verify.execute(statement)


async def test_verify_role_is_not_the_owner(as_verify):
    assert await as_verify.fetchval("SELECT current_user") == VERIFY_DB_ROLE
    assert not await as_verify.fetchval("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")


def test_verify_svc_is_configured_without_personal_data_keys(database_url):
    env = verify_svc_env(service_env(database_url))
    assert not set(PERSONAL_DATA_KEYS) & set(env)
    config = load(VerifyConfig, env)
    assert not hasattr(config, "pii_keys") and not hasattr(config, "pii_pepper")
    for needs_keys in (ResultConfig, PublishConfig):  # the services that handle personal data do need them
        with pytest.raises(ConfigError, match="PII_KEYS"):
            load(needs_keys, env)
