"""verify_svc hosts VerifyService: checkpoint verification of scanned HCERT QR codes.

The servicer checks the request (size, scan time, the device's rate limit), asks the Verifier, counts
the verdict per checkpoint (Prometheus, and an hourly aggregate table — never a per-person log) and
converts the answer. The trust list and rules come from in-memory snapshots (services.verify_svc.trust);
the SQL (verdict counts, trust-list changes for GetTrustList) is in services.verify_svc.repository.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc

from services.common import i18n
from services.common.auth import Principal, Role, current_caller
from services.common.db import BACKGROUND_ERRORS
from services.common.errors import FieldViolation, InvalidArgument, Unavailable
from services.common.memo import BoundedMemo
from services.common.metrics import LoopCounter
from services.common.protoconv import enum_value, set_timestamp, timestamp, to_datetime
from services.common.ratelimit import RateLimiter
from services.common.runtime import Deps
from services.common.server import GrpcService
from services.gen.covidtest.type.v1 import certificate_pb2, testing_pb2, verdict_pb2
from services.gen.covidtest.verify.v1 import verify_service_pb2 as pb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from services.registry.certificate_status import StatusCache
from services.registry.certificate_status import key_prefix as status_key_prefix
from services.registry.province_rules import rule_message
from services.registry.trust_list import signing_certificate
from services.verify_svc import repository
from services.verify_svc.bundle import BundleStore, serve_http_until
from services.verify_svc.config import VerifyConfig
from services.verify_svc.redis_reader import RedisReader
from services.verify_svc.repository import CountKey
from services.verify_svc.status import StatusLookup
from services.verify_svc.trust import TrustStore
from services.verify_svc.verifier import Verdict, Verifier

LABEL = "verify_svc"
log = logging.getLogger("covidtest.verify")

VERIFY_ROLES = {
    "Verify": [Role.CHECKPOINT],
    "VerifyBatch": [Role.CHECKPOINT],
    "GetRules": [Role.CHECKPOINT],
    "GetTrustList": [Role.CHECKPOINT],
    "GetCheckpointBundle": [Role.CHECKPOINT],
}

MAX_QR_BYTES = 4096
MAX_BATCH = 100
CLOCK_SKEW = timedelta(minutes=5)
MAX_OFFLINE_AGE = timedelta(days=7)
# Verdicts this process gave, by (checkpoint id, verdict): bumped per scan without a lock.
VERIFICATIONS = LoopCounter(
    "covidtest_verifications", "Verdicts given, per checkpoint device", ["checkpoint", "verdict"]
)


# Answers to repeat scans differ only in checked_at: everything else is built once per distinct
# content and language (a template; bounded, like the genuine-QR cache it mirrors) and copied in C per call.
_RESPONSE_TEMPLATES: BoundedMemo[tuple, pb.VerifyResponse] = BoundedMemo(10_000)


def response_of(result: Verdict, checked_at: datetime, language: str = "en") -> pb.VerifyResponse:
    """The answer to a scan: a copy of the template of its content in `language` (of its reason), stamped
    with `checked_at`."""
    rule = result.rule
    rule_id, rule_version = (rule.rule_id, rule.version) if rule else ("", 0)
    # Every field of the Verdict that reaches the answer is part of the key, and the language.
    key = (
        language,
        result.verdict,
        result.reason,
        result.stage,
        result.status_source,
        result.entry_type,
        result.test_type,
        result.sample_collected_at,
        result.valid_until,
        result.certificate_id,
        result.issuer_country,
        result.kid,
        rule_id,
        rule_version,
        result.accept_with_warning,
        result.signature_valid,
        result.schema_error,
        *result.holder.items(),
    )
    template = _RESPONSE_TEMPLATES.get(key)
    if template is None:
        template = _template(result, rule_id, rule_version, language)
        _RESPONSE_TEMPLATES.put(key, template)
    response = pb.VerifyResponse()
    response.CopyFrom(template)
    set_timestamp(response.checked_at, checked_at)
    return response


def _template(result: Verdict, rule_id: str, rule_version: int, language: str) -> pb.VerifyResponse:
    """The answer for `result` without its checked_at: built once per distinct content and language."""
    stage, entry_type, test_type = result.stage, result.entry_type, result.test_type
    return pb.VerifyResponse(
        verdict=enum_value(verdict_pb2.Verdict, result.verdict),
        reason=i18n.verdict_reason(result.reason, result.verdict, language),
        status_source=enum_value(verdict_pb2.StatusSource, result.status_source),
        kid=result.kid,
        certificate_id=result.certificate_id,
        issuer_country=result.issuer_country,
        malformed_stage=(
            enum_value(verdict_pb2.MalformedStage, stage.upper()) if stage else verdict_pb2.MALFORMED_STAGE_UNSPECIFIED
        ),
        entry_type=(
            enum_value(certificate_pb2.EntryType, entry_type) if entry_type else certificate_pb2.ENTRY_TYPE_UNSPECIFIED
        ),
        test_type=enum_value(testing_pb2.TestType, test_type) if test_type else testing_pb2.TEST_TYPE_UNSPECIFIED,
        sample_collected_at=timestamp(result.sample_collected_at),
        valid_until=timestamp(result.valid_until),
        rule_id=rule_id,
        rule_version=rule_version,
        accept_with_warning=result.accept_with_warning,
        signature_valid=result.signature_valid,
        schema_error=result.schema_error,
        **result.holder,
    )


class HourlyCounts:
    """Verdict counts per (hour, checkpoint, verdict), added to `verification_counts` every few seconds;
    each scan also counts in the process totals behind covidtest_verifications_total."""

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool
        self._counts: Counter[CountKey] = Counter()
        self._stopping = asyncio.Event()
        self._hour = self._hour_end = datetime.min.replace(tzinfo=UTC)

    def add(self, checkpoint_id: str, verdict: str, at: datetime) -> None:
        if not self._hour <= at < self._hour_end:  # the hour is worked out once an hour, not per scan
            self._hour = at.replace(minute=0, second=0, microsecond=0)
            self._hour_end = self._hour + timedelta(hours=1)
        self._counts[(self._hour, checkpoint_id, verdict)] += 1
        VERIFICATIONS.values[(checkpoint_id, verdict)] += 1

    async def flush(self) -> None:
        if not self._counts:
            return
        counts, self._counts = self._counts, Counter()
        try:
            await repository.add_verification_counts(self._pool, counts)
        except BACKGROUND_ERRORS as exc:
            self._counts.update(counts)  # Postgres down or refusing: keep them for the next flush
            log.warning(
                "verification counts not flushed; retrying later", extra={"fields": {"error": type(exc).__name__}}
            )

    async def run(self, every_s: float = 5.0) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), every_s)
            except TimeoutError:
                pass
            await self.flush()

    def stop(self) -> None:
        self._stopping.set()


class VerifyServicer(verify_service_pb2_grpc.VerifyServiceServicer):
    """VerifyService. Every method is for checkpoint devices only (VERIFY_ROLES), so a caller is always set."""

    def __init__(
        self,
        deps: Deps[VerifyConfig],
        trust: TrustStore,
        bundle: BundleStore,
        verifier: Verifier,
        counts: HourlyCounts,
    ):
        config = deps.config
        self._trust = trust
        self._bundle = bundle
        self._verifier = verifier
        self._counts = counts
        self._pool = deps.pool
        self._limits = RateLimiter(deps.redis, config.redis_prefix, "scan", config.scans_per_minute, shared=False)
        self._language = config.default_language  # of the reasons, for a call without accept-language

    def _scan_time(
        self, request: pb.VerifyRequest, path: str, now: datetime, violations: list[FieldViolation]
    ) -> datetime:
        if not request.qr:
            violations.append(FieldViolation(f"{path}qr", "the scanned text is required", "FIELD_REQUIRED"))
        elif len(request.qr.encode("utf-8")) > MAX_QR_BYTES:
            violations.append(FieldViolation(f"{path}qr", f"at most {MAX_QR_BYTES} bytes", "FIELD_OUT_OF_RANGE"))
        if not request.HasField("scanned_at"):
            return now
        try:
            at = to_datetime(request.scanned_at, f"{path}scanned_at")
        except InvalidArgument as exc:
            violations.extend(exc.violations)
            return now
        if at > now + CLOCK_SKEW:
            violations.append(FieldViolation(f"{path}scanned_at", "at most 5 minutes in the future", "TIME_IN_FUTURE"))
        elif at < now - MAX_OFFLINE_AGE:
            violations.append(FieldViolation(f"{path}scanned_at", "at most 7 days in the past", "TIME_TOO_OLD"))
        return at

    async def _loaded(self, loaded: asyncio.Event | None = None, what: str = "the trust list") -> None:
        """Returns once the trust list and rules (or `loaded`) are in memory (at most 5 s after start);
        UNAVAILABLE before: an empty trust list must never be answered as if it were the real one."""
        loaded = loaded or self._trust.loaded
        if not loaded.is_set():  # just started: not in memory yet
            try:
                await asyncio.wait_for(loaded.wait(), 5)
            except TimeoutError:
                raise Unavailable(f"{what} is not loaded yet; retry", reason="SERVER_UNAVAILABLE") from None

    async def _verify(
        self, request: pb.VerifyRequest, caller: Principal, at: datetime, now: datetime, language: str
    ) -> pb.VerifyResponse:
        await self._loaded()
        result = await self._verifier.verify(request.qr, at, caller.province_code)
        self._counts.add(caller.id, result.verdict, now)
        return response_of(result, at, language)

    async def Verify(self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext) -> pb.VerifyResponse:
        caller = current_caller()
        now = datetime.now(UTC)
        violations: list[FieldViolation] = []
        at = self._scan_time(request, "", now, violations)
        if violations:
            raise InvalidArgument("invalid scan", violations)
        await self._limits.check(caller.id)
        return await self._verify(request, caller, at, now, i18n.language_var.get() or self._language)

    async def VerifyBatch(
        self, request: pb.VerifyBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyBatchResponse:
        caller = current_caller()
        now = datetime.now(UTC)
        if not 1 <= len(request.scans) <= MAX_BATCH:
            raise InvalidArgument(
                "1-100 scans per call",
                [
                    FieldViolation(
                        "scans", f"1-{MAX_BATCH} scans", "TOO_MANY_ITEMS" if request.scans else "FIELD_REQUIRED"
                    )
                ],
            )
        violations: list[FieldViolation] = []
        times = [self._scan_time(scan, f"scans[{i}].", now, violations) for i, scan in enumerate(request.scans)]
        if violations:
            raise InvalidArgument("invalid scans", violations)
        for _ in request.scans:
            await self._limits.check(caller.id)
        language = i18n.language_var.get() or self._language
        results = await asyncio.gather(
            *(self._verify(scan, caller, at, now, language) for scan, at in zip(request.scans, times))
        )
        return pb.VerifyBatchResponse(results=results)

    async def GetRules(self, request: pb.GetRulesRequest, context: grpc.aio.ServicerContext) -> pb.GetRulesResponse:
        caller = current_caller()
        province = caller.province_code
        await self._loaded()
        snapshot = self._trust.snapshot
        rules = snapshot.province_rules(province)
        return pb.GetRulesResponse(
            province_code=province,
            ruleset_version=max((r.version for r in rules), default=0),
            rules=[rule_message(r) for r in sorted(rules, key=lambda r: r.version)],
        )

    async def GetTrustList(
        self, request: pb.GetTrustListRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTrustListResponse:
        await self._loaded()
        snapshot = self._trust.snapshot
        since = request.since_version
        full = since == 0 or since > snapshot.trust_version
        response = pb.GetTrustListResponse(version=snapshot.trust_version, full=full)
        if full:
            response.added.extend(signing_certificate(k.certificate_der, k.country) for k in snapshot.keys)
            return response
        current = {k.fingerprint: k for k in snapshot.keys}
        for change in await repository.trust_list_changes_since(self._pool, since):
            if change.change == "ADDED" and change.fingerprint in current:
                key = current[change.fingerprint]
                response.added.append(signing_certificate(key.certificate_der, key.country))
            elif change.change == "REMOVED":
                response.removed_sha256_fingerprints.append(change.fingerprint)
        return response

    async def GetCheckpointBundle(
        self, request: pb.GetCheckpointBundleRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCheckpointBundleResponse:
        await self._loaded(self._bundle.loaded, "the checkpoint bundle")
        answer = self._bundle.answer(request.since_version)
        if answer is None:
            raise Unavailable(
                "no checkpoint bundle has been issued yet (no active bundle key); retry later",
                reason="BUNDLE_NOT_ISSUED",
            )
        return pb.GetCheckpointBundleResponse(
            version=answer.version, full=answer.full is not None, bundle=answer.full or b"", deltas=answer.deltas
        )


def build(deps: Deps[VerifyConfig]) -> list[GrpcService]:
    config = deps.config
    bundle = BundleStore()
    # The store reloads after the trust list in the same loop: once the bundle is loaded, so is the trust list.
    trust = TrustStore(config.database_url, config.trust_refresh_seconds, followers=[bundle])
    deps.background(trust.run(), trust.stop)
    if config.bundle_http_port:
        http_stopping = asyncio.Event()
        deps.background(
            serve_http_until(bundle, config.grpc_host, config.bundle_http_port, http_stopping), http_stopping.set
        )
    reader = (
        RedisReader(
            config.redis_url,
            broadcast_prefix=status_key_prefix(config.redis_prefix),
            mirror_limit=config.status_mirror_limit,
        )
        if config.redis_url.startswith("redis://")
        else None
    )
    replica = bool(config.read_database_url) and config.read_database_url != config.database_url
    status = StatusLookup(
        StatusCache(deps.redis, config.redis_prefix, reader),
        config.read_database_url or config.database_url,
        config.status_negative_cache_seconds,
        config.status_db_timeout_seconds,
        primary=deps.pool if replica else None,  # a replica's reads are fenced by the primary's feed head
        catch_up_s=config.replica_catch_up_seconds,
    )
    deps.on_stop.append(status.close)
    if reader is not None:
        deps.on_stop.append(reader.aclose)
    counts = HourlyCounts(deps.pool)
    deps.background(counts.run(), counts.stop)
    verifier = Verifier(trust, status, config.status_unknown_accept_provinces)
    servicer = VerifyServicer(deps, trust, bundle, verifier, counts)
    return [
        GrpcService(
            "covidtest.verify.v1.VerifyService",
            lambda server: verify_service_pb2_grpc.add_VerifyServiceServicer_to_server(servicer, server),
            VERIFY_ROLES,
            ready=bundle.loaded,
        )
    ]
