"""`make bench-bundle`: the checkpoint bundle with 100,000 revoked unexpired certificates — its size, the
time to build it, an unchanged build tick, a delta after more revocations, and a device's time to verify
the full bundle and to apply the delta.

On a fresh database of the Postgres at DATABASE_URL: an active ES256 bundle key and DCC key, the default
rules, and REVOKED certificates inserted straight into `certificates` (foreign-key triggers off for the
load: the bundle reads only uvci, status and expires_at, so the persons and results they would point to
change nothing it measures). Builds run in this process through publish_svc's own BundleBuilder against
Postgres, as the relay replica runs it; the device side uses the offline verifier's code. Each figure is
the median of --rounds runs. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MACHINE, scratch_database  # noqa: E402
from services.common.db import create_pool  # noqa: E402
from services.hcert import uvci  # noqa: E402
from services.publish_svc.bundle_builder import BundleBuilder  # noqa: E402
from services.registry import checkpoint_bundle as cb  # noqa: E402
from services.registry import signing_keys  # noqa: E402
from services.registry.key_sealing import SigningKeyOpener, parse_kek_private  # noqa: E402
from tests.conftest import fresh_secrets  # noqa: E402
from tests.publish_svc.conftest import activate_new_key  # noqa: E402


async def revoke(conn: asyncpg.Connection, key_id: uuid.UUID, count: int) -> None:
    """`count` REVOKED certificates expiring within 72 h, loaded with COPY."""
    now = datetime.now(UTC)
    rows = [
        (
            uuid.uuid4(),
            uvci.new_uvci(),
            uuid.uuid4(),
            uuid.uuid4(),
            key_id,
            "REVOKED",
            2,
            b"x",
            now,
            now + timedelta(hours=72),
        )
        for _ in range(count)
    ]
    await conn.execute("SET session_replication_role = replica")  # no FK triggers for the synthetic rows
    await conn.copy_records_to_table(
        "certificates",
        records=rows,
        columns=[
            "id", "uvci", "result_id", "person_id", "signing_key_id", "status", "status_version", "qr_enc",
            "issued_at", "expires_at",
        ],
    )  # fmt: skip
    await conn.execute("SET session_replication_role = DEFAULT")


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


async def atimed(coroutine):
    started = time.perf_counter()
    value = await coroutine
    return value, time.perf_counter() - started


async def one_round(revoked: int, added: int) -> dict[str, float]:
    async with scratch_database("bench_bundle") as dsn:
        env = fresh_secrets()
        await activate_new_key(dsn, env)
        bundle_key = await activate_new_key(dsn, env, purpose=signing_keys.BUNDLE)
        dcc_key_id = await _active_dcc_key(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await revoke(conn, dcc_key_id, revoked)
            await conn.execute("ANALYZE certificates")
        finally:
            await conn.close()
        pool = await create_pool(dsn, min_size=1, max_size=2)
        builder = BundleBuilder(
            pool,
            SigningKeyOpener(parse_kek_private(env["SIGNING_KEYS_KEK"])),
            None,
            build_seconds=10,
            validity=timedelta(hours=24),
            reissue=timedelta(hours=1),
            deltas_kept=2000,
        )
        try:
            first, build_full_s = await atimed(builder.build())
            assert first == 1
            unchanged, unchanged_tick_s = await atimed(builder.build())
            assert unchanged is None
            conn = await asyncpg.connect(dsn)
            try:
                await revoke(conn, dcc_key_id, added)
                full_v1 = bytes(await conn.fetchval("SELECT full_bundle FROM checkpoint_bundles WHERE version = 1"))
                second, build_delta_s = await atimed(builder.build())
                assert second == 2
                row = await conn.fetchrow("SELECT full_bundle, delta FROM checkpoint_bundles WHERE version = 2")
            finally:
                await conn.close()
        finally:
            await pool.close()
        from cryptography import x509

        pinned = [x509.load_der_x509_certificate(bundle_key.certificate_der)]
        held, device_verify_full_s = timed(lambda: cb.read_bundle(full_v1, pinned))
        assert len(held.content[cb.REVOKED]) == revoked
        delta = bytes(row["delta"])
        moved, device_apply_delta_s = timed(lambda: cb.apply(held, cb.read_delta(delta, pinned)))
        assert len(moved.content[cb.REVOKED]) == revoked + added
        return {
            "full_bytes": len(full_v1),
            "full_v2_bytes": len(bytes(row["full_bundle"])),
            "delta_bytes": len(delta),
            "build_full_s": build_full_s,
            "unchanged_tick_s": unchanged_tick_s,
            "build_delta_s": build_delta_s,
            "device_verify_full_s": device_verify_full_s,
            "device_apply_delta_s": device_apply_delta_s,
        }


async def _active_dcc_key(dsn: str) -> uuid.UUID:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT id FROM signing_keys WHERE state = 'ACTIVE' AND purpose = 'DCC'")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revoked", type=int, default=100_000, help="revoked unexpired certificates")
    parser.add_argument("--added", type=int, default=100, help="revocations between version 1 and 2")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [asyncio.run(one_round(args.revoked, args.added)) for _ in range(args.rounds)]
    figures = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    ms = {name: value * 1000 for name, value in figures.items() if name.endswith("_s")}
    print(f"checkpoint bundle, {args.revoked:,} revoked then {args.added} more ({MACHINE}, median of {args.rounds}):")
    print(f"  full bundle            {figures['full_bytes'] / 1e6:.2f} MB, built in {ms['build_full_s']:.0f} ms")
    print(f"  unchanged build tick   {ms['unchanged_tick_s']:.0f} ms")
    print(f"  delta (+{args.added})           {figures['delta_bytes']:,} bytes, built in {ms['build_delta_s']:.0f} ms")
    print(f"  device                 verify full {ms['device_verify_full_s']:.0f} ms, apply delta "
          f"{ms['device_apply_delta_s']:.0f} ms")  # fmt: skip
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}
    print(json.dumps({"bench": "bundle", "machine": MACHINE, "revoked": args.revoked, "added": args.added, **rounded}))


if __name__ == "__main__":
    main()
