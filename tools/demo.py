"""The demo `make run` ends with: the platform's path of one pooled test, over real gRPC calls.

An operator registers a sampling unit, a lab and a partner (the Bluezone backend), issues their
credentials and makes sure a signing key is active (AdminService); the sampling unit registers a pool
of five samples (RegisterSamples), which the Bluezone backend's lookup already shows as "result pending"
(GetCitizenResults); the lab records the pool's negative result (RecordResults), which
releases a result for every member; the relay signs a certificate for each, and the partner's feed
consumer (StreamResultEvents) receives the five events; the QR code of one certificate is printed in
the terminal, and its printable certificate (GetCertificateDocument, a PDF) written to a file it names
(under `.run/` in `make run`); a checkpoint device verifies it (VALID), the lab amends that result, and the same QR then
verifies as REVOKED — online, and offline from the signed checkpoint bundle once a version lists it. The
people are invented; no personal data is printed except inside the QR code.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.protoconv import enum_name
from services.gen.covidtest.admin.v1 import admin_service_pb2 as admin_pb
from services.gen.covidtest.admin.v1 import admin_service_pb2_grpc
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.publish.v1 import publish_service_pb2_grpc
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import certificate_pb2, person_pb2, role_pb2, testing_pb2, verdict_pb2
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from services.hcert import qr as qr_codes
from services.registry import checkpoint_bundle as cb
from services.verify_svc import offline
from services.verify_svc.verifier import Verifier

POOL_SIZE = 5
NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Phạm Thị Dung", "Hoàng Văn Em"]


def _ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def _auth(token: str):
    return (("authorization", f"Bearer {token}"),)


def _ensure_active_key(admin, op, say, purpose) -> None:
    """An ACTIVE key of `purpose` (DCC: signs certificates; BUNDLE: signs the checkpoint bundle)."""
    active = admin.ListSigningKeys(
        admin_pb.ListSigningKeysRequest(state=admin_pb.SIGNING_KEY_STATE_ACTIVE, purpose=purpose), metadata=op
    )
    if active.signing_keys:
        return
    key = admin.GenerateSigningKey(
        admin_pb.GenerateSigningKeyRequest(
            request_id=str(uuid.uuid4()), algorithm=certificate_pb2.SIGNING_ALGORITHM_ES256, purpose=purpose
        ),
        metadata=op,
    ).signing_key
    admin.ActivateSigningKey(
        admin_pb.ActivateSigningKeyRequest(request_id=str(uuid.uuid4()), signing_key_id=key.signing_key_id), metadata=op
    )
    what = "signing" if purpose == admin_pb.SIGNING_KEY_PURPOSE_DCC else "checkpoint-bundle"
    say(f"operator generated and activated ES256 {what} key kid={key.certificate.kid.hex()}")


def _offline_verdict(checkpoint, device_auth, qr: str, deadline: datetime) -> tuple[int, str]:
    """(bundle version, verdict) of `qr` decided offline from the signed checkpoint bundle, as a device
    without network would: waits (until `deadline`) for a version that lists the amended certificate."""
    bundle_keys = None
    while True:
        try:
            answer = checkpoint.GetCheckpointBundle(vpb.GetCheckpointBundleRequest(), metadata=device_auth)
        except grpc.RpcError as err:  # the first version is issued within one build interval of the key
            if err.code() != grpc.StatusCode.UNAVAILABLE or datetime.now(UTC) > deadline:
                raise
            time.sleep(0.5)
            continue
        if bundle_keys is None:
            # A device pins the bundle key's certificate when it is set up; the demo reads it from the bundle.
            opened = cb.payload_of(answer.bundle)
            bundle_keys = [x509.load_der_x509_certificate(k["certificate"]) for k in opened[cb.BUNDLE_KEYS]]
        bundle = cb.read_bundle(answer.bundle, bundle_keys)
        verifier = Verifier(offline.FixedTrust(offline.snapshot_of(bundle)), offline.BundleStatus(bundle))
        verdict = asyncio.run(verifier.verify(qr, datetime.now(UTC), "24")).verdict
        if verdict == "REVOKED" or datetime.now(UTC) > deadline:
            return bundle.version, verdict
        time.sleep(0.5)


# A feed stream is long-lived: keepalive pings detect a replica that froze or lost its network, so the
# client reconnects elsewhere instead of waiting on a silent stream (the server accepts a ping every 10 s).
FEED_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


def run(
    result_address: str,
    publish_address: str,
    verify_address: str,
    operator_token: str,
    say=print,
    show_qr: bool = True,
    document_dir: Path | None = None,
) -> dict:
    """The demo; with `document_dir`, the printable certificate of the first certificate is written there."""
    suffix = uuid.uuid4().hex[:6]
    with (
        grpc.insecure_channel(result_address) as channel,
        grpc.insecure_channel(publish_address, options=FEED_KEEPALIVE) as feed_channel,
        grpc.insecure_channel(verify_address) as verify_channel,
    ):
        admin = admin_service_pb2_grpc.AdminServiceStub(channel)
        results = result_service_pb2_grpc.ResultServiceStub(channel)
        op = _auth(operator_token)

        def organisation(name: str, kind) -> str:
            reply = admin.CreateOrganisation(
                admin_pb.CreateOrganisationRequest(
                    request_id=str(uuid.uuid4()), name=name, kind=kind, province_code="24"
                ),
                metadata=op,
            )
            return reply.organisation.organisation_id

        def token(org_id: str, role) -> str:
            return admin.IssueCredential(
                admin_pb.IssueCredentialRequest(
                    request_id=str(uuid.uuid4()),
                    role=role,
                    principal=admin_pb.Principal(kind=admin_pb.PRINCIPAL_KIND_ORGANISATION, id=org_id),
                ),
                metadata=op,
            ).token

        unit_id = organisation(f"Trạm Y tế xã Tân Mỹ {suffix}", admin_pb.ORGANISATION_KIND_SAMPLING_UNIT)
        lab_id = organisation(f"CDC Bắc Giang lab {suffix}", admin_pb.ORGANISATION_KIND_LAB)
        unit_token, lab_token = token(unit_id, role_pb2.ROLE_SAMPLER), token(lab_id, role_pb2.ROLE_LAB)
        partner_id = admin.CreatePartner(
            admin_pb.CreatePartnerRequest(
                request_id=str(uuid.uuid4()), name=f"Bluezone {suffix}", personal_data_access=True
            ),
            metadata=op,
        ).partner.partner_id
        partner_token = admin.IssueCredential(
            admin_pb.IssueCredentialRequest(
                request_id=str(uuid.uuid4()),
                role=role_pb2.ROLE_PARTNER,
                principal=admin_pb.Principal(kind=admin_pb.PRINCIPAL_KIND_PARTNER, id=partner_id),
            ),
            metadata=op,
        ).token
        device_id = admin.CreateCheckpointDevice(
            admin_pb.CreateCheckpointDeviceRequest(
                request_id=str(uuid.uuid4()), name=f"Chốt QL1A {suffix}", province_code="24"
            ),
            metadata=op,
        ).device.device_id
        device_token = admin.IssueCredential(
            admin_pb.IssueCredentialRequest(
                request_id=str(uuid.uuid4()),
                role=role_pb2.ROLE_CHECKPOINT,
                principal=admin_pb.Principal(kind=admin_pb.PRINCIPAL_KIND_CHECKPOINT_DEVICE, id=device_id),
            ),
            metadata=op,
        ).token
        say(
            f"operator registered sampling unit {unit_id}, lab {lab_id}, partner {partner_id} and checkpoint "
            f"device {device_id}, and issued their tokens"
        )
        _ensure_active_key(admin, op, say, admin_pb.SIGNING_KEY_PURPOSE_DCC)
        _ensure_active_key(admin, op, say, admin_pb.SIGNING_KEY_PURPOSE_BUNDLE)

        now = datetime.now(UTC)
        pool = f"POOL-{suffix}"
        samples = [
            pb.SampleRegistration(
                sample_barcode=f"BG-{suffix}-{i + 1}",
                person=person_pb2.Person(
                    identity=person_pb2.PersonIdentity(
                        type=person_pb2.IDENTITY_DOCUMENT_TYPE_CITIZEN_ID,
                        number=f"0240{int(suffix, 16) % 10**6:06d}{i:02d}",
                    ),
                    full_name=NAMES[i],
                    date_of_birth=f"19{70 + 5 * i}-0{i + 1}-1{i}",
                    phone=f"09120000{i}{i}",
                    province_code="24",
                    district_code="213",
                ),
                test_type=testing_pb2.TEST_TYPE_NAAT,
                collected_at=_ts(now - timedelta(hours=2)),
                sampling_site="Chốt kiểm dịch QL1A",
                lab_org_id=lab_id,
                pool_barcode=pool,
            )
            for i in range(POOL_SIZE)
        ]
        registered = results.RegisterSamples(
            pb.RegisterSamplesRequest(request_id=str(uuid.uuid4()), samples=samples), metadata=_auth(unit_token)
        )
        say(f"sampling unit registered pool {pool}: {registered.created_count} samples created")
        # "Result pending": the Bluezone backend's lookup finds the sample before the lab has a result.
        feed = publish_service_pb2_grpc.PublishServiceStub(feed_channel)
        pending = feed.GetCitizenResults(
            ppb.GetCitizenResultsRequest(
                identity=samples[0].person.identity, date_of_birth=samples[0].person.date_of_birth
            ),
            metadata=_auth(partner_token),
            wait_for_ready=True,
        ).results[0]
        say(
            f"citizen lookup before the result: sample {pending.pending_sample.sample_barcode} "
            f"{enum_name(testing_pb2.SampleState, pending.pending_sample.state)} (result pending), taken "
            f"{pending.pending_sample.collected_at.ToJsonString()} at {pending.pending_sample.sampling_site}"
        )

        recorded = results.RecordResults(
            pb.RecordResultsRequest(
                request_id=str(uuid.uuid4()),
                results=[
                    pb.ResultSubmission(
                        pool_barcode=pool,
                        outcome=testing_pb2.OUTCOME_NEGATIVE,
                        tested_at=_ts(now - timedelta(minutes=20)),
                        method="RT-PCR",
                        lab_reference="LIS-001",
                    )
                ],
            ),
            metadata=_auth(lab_token),
        )
        say(f"lab recorded pool {pool} NEGATIVE:")
        for member in sorted(recorded.results[0].samples, key=lambda m: m.sample_barcode):
            say(
                f"  {member.sample_barcode:16s} sample {enum_name(testing_pb2.SampleState, member.sample_state):10s}"
                f" result v{member.result_version} {enum_name(testing_pb2.ResultState, member.result_state)}"
            )

        # The partner's feed consumer: a new partner resumes from position 1 (from_position 0 = its cursor).
        # Each sample's SAMPLE_REGISTERED event ("result pending") comes first, then its result.
        wanted = {s.sample_barcode for s in samples}
        registrations, events = [], []
        for message in feed.StreamResultEvents(
            ppb.StreamResultEventsRequest(from_position=0), metadata=_auth(partner_token), timeout=30
        ):
            registrations += [e for e in message.events if e.sample.sample_barcode in wanted]
            events += [e for e in message.events if e.result.sample_barcode in wanted]
            if len(events) == len(wanted):
                break
        say(f"partner's feed consumer received {len(registrations) + len(events)} events:")
        for event in registrations:
            say(f"  position {event.position:<6d} SAMPLE_REGISTERED {event.sample.sample_barcode:16s} result pending")
        for event in events:
            say(
                f"  position {event.position:<6d} {enum_name(testing_pb2.ResultEventKind, event.kind):17s}"
                f" {event.result.sample_barcode:16s} certificate {event.certificate.certificate_id}"
            )
        feed.AckResultEvents(
            ppb.AckResultEventsRequest(request_id=str(uuid.uuid4()), position=events[-1].position),
            metadata=_auth(partner_token),
        )
        first = events[0].certificate
        if show_qr:
            say(f"QR code of certificate {first.certificate_id} ({len(first.qr)} characters):")
            print(qr_codes.terminal(first.qr))
        document_path = None
        if document_dir is not None:
            printable = feed.GetCertificateDocument(
                ppb.GetCertificateDocumentRequest(certificate_id=first.certificate_id, paper_size=ppb.PAPER_SIZE_A4),
                metadata=_auth(partner_token),
            )
            document_path = Path(document_dir) / f"certificate-{events[0].result.sample_barcode}.pdf"
            document_path.write_bytes(printable.document)
            say(f"printable certificate (A4, Vietnamese and English) written to {document_path}")

        checkpoint = verify_service_pb2_grpc.VerifyServiceStub(verify_channel)

        def scan() -> vpb.VerifyResponse:
            return checkpoint.Verify(vpb.VerifyRequest(qr=first.qr), metadata=_auth(device_token), wait_for_ready=True)

        before = scan()
        say(
            f"checkpoint scanned it: {enum_name(verdict_pb2.Verdict, before.verdict)} — {before.family_name} "
            f"{before.given_name[:1]}…, born {before.date_of_birth[:4]}, "
            f"{enum_name(testing_pb2.TestType, before.test_type)}, valid until {before.valid_until.ToJsonString()}"
        )
        amended = events[0].result.sample_barcode
        results.AmendResult(
            pb.AmendResultRequest(
                request_id=str(uuid.uuid4()),
                sample_barcode=amended,
                outcome=testing_pb2.OUTCOME_POSITIVE,
                tested_at=_ts(now - timedelta(minutes=5)),
                method="RT-PCR",
                reason="demo: plate mix-up corrected",
            ),
            metadata=_auth(lab_token),
        )
        after = scan()
        deadline = datetime.now(UTC) + timedelta(seconds=5)
        while after.verdict != verdict_pb2.VERDICT_REVOKED and datetime.now(UTC) < deadline:
            after = scan()
        say(f"lab amended {amended}; the same QR now scans as {enum_name(verdict_pb2.Verdict, after.verdict)}")
        version, offline_verdict = _offline_verdict(
            checkpoint, _auth(device_token), first.qr, datetime.now(UTC) + timedelta(seconds=30)
        )
        say(f"an offline checkpoint holding bundle version {version} decides alone: {offline_verdict}")
        return {
            "pool": pool,
            "device_token": device_token,
            # A certificate of the pool the demo did not amend: it still verifies VALID.
            "valid_qr": events[-1].certificate.qr if len(events) > 1 else "",
            "unit_token": unit_token,
            "lab_token": lab_token,
            "partner_token": partner_token,
            "sample_barcodes": [s.sample_barcode for s in samples],
            "events": events,
            "verdicts": (before.verdict, after.verdict),
            "offline_verdict": offline_verdict,
            "document_path": document_path,
        }
