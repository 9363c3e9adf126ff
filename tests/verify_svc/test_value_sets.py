"""Verification follows the rapid-test device list operators import (issue 18): a rapid antigen certificate
whose device (`ma`) is not active in the current list is RULE_NOT_MET, at once after `valueset import` and
without a restart; NAAT certificates and other entries are not affected; the offline verifier, whose bundle
carries no device list, does not check devices."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

from services.common.catalogue import VERDICT_REASONS
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.hcert import codec
from services.hcert import keys as hkeys
from services.registry.value_sets import RAT_DEVICES, CurrentValueSets, ValueSet, builtin
from services.verify_svc.status import UNCHECKED, Status
from services.verify_svc.trust import Snapshot, trusted_key
from services.verify_svc.verifier import Verifier
from tests.conftest import bearer
from tests.dcc_samples import naat_rule, negative_naat_dcc, rule_of_tests
from tests.result_svc.helpers import ago, result, rid, sample, unique
from tests.value_set_files import SHIPPED_DEVICES, device_list, import_value_sets, imported
from tests.verify_svc.conftest import released_certificate

NOT_APPROVED = VERDICT_REASONS["verdict.rat_device_not_approved"]
DEADLINE_S = 10.0


# --- the Verifier in-process: any issuer, and the offline verifier ----------------------------------------


class _Trust:
    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot


class _Foreign:
    async def status(self, certificate_id):
        return Status(None, UNCHECKED)


def _rat_rule(effective_from: datetime):
    return rule_of_tests("00", effective_from, test_type="RAPID_ANTIGEN", validity_hours=24)


def _korean_qr(material, entry: dict) -> str:
    now = int(time.time())
    dcc = {"ver": "1.3.0", "nam": {"fn": "Kim", "fnt": "KIM"}, "dob": "1990-01-01", "t": [entry]}
    return codec.encode_hcert(dcc, signer=codec.Signer(material), issued_at=now - 60, expires_at=now + 86400)


def _rat_entry(device: str) -> dict:
    entry = negative_naat_dcc(datetime.now(UTC) - timedelta(hours=1), "URN:UVCI:01:KR:RAT#1")["t"][0]
    return {**entry, "tt": "LP217198-3", "ma": device, "co": "KR", "tc": "Seoul"}


def _without(device: str) -> CurrentValueSets:
    """The shipped value sets with `device` marked inactive in the device list."""
    shipped = builtin()
    devices = shipped.sets[RAT_DEVICES]
    values = {**devices.values, device: {**devices.values[device], "active": False}}
    newer = ValueSet(RAT_DEVICES, devices.date, values, b"\x01" * 32, version=1)
    return CurrentValueSets({**shipped.sets, RAT_DEVICES: newer})


def test_a_rapid_test_of_any_issuer_needs_an_active_device_of_the_current_list():
    korea = hkeys.SigningKeyMaterial.generate("ES256", country="KR")
    now = datetime.now(UTC)
    rules = [_rat_rule(now - timedelta(days=30)), naat_rule("00", now - timedelta(days=30))]
    keys = [trusted_key(korea.certificate_der, "KR", False)]
    trust = _Trust(Snapshot(keys, rules, 1, builtin()))
    verifier = Verifier(trust, _Foreign())
    scan = lambda qr: asyncio.run(verifier.verify(qr, now, "24"))  # noqa: E731

    listed, unlisted, no_device = (_korean_qr(korea, _rat_entry(d)) for d in ("1232", "990001", ""))
    naat = _korean_qr(korea, negative_naat_dcc(now - timedelta(hours=1), "URN:UVCI:01:KR:NAAT#1")["t"][0])
    assert scan(listed).verdict == "VALID"
    for qr in (unlisted, no_device):
        answer = scan(qr)
        assert (answer.verdict, answer.reason, answer.test_type) == (
            "RULE_NOT_MET",
            NOT_APPROVED["en"],
            "RAPID_ANTIGEN",
        )
    assert scan(naat).verdict == "VALID"

    trust.snapshot = Snapshot(keys, rules, 1, _without("1232"))  # a newer list: 1232 withdrawn
    assert scan(listed).verdict == "RULE_NOT_MET"  # not the VALID answer kept for the repeat scan
    assert scan(naat).verdict == "VALID"

    trust.snapshot = Snapshot(keys, rules, 1)  # no value sets: the offline verifier checks no device
    assert scan(unlisted).verdict == "VALID" and scan(listed).verdict == "VALID"


# --- over real gRPC: the running verify_svc follows an import --------------------------------------------------


async def _rat_certificate(platform) -> str:
    """The QR of a negative rapid antigen test (device 1232) released just now."""
    item = sample(unique("RAT"), platform.lab["id"], 60, test_type=t.TEST_TYPE_RAPID_ANTIGEN, rat_device_id="1232")
    item.collected_at.CopyFrom(ago(hours=2))
    start = await platform.head() + 1
    registered = await platform.results.RegisterSamples(
        rpb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=bearer(platform.unit["token"])
    )
    assert registered.created_count == 1, registered
    await platform.results.RecordResults(
        rpb.RecordResultsRequest(request_id=rid(), results=[result(sample_barcode=item.sample_barcode)]),
        metadata=bearer(platform.lab["token"]),
    )
    [event] = await platform.collect(platform.partner["token"], start, 1)
    return event.certificate.qr


async def _verify(platform, qr: str, language: str = "en") -> vpb.VerifyResponse:
    return await platform.verify.Verify(
        vpb.VerifyRequest(qr=qr), metadata=platform.device_auth + (("accept-language", language),)
    )


async def _until(platform, qr: str, verdict: int) -> vpb.VerifyResponse:
    started = time.monotonic()
    while True:
        answer = await _verify(platform, qr)
        if answer.verdict == verdict:
            return answer
        assert time.monotonic() - started < DEADLINE_S, f"still {v.Verdict.Name(answer.verdict)}: {answer.reason}"
        await asyncio.sleep(0.02)


async def test_a_withdrawn_device_makes_its_certificates_rule_not_met_at_once_and_back(
    platform, database_url, tmp_path
):
    rat = await _rat_certificate(platform)
    naat = (await released_certificate(platform, 61)).certificate.qr
    assert (await _verify(platform, rat)).verdict == v.VERDICT_VALID
    assert (await _verify(platform, naat)).verdict == v.VERDICT_VALID

    [withdrawn] = imported(import_value_sets(database_url, device_list(tmp_path, "devices.json", inactive=("1232",))))
    assert (withdrawn["version"], withdrawn["imported"]) == (1, True)
    answer = await _until(platform, rat, v.VERDICT_RULE_NOT_MET)
    assert answer.reason == NOT_APPROVED["en"] and answer.test_type == t.TEST_TYPE_RAPID_ANTIGEN
    assert (await _verify(platform, rat, "vi")).reason == NOT_APPROVED["vi"]
    assert (await _verify(platform, naat)).verdict == v.VERDICT_VALID

    [back] = imported(import_value_sets(database_url, SHIPPED_DEVICES))  # the shipped list again: version 2
    assert (back["version"], back["imported"]) == (2, True)
    await _until(platform, rat, v.VERDICT_VALID)
