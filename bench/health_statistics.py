"""`make bench-statistics`: StatisticsService at 10 million results, over real gRPC.

Generates the record into a scratch database of the Postgres at DATABASE_URL with INSERT … SELECT from
generate_series (personal-data columns hold dummy bytes): --results samples and results (default
10,000,000) collected over 366 days in 10 provinces × 10 districts × 10 labs, a quarter of them in pools
of 10 (1 pool in 20 positive), 1 individual result in 37 positive, turnaround 2-48 h; 1,000 persons per
province and district; --waiting samples still waiting for their result (collected in the last 72 h);
and hourly verdict counts of 30 checkpoint devices per province for the whole year. Then it builds the
daily summary from scratch (timed), starts `python -m services.result_svc` and, as province 24's
HEALTH_AUTHORITY, times each RPC over real gRPC: the first page (1000 rows) of a full year repeated, and
a walk over every page; then records 1,000 results now and times the incremental refresh. The last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MACHINE, bench_platform, percentile  # noqa: E402
from services.common.auth import PrincipalKind, Role  # noqa: E402
from services.common.db import connect  # noqa: E402
from services.gen.covidtest.statistics.v1 import statistics_service_pb2 as pb  # noqa: E402
from services.gen.covidtest.statistics.v1 import statistics_service_pb2_grpc  # noqa: E402
from services.registry import principals  # noqa: E402
from services.statistics import summary  # noqa: E402
from tests.conftest import bearer  # noqa: E402

PROVINCES, LABS, DISTRICTS, DAYS, DEVICES = 10, 10, 10, 366, 30
START = "2021-01-01 00:00:00+07"
YEAR = pb.DayRange(from_date="2021-01-01", to_date="2022-01-01")  # 366 days


def uuid_of(expr: str, space: int) -> str:
    """A UUID from an integer expression, in a number space of its own (monotonic: appends to the index)."""
    return f"lpad(to_hex(({space}::bigint << 40) + ({expr})), 32, '0')::uuid"


async def generate(dsn: str, results: int, waiting: int, chunk: int) -> dict[str, float]:
    per_day = -(-results // DAYS)
    timings: dict[str, float] = {}
    conn = await connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        # The rows are consistent by construction: skip the per-row foreign-key triggers of a bulk load.
        await conn.execute("SET session_replication_role = replica")
        started = time.perf_counter()
        lab, unit, dev = uuid_of("p * 10 + l", 1), uuid_of("p", 2), uuid_of("p * 100 + k", 3)
        await conn.execute(
            f"""INSERT INTO organisations (id, name, kind, province_code)
                SELECT {lab}, 'lab ' || p || '-' || l, 'LAB', (20 + p)::text
                FROM generate_series(0, {PROVINCES - 1}) p, generate_series(0, {LABS - 1}) l
                UNION ALL
                SELECT {unit}, 'unit ' || p, 'SAMPLING_UNIT', (20 + p)::text
                FROM generate_series(0, {PROVINCES - 1}) p"""
        )
        await conn.execute(
            f"""INSERT INTO checkpoint_devices (id, name, province_code)
                SELECT {dev}, 'device ' || p || '-' || k, (20 + p)::text
                FROM generate_series(0, {PROVINCES - 1}) p, generate_series(0, {DEVICES - 1}) k"""
        )
        # Person q lives in province q % 10, district (q / 10) % 10.
        persons = PROVINCES * DISTRICTS * 1000
        await conn.execute(
            f"""INSERT INTO persons (id, person_key_hash, phone_hash, dob_hash, full_name_enc, date_of_birth_enc,
                                     province_code, district_code)
                SELECT {uuid_of("q", 4)}, decode(lpad(to_hex(q), 64, '0'), 'hex'), '\\x00', '\\x00', '\\x00', '\\x00',
                       (20 + q % 10)::text, (100 + (q / 10) % 10)::text
                FROM generate_series(0, {persons - 1}) q"""
        )
        # Sample j: day j / per_day; within the day w = j % per_day: province w % 10, lab (w / 10) % 10,
        # district (w / 100) % 10. Pooled when (w / 1000) % 4 = 0: pool (day, w / 1000, w % 100) holds 10
        # samples of one province and lab, one per district.
        pools = f"""SELECT {uuid_of("day * 100000 + b * 100 + r", 5)} AS id, {uuid_of("r % 10", 2)} AS org,
                           {uuid_of("(r % 10) * 10 + (r / 10) % 10", 1)} AS lab,
                           (day * 100000 + b * 100 + r) % 20 = 0 AS positive
                    FROM generate_series(0, {DAYS - 1}) day, generate_series(0, {(per_day - 1) // 1000}) b,
                         generate_series(0, 99) r
                    WHERE b % 4 = 0 AND day * {per_day} + b * 1000 + r < {results}"""
        await conn.execute(
            f"""INSERT INTO pools (id, org_id, barcode, lab_org_id, test_type, state, outcome, resulted_at)
                SELECT id, org, id::text, lab, 'NAAT', CASE WHEN positive THEN 'RETEST_REQUIRED' ELSE 'RESULTED' END,
                       CASE WHEN positive THEN 'POSITIVE' ELSE 'NEGATIVE' END, now()
                FROM ({pools}) x"""
        )
        timings["setup_s"] = time.perf_counter() - started
        for first in range(0, results, chunk):
            last = min(results, first + chunk) - 1
            t0 = time.perf_counter()
            series = f"generate_series({first}::bigint, {last}::bigint)"
            shape = f"""SELECT j, j / {per_day} AS day, j % {per_day} AS w FROM {series} j"""
            fields = f"""SELECT j, day, w, w % 10 AS p, (w / 10) % 10 AS l, (w / 100) % 10 AS d,
                                (w / 1000) % 4 = 0 AS pooled, day * 100000 + (w / 1000) * 100 + w % 100 AS pool_key,
                                '{START}'::timestamptz + make_interval(days => day::int)
                                    + make_interval(secs => (w * 86400.0 / {per_day})) AS collected
                         FROM ({shape}) s"""
            await conn.execute(
                f"""INSERT INTO samples (id, org_id, barcode, person_id, pool_id, lab_org_id, test_type, collected_at,
                                         sampling_site, registration_hash, lookup_dob_hash, lookup_phone_hash, state)
                    SELECT {uuid_of("j", 6)}, {uuid_of("p", 2)}, 'B' || j,
                           {uuid_of("((j / 1000) % 1000) * 100 + d * 10 + p", 4)},
                           CASE WHEN pooled THEN {uuid_of("pool_key", 5)} END, {uuid_of("p * 10 + l", 1)}, 'NAAT',
                           collected, 's', '\\x00', '\\x00', '\\x00',
                           CASE WHEN pooled AND pool_key % 20 = 0 THEN 'RETEST_REQUIRED' ELSE 'RESULTED' END
                    FROM ({fields}) f"""
            )
            await conn.execute(
                f"""INSERT INTO results (id, sample_id, version, outcome, state, lab_org_id, pool_id, tested_at,
                                         recorded_at)
                    SELECT {uuid_of("j", 7)}, {uuid_of("j", 6)}, 1,
                           CASE WHEN (pooled AND pool_key % 20 = 0) OR (NOT pooled AND j % 37 = 0)
                                THEN 'POSITIVE' ELSE 'NEGATIVE' END,
                           CASE WHEN pooled AND pool_key % 20 = 0 THEN 'RETEST_REQUIRED' ELSE 'RELEASED' END,
                           {uuid_of("p * 10 + l", 1)}, CASE WHEN pooled THEN {uuid_of("pool_key", 5)} END,
                           collected + interval '1 hour',
                           collected + make_interval(secs => 7200 + (j * 7919) % 165600)
                    FROM ({fields}) f"""
            )
            print(f"  results {last + 1:>11,} ({time.perf_counter() - t0:.1f} s for this chunk)", flush=True)
        timings["results_s"] = time.perf_counter() - started - timings["setup_s"]
        t0 = time.perf_counter()
        await conn.execute(
            f"""INSERT INTO samples (id, org_id, barcode, person_id, lab_org_id, test_type, collected_at, sampling_site,
                                     registration_hash, lookup_dob_hash, lookup_phone_hash)
                SELECT {uuid_of("j", 8)}, {uuid_of("j % 10", 2)}, 'W' || j, {uuid_of("j % 1000", 4)},
                       {uuid_of("(j % 10) * 10 + (j / 10) % 10", 1)}, 'NAAT',
                       now() - make_interval(secs => (j * 7919) % 259200), 's', '\\x00', '\\x00', '\\x00'
                FROM generate_series(0, {waiting - 1}) j"""
        )
        await conn.execute(
            f"""INSERT INTO verification_counts (hour, checkpoint_id, verdict, count)
                SELECT '{START}'::timestamptz + make_interval(hours => h), {uuid_of("p * 100 + k", 3)}, v,
                       CASE WHEN v = 'VALID' THEN 20 + (h * 13 + k) % 200 ELSE 1 + (h + k) % 9 END
                FROM generate_series(0, {DAYS * 24 - 1}) h, generate_series(0, {PROVINCES - 1}) p,
                     generate_series(0, {DEVICES - 1}) k,
                     unnest(ARRAY['VALID', 'REVOKED']) v
                WHERE v = 'VALID' OR (h + k) % 4 = 0"""
        )
        timings["waiting_and_verdicts_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute("ANALYZE")
        timings["analyze_s"] = time.perf_counter() - t0
    finally:
        await conn.close()
    return {k: round(v, 1) for k, v in timings.items()}


async def timed(call, request, metadata) -> tuple[float, object]:
    t0 = time.perf_counter()
    reply = await call(request, metadata=metadata)
    return time.perf_counter() - t0, reply


async def measure(stub, auth, name: str, call, make_request, repeat: int) -> dict:
    firsts = [(await timed(call, make_request(""), auth))[0] for _ in range(repeat)]
    figures = {"first_page_p50_ms": round(percentile(firsts, 0.5) * 1000, 1)}
    figures["first_page_max_ms"] = round(max(firsts) * 1000, 1)
    if name == "GetLabBacklog":
        _, reply = await timed(call, make_request(""), auth)
        figures["labs"] = len(reply.labs)
    else:
        pages, rows, token, slowest, t0 = 0, 0, "", 0.0, time.perf_counter()
        while True:
            took, reply = await timed(call, make_request(token), auth)
            pages, rows, slowest = pages + 1, rows + len(reply.rows), max(slowest, took)
            token = reply.next_page_token
            if not token:
                break
        figures.update(
            pages=pages,
            rows=rows,
            all_pages_s=round(time.perf_counter() - t0, 2),
            slowest_page_ms=round(slowest * 1000, 1),
        )
    print(f"{name}: {figures}", flush=True)
    return figures


async def main(args) -> dict:
    async with bench_platform("statistics", LOG_LEVEL="WARNING") as (dsn, _, services):
        print(f"generating {args.results:,} results …", flush=True)
        generation = await generate(dsn, args.results, args.waiting, args.chunk)
        print(f"generated: {generation}", flush=True)
        conn = await connect(dsn)
        try:
            t0 = time.perf_counter()
            async with conn.transaction():
                await summary.refresh(conn)
            build_s = time.perf_counter() - t0
            summary_rows = await conn.fetchval("SELECT count(*) FROM statistics_daily")
            async with conn.transaction():
                org = await principals.create_organisation(conn, None, "Sở Y tế 24", "HEALTH_DEPARTMENT", "24")
                _, token = await principals.issue_token(
                    conn, None, PrincipalKind.ORGANISATION, org, Role.HEALTH_AUTHORITY
                )
        finally:
            await conn.close()
        print(f"summary built from scratch in {build_s:.1f} s: {summary_rows:,} rows", flush=True)
        port = services.start("result_svc")
        auth = bearer(token)
        out: dict = {}
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = statistics_service_pb2_grpc.StatisticsServiceStub(channel)
            out["ListTestCounts"] = await measure(
                stub, auth, "ListTestCounts", stub.ListTestCounts,
                lambda t: pb.ListTestCountsRequest(range=YEAR, page_size=1000, page_token=t), args.repeat,
            )  # fmt: skip
            out["ListTurnaround"] = await measure(
                stub, auth, "ListTurnaround", stub.ListTurnaround,
                lambda t: pb.ListTurnaroundRequest(range=YEAR, page_size=1000, page_token=t), args.repeat,
            )  # fmt: skip
            out["GetLabBacklog"] = await measure(
                stub, auth, "GetLabBacklog", stub.GetLabBacklog, lambda t: pb.GetLabBacklogRequest(), args.repeat
            )
            out["ListVerdictCounts"] = await measure(
                stub, auth, "ListVerdictCounts", stub.ListVerdictCounts,
                lambda t: pb.ListVerdictCountsRequest(range=YEAR, page_size=1000, page_token=t), args.repeat,
            )  # fmt: skip
        # The incremental refresh: 1,000 results recorded now for samples of one day.
        conn = await connect(dsn)
        try:
            await conn.execute(
                "UPDATE results SET recorded_at = now() WHERE id IN (SELECT id FROM results ORDER BY id LIMIT 1000)"
            )
            t0 = time.perf_counter()
            async with conn.transaction():
                days = await summary.refresh(conn)
            refresh_ms = round((time.perf_counter() - t0) * 1000, 1)
        finally:
            await conn.close()
        print(f"incremental refresh of {days} day(s): {refresh_ms} ms", flush=True)
        return {
            "generation": generation,
            "summary_build_s": round(build_s, 1),
            "summary_rows": summary_rows,
            "refresh_ms": refresh_ms,
            "rpcs": out,
        }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=10_000_000, help="results generated")
    parser.add_argument("--waiting", type=int, default=100_000, help="samples still waiting for a result")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="results per INSERT statement")
    parser.add_argument("--repeat", type=int, default=20, help="calls of each RPC's first page")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    rpcs = figures["rpcs"]
    print(
        json.dumps(
            {
                "bench": "statistics",
                "results": arguments.results,
                "summary_build_s": figures["summary_build_s"],
                "summary_rows": figures["summary_rows"],
                "refresh_ms": figures["refresh_ms"],
                "slowest_page_ms": max(r.get("slowest_page_ms", r["first_page_max_ms"]) for r in rpcs.values()),
                "generation": figures["generation"],
                "rpcs": rpcs,
                "machine": MACHINE,
            }
        )
    )
