"""What operators watch about the feed, measured by publish_svc from the real database (observer), and the
relay refusing to sign with a signing certificate that is not valid now: the events wait, one log line, the
metric says so, and they go out once a valid key is active."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import REGISTRY

from services.common.auth import Role
from services.common.db import connect
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.hcert import keys as hkeys
from services.registry import signing_keys
from services.registry.key_sealing import SigningKeySealer, parse_kek_public
from tests.conftest import make_principal, start_publish_svc
from tests.publish_svc.conftest import activate_new_key, running_platform

OBSERVE = {"METRICS_OBSERVE_SECONDS": "0.1"}


def sample_value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def until(predicate, timeout_s: float = 15, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def idle_relay_platform(own_database):
    """result_svc and a publish_svc that does not relay, on a database of its own: whatever is recorded stays
    in the outbox."""
    dsn, _pool = own_database
    async with running_platform(dsn, RELAY_ENABLED="false", **OBSERVE) as platform:
        platform.dsn = dsn
        yield platform


async def test_backlog_and_its_age_then_partner_lag_once_relayed(idle_relay_platform):
    platform = idle_relay_platform
    partner = await make_principal(platform.dsn, Role.PARTNER)
    await platform.release(3)  # three registrations and three results, none relayed
    await until(lambda: (sample_value("covidtest_relay_backlog_events") or 0) >= 6, what="the backlog")
    await until(lambda: (sample_value("covidtest_relay_backlog_oldest_seconds") or 0) > 0, what="its age")

    relaying = await start_publish_svc(platform.env, RELAY_ENABLED="true", RELAY_POLL_SECONDS="0.05", **OBSERVE)
    try:
        await until(lambda: sample_value("covidtest_relay_backlog_events") == 0, what="the backlog relayed")
        head = await platform.head()
        assert head >= 6
        lag = await until(
            lambda: sample_value("covidtest_partner_lag_events", partner_id=partner["id"]) == head and head,
            what="the partner's lag",
        )
        assert lag == head  # nothing acknowledged yet: the whole feed is the partner's lag
        assert sample_value("covidtest_relay_backlog_oldest_seconds") == 0
    finally:
        await relaying.stop(0)


async def test_active_key_certificate_expiry_is_measured(idle_relay_platform):
    key = await signing_keys_row(idle_relay_platform.dsn, idle_relay_platform.key.id)
    expected = key["not_after"].timestamp()
    await until(
        lambda: sample_value("covidtest_signing_certificate_not_after_seconds", purpose="DCC") == expected,
        what="the DCC key's expiry",
    )


async def signing_keys_row(dsn: str, key_id):
    conn = await connect(dsn)
    try:
        return await conn.fetchrow("SELECT not_after FROM signing_keys WHERE id = $1", key_id)
    finally:
        await conn.close()


async def age_active_key(dsn: str, env: dict[str, str]) -> None:
    """Import and activate a key, then give it a certificate of the same key that expired yesterday: what an
    ACTIVE key's row looks like once its certificate's not_after has passed."""
    key = hkeys.generate_private_key("ES256")
    valid = hkeys.make_certificate(key, "ES256", timedelta(days=30))
    expired = hkeys.make_certificate(
        key, "ES256", timedelta(days=5), not_before=datetime.now(UTC).replace(microsecond=0) - timedelta(days=6)
    )
    sealer = SigningKeySealer(parse_kek_public(env["SIGNING_KEYS_KEK_PUBLIC"]))
    conn = await connect(dsn)
    try:
        async with conn.transaction():
            row = await signing_keys.import_key(
                conn, None, sealer, hkeys.private_key_pem(key), valid.public_bytes(Encoding.PEM)
            )
            await signing_keys.activate(conn, None, str(row.id))
            await conn.execute(
                "UPDATE signing_keys SET certificate_der = $2, not_after = $3, kid = $4 WHERE id = $1",
                row.id,
                expired.public_bytes(Encoding.DER),
                expired.not_valid_after_utc,
                hkeys.kid_of(expired.public_bytes(Encoding.DER)),
            )
            await conn.execute("NOTIFY signing_keys")
    finally:
        await conn.close()


async def test_relay_refuses_an_expired_signing_certificate_and_the_events_wait(database_url, caplog):
    async with running_platform(database_url, **OBSERVE) as platform:
        partner = (await make_principal(database_url, Role.PARTNER, personal_data_access=True))["token"]
        await age_active_key(database_url, platform.env)
        start = await platform.head() + 1
        await platform.release(2)
        await until(lambda: sample_value("covidtest_relay_signing_blocked") == 1, what="the relay to refuse")
        refusals = [r for r in caplog.records if "certificate is not valid now" in r.getMessage()]
        assert len(refusals) == 1, "one log line per episode, not one per poll"
        await until(lambda: (sample_value("covidtest_relay_backlog_events") or 0) >= 2, what="the waiting events")
        published = await platform.collect(partner, start, 2, pending=True)  # what came before the first result
        assert all(e.kind == t.RESULT_EVENT_KIND_SAMPLE_REGISTERED for e in published)

        await activate_new_key(database_url, platform.env)  # the operator's fix
        events = await platform.collect(partner, start, 2)
        assert all(e.certificate.qr.startswith("HC1:") for e in events)
        assert sample_value("covidtest_relay_signing_blocked") == 0
