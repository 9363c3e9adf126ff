"""The demo `make run` ends with: the platform's path of one pooled test, over real gRPC calls.

An operator registers a sampling unit and a lab and issues their credentials (AdminService); the
sampling unit registers a pool of five samples (RegisterSamples); the lab records the pool's
negative result (RecordResults), which releases a result for every member and puts one event per
member into the outbox for the publish relay. The people are invented; nothing personal is printed.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.protoconv import enum_name
from services.gen.covidtest.admin.v1 import admin_service_pb2 as admin_pb
from services.gen.covidtest.admin.v1 import admin_service_pb2_grpc
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import person_pb2, role_pb2, testing_pb2

POOL_SIZE = 5
NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Phạm Thị Dung", "Hoàng Văn Em"]


def _ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def _auth(token: str):
    return (("authorization", f"Bearer {token}"),)


def run(result_address: str, operator_token: str, say=print) -> dict:
    suffix = uuid.uuid4().hex[:6]
    with grpc.insecure_channel(result_address) as channel:
        admin = admin_service_pb2_grpc.AdminServiceStub(channel)
        results = result_service_pb2_grpc.ResultServiceStub(channel)
        op = _auth(operator_token)

        def organisation(name: str, kind) -> str:
            reply = admin.CreateOrganisation(admin_pb.CreateOrganisationRequest(
                request_id=str(uuid.uuid4()), name=name, kind=kind, province_code="24"), metadata=op)
            return reply.organisation.organisation_id

        def token(org_id: str, role) -> str:
            return admin.IssueCredential(admin_pb.IssueCredentialRequest(
                request_id=str(uuid.uuid4()), role=role,
                principal=admin_pb.Principal(kind=admin_pb.PRINCIPAL_KIND_ORGANISATION, id=org_id)),
                metadata=op).token

        unit_id = organisation(f"Trạm Y tế xã Tân Mỹ {suffix}", admin_pb.ORGANISATION_KIND_SAMPLING_UNIT)
        lab_id = organisation(f"CDC Bắc Giang lab {suffix}", admin_pb.ORGANISATION_KIND_LAB)
        unit_token, lab_token = token(unit_id, role_pb2.ROLE_SAMPLER), token(lab_id, role_pb2.ROLE_LAB)
        say(f"operator registered sampling unit {unit_id} and lab {lab_id}, and issued their tokens")

        now = datetime.now(timezone.utc)
        pool = f"POOL-{suffix}"
        samples = [pb.SampleRegistration(
            sample_barcode=f"BG-{suffix}-{i + 1}",
            person=person_pb2.Person(
                identity=person_pb2.PersonIdentity(type=person_pb2.IDENTITY_DOCUMENT_TYPE_CITIZEN_ID,
                                                   number=f"0240{int(suffix, 16) % 10**6:06d}{i:02d}"),
                full_name=NAMES[i], date_of_birth=f"19{70 + 5 * i}-0{i + 1}-1{i}", phone=f"09120000{i}{i}",
                province_code="24", district_code="213"),
            test_type=testing_pb2.TEST_TYPE_NAAT, collected_at=_ts(now - timedelta(hours=2)),
            sampling_site="Chốt kiểm dịch QL1A", lab_org_id=lab_id, pool_barcode=pool) for i in range(POOL_SIZE)]
        registered = results.RegisterSamples(pb.RegisterSamplesRequest(request_id=str(uuid.uuid4()), samples=samples),
                                             metadata=_auth(unit_token))
        say(f"sampling unit registered pool {pool}: {registered.created_count} samples created")

        recorded = results.RecordResults(pb.RecordResultsRequest(request_id=str(uuid.uuid4()), results=[
            pb.ResultSubmission(pool_barcode=pool, outcome=testing_pb2.OUTCOME_NEGATIVE,
                                tested_at=_ts(now - timedelta(minutes=20)), method="RT-PCR", lab_reference="LIS-001")]),
            metadata=_auth(lab_token))
        say(f"lab recorded pool {pool} NEGATIVE:")
        for member in sorted(recorded.results[0].samples, key=lambda m: m.sample_barcode):
            say(f"  {member.sample_barcode:16s} sample {enum_name(testing_pb2.SampleState, member.sample_state):10s}"
                f" result v{member.result_version} {enum_name(testing_pb2.ResultState, member.result_state)}")
        return {"pool": pool, "unit_token": unit_token, "lab_token": lab_token,
                "sample_barcodes": [s.sample_barcode for s in samples]}
