"""result_svc and publish_svc hold least privilege: each logs in as its own database role
(migrations/0010_service_roles.sql) granted only what its SQL uses, and neither is the schema owner. Every
other test runs both services as these roles (tests/conftest.py result_svc_env, publish_svc_env), so a
grant a service lacks fails the suite; these check that what each must not have stays out."""

import asyncpg
import pytest

from tests.conftest import PUBLISH_DB_ROLE, RESULT_DB_ROLE, VERIFY_DB_ROLE
from tools.servers import dsn_with_user

# result_svc with AdminService: the system of record and the registry, never what publishing produced (sealed
# QR codes, feed payloads), who read what, the relay's state, nor a signing key's private half.
RESULT_REFUSED = [
    "SELECT payload_enc FROM feed_events",
    "SELECT * FROM feed_events",
    "SELECT qr_enc FROM certificates",
    "SELECT person_id FROM certificates",
    "SELECT * FROM certificates",
    "SELECT private_key_enc FROM signing_keys",
    "SELECT private_key_ref FROM signing_keys",
    "SELECT * FROM personal_data_reads",
    "SELECT * FROM partner_cursors",
    "SELECT * FROM relay_lease",
    "SELECT * FROM outbox",
    "SELECT * FROM audit_log",
    "INSERT INTO verification_counts (hour) VALUES (now())",
    "SELECT * FROM schema_migrations",
    "UPDATE certificates SET status = 'VALID'",
    "INSERT INTO feed_events (position) VALUES (1)",
    "UPDATE outbox SET relayed_at = now()",
    "UPDATE relay_lease SET epoch = epoch + 1",
    "UPDATE partner_cursors SET acked_position = 0",
    "SELECT * FROM audit_log",  # retention reads only ids and times
    "UPDATE audit_log SET action = ''",
    "DELETE FROM results",
    "DELETE FROM persons",
    "UPDATE persons SET created_at = now()",
    "UPDATE results SET outcome = 'NEGATIVE'",
    "UPDATE signing_keys SET certificate_der = '\\x00'",
    "DELETE FROM signing_keys",
    "UPDATE province_rules SET disabled = true",
    "DELETE FROM credentials",
    "UPDATE credentials SET role = 'OPERATOR'",
    "DELETE FROM trust_list_changes",
    "INSERT INTO value_sets (name) VALUES ('x')",
    "UPDATE value_sets SET set_values = '{}'",
    "DELETE FROM value_sets",
    "SELECT imported_by FROM value_sets",
    "CREATE TABLE intruder (id int)",
]

RESULT_ALLOWED = [
    "SELECT full_name_enc, identity_hash FROM persons LIMIT 1",
    "SELECT * FROM samples LIMIT 1",
    "SELECT * FROM results LIMIT 1",
    "SELECT * FROM credentials LIMIT 1",
    "SELECT id, state, certificate_der FROM signing_keys LIMIT 1",
    "SELECT count(*), max(expires_at) FROM certificates WHERE signing_key_id IS NOT NULL",
    "SELECT * FROM province_rules LIMIT 1",
    "SELECT * FROM trusted_certificates LIMIT 1",
    "DELETE FROM idempotency_keys WHERE created_at < '-infinity'",
    "SELECT name, version, value_set_date, set_values, content_sha256 FROM value_sets LIMIT 1",
    # StatisticsService (migrations/0016): the verdict counts, and the daily summary it maintains.
    "SELECT * FROM verification_counts LIMIT 1",
    "DELETE FROM statistics_daily WHERE day < '2000-01-01'",
    "UPDATE statistics_progress SET refreshed_at = refreshed_at",
    # Retention (migrations/0017): erasing persons and their samples' hashes, deleting old audit rows.
    "UPDATE persons SET person_key_hash = NULL, identity_hash = NULL, phone_hash = NULL, dob_hash = NULL, "
    "identity_enc = NULL, full_name_enc = NULL, family_name_enc = NULL, given_name_enc = NULL, "
    "date_of_birth_enc = NULL, phone_enc = NULL, erased_at = now() WHERE erased_at IS NULL AND false",
    "UPDATE samples SET registration_hash = NULL, lookup_identity_hash = NULL, lookup_phone_hash = NULL, "
    "lookup_dob_hash = NULL WHERE false",
    "DELETE FROM audit_log WHERE at < '-infinity'",
]

# publish_svc: reads the record to publish it and signs with the active key, but changes none of it.
PUBLISH_REFUSED = [
    "UPDATE persons SET full_name_enc = '\\x00'",
    "DELETE FROM persons",
    "SELECT person_key_hash FROM persons",
    "SELECT identity_hash, phone_hash, dob_hash FROM persons",
    "SELECT registration_hash FROM samples",
    "UPDATE samples SET state = 'WITHDRAWN'",
    "UPDATE results SET outcome = 'NEGATIVE'",
    "INSERT INTO results (id) VALUES (gen_random_uuid())",
    "UPDATE pools SET state = 'WITHDRAWN'",
    "INSERT INTO credentials (id) VALUES (gen_random_uuid())",
    "UPDATE credentials SET revoked_at = NULL",
    "SELECT label FROM credentials",
    "INSERT INTO organisations (id) VALUES (gen_random_uuid())",
    "INSERT INTO partners (id) VALUES (gen_random_uuid())",
    "UPDATE partners SET personal_data_access = true",
    "UPDATE signing_keys SET state = 'ACTIVE'",
    "INSERT INTO signing_keys (id) VALUES (gen_random_uuid())",
    "DELETE FROM signing_keys",
    "INSERT INTO trusted_certificates (id) VALUES (gen_random_uuid())",
    "UPDATE trusted_certificates SET removed_at = NULL",
    "INSERT INTO trust_list_changes (kid) VALUES ('\\x00')",
    "INSERT INTO province_rules (rule_id) VALUES ('x')",
    "UPDATE province_rules SET disabled = true",
    "INSERT INTO outbox (kind) VALUES ('x')",
    "DELETE FROM outbox",
    "UPDATE feed_events SET person_id = NULL",
    "UPDATE feed_events SET kind = ''",
    "SELECT erased_at FROM persons",  # an erased person shows as NULL sealed columns, which it reads
    "DELETE FROM feed_events",
    "DELETE FROM certificates",
    "UPDATE certificates SET uvci = ''",
    "SELECT * FROM personal_data_reads",
    "UPDATE personal_data_reads SET purpose = 'x'",
    "SELECT * FROM audit_log",
    "INSERT INTO audit_log (action) VALUES ('x')",
    "DELETE FROM idempotency_keys",
    "SELECT * FROM verification_counts",
    "SELECT * FROM schema_migrations",
    "SELECT imported_by FROM value_sets",  # it reads the current device list for the bundle, not who imported
    "INSERT INTO value_sets (name) VALUES ('x')",
    "CREATE TABLE intruder (id int)",
]

PUBLISH_ALLOWED = [
    "SELECT name, version, value_set_date, set_values, content_sha256 FROM value_sets LIMIT 1",
    "SELECT full_name_enc, date_of_birth_enc FROM persons LIMIT 1",
    "SELECT lookup_phone_hash, lookup_dob_hash FROM samples LIMIT 1",
    "SELECT * FROM results LIMIT 1",
    "SELECT private_key_enc FROM signing_keys WHERE state = 'ACTIVE'",
    "SELECT qr_enc FROM certificates LIMIT 1",
    "SELECT payload_enc FROM feed_events LIMIT 1",
    "SELECT * FROM relay_lease",
    "SELECT * FROM partner_cursors LIMIT 1",
    # Retention (migrations/0017): QR texts erased, feed payloads redacted, old read-audit rows deleted.
    "UPDATE certificates SET qr_enc = NULL WHERE issued_at < '-infinity'",
    "UPDATE feed_events SET payload_enc = payload_enc, redacted_at = now() WHERE relayed_at < '-infinity'",
    "DELETE FROM personal_data_reads WHERE at < '-infinity'",
]


async def _connect(database_url: str, role: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn_with_user(database_url, role))


@pytest.fixture(scope="module")
async def as_result(database_url):
    conn = await _connect(database_url, RESULT_DB_ROLE)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def as_publish(database_url):
    conn = await _connect(database_url, PUBLISH_DB_ROLE)
    yield conn
    await conn.close()


async def _refused(conn: asyncpg.Connection, statement: str) -> None:
    # In a transaction rolled back either way: an allowed write would change nothing.
    tx = conn.transaction()
    await tx.start()
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await tx.rollback()


async def _allowed(conn: asyncpg.Connection, statement: str) -> None:
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(statement)
    finally:
        await tx.rollback()


@pytest.mark.parametrize("statement", RESULT_REFUSED)
async def test_result_role_is_refused_what_publishing_owns(as_result, statement):
    await _refused(as_result, statement)


@pytest.mark.parametrize("statement", RESULT_ALLOWED)
async def test_result_role_reads_and_writes_the_record(as_result, statement):
    await _allowed(as_result, statement)


@pytest.mark.parametrize("statement", PUBLISH_REFUSED)
async def test_publish_role_cannot_change_the_record(as_publish, statement):
    await _refused(as_publish, statement)


@pytest.mark.parametrize("statement", PUBLISH_ALLOWED)
async def test_publish_role_reads_what_publishing_needs(as_publish, statement):
    await _allowed(as_publish, statement)


@pytest.mark.parametrize("role", [RESULT_DB_ROLE, PUBLISH_DB_ROLE])
async def test_service_roles_are_not_the_owner(database_url, role):
    conn = await _connect(database_url, role)
    try:
        assert await conn.fetchval("SELECT current_user") == role
        assert not await conn.fetchval(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        )
        assert owned == 0
        # No role is a member of another (it would inherit its grants).
        assert not await conn.fetchval(
            "SELECT count(*) FROM pg_auth_members WHERE member = (SELECT oid FROM pg_roles WHERE rolname = $1)", role
        )
    finally:
        await conn.close()


async def test_each_service_table_grant_names_a_service_role(database_url):
    """Every table of the schema is granted to some service role or deliberately to none: a table a later
    migration adds without thinking about roles shows up here."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = {
            r["relname"]
            for r in await conn.fetch(
                "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            )
        }
        granted = {
            r["table_name"]
            for r in await conn.fetch(
                """SELECT DISTINCT table_name FROM information_schema.role_table_grants
                   WHERE grantee = ANY($1::text[])
                   UNION SELECT DISTINCT table_name FROM information_schema.role_column_grants
                   WHERE grantee = ANY($1::text[])""",
                [RESULT_DB_ROLE, PUBLISH_DB_ROLE, VERIFY_DB_ROLE],
            )
        }
    finally:
        await conn.close()
    owner_only = {"schema_migrations"}
    assert tables - granted == owner_only
