"""GetSample and ListResults: scope, decrypted person for the owners, filters and AIP-158 paging."""

import grpc
import pytest

from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import person_pb2
from services.gen.covidtest.type.v1 import testing_pb2 as t
from tests.grpc_errors import error_reason
from tests.result_svc.helpers import person, result, rid, sample, unique


async def test_get_sample_returns_the_person_to_its_sampling_unit_and_lab(stub, sampler, lab):
    who = person(
        8000,
        identity=person_pb2.PersonIdentity(
            type=person_pb2.IDENTITY_DOCUMENT_TYPE_PASSPORT, number="M1234567", country="KR"
        ),
        full_name="Kim Min Jun",
        family_name="Kim",
        given_name="Min Jun",
        phone="0912000111",
    )
    item = sample(unique("G"), lab.id, person=who)
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=sampler.auth
    )
    sample_id = reply.results[0].sample_id
    for org, request in (
        (sampler, pb.GetSampleRequest(sample_id=sample_id)),
        (sampler, pb.GetSampleRequest(sample_barcode=item.sample_barcode)),
        (lab, pb.GetSampleRequest(sample_barcode=item.sample_barcode)),
    ):
        got = (await stub.GetSample(request, metadata=org.auth)).sample
        assert got.sample_id == sample_id and got.state == t.SAMPLE_STATE_REGISTERED
        assert got.person.full_name == "Kim Min Jun" and got.person.family_name == "Kim"
        assert got.person.phone == "+84912000111"  # normalised to E.164
        assert got.person.identity.country == "KR" and got.person.identity.number == "M1234567"
        assert got.sampling_org_id == sampler.id and got.lab_org_id == lab.id and not got.results


async def test_vietnamese_name_is_split_family_name_first(stub, sampler, lab):
    item = sample(unique("G"), lab.id, 8001, person=person(8001, full_name="Trần  Thị   Bích Ngọc"))
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=sampler.auth
    )
    got = (
        await stub.GetSample(pb.GetSampleRequest(sample_id=reply.results[0].sample_id), metadata=sampler.auth)
    ).sample
    assert (got.person.full_name, got.person.family_name, got.person.given_name) == (
        "Trần Thị Bích Ngọc",
        "Trần",
        "Thị Bích Ngọc",
    )


async def test_ambiguous_barcode_at_a_lab_needs_the_sampling_unit(stub, sampler, other_sampler, lab):
    barcode = unique("AMB")
    for org, n in ((sampler, 8100), (other_sampler, 8101)):
        await stub.RegisterSamples(
            pb.RegisterSamplesRequest(request_id=rid(), samples=[sample(barcode, lab.id, n)]), metadata=org.auth
        )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetSample(pb.GetSampleRequest(sample_barcode=barcode), metadata=lab.auth)
    assert error_reason(err.value) == "SAMPLE_BARCODE_AMBIGUOUS"
    reply = await stub.RecordResults(
        pb.RecordResultsRequest(request_id=rid(), results=[result(t.OUTCOME_NEGATIVE, sample_barcode=barcode)]),
        metadata=lab.auth,
    )
    assert [v.reason for v in reply.results[0].violations] == ["SAMPLE_BARCODE_AMBIGUOUS"]
    submission = result(t.OUTCOME_NEGATIVE, sample_barcode=barcode, sampling_org_id=other_sampler.id)
    reply = await stub.RecordResults(pb.RecordResultsRequest(request_id=rid(), results=[submission]), metadata=lab.auth)
    assert reply.recorded_count == 1
    got = await stub.GetSample(
        pb.GetSampleRequest(sample_barcode=barcode, sampling_org_id=other_sampler.id), metadata=lab.auth
    )
    assert got.sample.sampling_org_id == other_sampler.id and got.sample.state == t.SAMPLE_STATE_RESULTED


async def test_get_sample_input_errors(stub, sampler):
    for request, code in (
        (pb.GetSampleRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.GetSampleRequest(sample_id="nope"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.GetSampleRequest(sample_id="00000000-0000-4000-8000-000000000000"), grpc.StatusCode.NOT_FOUND),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetSample(request, metadata=sampler.auth)
        assert err.value.code() == code


async def test_list_results_filters_and_pages_without_gaps_or_repeats(stub, database_url):
    from services.common.auth import Role
    from tests.conftest import bearer, make_principal

    unit = bearer((await make_principal(database_url, Role.SAMPLER))["token"])
    lab_principal = await make_principal(database_url, Role.LAB)
    lab_auth = bearer(lab_principal["token"])
    items = [sample(unique("L"), lab_principal["id"], 9000 + i) for i in range(7)]
    await stub.RegisterSamples(pb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=unit)
    outcomes = [t.OUTCOME_NEGATIVE] * 5 + [t.OUTCOME_POSITIVE] * 2
    await stub.RecordResults(
        pb.RecordResultsRequest(
            request_id=rid(), results=[result(o, sample_barcode=i.sample_barcode) for i, o in zip(items, outcomes)]
        ),
        metadata=lab_auth,
    )
    await stub.AmendResult(
        pb.AmendResultRequest(
            request_id=rid(),
            sample_barcode=items[0].sample_barcode,
            outcome=t.OUTCOME_POSITIVE,
            tested_at=items[0].collected_at,
            reason="wrong well",
        ),
        metadata=lab_auth,
    )

    for auth in (unit, lab_auth):
        seen, token = [], ""
        while True:
            page = await stub.ListResults(pb.ListResultsRequest(page_size=3, page_token=token), metadata=auth)
            assert len(page.results) <= 3
            seen += [r.result_id for r in page.results]
            token = page.next_page_token
            if not token:
                break
        assert len(seen) == len(set(seen)) == 7  # current versions only: the superseded one is hidden
    positives = await stub.ListResults(pb.ListResultsRequest(outcomes=[t.OUTCOME_POSITIVE]), metadata=lab_auth)
    assert len(positives.results) == 3 and {r.outcome for r in positives.results} == {t.OUTCOME_POSITIVE}
    superseded = await stub.ListResults(pb.ListResultsRequest(states=[t.RESULT_STATE_SUPERSEDED]), metadata=lab_auth)
    assert [(r.sample_barcode, r.version) for r in superseded.results] == [(items[0].sample_barcode, 1)]
    first = await stub.ListResults(pb.ListResultsRequest(page_size=2), metadata=lab_auth)
    for bad in (
        pb.ListResultsRequest(page_token=first.next_page_token, outcomes=[t.OUTCOME_POSITIVE]),
        pb.ListResultsRequest(page_token="%%%"),
        pb.ListResultsRequest(page_size=-1),
        pb.ListResultsRequest(outcomes=[t.OUTCOME_NEGATIVE, t.OUTCOME_NEGATIVE]),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListResults(bad, metadata=lab_auth)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
