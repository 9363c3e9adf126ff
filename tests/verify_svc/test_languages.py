"""Vietnamese first, over real gRPC: the caller's `accept-language` metadata chooses the language of a
verdict's reason and of an error's google.rpc.LocalizedMessage; without it the service's DEFAULT_LANGUAGE
(verify_svc: vi) applies. The English ErrorInfo, BadRequest and message stay as they were."""

import asyncio

import grpc
import pytest

from services.common.catalogue import ERROR_REASONS, VERDICT_REASONS
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.conftest import bearer, start_verify_svc
from tests.grpc_errors import error_reason, localized_message, localized_violations, violations
from tests.verify_svc.conftest import amend_to_positive, released_certificate

NOT_HC1 = "not a certificate"  # MALFORMED at the prefix
PREFIX_VI = VERDICT_REASONS["malformed.no_prefix"]["vi"]
PREFIX_EN = VERDICT_REASONS["malformed.no_prefix"]["en"]


def _asking(platform, language: str | None) -> tuple[tuple[str, str], ...]:
    return platform.device_auth + ((("accept-language", language),) if language is not None else ())


async def _verify(platform, qr: str, language: str | None) -> vpb.VerifyResponse:
    return await platform.verify.Verify(vpb.VerifyRequest(qr=qr), metadata=_asking(platform, language))


@pytest.mark.parametrize(
    "language, expected",
    [
        ("vi", PREFIX_VI),
        ("vi-VN", PREFIX_VI),
        ("en", PREFIX_EN),
        ("en-US,en;q=0.9", PREFIX_EN),
        ("fr-CH, fr;q=0.9, en;q=0.8, *;q=0.5", PREFIX_EN),
        ("en;q=0.3, vi;q=0.7", PREFIX_VI),
        (None, PREFIX_VI),  # verify_svc's default: Vietnamese, for checkpoint devices
        ("*", PREFIX_VI),
        ("fr", PREFIX_VI),
        ("%%garbage;;q=x", PREFIX_VI),
    ],
)
async def test_malformed_reason_in_the_language_asked_for(platform, language, expected):
    answer = await _verify(platform, NOT_HC1, language)
    assert answer.verdict == v.VERDICT_MALFORMED and answer.malformed_stage == v.MALFORMED_STAGE_PREFIX
    assert answer.reason == expected


async def test_revoked_reason_in_vietnamese_and_english(platform):
    event = await released_certificate(platform, 1800)
    qr = event.certificate.qr
    assert (await _verify(platform, qr, "vi")).verdict == v.VERDICT_VALID
    await amend_to_positive(platform, event)
    for _ in range(500):
        answer = await _verify(platform, qr, "vi")
        if answer.verdict == v.VERDICT_REVOKED:
            break
        await asyncio.sleep(0.01)
    assert answer.verdict == v.VERDICT_REVOKED
    assert answer.reason == "cơ quan cấp đã thu hồi chứng nhận này (kết quả đã được đính chính)"
    english = await _verify(platform, qr, "en")
    assert english.verdict == v.VERDICT_REVOKED
    assert english.reason == "the issuer revoked this certificate (result corrected)"  # exactly as before
    assert (await _verify(platform, qr, None)).reason == answer.reason
    # Apart from the reason, the two answers are the same.
    english.reason = answer.reason
    english.checked_at.CopyFrom(answer.checked_at)
    assert english == answer


async def test_verify_batch_answers_every_scan_in_the_language_asked_for(platform):
    request = vpb.VerifyBatchRequest(scans=[vpb.VerifyRequest(qr=NOT_HC1), vpb.VerifyRequest(qr="HC1:!!!!")])
    vi = await platform.verify.VerifyBatch(request, metadata=_asking(platform, "vi-VN"))
    en = await platform.verify.VerifyBatch(request, metadata=_asking(platform, "en"))
    assert [r.reason for r in vi.results] == [PREFIX_VI, VERDICT_REASONS["malformed.base45_alphabet"]["vi"]]
    assert [r.reason for r in en.results] == [PREFIX_EN, "invalid Base45: character outside the alphabet"]


@pytest.mark.parametrize(
    "language, locale", [("vi", "vi-VN"), ("en-GB", "en-US"), (None, "vi-VN"), ("de;q=1, en;q=0.1", "en-US")]
)
async def test_invalid_argument_carries_a_localized_message(platform, language, locale):
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _verify(platform, "", language)
    err = refused.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and error_reason(err) == "INVALID_ARGUMENT"
    assert err.details() == "invalid scan"  # the English message for developers stays
    assert violations(err) == [("qr", "FIELD_REQUIRED")]
    lang = locale[:2]
    assert localized_message(err) == (locale, ERROR_REASONS["INVALID_ARGUMENT"][lang])
    assert localized_violations(err) == [("qr", locale, ERROR_REASONS["FIELD_REQUIRED"][lang])]


@pytest.mark.parametrize("language, locale", [("vi", "vi-VN"), ("en", "en-US"), (None, "vi-VN")])
async def test_unauthenticated_carries_a_localized_message(platform, language, locale):
    metadata = bearer("not-a-known-token") + ((("accept-language", language),) if language else ())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await platform.verify.Verify(vpb.VerifyRequest(qr=NOT_HC1), metadata=metadata)
    err = refused.value
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_reason(err) == "CREDENTIAL_INVALID"
    assert localized_message(err) == (locale, ERROR_REASONS["CREDENTIAL_INVALID"][locale[:2]])


async def test_default_language_is_configurable_and_a_call_never_inherits_another_calls_language(platform):
    server = await start_verify_svc(platform.env, DEFAULT_LANGUAGE="en")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = verify_service_pb2_grpc.VerifyServiceStub(channel)

            async def reason(language: str | None) -> str:
                answer = await stub.Verify(vpb.VerifyRequest(qr=NOT_HC1), metadata=_asking(platform, language))
                return answer.reason

            assert await reason(None) == PREFIX_EN
            # Interleaved on one connection: each call gets its own language, or the default.
            answers = await asyncio.gather(*(reason(lang) for lang in ["vi", None, "vi", None, "en", None] * 5))
            assert answers == [PREFIX_VI, PREFIX_EN, PREFIX_VI, PREFIX_EN, PREFIX_EN, PREFIX_EN] * 5
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Verify(vpb.VerifyRequest(qr=""), metadata=platform.device_auth)
            assert localized_message(refused.value) == ("en-US", ERROR_REASONS["INVALID_ARGUMENT"]["en"])
    finally:
        await server.stop(0)
