"""`make bench-retention`: the retention job's passes over a generated record, as the services run them.

Generates into a scratch database of the Postgres at DATABASE_URL, with INSERT … SELECT from
generate_series: --persons persons (default 1,000,000) with two samples each, a result per sample, a
certificate per result (a sealed-size dummy QR) and a feed event per result whose payload is a real sealed
ResultEvent with a person (the redaction opens and re-seals every one). Half the persons had their last
activity 200 days ago (due for erasure, with feed events and certificates as old), half 10 days ago (kept;
their feed events are due for redaction only when older than the feed period: they are not). Then it runs
the services' own retention passes in this process, each step as its service's database role, exactly as
the background job does: result_svc's (persons, audit_log), then publish_svc's (certificate_qr,
feed_payloads, personal_data_reads); then each again with nothing due (the hourly cost in steady state).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MACHINE, bench_platform  # noqa: E402
from services.common.config import parse_keyring, parse_secret_bytes  # noqa: E402
from services.common.db import connect, create_pool  # noqa: E402
from services.common.pii import PiiCipher  # noqa: E402
from services.common.retention import RetentionPolicy, run_step  # noqa: E402
from services.gen.covidtest.publish.v1 import publish_service_pb2 as pb  # noqa: E402
from services.gen.covidtest.type.v1 import certificate_pb2, person_pb2, testing_pb2  # noqa: E402
from services.publish_svc import retention as publish_retention  # noqa: E402
from services.result_svc import retention as result_retention  # noqa: E402
from tests.conftest import PUBLISH_DB_ROLE, RESULT_DB_ROLE  # noqa: E402
from tools.servers import dsn_with_user  # noqa: E402

POLICY = RetentionPolicy(
    personal_data=timedelta(days=180), feed_payload=timedelta(days=30), audit=timedelta(days=1825), batch_size=500
)


def uuid_of(expr: str, space: int) -> str:
    """A UUID from an integer expression, in a number space of its own."""
    return f"lpad(to_hex(({space}::bigint << 40) + ({expr})), 32, '0')::uuid"


def sample_event(pii: PiiCipher) -> bytes:
    """A sealed ResultEvent the size of a real one: a person and a certificate with a QR text."""
    event = pb.ResultEvent(
        position=1,
        kind=testing_pb2.RESULT_EVENT_KIND_RELEASED,
        person=person_pb2.Person(
            full_name="Nguyễn Văn An", date_of_birth="1985-03-14", phone="+84912345678", province_code="24",
            district_code="213", family_name="Nguyễn", given_name="Văn An",
            identity=person_pb2.PersonIdentity(
                type=person_pb2.IDENTITY_DOCUMENT_TYPE_CITIZEN_ID, number="024085000123", country="VN"
            ),
        ),
        result=testing_pb2.Result(result_id="00000000-0000-0000-0000-000000000001", sample_barcode="B1"),
        certificate=certificate_pb2.Certificate(certificate_id="URN:UVCI:01:VN:X#Y", qr="HC1:" + "A" * 560),
    )  # fmt: skip
    return pii.seal_bytes("feed.event", event.SerializeToString())


async def generate(dsn: str, pii: PiiCipher, persons: int, chunk: int) -> float:
    started = time.perf_counter()
    conn = await connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET session_replication_role = replica")  # consistent by construction
        unit, lab, key = uuid_of("0", 1), uuid_of("1", 1), uuid_of("0", 2)
        await conn.execute(
            f"""INSERT INTO organisations (id, name, kind, province_code)
                VALUES ({unit}, 'unit', 'SAMPLING_UNIT', '24'), ({lab}, 'lab', 'LAB', '24')"""
        )
        await conn.execute(
            f"""INSERT INTO signing_keys (id, kid, algorithm, certificate_der, private_key_ref, state, not_before,
                                          not_after)
                VALUES ({key}, '\\x0000000000000000', 'ES256', '\\x00', 'bench', 'ACTIVE', now() - interval '1 year',
                        now() + interval '1 year')"""
        )
        payload = sample_event(pii)
        for first in range(0, persons, chunk):
            last = min(persons, first + chunk) - 1
            # Person q: due when even (last activity 200 days ago), kept when odd (10 days ago).
            ages = f"""SELECT q, CASE WHEN q % 2 = 0 THEN interval '200 days' ELSE interval '10 days' END AS age
                       FROM generate_series({first}::bigint, {last}::bigint) q"""
            await conn.execute(
                f"""INSERT INTO persons (id, person_key_hash, identity_hash, phone_hash, dob_hash, identity_enc,
                                         full_name_enc, family_name_enc, given_name_enc, date_of_birth_enc, phone_enc,
                                         province_code, district_code, created_at, updated_at)
                    SELECT {uuid_of("q", 3)}, decode(lpad(to_hex(q), 64, '0'), 'hex'), '\\x01', '\\x02', '\\x03',
                           decode(repeat('ab', 60), 'hex'), decode(repeat('ab', 60), 'hex'),
                           decode(repeat('ab', 40), 'hex'), decode(repeat('ab', 40), 'hex'),
                           decode(repeat('ab', 40), 'hex'), decode(repeat('ab', 40), 'hex'),
                           '24', '213', now() - age, now() - age
                    FROM ({ages}) a"""
            )
            # Samples 2q and 2q + 1, each with a result, a certificate and a feed event (from an outbox row).
            shape = f"""SELECT q * 2 + k AS j, q, age FROM ({ages}) a, generate_series(0, 1) k"""
            await conn.execute(
                f"""INSERT INTO samples (id, org_id, barcode, person_id, lab_org_id, test_type, collected_at,
                                         sampling_site, registration_hash, lookup_identity_hash, lookup_phone_hash,
                                         lookup_dob_hash, state, registered_at, updated_at)
                    SELECT {uuid_of("j", 4)}, {unit}, 'B' || j, {uuid_of("q", 3)}, {lab}, 'NAAT', now() - age, 's',
                           '\\x04', '\\x01', '\\x02', '\\x03', 'RESULTED', now() - age, now() - age
                    FROM ({shape}) s"""
            )
            await conn.execute(
                f"""INSERT INTO results (id, sample_id, version, outcome, state, lab_org_id, tested_at, recorded_at)
                    SELECT {uuid_of("j", 5)}, {uuid_of("j", 4)}, 1, 'NEGATIVE', 'RELEASED', {lab}, now() - age,
                           now() - age
                    FROM ({shape}) s"""
            )
            await conn.execute(
                f"""INSERT INTO certificates (id, uvci, result_id, person_id, signing_key_id, qr_enc, issued_at,
                                              expires_at)
                    SELECT {uuid_of("j", 6)}, 'URN:UVCI:01:VN:' || j, {uuid_of("j", 5)}, {uuid_of("q", 3)}, {key},
                           decode(repeat('ab', 600), 'hex'), now() - age, now() - age + interval '72 hours'
                    FROM ({shape}) s"""
            )
            await conn.execute(
                f"""INSERT INTO outbox (id, kind, result_id, sample_id, created_at, relayed_at)
                    SELECT j + 1, 'RELEASED', {uuid_of("j", 5)}, {uuid_of("j", 4)}, now() - age, now() - age
                    FROM ({shape}) s"""
            )
            await conn.execute(
                f"""INSERT INTO feed_events (position, outbox_id, kind, person_id, result_id, certificate_id,
                                             payload_enc, committed_at, relayed_at)
                    SELECT j + 1, j + 1, 'RELEASED', {uuid_of("q", 3)}, {uuid_of("j", 5)}, {uuid_of("j", 6)}, $1,
                           now() - age, now() - age
                    FROM ({shape}) s""",
                payload,
            )
            print(f"  persons {last + 1:>10,} ({time.perf_counter() - started:.0f} s)", flush=True)
        await conn.execute("SELECT setval('outbox_id_seq', $1)", persons * 2)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return round(time.perf_counter() - started, 1)


async def timed_pass(dsn: str, role: str, steps) -> dict:
    """A pass over `steps` as `role`, step by step (what run_pass does), each step timed."""
    pool = await create_pool(dsn_with_user(dsn, role), min_size=1, max_size=2)
    try:
        out = {}
        for step in steps:
            started = time.perf_counter()
            rows = await run_step(pool, step, POLICY)
            out[step.kind] = {"rows": rows, "seconds": round(time.perf_counter() - started, 2)}
        return out
    finally:
        await pool.close()


async def main(args) -> dict:
    async with bench_platform("retention") as (dsn, secrets, _services):
        pii = PiiCipher(parse_keyring(secrets["PII_KEYS"]), parse_secret_bytes(secrets["PII_PEPPER"]))
        print(f"generating {args.persons:,} persons …", flush=True)
        generation_s = await generate(dsn, pii, args.persons, args.chunk)
        out: dict = {"generation_s": generation_s}
        for label, role, steps in (
            ("result_svc", RESULT_DB_ROLE, result_retention.STEPS),
            ("publish_svc", PUBLISH_DB_ROLE, publish_retention.steps(pii)),
        ):
            first = await timed_pass(dsn, role, steps)
            print(f"{label}: first pass {first}", flush=True)
            steady = await timed_pass(dsn, role, steps)
            print(f"{label}: pass with nothing due {steady}", flush=True)
            out[label] = {
                "first_pass": first,
                "nothing_due_pass_s": round(sum(v["seconds"] for v in steady.values()), 2),
            }
        conn = await connect(dsn)
        try:
            left = await conn.fetchval("SELECT count(*) FROM persons WHERE erased_at IS NULL")
        finally:
            await conn.close()
        out["persons_kept"] = left
        return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000, help="persons generated (half of them due)")
    parser.add_argument("--chunk", type=int, default=100_000, help="persons per INSERT statement")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    result, publish = figures["result_svc"]["first_pass"], figures["publish_svc"]["first_pass"]

    def rate(step: dict) -> int:
        return round(step["rows"] / max(step["seconds"], 1e-9))

    print(
        json.dumps(
            {
                "bench": "retention",
                "persons": arguments.persons,
                "persons_erased": result["persons"]["rows"],
                "persons_erase_s": result["persons"]["seconds"],
                "persons_erased_per_s": rate(result["persons"]),
                "certificate_qr_erased": publish["certificate_qr"]["rows"],
                "certificate_qr_erased_per_s": rate(publish["certificate_qr"]),
                "feed_payloads_redacted": publish["feed_payloads"]["rows"],
                "feed_payloads_redacted_per_s": rate(publish["feed_payloads"]),
                "result_nothing_due_pass_s": figures["result_svc"]["nothing_due_pass_s"],
                "publish_nothing_due_pass_s": figures["publish_svc"]["nothing_due_pass_s"],
                "persons_kept": figures["persons_kept"],
                "generation_s": figures["generation_s"],
                "machine": MACHINE,
            }
        )
    )
