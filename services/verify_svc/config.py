"""verify_svc configuration: the shared service settings plus verification limits and caches."""

import dataclasses

from services.common.config import (
    ServiceConfig,
    parse_dsn,
    parse_port,
    parse_request_bytes,
    positive_float,
    positive_int,
    setting,
)
from services.registry.province_rules import PROVINCE


def parse_province_codes(raw: str) -> frozenset[str]:
    """A comma-separated list of two-digit province codes ("24,26"); empty: none."""
    codes = frozenset(code.strip() for code in raw.split(",") if code.strip())
    wrong = sorted(code for code in codes if not PROVINCE.match(code))
    if wrong:
        raise ValueError(f"not two-digit province codes: {', '.join(wrong)}")
    return codes


@dataclasses.dataclass(frozen=True, kw_only=True)
class VerifyConfig(ServiceConfig):
    """Settings of verify_svc."""

    read_database_url: str = setting(
        "READ_DATABASE_URL",
        parse_dsn,
        default="",
        doc="Postgres read replica for status lookups on a cache miss (empty: DATABASE_URL)",
    )
    # A Verify is at most about 4.1 KB (a 4096-byte QR); the largest valid VerifyBatch, 100 such scans,
    # about 402 KiB (tests/common/test_request_limits.py computes it).
    max_request_bytes: int = setting(
        "MAX_REQUEST_BYTES",
        parse_request_bytes,
        default=512 * 1024,
        doc="largest request message accepted (verify_svc: 512 KiB, above a full VerifyBatch); "
        "larger is RESOURCE_EXHAUSTED",
    )
    scans_per_minute: int = setting(
        "SCANS_PER_MINUTE", positive_int, default=600, doc="Verify scans one checkpoint device may send per minute"
    )
    trust_refresh_seconds: float = setting(
        "TRUST_REFRESH_SECONDS",
        positive_float,
        default=60.0,
        doc="how often the trust list and rules are reloaded (also on NOTIFY)",
    )
    status_negative_cache_seconds: float = setting(
        "STATUS_NEGATIVE_CACHE_SECONDS",
        positive_float,
        default=5.0,
        doc="how long an unknown certificate id is remembered as unknown",
    )
    status_mirror_limit: int = setting(
        "STATUS_MIRROR_LIMIT",
        positive_int,
        default=300_000,
        doc="certificate statuses each process holds in memory (all live ones, loaded from Redis and kept "
        "fresh by its invalidation messages; about 200 bytes each); beyond it a scan reads Redis",
    )
    replica_catch_up_seconds: float = setting(
        "REPLICA_CATCH_UP_SECONDS",
        positive_float,
        default=0.02,
        doc="with READ_DATABASE_URL: how long a status read waits for the replica to reach the primary's feed "
        "head before reading the primary instead (a replica's stale VALID is never answered)",
    )
    status_db_timeout_seconds: float = setting(
        "STATUS_DB_TIMEOUT_SECONDS",
        positive_float,
        default=0.5,
        doc="longest wait for a status from Postgres before answering without it (UNCHECKED)",
    )
    bundle_http_port: int = setting(
        "BUNDLE_HTTP_PORT",
        parse_port,
        default=8080,
        doc="plain HTTP port of the checkpoint bundle (/bundle/v1/latest, /bundle/v1/delta/N) on GRPC_HOST; 0 = off",
    )
    status_unknown_accept_provinces: frozenset[str] = setting(
        "STATUS_UNKNOWN_ACCEPT_PROVINCES",
        parse_province_codes,
        default=frozenset(),
        doc="provinces whose checkpoints let a STATUS_UNKNOWN holder through with a warning "
        "(accept_with_warning); every other province refuses",
    )
