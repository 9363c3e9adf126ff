"""The public RPCs over HTTP/JSON through the gateway, against the real services: the canonical JSON both
ways, the caller's own token, errors as google.rpc.Status JSON under the matching HTTP status."""

import asyncio
import json
import time

from google.protobuf import json_format

from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from tests.result_svc.helpers import ago, result, rid, sample, unique
from tests.verify_svc.conftest import amend_to_positive, released_certificate

JSON_TYPE = "application/json"


async def call(
    stack, method: str, path: str, body=None, *, token: str | None = None, raw: bytes | None = None, **headers
):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with stack.http.request(
        method, stack.gateway_url + path, data=data, headers={**stack.headers(token), **headers}
    ) as response:
        return response.status, response.headers, await response.read()


def details(status: dict, type_name: str) -> list[dict]:
    return [d for d in status.get("details", []) if d["@type"] == f"type.googleapis.com/google.rpc.{type_name}"]


def reason_of(status: dict) -> str:
    return details(status, "ErrorInfo")[0]["reason"]


async def test_verify_answers_the_same_verdict_json_as_grpc(stack):
    event = await released_certificate(stack.platform, 700)
    http_status, headers, body = await call(stack, "POST", "/v1/verify", {"qr": event.certificate.qr})
    assert http_status == 200, body
    assert headers["content-type"].startswith(JSON_TYPE)
    verdict = json.loads(body)
    over_grpc = await stack.platform.verify.Verify(
        vpb.VerifyRequest(qr=event.certificate.qr), metadata=stack.platform.device_auth
    )
    assert verdict["verdict"] == "VERDICT_VALID"
    expected = json_format.MessageToDict(over_grpc)
    assert verdict.pop("checkedAt") and expected.pop("checkedAt")
    assert verdict == expected
    assert verdict["familyName"] == "Nguyễn"  # UTF-8 JSON, diacritics kept
    assert verdict["certificateId"] == event.certificate.certificate_id


async def test_curl_style_form_content_type_is_read_as_json(stack):
    """`curl -d '{...}'` sends application/x-www-form-urlencoded: the README's example must still work."""
    event = await released_certificate(stack.platform, 701)
    status, _, body = await call(
        stack,
        "POST",
        "/v1/verify",
        raw=json.dumps({"qr": event.certificate.qr}).encode(),
        **{"content-type": "application/x-www-form-urlencoded"},
    )
    assert status == 200 and json.loads(body)["verdict"] == "VERDICT_VALID"


async def test_an_amended_result_verifies_revoked_over_http(stack):
    event = await released_certificate(stack.platform, 702)
    await amend_to_positive(stack.platform, event)
    deadline = time.monotonic() + 15
    while True:
        _, _, body = await call(stack, "POST", "/v1/verify", {"qr": event.certificate.qr})
        if json.loads(body)["verdict"] == "VERDICT_REVOKED" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert json.loads(body)["verdict"] == "VERDICT_REVOKED"


async def test_garbage_qr_is_a_malformed_verdict_not_an_error(stack):
    status, _, body = await call(stack, "POST", "/v1/verify", {"qr": "HC1:NOT-BASE45!!"})
    assert status == 200
    assert json.loads(body)["verdict"] == "VERDICT_MALFORMED"


async def test_verify_batch_answers_in_request_order(stack):
    event = await released_certificate(stack.platform, 703)
    status, _, body = await call(
        stack, "POST", "/v1/verify:batch", {"scans": [{"qr": event.certificate.qr}, {"qr": "HC1:garbage"}]}
    )
    assert status == 200, body
    verdicts = [r["verdict"] for r in json.loads(body)["results"]]
    assert verdicts == ["VERDICT_VALID", "VERDICT_MALFORMED"]


async def test_rules_and_trust_list_are_gets_with_query_parameters(stack):
    status, _, body = await call(stack, "GET", "/v1/rules")
    assert status == 200, body
    assert json.loads(body)["provinceCode"] == "24"
    status, _, body = await call(stack, "GET", "/v1/trust-list?sinceVersion=0")
    assert status == 200, body
    trust_list = json.loads(body)
    assert trust_list["full"] is True and trust_list["added"]
    status, _, body = await call(stack, "GET", "/v1/trust-list?since_version=0")  # the proto name works too
    assert status == 200, body


async def test_a_query_value_of_the_wrong_type_is_invalid_argument(stack):
    status, _, body = await call(stack, "GET", "/v1/trust-list?sinceVersion=abc")
    assert status == 400
    error = json.loads(body)
    assert error["code"] == 3 and reason_of(error) == "INVALID_ARGUMENT"
    assert "sinceVersion" in details(error, "BadRequest")[0]["fieldViolations"][0]["description"]


async def test_intake_register_record_and_read_back_over_http(stack):
    platform = stack.platform
    barcode = unique("HTTP")
    registration = json_format.MessageToDict(sample(barcode, platform.lab["id"], 704))
    status, _, body = await call(
        stack,
        "POST",
        "/v1/samples:register",
        {"requestId": rid(), "samples": [registration]},
        token=platform.unit["token"],
    )
    assert status == 200, body
    assert json.loads(body)["createdCount"] == 1
    submission = json_format.MessageToDict(result(sample_barcode=barcode))
    status, _, body = await call(
        stack, "POST", "/v1/results:record", {"requestId": rid(), "results": [submission]}, token=platform.lab["token"]
    )
    assert status == 200, body
    recorded = json.loads(body)
    assert recorded.get("rejectedCount", 0) == 0, recorded

    status, _, body = await call(
        stack, "GET", f"/v1/samples:lookup?sampleBarcode={barcode}", token=platform.unit["token"]
    )
    assert status == 200, body
    sample_id = json.loads(body)["sample"]["sampleId"]
    status, _, body = await call(stack, "GET", f"/v1/samples/{sample_id}", token=platform.unit["token"])
    assert status == 200, body
    assert json.loads(body)["sample"]["sampleBarcode"] == barcode

    window = f"startTime={ago(hours=2).ToJsonString()}"
    status, _, body = await call(
        stack,
        "GET",
        f"/v1/results?pageSize=100&outcomes=OUTCOME_NEGATIVE&outcomes=OUTCOME_POSITIVE&{window}",
        token=platform.lab["token"],
    )
    assert status == 200, body
    assert barcode in {r["sampleBarcode"] for r in json.loads(body)["results"]}


async def test_a_rejected_batch_item_carries_its_field_path(stack):
    platform = stack.platform
    bad = json_format.MessageToDict(sample(unique("HTTP"), platform.lab["id"], 705))
    bad["person"]["dateOfBirth"] = "not-a-date"
    status, _, body = await call(
        stack, "POST", "/v1/samples:register", {"requestId": rid(), "samples": [bad]}, token=platform.unit["token"]
    )
    text = body.decode()
    assert status in (200, 400), text
    assert "samples[0].person.date_of_birth" in text


async def test_feed_status_and_citizen_lookup(stack):
    platform = stack.platform
    status, _, body = await call(stack, "GET", "/v1/feed/status", token=platform.operator["token"])
    assert status == 200, body
    assert int(json.loads(body)["headPosition"]) > 0  # uint64 is a string in canonical JSON
    person = json_format.MessageToDict(sample("x", "y", 704).person)
    status, _, body = await call(
        stack,
        "POST",
        "/v1/citizens:lookup",
        {"identity": person["identity"], "dateOfBirth": person["dateOfBirth"]},
        token=platform.partner["token"],
    )
    assert status == 200, body
    assert json.loads(body)["results"], body


async def test_missing_token_is_401_with_status_json_in_vietnamese_by_default(stack):
    async with stack.http.post(stack.gateway_url + "/v1/verify", json={"qr": "HC1:x"}) as response:
        assert response.status == 401
        error = await response.json()
    assert error["code"] == 16 and reason_of(error) == "CREDENTIAL_MISSING"
    assert details(error, "LocalizedMessage")[0]["locale"] == "vi-VN"


async def test_unknown_token_is_the_services_own_answer_in_the_language_asked(stack):
    status, _, body = await call(
        stack, "POST", "/v1/verify", {"qr": "HC1:x"}, token="ctk_unknown", **{"accept-language": "en"}
    )
    assert status == 401
    error = json.loads(body)
    assert reason_of(error) == "CREDENTIAL_INVALID"
    assert details(error, "LocalizedMessage")[0]["locale"] == "en-US"


async def test_a_role_that_may_not_call_is_403(stack):
    status, _, body = await call(stack, "POST", "/v1/verify", {"qr": "HC1:x"}, token=stack.platform.lab["token"])
    assert status == 403
    assert reason_of(json.loads(body)) == "ROLE_NOT_ALLOWED"


async def test_an_invalid_field_is_400_with_its_field_violation(stack):
    status, _, body = await call(stack, "POST", "/v1/verify", {"qr": ""})
    assert status == 400
    violations = details(json.loads(body), "BadRequest")[0]["fieldViolations"]
    assert violations[0]["field"] == "qr" and violations[0]["reason"] == "FIELD_REQUIRED"


async def test_bodies_that_are_not_the_request_are_refused_precisely(stack):
    cases = {
        b'{"qr": "HC1:x", "unknownField": 1}': "unknownField",
        b'{"qr": "HC1:x", "qr": "HC1:y"}': "qr",
        b"[1, 2]": "JSON object",
        b'{"qr": 12}': "qr",
        b'{"scannedAt": NaN, "qr": "x"}': "JSON",
        b"\xff\xfe{}": "UTF-8",
        b"{" * 100_000: "JSON",
        b'{"qr": "HC1:x"': "JSON",
    }
    for raw, named in cases.items():
        status, _, body = await call(stack, "POST", "/v1/verify", raw=raw)
        assert status == 400, (raw[:40], body)
        error = json.loads(body)
        assert error["code"] == 3, error
        assert named in json.dumps(error, ensure_ascii=False), (raw[:40], error)


async def test_a_body_over_the_limit_is_413(stack):
    limit = stack.gateway.state.config.max_request_bytes
    status, _, body = await call(stack, "POST", "/v1/verify", raw=b'{"qr": "' + b"A" * limit + b'"}')
    assert status == 413
    error = json.loads(body)
    assert error["code"] == 8 and reason_of(error) == "REQUEST_TOO_LARGE"


async def test_unknown_routes_and_methods_are_status_json(stack):
    status, _, body = await call(stack, "GET", "/v1/nothing-here")
    assert status == 404 and reason_of(json.loads(body)) == "ROUTE_NOT_FOUND"
    status, _, body = await call(stack, "GET", "/v1/verify")
    assert status == 405 and reason_of(json.loads(body)) == "ROUTE_NOT_FOUND"
    # AdminService is not served over HTTP, whatever the token.
    status, _, _ = await call(stack, "GET", "/v1/organisations", token=stack.platform.operator["token"])
    assert status == 404


async def test_health_endpoints(stack):
    async with stack.http.get(stack.gateway_url + "/healthz") as response:
        assert response.status == 200
    async with stack.http.get(stack.gateway_url + "/readyz") as response:
        assert response.status == 200
