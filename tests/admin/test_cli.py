"""The operator CLI, run as a real process against a real database."""

import hashlib
import json
import os
import subprocess
import sys

import asyncpg
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.admin", "--database-url", database_url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(database_url: str, *args: str):
    proc = cli(database_url, *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def test_organisation_token_lifecycle(database_url):
    org = ok(
        database_url, "org", "create", "--name", "Trung tâm Y tế Lục Nam", "--kind", "SAMPLING_UNIT", "--province", "24"
    )
    issued = ok(
        database_url,
        "credential",
        "issue",
        "--principal-kind",
        "ORGANISATION",
        "--principal-id",
        org["id"],
        "--role",
        "SAMPLER",
    )
    token = issued["token"]
    assert token.startswith("ctk_") and len(token) >= 40

    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchrow("SELECT * FROM credentials WHERE id = $1::uuid", issued["credential_id"])
        assert bytes(stored["secret_sha256"]) == hashlib.sha256(token.encode()).digest()
        # The token itself is stored nowhere: not in credentials, not in the audit log.
        dump = await conn.fetchval("SELECT string_agg(t::text, '') FROM (SELECT * FROM credentials) t")
        audit = await conn.fetchval("SELECT string_agg(a::text, '') FROM audit_log a")
        assert token not in dump and token not in audit
        assert "ISSUE_CREDENTIAL" in audit
    finally:
        await conn.close()

    listed = ok(database_url, "credential", "list", "--principal-id", org["id"])
    assert [c["id"] for c in listed] == [issued["credential_id"]]
    assert "token" not in json.dumps(listed)
    revoked = ok(database_url, "credential", "revoke", issued["credential_id"])
    assert revoked["revoked_at"] and revoked["id"] == issued["credential_id"]


def test_bad_input_gets_clear_message_and_exit_code_1(database_url):
    proc = cli(database_url, "org", "create", "--name", "X", "--kind", "LAB", "--province", "245")
    assert proc.returncode == 1
    assert "province_code" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(database_url, "credential", "revoke", "not-a-uuid")
    assert proc.returncode == 1 and "credential_id" in proc.stderr


def test_wrong_role_for_organisation_kind_is_refused(database_url):
    unit = ok(
        database_url, "org", "create", "--name", "Trạm Y tế Yên Dũng", "--kind", "SAMPLING_UNIT", "--province", "24"
    )
    proc = cli(
        database_url,
        "credential",
        "issue",
        "--principal-kind",
        "ORGANISATION",
        "--principal-id",
        unit["id"],
        "--role",
        "LAB",
    )
    assert proc.returncode == 1 and "SAMPLING_UNIT organisation cannot hold role LAB" in proc.stderr
    lab = ok(database_url, "org", "create", "--name", "Lab Bắc Giang CDC", "--kind", "LAB", "--province", "24")
    ok(
        database_url,
        "credential",
        "issue",
        "--principal-kind",
        "ORGANISATION",
        "--principal-id",
        lab["id"],
        "--role",
        "SAMPLER",
    )  # a lab may take samples too
    proc = cli(
        database_url, "credential", "issue", "--principal-kind", "PARTNER", "--principal-id", lab["id"], "--role", "LAB"
    )
    assert proc.returncode == 1 and "cannot hold role LAB" in proc.stderr


def test_usage_errors_exit_2(database_url):
    proc = cli(database_url, "org", "create", "--name", "x")
    assert proc.returncode == 2


@pytest.mark.parametrize("area", ["org", "partner", "device", "operator"])
def test_list_commands_print_json(database_url, area):
    assert isinstance(ok(database_url, area, "list"), list)


def test_unreachable_database_is_a_clear_error():
    proc = cli("postgresql://postgres@127.0.0.1:1/none", "org", "list")
    assert proc.returncode == 1 and "cannot reach the database" in proc.stderr
