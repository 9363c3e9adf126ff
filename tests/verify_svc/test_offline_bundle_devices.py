"""The checkpoint bundle carries the active rapid-test device list, and the offline verifier applies it as
verify_svc does: a rapid antigen certificate of a listed device passes, one of an unlisted device is
RULE_NOT_MET; a bundle without the list (older format) checks no device."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from services.hcert import codec, keys, payload, uvci
from services.hcert.codec import Signer
from services.registry import checkpoint_bundle as cb
from services.verify_svc.offline import BundleStatus, FixedTrust, snapshot_of
from services.verify_svc.verifier import Verifier
from tests.dcc_samples import rule_of_tests

BUNDLE_KEY = keys.SigningKeyMaterial.generate("ES256")
DSC = keys.SigningKeyMaterial.generate("ES256", entry_types=())
NOW = datetime.now(UTC).replace(microsecond=0)
RAT_RULE = rule_of_tests("00", NOW - timedelta(days=1), test_type="RAPID_ANTIGEN", validity_hours=24)


def rapid_test(device: str) -> str:
    dcc = payload.test_payload(
        family_name="Trần", given_name="Bình", date_of_birth="1990-02-03", test_type="RAPID_ANTIGEN",
        rat_device_id=device, method=None, sample_collected_at=NOW - timedelta(hours=2), outcome="NEGATIVE",
        testing_centre="Trạm Y tế", issuer="MoH", uvci=uvci.new_uvci(),
    )  # fmt: skip
    now = int(time.time())
    return codec.encode_hcert(dcc, signer=Signer(DSC), issued_at=now - 60, expires_at=now + 86400)


def bundle_with(devices: dict[str, str] | None) -> cb.Bundle:
    content = cb.content_of(
        [cb.trust_entry(DSC.certificate_der, "DE", own=False)],
        [cb.rule_entry(RAT_RULE)],
        cb.value_set_entries(devices),
        [],
        [],
    )
    signed = cb.sign(Signer(BUNDLE_KEY), cb.full_payload(1, NOW, NOW + timedelta(hours=24), content))
    return cb.read_bundle(signed, [BUNDLE_KEY.certificate])


def verdict(bundle: cb.Bundle, qr: str) -> str:
    verifier = Verifier(FixedTrust(snapshot_of(bundle)), BundleStatus(bundle))
    return asyncio.run(verifier.verify(qr, datetime.now(UTC), "24")).verdict  # the QR was just issued


def test_a_listed_device_passes_and_an_unlisted_one_is_rule_not_met():
    bundle = bundle_with({"1232": "Abbott Rapid Diagnostics, Panbio COVID-19 Ag Rapid Test"})
    assert cb.rat_devices_of(bundle) == {"1232": "Abbott Rapid Diagnostics, Panbio COVID-19 Ag Rapid Test"}
    assert verdict(bundle, rapid_test("1232")) == "VALID"
    assert verdict(bundle, rapid_test("1833")) == "RULE_NOT_MET"  # on the shipped list, not on this one


def test_a_bundle_without_a_device_list_checks_no_device():
    bundle = bundle_with(None)
    assert cb.rat_devices_of(bundle) is None
    assert verdict(bundle, rapid_test("1833")) == "VALID"
