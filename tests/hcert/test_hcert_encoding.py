"""HCERT signing side: keys, UVCI, DCC payload, COSE/CWT encoding and QR rendering.

Produced HCERTs are decoded here through an independent path (base45, zlib, cbor2 and cryptography
directly, never the project's own code), and that decoder is itself checked against the public DCC
test vectors when they are available.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import zlib
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.hcert import codec, keys, payload, qr, uvci
from tests.hcert_independent import COMBINED, QR_ALPHANUMERIC, assert_schema_valid, decode_and_verify

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO / "tests" / "conformance" / "dcc" / "common"
ISSUED_AT = 1_700_000_000
EXPIRES_AT = ISSUED_AT + 72 * 3600
ISSUER = "Ministry of Health of Viet Nam"
SC_FORMAT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.mark.parametrize("case", ["CO3", "CO1", "CO2"])  # ES256, PS256 RSA 2048, PS256 RSA 3072
def test_independent_decoder_accepts_public_dcc_vectors(case):
    path = CONFORMANCE / f"{case}.json"
    assert path.exists(), f"missing conformance case {path}"
    vector = json.loads(path.read_text(encoding="utf-8"))
    certificate = x509.load_der_x509_certificate(base64.b64decode(vector["TESTCTX"]["CERTIFICATE"]))
    decoded = decode_and_verify(vector["PREFIX"], certificate)
    assert decoded["cose"].hex() == vector["COSE"]
    assert decoded["claims"][-260][1] == vector["JSON"]
    assert set(decoded["claims"]) == {1, 4, 6, -260}
    # Our messages have the same shape: alg and an 8-byte kid in the protected header, nothing unprotected.
    assert set(decoded["header"]) == {1, 4} and len(decoded["header"][4]) == 8 and not decoded["unprotected"]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["ES256", "PS256"])
def material(request) -> keys.SigningKeyMaterial:
    return keys.SigningKeyMaterial.generate(request.param, timedelta(days=30))


def make_dcc(test_type: str = "NAAT", **overrides) -> dict:
    fields = dict(
        family_name="Nguyễn",
        given_name="Văn An",
        date_of_birth=date(1990, 4, 30),
        test_type=test_type,
        rat_device_id="1232" if test_type == "RAPID_ANTIGEN" else None,
        method="Roche cobas SARS-CoV-2" if test_type == "NAAT" else "",
        sample_collected_at=datetime(2021, 8, 1, 9, 15, 30, 123456, tzinfo=timezone(timedelta(hours=7))),
        outcome="NEGATIVE",
        testing_centre="CDC Hà Nội, 70 Nguyễn Chí Thanh",
        issuer=ISSUER,
        uvci=uvci.new_uvci(),
    )
    fields.update(overrides)
    return payload.test_payload(**fields)


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.parametrize("test_type", ["NAAT", "RAPID_ANTIGEN"])
def test_encode_hcert_decodes_independently(material, test_type):
    dcc = make_dcc(test_type)
    signer = codec.Signer(material)
    text = codec.encode_hcert(dcc, signer=signer, issued_at=ISSUED_AT, expires_at=EXPIRES_AT)
    decoded = decode_and_verify(text, material.certificate)

    alg = {"ES256": -7, "PS256": -37}[material.algorithm]
    assert decoded["header"] == {1: alg, 4: keys.kid_of(material.certificate_der)}
    assert decoded["unprotected"] == {}
    assert cbor2.dumps(cbor2.loads(decoded["cose"])) == decoded["cose"]  # well-formed, preferred encoding

    claims = decoded["claims"]
    assert set(claims) == {1, 4, 6, -260}
    assert claims[1] == "VN" and claims[6] == ISSUED_AT and claims[4] == EXPIRES_AT
    assert type(claims[6]) is int and type(claims[4]) is int
    assert set(claims[-260]) == {1}
    got = claims[-260][1]
    assert got == dcc
    assert_schema_valid(got)

    assert got["ver"] == "1.3.0" and got["dob"] == "1990-04-30"
    assert got["nam"] == {"fn": "Nguyễn", "fnt": "NGUYEN", "gn": "Văn An", "gnt": "VAN<AN"}
    [entry] = got["t"]
    assert entry["tg"] == "840539006"
    assert entry["sc"] == "2021-08-01T02:15:30Z"  # +07:00 → UTC, seconds precision
    assert SC_FORMAT.fullmatch(entry["sc"])
    assert entry["tr"] == "260415000"
    assert entry["tc"] == "CDC Hà Nội, 70 Nguyễn Chí Thanh"
    assert entry["co"] == "VN" and entry["is"] == ISSUER
    assert uvci.is_valid(entry["ci"])
    if test_type == "NAAT":
        assert entry["tt"] == "LP6464-4" and entry["nm"] == "Roche cobas SARS-CoV-2" and "ma" not in entry
    else:
        assert entry["tt"] == "LP217198-3" and entry["ma"] == "1232" and "nm" not in entry


def test_tampered_payload_fails_verification(material):
    cose = codec.Signer(material).sign(codec.encode_cwt(make_dcc(), issued_at=ISSUED_AT, expires_at=EXPIRES_AT))
    tampered = cose.replace(b"NGUYEN", b"NGUYEX")
    text = "HC1:" + base45.b45encode(zlib.compress(tampered, 9)).decode()
    with pytest.raises(Exception) as info:
        decode_and_verify(text, material.certificate)
    assert type(info.value).__name__ == "InvalidSignature"


def test_signature_from_other_key_fails():
    a, b = keys.SigningKeyMaterial.generate("ES256"), keys.SigningKeyMaterial.generate("ES256")
    text = codec.encode_hcert(make_dcc(), signer=codec.Signer(a), issued_at=ISSUED_AT, expires_at=EXPIRES_AT)
    with pytest.raises(AssertionError):  # kid mismatch
        decode_and_verify(text, b.certificate)


def test_positive_result_and_minimal_name():
    material = keys.SigningKeyMaterial.generate("ES256")
    dcc = make_dcc("RAPID_ANTIGEN", outcome="POSITIVE", given_name="", date_of_birth="1975")
    assert dcc["nam"] == {"fn": "Nguyễn", "fnt": "NGUYEN"}
    assert dcc["t"][0]["tr"] == "260373001" and dcc["dob"] == "1975"
    text = codec.encode_hcert(dcc, signer=codec.Signer(material), issued_at=ISSUED_AT, expires_at=EXPIRES_AT)
    assert decode_and_verify(text, material.certificate)["claims"][-260][1] == dcc
    assert_schema_valid(dcc)


def test_encode_cwt_rejects_bad_claims():
    dcc = make_dcc()
    with pytest.raises(ValueError):
        codec.encode_cwt(dcc, issued_at=float(ISSUED_AT), expires_at=EXPIRES_AT)
    with pytest.raises(ValueError):
        codec.encode_cwt(dcc, issued_at=ISSUED_AT, expires_at=ISSUED_AT)
    with pytest.raises(ValueError):
        codec.encode_cwt(dcc, issuer="VNM", issued_at=ISSUED_AT, expires_at=EXPIRES_AT)


def test_b45encode_matches_package():
    for length in [*range(0, 40), 255, 256, 555, 1024]:
        data = os.urandom(length)
        assert codec.b45encode(data) == base45.b45encode(data).decode()
    # RFC 9285 §4 examples
    for data, text in [
        (b"AB", "BB8"),
        (b"Hello!!", "%69 VD92EX0"),
        (b"base-45", "UJCLQE7W581"),
        (b"ietf!", "QED8WEX0"),
    ]:
        assert codec.b45encode(data) == text


# --- payload -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Nguyễn Văn An", "NGUYEN<VAN<AN"),
        ("Trần Thị Bích Ngọc", "TRAN<THI<BICH<NGOC"),
        ("Đặng Đức Lưu", "DANG<DUC<LUU"),
        ("đỗ  thị-hường", "DO<THI<HUONG"),
        ("Ưng Ơn", "UNG<ON"),
        ("Musterfrau-Gößinger", "MUSTERFRAU<GOESSINGER"),  # as in the public DCC test data
        ("d'Červenková Panklová", "DCERVENKOVA<PANKLOVA"),  # the schema's own example
        (" Lê  -  Hoàng 3 ", "LE<HOANG"),
        ("李小龍", ""),
    ],
)
def test_transliterate(name, expected):
    assert payload.transliterate(name) == expected


def test_transliterate_length_limit():
    result = payload.transliterate("Nguyễn " * 30)
    assert len(result) <= 80 and not result.endswith("<") and set(result) <= set("NGUYE<")


def test_payload_rules():
    naat = make_dcc(method="")
    assert "nm" not in naat["t"][0]
    long_centre = "Trung tâm " * 20
    assert len(make_dcc(testing_centre=long_centre)["t"][0]["tc"]) == 80
    assert_schema_valid(make_dcc(testing_centre=long_centre, method="x" * 100, family_name="Phạm " * 20))
    for bad in (
        dict(outcome="INCONCLUSIVE"),
        dict(test_type="PCR"),
        dict(uvci="URN:UVCI:01:VN:ABC#A"),
        dict(sample_collected_at=datetime(2021, 8, 1, 9, 0)),
        dict(date_of_birth="1890-01-01"),
        dict(family_name="李", given_name=""),
        dict(testing_centre=" "),
    ):
        with pytest.raises(ValueError):
            make_dcc(**bad)
    with pytest.raises(ValueError):
        make_dcc("RAPID_ANTIGEN", rat_device_id="")
    with pytest.raises(ValueError):
        make_dcc("NAAT", rat_device_id="1232")


def test_schema_validator_is_not_vacuous():
    dcc = make_dcc()
    broken = json.loads(json.dumps(dcc))
    broken["nam"]["fnt"] = "Nguyen"
    del broken["t"][0]["tt"]
    assert len(list(COMBINED.iter_errors(broken))) >= 2
    assert list(COMBINED.iter_errors({**dcc, "dob": "01.02.1990"}))


# --- UVCI -------------------------------------------------------------------------------------

KNOWN_UVCIS = [
    "URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7#1",  # DCC schema repository examples
    "URN:UVCI:01:AT:10807843F94AEE0EE5093FBC254BD813#B",  # dgc-testdata (Austria)
    "URN:UVCI:01:AT:B5921A35D6A0D696421B3E2462178297#I",
]


@pytest.mark.parametrize("known", KNOWN_UVCIS)
def test_uvci_check_character_known_examples(known):
    body, check = known.split("#")
    assert uvci.check_character(body) == check
    assert uvci.is_valid(known)


def test_uvci_check_character_by_hand():
    # "URN:UVCI:01:VN:ABC123", values A=0…Z=25, 0=26…9=35, "/"=36, ":"=37. From the right, the factor
    # alternates 2, 1, 2, …; each addend is factor·value reduced to (a // 38 + a % 38):
    #   3:58→21  2:28  1:54→17  C:2  B:2  A:0  ":":74→37  N:13  V:42→5  ":":37  1:54→17  0:26
    #   ":":74→37  I:8  C:4  V:21  U:40→3  ":":37  N:26  R:17  U:40→3
    # Sum 361; 361 mod 38 = 19; (38 − 19) mod 38 = 19 → "T".
    assert uvci.check_character("URN:UVCI:01:VN:ABC123") == "T"
    assert uvci.is_valid("URN:UVCI:01:VN:ABC123#T")


def test_new_uvci_and_is_valid():
    ids = {uvci.new_uvci() for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        assert len(value) <= 80
        assert re.fullmatch(r"URN:UVCI:01:VN:[A-Z0-9]{25}#[A-Z0-9/:]", value)
        assert uvci.is_valid(value)
    value = next(iter(ids))
    body, check = value.split("#")
    # Luhn mod N catches every single-character substitution, in any position.
    for i in range(len("URN:UVCI:01:VN:"), len(body)):
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
            if c != body[i]:
                assert not uvci.is_valid(f"{body[:i]}{c}{body[i + 1 :]}#{check}")
    other = next(c for c in uvci.ALPHABET if c != check)
    assert not uvci.is_valid(f"{body}#{other}")
    assert not uvci.is_valid(value.lower())
    assert not uvci.is_valid(body)
    long_body = "URN:UVCI:01:VN:" + "A" * 64
    assert not uvci.is_valid(f"{long_body}#{uvci.check_character(long_body)}")  # 81 characters
    with pytest.raises(ValueError):
        uvci.check_character("URN:UVCI:01:VN:abc")


# --- keys -------------------------------------------------------------------------------------


def test_kid_and_material(material):
    assert len(material.kid) == 8
    assert material.kid == hashlib.sha256(material.certificate.public_bytes(serialization.Encoding.DER)).digest()[:8]
    assert material.kid == keys.kid_of(material.certificate_der)
    assert keys.key_algorithm(material.certificate.public_key()) == material.algorithm
    assert keys.certificate_matches_key(material.certificate, material.key)
    assert "PRIVATE" not in repr(material)


def test_certificate_contents(material):
    cert = material.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "VN"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Bluezone test-result DSC"
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert cert.signature_hash_algorithm.name == "sha256"
    cert.verify_directly_issued_by(cert)
    now = datetime.now(UTC)
    assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    assert keys.allowed_entry_types(cert) == ("TEST",)


def test_allowed_entry_types_from_eku():
    key = keys.generate_private_key("ES256")
    validity = timedelta(days=1)
    assert keys.allowed_entry_types(keys.make_certificate(key, "ES256", validity)) == ("TEST",)
    every = keys.make_certificate(key, "ES256", validity, entry_types=("RECOVERY", "TEST", "VACCINATION"))
    assert keys.allowed_entry_types(every) == ("TEST", "VACCINATION", "RECOVERY")
    eku = every.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {o.dotted_string for o in eku} == {keys.OID_TEST, keys.OID_VACCINATION, keys.OID_RECOVERY}
    no_eku = keys.make_certificate(key, "ES256", validity, entry_types=())
    assert keys.allowed_entry_types(no_eku) == ()
    with pytest.raises(x509.ExtensionNotFound):
        no_eku.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    with pytest.raises(ValueError):
        keys.make_certificate(key, "ES256", validity, entry_types=("BOOSTER",))
    with pytest.raises(ValueError):
        keys.make_certificate(key, "PS256", validity)

    # Certificates from elsewhere: the ".0" OID spelling counts; unrelated purposes mean "all types".
    def foreign(usages):
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")])
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(datetime(2021, 1, 1))
            .not_valid_after(datetime(2031, 1, 1))
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(key, hashes.SHA256())
        )

    assert keys.allowed_entry_types(foreign([x509.ObjectIdentifier(keys.OID_VACCINATION_ALT)])) == ("VACCINATION",)
    assert keys.allowed_entry_types(foreign([ExtendedKeyUsageOID.CODE_SIGNING])) == ()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("CO6", ("TEST",)),
        ("CO9", ("VACCINATION",)),
        ("CO14", ("RECOVERY",)),
        ("CO3", ("TEST", "VACCINATION", "RECOVERY")),
        ("CO15", ()),
    ],
)
def test_allowed_entry_types_of_public_test_certificates(case, expected):
    path = CONFORMANCE / f"{case}.json"
    assert path.exists(), f"missing conformance case {path}"
    der = base64.b64decode(json.loads(path.read_text(encoding="utf-8"))["TESTCTX"]["CERTIFICATE"])
    # CO15's certificate has an empty extended key usage, which cryptography cannot parse.
    assert keys.allowed_entry_types(x509.load_der_x509_certificate(der)) == expected


def _pem(key, fmt=serialization.PrivateFormat.PKCS8, encryption=None) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption or serialization.NoEncryption())


def test_load_private_key_pem_formats():
    ec_key = keys.generate_private_key("ES256")
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):  # SEC1
        loaded, algorithm = keys.load_private_key_pem(_pem(ec_key, fmt))
        assert algorithm == "ES256" and keys.private_key_pem(loaded) == keys.private_key_pem(ec_key)
    assert keys.private_key_pem(ec_key).startswith(b"-----BEGIN PRIVATE KEY-----")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    loaded, algorithm = keys.load_private_key_pem(_pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL))
    assert algorithm == "PS256" and loaded.key_size == 2048


@pytest.mark.parametrize(
    "make_pem, reason",
    [
        (
            lambda: _pem(keys.generate_private_key("ES256"), encryption=serialization.BestAvailableEncryption(b"pw")),
            "encrypted",
        ),
        (lambda: _pem(ec.generate_private_key(ec.SECP384R1())), "P-256"),
        (lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "2048"),
        (lambda: _pem(ed25519.Ed25519PrivateKey.generate()), "unsupported"),
        (lambda: b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM"),
        (lambda: b"not a key", "PEM"),
        (lambda: b"", "PEM"),
    ],
)
def test_load_private_key_pem_rejects(make_pem, reason):
    with pytest.raises(ValueError, match=reason):
        keys.load_private_key_pem(make_pem())


def test_material_rejects_mismatch():
    a, b = keys.SigningKeyMaterial.generate("ES256"), keys.SigningKeyMaterial.generate("ES256")
    assert not keys.certificate_matches_key(a.certificate, b.key)
    with pytest.raises(ValueError):
        keys.SigningKeyMaterial(key=b.key, certificate=a.certificate, algorithm="ES256")
    with pytest.raises(ValueError):
        keys.SigningKeyMaterial(key=a.key, certificate=a.certificate, algorithm="PS256")


# --- QR ----------------------------------------------------------------------------------------


def test_qr_rendering():
    material = keys.SigningKeyMaterial.generate("ES256")
    text = codec.encode_hcert(make_dcc(), signer=codec.Signer(material), issued_at=ISSUED_AT, expires_at=EXPIRES_AT)
    assert set(text) <= QR_ALPHANUMERIC
    code = qr.make(text)
    assert code.mode == "alphanumeric" and code.error == "Q" and not code.is_micro
    png = qr.render(text, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    svg = qr.render(text, "svg", scale=2)
    assert b"<svg" in svg[:200] and svg.rstrip().endswith(b"</svg>")
    lines = qr.terminal(text).splitlines()
    width = code.symbol_size(scale=1, border=4)[0]
    assert len(lines) == (width + 1) // 2 and all(len(line) == width for line in lines)
    with pytest.raises(ValueError):
        qr.render("hc1:lower case", "png")
    with pytest.raises(ValueError):
        qr.render(text, "gif")
