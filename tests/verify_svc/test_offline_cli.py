"""The offline verifier CLI, run as a process: same verdicts offline, QR images read, JSON per QR."""

import base64
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf import json_format

from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.hcert import codec, qr
from services.hcert import keys as hkeys

ROOT = Path(__file__).resolve().parents[2]


def offline(*args: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "services.verify_svc.offline", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_public_conformance_certificate_offline(tmp_path):
    case = json.loads((ROOT / "tests/conformance/dcc/common/CO3.json").read_text())
    (tmp_path / "signer.der").write_bytes(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))
    [answer] = offline("--trust", str(tmp_path), "--at", case["TESTCTX"]["VALIDATIONCLOCK"], case["PREFIX"])
    assert answer["signature_valid"] is True and answer["cwt_valid_at"] is True
    assert answer["payload"] == case["JSON"] and answer["entry_type"] in ("TEST", "VACCINATION", "RECOVERY")
    assert answer["verdict"] in ("RULE_NOT_MET", "TEST_POSITIVE")  # no --rules: no rule applies


def test_image_and_rules_give_the_service_verdict(tmp_path):
    material = hkeys.SigningKeyMaterial.generate("ES256")
    (tmp_path / "dsc.pem").write_bytes(material.certificate.public_bytes(Encoding.PEM))
    now = int(time.time())
    sample_time = datetime.fromtimestamp(now - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    dcc = {
        "ver": "1.3.0",
        "nam": {"fn": "Trần", "fnt": "TRAN", "gn": "Bình", "gnt": "BINH"},
        "dob": "1990-02-03",
        "t": [
            {
                "tg": "840539006",
                "tt": "LP6464-4",
                "sc": sample_time,
                "tr": "260415000",
                "tc": "CDC Bắc Giang",
                "co": "VN",
                "is": "MoH",
                "ci": "URN:UVCI:01:VN:OFFLINE1#B",
            }
        ],
    }
    text = codec.encode_hcert(dcc, signer=codec.Signer(material), issued_at=now - 60, expires_at=now + 86400)
    (tmp_path / "qr.png").write_bytes(qr.render(text, "png", 4))
    rules = vpb.GetRulesResponse(province_code="24", ruleset_version=1)
    rule = rules.rules.add(
        rule_id="r1", version=1, province_code="00", entry_type=1, test_type=1, accepted_outcomes=[1]
    )
    rule.validity.seconds = 72 * 3600
    rule.effective_from.FromSeconds(0)
    (tmp_path / "rules.json").write_text(json_format.MessageToJson(rules))
    trust = tmp_path / "trust"
    trust.mkdir()
    (tmp_path / "dsc.pem").rename(trust / "dsc.pem")
    answers = offline(
        "--trust", str(trust), "--rules", str(tmp_path / "rules.json"), str(tmp_path / "qr.png"), text, "garbage"
    )
    assert [a["verdict"] for a in answers] == ["VALID", "VALID", "MALFORMED"]
    assert answers[0]["payload"]["nam"]["fn"] == "Trần" and answers[2]["stage"] == "PREFIX"


def test_unusable_trust_certificates_are_skipped_and_every_qr_gets_its_line(tmp_path):
    """A P-384 signer verifies; an Ed25519 certificate beside it is skipped with a warning (it used to end
    the run with a traceback and no verdict for any QR)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from tests.hcert.test_signature_algorithms import ecdsa_qr, foreign_certificate

    key = ec.generate_private_key(ec.SECP384R1())
    der = foreign_certificate(key)
    (tmp_path / "p384.der").write_bytes(der)
    (tmp_path / "ed25519.der").write_bytes(foreign_certificate(ed25519.Ed25519PrivateKey.generate()))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.verify_svc.offline",
            "--trust",
            str(tmp_path),
            ecdsa_qr(key, "ES384", der),
            "HC1:broken",
            "not a qr",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "ed25519.der" in proc.stderr and "Ed25519" in proc.stderr
    signed, broken, garbage = [json.loads(line) for line in proc.stdout.splitlines()]
    assert signed["signature_valid"] is True and signed["issuer_country"] == "DE"
    assert signed["verdict"] == "RULE_NOT_MET"  # no --rules: genuine, but no rule applies
    assert broken["verdict"] == garbage["verdict"] == "MALFORMED"


def test_signature_and_schema_are_separate_findings(tmp_path):
    """A genuinely signed certificate whose payload fails the schema of its own version (a partial birth
    date, allowed only from 1.1.0) is MALFORMED at stage SCHEMA, and says its signature is valid."""
    material = hkeys.SigningKeyMaterial.generate("ES256", country="DE")
    (tmp_path / "de.der").write_bytes(material.certificate_der)
    now = int(time.time())
    dcc = {
        "ver": "1.0.0",
        "nam": {"fn": "Muller", "fnt": "MULLER"},
        "dob": "1980",
        "t": [{"tg": "840539006", "tt": "LP6464-4", "sc": "2021-05-01T10:00:00Z", "tr": "260415000",
               "tc": "Labor", "co": "DE", "is": "RKI", "ci": "URN:UVCI:01:DE:SEP#1"}],
    }  # fmt: skip
    sign = lambda d: codec.encode_hcert(d, signer=codec.Signer(material), issued_at=now - 60, expires_at=now + 600)  # noqa: E731
    partial, full = offline("--trust", str(tmp_path), sign(dcc), sign({**dcc, "dob": "1980-05-05"}))
    assert partial["verdict"] == "MALFORMED" and partial["stage"] == "SCHEMA"
    assert partial["signature_valid"] is True and partial["schema_valid"] is False
    assert "/dob" in partial["schema_error"] and "1.0.0" in partial["schema_error"]
    assert full["signature_valid"] is True and full["schema_valid"] is True and full["schema_error"] is None


def test_language_option_gives_the_reason_in_vietnamese_and_english_by_default(tmp_path):
    material = hkeys.SigningKeyMaterial.generate("ES256")
    (tmp_path / "dsc.pem").write_bytes(material.certificate.public_bytes(Encoding.PEM))
    [english] = offline("--trust", str(tmp_path), "not a certificate")
    [vietnamese] = offline("--trust", str(tmp_path), "--language", "vi", "not a certificate")
    assert english["verdict"] == vietnamese["verdict"] == "MALFORMED"
    assert english["reason"] == 'the text does not start with the context identifier "HC1:"'
    assert vietnamese["reason"] == 'nội dung không bắt đầu bằng tiền tố nhận dạng "HC1:"'
