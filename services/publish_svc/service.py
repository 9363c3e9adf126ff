"""publish_svc hosts PublishService and runs the relay: the Bluezone feed, citizen lookups, QR codes and
printable certificates.

Every replica serves the feed; one replica at a time is the relay leader (services.publish_svc.relay).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, NamedTuple

import asyncpg
import grpc
from google.protobuf.duration_pb2 import Duration

from services.common.auth import Principal, Role, current_caller
from services.common.db import in_tx
from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.fields import check_date_of_birth, check_text, normalise_phone, utcnow
from services.common.idempotency import run_idempotent
from services.common.identity import identity_hash
from services.common.messages import pending_sample_message, person_message, result_message
from services.common.pii import PiiCipher
from services.common.protoconv import timestamp
from services.common.ratelimit import RateLimiter
from services.common.retention import RetentionJob, RetentionPolicy
from services.common.runtime import Deps
from services.common.server import GrpcService
from services.gen.covidtest.publish.v1 import publish_service_pb2 as pb
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc
from services.gen.covidtest.type.v1 import certificate_pb2, person_pb2
from services.hcert import document, qr
from services.publish_svc import repository as repo
from services.publish_svc import retention
from services.publish_svc.bundle_builder import BundleBuilder
from services.publish_svc.config import PublishConfig
from services.publish_svc.feed import Feed, FeedSignal
from services.publish_svc.observer import Observer
from services.publish_svc.relay import Relay
from services.registry.certificate_status import StatusCache
from services.registry.key_sealing import SigningKeyOpener

LABEL = "publish_svc"

PUBLISH_ROLES = {
    "StreamResultEvents": [Role.PARTNER],
    "AckResultEvents": [Role.PARTNER],
    "GetFeedStatus": [Role.PARTNER, Role.OPERATOR],
    "GetCitizenResults": [Role.PARTNER],
    "GetCertificateQr": [Role.PARTNER],
    "GetCertificateDocument": [Role.PARTNER],
}

QR_FORMATS = {1: ("png", "image/png"), 2: ("svg", "image/svg+xml")}
PAPER_SIZES = {pb.PAPER_SIZE_UNSPECIFIED: "A4", pb.PAPER_SIZE_A4: "A4", pb.PAPER_SIZE_A6: "A6"}
# PDFs rendered at once per process (each takes about 0.3 s of CPU in a worker thread): more wait their turn,
# so a burst of print jobs cannot take every core from the feed.
DOCUMENT_RENDERS = 2
STATUS = {"VALID": certificate_pb2.CERTIFICATE_STATUS_VALID, "REVOKED": certificate_pb2.CERTIFICATE_STATUS_REVOKED}
CITIZEN_RESULTS_LIMIT = 100


def _duration(seconds: float) -> Duration:
    out = Duration()
    out.FromMilliseconds(max(0, int(seconds * 1000)))
    return out


class CertificateText(NamedTuple):
    """A certificate to render and its opened QR text (personal data: never logged)."""

    certificate: repo.StoredCertificate
    qr: str


class PublishServicer(publish_service_pb2_grpc.PublishServiceServicer):
    def __init__(self, deps: Deps, config: PublishConfig, feed: Feed):
        self._pool = deps.pool
        self._pii = deps.pii
        self._feed = feed
        self._lookups = RateLimiter(deps.redis, config.redis_prefix, "citizen", config.citizen_lookups_per_minute)
        self._renders = asyncio.Semaphore(DOCUMENT_RENDERS)

    async def StreamResultEvents(
        self, request: pb.StreamResultEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamResultEventsResponse]:
        caller = current_caller()
        async for message in self._feed.stream(caller.id, request.from_position):
            yield message

    async def AckResultEvents(
        self, request: pb.AckResultEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.AckResultEventsResponse:
        caller = current_caller()
        return await run_idempotent(
            self._pool,
            caller.id,
            "AckResultEvents",
            request,
            pb.AckResultEventsResponse,
            lambda conn: self._feed.acknowledge(conn, caller.id, request.position),
        )

    async def GetFeedStatus(
        self, request: pb.GetFeedStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFeedStatusResponse:
        partner_id = _status_scope(current_caller(), request.partner_id)
        status = await in_tx(self._pool, lambda conn: repo.feed_status(conn, partner_id))
        if partner_id is not None and not status.partners:
            raise NotFound("no such partner", reason="PARTNER_NOT_FOUND")
        now = utcnow()
        response = pb.GetFeedStatusResponse(
            head_position=status.head_position,
            head_committed_at=timestamp(status.head_committed_at) if status.head_committed_at else None,
            pending_events=status.pending_events,
            oldest_pending_age=_duration(
                (now - status.oldest_pending_at).total_seconds() if status.oldest_pending_at else 0
            ),
        )
        for p in status.partners:
            oldest = p.oldest_unacked_committed_at
            response.partners.append(
                pb.PartnerFeedStatus(
                    partner_id=str(p.id),
                    partner_name=p.name,
                    acknowledged_position=p.acked_position,
                    acknowledged_at=timestamp(p.acked_at) if p.acked_at else None,
                    lag_events=max(0, status.head_position - p.acked_position),
                    lag=_duration((now - oldest).total_seconds() if oldest else 0),
                    open_streams=self._feed.open_streams[str(p.id)],
                )
            )
        return response

    async def GetCitizenResults(
        self, request: pb.GetCitizenResultsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCitizenResultsResponse:
        caller = current_caller()
        partner = await self._entitled_partner(caller, "citizen lookups")
        violations: list[FieldViolation] = []
        dob = check_date_of_birth(request.date_of_birth, "date_of_birth", violations, utcnow().date())
        key = _lookup_key(self._pii, request, violations)
        if violations or dob is None or key is None:  # None comes with a violation
            raise InvalidArgument("invalid lookup", violations)
        await self._lookups.check(caller.id)
        column, key_hash = key
        rows = await repo.citizen_results(
            self._pool,
            column,
            key_hash,
            self._pii.keyed_hash("person.date_of_birth", dob),
            CITIZEN_RESULTS_LIMIT,
        )
        # The audit row is not in the read's transaction (the lookup is one statement on the pool) but
        # commits before the answer leaves: a failed INSERT fails the call, so no answer goes out
        # unaudited; a row for an answer the client then did not receive is acceptable. An empty lookup is
        # recorded too, with no result ids: who looked stays answerable, and the row holds neither the
        # lookup factors nor their hashes, only which kind of key was used.
        await in_tx(
            self._pool,
            lambda conn: repo.record_read(
                conn,
                repo.PersonalDataRead(
                    principal_kind=caller.kind.value,
                    principal_id=partner.id,
                    purpose="CITIZEN_LOOKUP",
                    result_ids=[row["id"] for row in rows if row["id"] is not None],
                    detail={
                        "by": request.WhichOneof("key"),
                        "results": sum(row["id"] is not None for row in rows),
                        "pending": sum(row["id"] is None for row in rows),
                    },
                ),
            ),
        )
        return pb.GetCitizenResultsResponse(results=[self._citizen_result(row, partner.id) for row in rows])

    async def _entitled_partner(self, caller: Principal, what: str) -> repo.Partner:
        """The calling partner, if it is granted personal data; else PERMISSION_DENIED."""
        partner = await self._feed.partner(caller.id)
        if not partner.personal_data_access:
            raise PermissionDenied(
                f"{what} are for partners granted personal-data access", reason="PERSONAL_DATA_NOT_ENTITLED"
            )
        return partner

    def _citizen_result(self, row: Any, partner_id: uuid.UUID) -> pb.CitizenResult:
        """Only entitled partners get here: the person and the QR text are included."""
        item = pb.CitizenResult(
            person_key=self._feed.person_key(partner_id, row["person_id"]),
            person=person_message(self._pii, row),
        )
        if row["id"] is None:  # registered, no result yet: "result pending"
            item.pending_sample.CopyFrom(pending_sample_message(row, id_column="pending_sample_id"))
            return item
        item.result.CopyFrom(result_message(row))
        if row["uvci"]:
            item.certificate.CopyFrom(
                certificate_pb2.Certificate(
                    certificate_id=row["uvci"],
                    qr=self._pii.open("certificate.qr", row["qr_enc"]) if row["qr_enc"] is not None else "",
                    status=STATUS[row["certificate_status"]],
                    issued_at=timestamp(row["issued_at"]),
                    expires_at=timestamp(row["certificate_expires_at"]),
                    revoked_at=timestamp(row["revoked_at"]) if row["revoked_at"] else None,
                    result_id=str(row["id"]),
                    kid=bytes(row["kid"]),
                )
            )
        return item

    async def _certificate_read(
        self,
        caller: Principal,
        partner: repo.Partner,
        certificate_id: str,
        purpose: repo.ReadPurpose,
        detail: dict[str, object],
    ) -> CertificateText:
        """The certificate to render, with its QR text, read with its audit row in one transaction: nothing is rendered
        unless both committed. NOT_FOUND for an unknown id, FAILED_PRECONDITION for one whose QR text the
        retention policy erased (neither reads anyone's data, so neither leaves an audit row)."""

        async def read_and_audit(conn: asyncpg.Connection) -> CertificateText | None:
            found = await repo.certificate_for_render(conn, certificate_id)
            if found is None:
                return None
            sealed = found.certificate.qr_enc
            if sealed is None:
                raise FailedPrecondition(
                    "the certificate's personal data was erased under the retention policy; its status remains",
                    reason="PERSONAL_DATA_ERASED",
                )
            await repo.record_read(
                conn,
                repo.PersonalDataRead(
                    principal_kind=caller.kind.value,
                    principal_id=partner.id,
                    purpose=purpose,
                    result_ids=[found.result_id],
                    detail=detail,
                ),
            )
            return CertificateText(found.certificate, self._pii.open("certificate.qr", sealed))

        read = await in_tx(self._pool, read_and_audit)
        if read is None:
            raise NotFound("no certificate with this id", reason="CERTIFICATE_NOT_FOUND")
        return read

    async def GetCertificateQr(
        self, request: pb.GetCertificateQrRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCertificateQrResponse:
        caller = current_caller()
        partner = await self._entitled_partner(caller, "certificate QR images")
        _check_qr_request(request)
        fmt, content_type = QR_FORMATS[request.format]

        read = await self._certificate_read(caller, partner, request.certificate_id, "QR_RENDER", {"format": fmt})
        certificate = read.certificate
        image = qr.render(read.qr, fmt, request.scale or 4)
        return pb.GetCertificateQrResponse(
            image=image,
            content_type=content_type,
            status=STATUS[certificate.status],
            expires_at=timestamp(certificate.expires_at),
        )

    async def GetCertificateDocument(
        self, request: pb.GetCertificateDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCertificateDocumentResponse:
        caller = current_caller()
        partner = await self._entitled_partner(caller, "printable certificates")
        _check_document_request(request)
        paper = PAPER_SIZES[request.paper_size]
        try:
            document.check_fonts()  # before the read: a server that cannot print records no read
        except document.FontMissing as exc:
            raise Unavailable(
                f"printable certificates are not available on this server: {exc}", reason="SERVER_UNAVAILABLE"
            ) from None

        read = await self._certificate_read(
            caller, partner, request.certificate_id, "DOCUMENT_RENDER", {"paper": paper}
        )
        certificate = read.certificate
        async with self._renders:  # CPU-bound (fonts, layout, compression): off the event loop
            pdf = await asyncio.to_thread(document.render, read.qr, status=certificate.status, paper=paper)
        return pb.GetCertificateDocumentResponse(
            document=pdf,
            content_type=document.CONTENT_TYPE,
            status=STATUS[certificate.status],
            expires_at=timestamp(certificate.expires_at),
        )


def _status_scope(caller: Principal, requested: str) -> uuid.UUID | None:
    """Whose feed status the caller sees: a partner only its own; an operator everyone's or one partner's."""
    partner_id = None
    if requested:
        try:
            partner_id = uuid.UUID(requested)
        except ValueError:
            raise InvalidArgument(
                "partner_id is not a UUID", [FieldViolation("partner_id", "a UUID", "FIELD_FORMAT_INVALID")]
            ) from None
    if caller.role is Role.PARTNER:
        if partner_id is not None and str(partner_id) != caller.id:
            raise PermissionDenied("a partner sees only its own feed status", reason="SCOPE_NOT_ALLOWED")
        partner_id = uuid.UUID(caller.id)
    return partner_id


def _lookup_key(
    pii: PiiCipher, request: pb.GetCitizenResultsRequest, violations: list[FieldViolation]
) -> tuple[repo.LookupColumn, bytes] | None:
    """The column and keyed hash a citizen is looked up by, or None (with a violation noted)."""
    which = request.WhichOneof("key")
    if which == "identity":
        doc = request.identity
        doc_type = (
            person_pb2.IdentityDocumentType.Name(doc.type).removeprefix("IDENTITY_DOCUMENT_TYPE_")
            if doc.type in person_pb2.IdentityDocumentType.values()
            else ""
        )
        if doc_type in ("", "UNSPECIFIED") or not doc.number:
            violations.append(FieldViolation("identity", "type and number are required", "FIELD_REQUIRED"))
            return None
        # The same normalisation as intake's (services.common.identity), so a lookup matches what intake stored.
        return "identity_hash", identity_hash(pii, doc_type, doc.country, doc.number)
    if which == "phone":
        phone = normalise_phone(request.phone)
        if phone is None:
            violations.append(FieldViolation("phone", "'0' + 9 digits or '+84' + 9 digits", "FIELD_FORMAT_INVALID"))
            return None
        return "phone_hash", pii.keyed_hash("person.phone", phone)
    violations.append(FieldViolation("identity", "identity or phone is required", "FIELD_REQUIRED"))
    return None


def _check_qr_request(request: pb.GetCertificateQrRequest) -> None:
    violations: list[FieldViolation] = []
    _check_certificate_id(request.certificate_id, violations)
    if request.format not in QR_FORMATS:
        violations.append(FieldViolation("format", "PNG or SVG", "FIELD_REQUIRED"))
    if not 0 <= request.scale <= 20:
        violations.append(FieldViolation("scale", "0-20", "FIELD_OUT_OF_RANGE"))
    if violations:
        raise InvalidArgument("invalid request", violations)


def _check_certificate_id(certificate_id: str, violations: list[FieldViolation]) -> None:
    if not certificate_id or len(certificate_id) > 80:
        violations.append(FieldViolation("certificate_id", "the UVCI, at most 80 characters", "FIELD_REQUIRED"))
    else:
        # An id is one line of text: a control character (a NUL would be a Postgres error) is never a UVCI.
        check_text(certificate_id, "certificate_id", None, violations)


def _check_document_request(request: pb.GetCertificateDocumentRequest) -> None:
    violations: list[FieldViolation] = []
    _check_certificate_id(request.certificate_id, violations)
    if request.paper_size not in PAPER_SIZES:
        violations.append(FieldViolation("paper_size", "A4, A6 or unset (A4)", "FIELD_OUT_OF_RANGE"))
    if violations:
        raise InvalidArgument("invalid request", violations)


def build(deps: Deps[PublishConfig]) -> list[GrpcService]:
    """PublishService on every replica; the feed's LISTEN connection; the relay where it is enabled."""
    config = deps.config
    signal = FeedSignal(config.database_url)
    feed = Feed(deps.pool, deps.pii, signal, config.feed_heartbeat_seconds, config.max_streams_per_partner)
    deps.background(signal.run(), signal.stop)
    observer = Observer(deps.pool, config.metrics_observe_seconds)
    deps.background(observer.run(), observer.stop)
    if config.relay_enabled:
        relay = Relay(config, deps.pii, StatusCache(deps.redis, config.redis_prefix), on_published=signal.notify)
        deps.background(relay.run(), relay.stop)
        builder = BundleBuilder(
            deps.pool,
            SigningKeyOpener(config.signing_keys_kek),
            deps.pii,
            build_seconds=config.bundle_build_seconds,
            validity=timedelta(hours=config.bundle_validity_hours),
            reissue=timedelta(seconds=config.bundle_reissue_seconds),
            deltas_kept=config.bundle_deltas_kept,
        )
        deps.background(builder.run(), builder.stop)
    if config.retention_enabled:
        job = RetentionJob(
            deps.pool, retention.steps(deps.pii), RetentionPolicy.from_config(config), config.retention_interval_seconds
        )
        deps.background(job.run(), job.stop)
    servicer = PublishServicer(deps, config, feed)
    return [
        GrpcService(
            "covidtest.publish.v1.PublishService",
            lambda server: publish_service_pb2_grpc.add_PublishServiceServicer_to_server(servicer, server),
            PUBLISH_ROLES,
        )
    ]
