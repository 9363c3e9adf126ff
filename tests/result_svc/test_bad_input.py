"""ResultService over real gRPC: free text and page tokens found by fuzzing that used to end in INTERNAL.

A NUL in AmendResult's `reason` or WithdrawResult's `reason_text` reached Postgres (which refuses NUL
in text); a page token with a timestamp that has no UTC equivalent reached asyncpg. Each is now
INVALID_ARGUMENT naming the field.
"""

import base64
import json
import uuid

import grpc
import pytest

from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import testing_pb2 as t
from tests.grpc_errors import violations
from tests.result_svc.helpers import ago, result, rid, sample, unique


async def resulted_sample(stub, sampler, lab, n: int) -> str:
    """The barcode of a new sample with a NEGATIVE result recorded (so a correction reaches the database)."""
    mine = sample(unique("BAD"), lab.id, n)
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[mine]), metadata=sampler.auth
    )
    assert reply.created_count == 1, reply
    await stub.RecordResults(
        pb.RecordResultsRequest(
            request_id=rid(), results=[result(t.OUTCOME_NEGATIVE, sample_barcode=mine.sample_barcode)]
        ),
        metadata=lab.auth,
    )
    return mine.sample_barcode


async def refused(call, request, auth) -> list[tuple[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(request, metadata=auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.value.code(), err.value.details())
    return violations(err.value)


def amendment(barcode: str, reason: str) -> pb.AmendResultRequest:
    return pb.AmendResultRequest(
        request_id=rid(),
        sample_barcode=barcode,
        outcome=t.OUTCOME_POSITIVE,
        tested_at=ago(minutes=50),
        method="RT-PCR cobas",
        ct_value=22.0,
        lab_reference="LIS-2",
        reason=reason,
    )


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b", "\x7f"])
async def test_a_control_character_in_an_amendment_reason_is_invalid_argument(stub, sampler, lab, bad):
    barcode = await resulted_sample(stub, sampler, lab, 7100)
    assert ("reason", "FIELD_FORMAT_INVALID") in await refused(
        stub.AmendResult, amendment(barcode, f"transcription{bad}error"), lab.auth
    )
    # Tab and line breaks are free text: they fold into spaces, as before.
    reply = await stub.AmendResult(amendment(barcode, "transcription\terror\r\nin LIS"), metadata=lab.auth)
    assert reply.result.amendment_reason == "transcription error in LIS"


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x9b"])
async def test_a_control_character_in_a_withdrawal_reason_text_is_invalid_argument(stub, sampler, lab, bad):
    barcode = await resulted_sample(stub, sampler, lab, 7200)
    request = pb.WithdrawResultRequest(
        request_id=rid(), sample_barcode=barcode, reason=t.WITHDRAWAL_REASON_OTHER, reason_text=f"mixed{bad}up"
    )
    assert ("reason_text", "FIELD_FORMAT_INVALID") in await refused(stub.WithdrawResult, request, lab.auth)
    request.request_id, request.reason_text = rid(), "mixed up\nat the bench"
    assert (await stub.WithdrawResult(request, metadata=lab.auth)).result.state == t.RESULT_STATE_WITHDRAWN


def retoken(real: str, key: object) -> str:
    """A token with the filters' digest of a real one (so only the key can be wrong) and another key."""
    data = json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))
    raw = json.dumps({"k": key, "f": data["f"]}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "key",
    [
        ["0001-01-01T00:00:00+05:00", str(uuid.uuid4())],  # before year 1 in UTC
        ["9999-12-31T23:59:59-05:00", str(uuid.uuid4())],  # after year 9999 in UTC
        ["2026-01-01T00:00:00", str(uuid.uuid4())],  # no offset: every token's timestamp has one
        [[[["deep"]]], str(uuid.uuid4())],
    ],
)
async def test_a_crafted_results_page_token_is_invalid_argument(stub, sampler, lab, key):
    await resulted_sample(stub, sampler, lab, 7300)
    await resulted_sample(stub, sampler, lab, 7301)
    real = (await stub.ListResults(pb.ListResultsRequest(page_size=1), metadata=lab.auth)).next_page_token
    assert real
    request = pb.ListResultsRequest(page_size=1, page_token=retoken(real, key))
    assert ("page_token", "PAGE_TOKEN_INVALID") in await refused(stub.ListResults, request, lab.auth)


async def test_a_deeply_nested_page_token_is_invalid_argument(stub, lab):
    # Nesting beyond the JSON parser's recursion limit, within the token size bound.
    request = pb.ListResultsRequest(page_token=base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode())
    assert ("page_token", "PAGE_TOKEN_INVALID") in await refused(stub.ListResults, request, lab.auth)
