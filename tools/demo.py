"""The demo `make run` ends with: the platform's path of one pooled test, over real gRPC calls.

An operator registers a sampling unit, a lab and a partner (the Bluezone backend), issues their
credentials and makes sure a signing key is active (AdminService); the sampling unit registers a pool
of five samples (RegisterSamples), which the Bluezone backend's lookup already shows as "result pending"
(GetCitizenResults), and five more samples for the same lab that the demo leaves without a result (for
the reference lab uploader, `clients/`); the lab records the pool's negative result (RecordResults),
which releases a result for every member; the relay signs a certificate for each, and the partner's feed
consumer (StreamResultEvents) receives the five events; a checkpoint device verifies one certificate
(VALID), the lab amends that result, and the same QR then verifies as REVOKED — online, and offline from
the signed checkpoint bundle once a version lists it.

With `document_dir` (`.run/demo/` in `make run`) it writes there: the printable certificate of the first
certificate (GetCertificateDocument, a PDF), the QR text of a certificate that stays VALID
(`certificate-qr.txt`) and the same QR drawn for a terminal (`certificate-qr-terminal.txt`), and
`lab-results.csv`, negative results for the five waiting samples in the reference lab uploader's format.

The people are invented, and still treated as real: nothing the demo says (`say`) holds a name, a birth
date or year, an identity number or a phone number. Those are only inside the QR codes, which go only into
the files above (mode 0600), unless a caller asks for the QR through `say` (`show_qr`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
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
# Samples registered to the demo's lab and left without a result: lab-results.csv has their results.
WAITING_NAMES = ["Vũ Thị Giang", "Đặng Văn Hùng", "Bùi Thị Khánh", "Đỗ Văn Long", "Ngô Thị Mai"]
LAB_RESULTS_HEADER = ["sample_barcode", "outcome", "tested_at", "method", "lab_reference"]


def _ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def _auth(token: str):
    return (("authorization", f"Bearer {token}"),)


def write_private(path: Path, data: str | bytes) -> Path:
    """Writes `path` readable by its owner only (0600, also when it existed): it holds personal data."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(raw)
    return path


def _person(name: str, number: str, date_of_birth: str, phone: str) -> person_pb2.Person:
    return person_pb2.Person(
        identity=person_pb2.PersonIdentity(type=person_pb2.IDENTITY_DOCUMENT_TYPE_CITIZEN_ID, number=number),
        full_name=name,
        date_of_birth=date_of_birth,
        phone=phone,
        province_code="24",
        district_code="213",
    )


def _rfc3339(value: datetime) -> str:
    """`value` as RFC 3339 in UTC, whole seconds: 2021-10-01T08:30:00Z."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def lab_results_csv(barcodes: list[str], tested_at: datetime, reference: str) -> str:
    """Negative NAAT results for `barcodes`, in the CSV the reference lab uploader reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LAB_RESULTS_HEADER)
    for i, barcode in enumerate(barcodes):
        writer.writerow([barcode, "NEGATIVE", _rfc3339(tested_at), "RT-PCR", f"{reference}-{i + 1}"])
    return out.getvalue()


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


# The published retry policy (protos/service_config.json, rules in protos/README.md "Retries"), as every
# client should load it: deadlines and UNAVAILABLE retries per method.
RETRY_POLICY = [
    ("grpc.service_config", (Path(__file__).resolve().parents[1] / "protos" / "service_config.json").read_text()),
    ("grpc.enable_retries", 1),
]
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
    show_qr: bool = False,
    document_dir: Path | None = None,
) -> dict:
    """The demo, each step told through `say`; with `document_dir`, its files are written there (see above).
    `show_qr` also passes one certificate's QR, drawn for a terminal of about 100 columns, to `say`."""
    suffix = uuid.uuid4().hex[:6]
    with (
        grpc.insecure_channel(result_address, options=RETRY_POLICY) as channel,
        grpc.insecure_channel(publish_address, options=RETRY_POLICY + FEED_KEEPALIVE) as feed_channel,
        grpc.insecure_channel(verify_address, options=RETRY_POLICY) as verify_channel,
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
        number_base = int(suffix, 16) % 10**6
        samples = [
            pb.SampleRegistration(
                sample_barcode=f"BG-{suffix}-{i + 1}",
                person=_person(
                    NAMES[i], f"0240{number_base:06d}{i:02d}", f"19{70 + 5 * i}-0{i + 1}-1{i}", f"09120000{i}{i}"
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
        waiting = [
            pb.SampleRegistration(
                sample_barcode=f"BG-{suffix}-W{i + 1}",
                person=_person(
                    WAITING_NAMES[i],
                    f"0241{number_base:06d}{i:02d}",
                    f"{1962 + 7 * i}-{i + 3:02d}-{i + 12:02d}",
                    f"09130000{i}{i}",
                ),
                test_type=testing_pb2.TEST_TYPE_NAAT,
                collected_at=_ts(now - timedelta(hours=1)),
                sampling_site="Trạm Y tế xã Tân Mỹ",
                lab_org_id=lab_id,
            )
            for i in range(len(WAITING_NAMES))
        ]
        registered = results.RegisterSamples(
            pb.RegisterSamplesRequest(request_id=str(uuid.uuid4()), samples=waiting), metadata=_auth(unit_token)
        )
        say(
            f"sampling unit registered {registered.created_count} more samples for the lab, which the demo "
            "leaves without a result (their results: lab-results.csv)"
        )
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
        # A certificate of the pool the demo does not amend: it stays VALID (for the clients and the page).
        still_valid = events[-1].certificate if len(events) > 1 else None
        if show_qr:  # the QR holds the person's names and birth date: only when the caller asks for it
            say(f"QR code of certificate {first.certificate_id} ({len(first.qr)} characters):")
            say(qr_codes.terminal(first.qr))
        document_path = lab_results_path = qr_path = qr_terminal_path = None
        if document_dir is not None:
            directory = Path(document_dir)
            directory.mkdir(parents=True, exist_ok=True)
            printable = feed.GetCertificateDocument(
                ppb.GetCertificateDocumentRequest(certificate_id=first.certificate_id, paper_size=ppb.PAPER_SIZE_A4),
                metadata=_auth(partner_token),
            )
            document_path = write_private(
                directory / f"certificate-{events[0].result.sample_barcode}.pdf", printable.document
            )
            say(f"printable certificate (A4, Vietnamese and English) written to {document_path}")
            if still_valid is not None:
                qr_path = write_private(directory / "certificate-qr.txt", still_valid.qr)  # no newline: the text
                qr_terminal_path = write_private(
                    directory / "certificate-qr-terminal.txt", qr_codes.terminal(still_valid.qr)
                )
                say(f"QR text of certificate {still_valid.certificate_id} (stays VALID) written to {qr_path}")
            lab_results_path = directory / "lab-results.csv"
            lab_results_path.write_text(
                lab_results_csv(
                    [s.sample_barcode for s in waiting], datetime.now(UTC) - timedelta(minutes=3), f"LIS-{suffix}"
                )
            )
            say(f"results for the {len(waiting)} samples waiting at the lab written to {lab_results_path}")

        checkpoint = verify_service_pb2_grpc.VerifyServiceStub(verify_channel)

        def scan() -> vpb.VerifyResponse:
            return checkpoint.Verify(vpb.VerifyRequest(qr=first.qr), metadata=_auth(device_token), wait_for_ready=True)

        before = scan()
        say(  # the officer's screen shows the name and birth date; the demo's output does not
            f"checkpoint scanned certificate {first.certificate_id}: {enum_name(verdict_pb2.Verdict, before.verdict)}, "
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
            "valid_qr": still_valid.qr if still_valid is not None else "",
            "unit_token": unit_token,
            "lab_token": lab_token,
            "partner_token": partner_token,
            "sample_barcodes": [s.sample_barcode for s in samples],
            "events": events,
            "verdicts": (before.verdict, after.verdict),
            "offline_verdict": offline_verdict,
            "document_path": document_path,
            "lab_id": lab_id,
            "persons": [s.person for s in samples + waiting],
            "waiting_barcodes": [s.sample_barcode for s in waiting],
            "lab_results_path": lab_results_path,
            "certificate_qr_path": qr_path,
            "certificate_qr_terminal_path": qr_terminal_path,
        }
