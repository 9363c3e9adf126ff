"""Property and edge-case tests for services.hcert.decode.

The decoder faces whatever a checkpoint scanner reads, so the central property is totality: for any
input `decode` returns a DecodedHcert or raises MalformedError — never another exception — and a
signature only verifies when the signed bytes are untouched. Inputs: random text, random bytes behind
the prefix (with and without zlib), random CBOR shapes, and mutations (bit flips, truncations,
insertions, deletions) of a valid HCERT from services.hcert.codec at every layer (text,
compressed bytes, COSE bytes, CWT bytes with and without re-signing). Base45 is compared with the
`base45` package and round-tripped with `codec.b45encode`.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import time
import zlib
from datetime import date, datetime, timedelta, timezone

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.hcert import codec, keys, payload, uvci
from services.hcert import decode as hd

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ISSUED_AT = 1_700_000_000
EXPIRES_AT = ISSUED_AT + 72 * 3600
FAMILY_NAME = "Nguyễn"


# --- fixtures (module-level caches: hypothesis and function fixtures do not mix) ----------------


@functools.cache
def es256() -> keys.SigningKeyMaterial:
    return keys.SigningKeyMaterial.generate("ES256", timedelta(days=30))


@functools.cache
def ps256() -> keys.SigningKeyMaterial:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # 2048 bits: quicker than 3072
    certificate = keys.make_certificate(key, "PS256", timedelta(days=30))
    return keys.SigningKeyMaterial(key=key, certificate=certificate, algorithm="PS256")


def make_dcc(**overrides) -> dict:
    fields = dict(
        family_name=FAMILY_NAME,
        given_name="Văn An",
        date_of_birth=date(1990, 4, 30),
        test_type="NAAT",
        rat_device_id=None,
        method="Roche cobas SARS-CoV-2",
        sample_collected_at=datetime(2021, 8, 1, 9, 15, 30, tzinfo=timezone(timedelta(hours=7))),
        outcome="NEGATIVE",
        testing_centre="CDC Hà Nội",
        issuer="Ministry of Health of Viet Nam",
        uvci=uvci.new_uvci(),
    )
    fields.update(overrides)
    return payload.test_payload(**fields)


@functools.cache
def valid() -> tuple[str, dict, bytes, bytes]:
    """(QR text, DCC, CWT bytes, COSE bytes) of one valid ES256 HCERT."""
    dcc = make_dcc()
    cwt = codec.encode_cwt(dcc, issued_at=ISSUED_AT, expires_at=EXPIRES_AT)
    cose = codec.Signer(es256()).sign(cwt)
    return codec.PREFIX + codec.b45encode(zlib.compress(cose, 9)), dcc, cwt, cose


def qr_of_cose(cose: bytes) -> str:
    return codec.PREFIX + codec.b45encode(zlib.compress(cose, 9))


def es256_sign(material: keys.SigningKeyMaterial, data: bytes) -> bytes:
    r, s = decode_dss_signature(material.key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign1(
    protected: dict | bytes,
    unprotected: dict,
    cwt: bytes | None = None,
    *,
    tags=(18,),
    material: keys.SigningKeyMaterial | None = None,
) -> str:
    """QR text of a hand-made COSE_Sign1 (ES256 signature over the real Sig_structure)."""
    material = material or es256()
    cwt = valid()[2] if cwt is None else cwt
    prot = protected if isinstance(protected, bytes) else (cbor2.dumps(protected) if protected else b"")
    signature = es256_sign(material, cbor2.dumps(["Signature1", prot, b"", cwt]))
    item = [prot, unprotected, cwt, signature]
    for tag in tags:
        item = cbor2.CBORTag(tag, item)
    return qr_of_cose(cbor2.dumps(item))


def outcome(qr) -> hd.DecodedHcert | hd.MalformedError:
    """decode's result or its MalformedError; any other exception fails the test."""
    try:
        result = hd.decode(qr)
    except hd.MalformedError as exc:
        assert isinstance(exc.stage, hd.Stage)
        assert isinstance(exc.reason, str) and exc.reason
        return exc
    assert isinstance(result, hd.DecodedHcert)
    return result


def stage_of(qr, **kwargs) -> hd.Stage | None:
    try:
        hd.decode(qr, **kwargs)
    except hd.MalformedError as exc:
        return exc.stage
    return None


# --- Base45 -------------------------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=1200))
def test_b45decode_round_trips_codec_and_matches_package(data):
    text = codec.b45encode(data)
    assert hd.b45decode(text) == data
    assert base45.b45decode(text) == data
    assert hd.b45decode(text.encode("ascii")) == data


@SETTINGS
@given(st.text(alphabet=codec.BASE45_ALPHABET + "abz=_\x00é€", max_size=60))
def test_b45decode_agrees_with_package_on_any_text(text):
    try:
        expected = base45.b45decode(text)
    except ValueError:
        with pytest.raises(ValueError):
            hd.b45decode(text)
    else:
        assert hd.b45decode(text) == expected


@SETTINGS
@given(st.binary(min_size=2, max_size=2400), st.data())
def test_b45decode_refuses_an_overflowing_group_anywhere_in_a_long_text(data, draw):
    """Each group is checked wherever it sits (the decoder works on the whole text at once)."""
    text = codec.b45encode(data)
    group = draw.draw(st.integers(0, len(text) // 3 - 1))
    broken = text[: 3 * group] + draw.draw(st.sampled_from(["GGW", ":::", "ZZZ"])) + text[3 * group + 3 :]
    with pytest.raises(ValueError):
        hd.b45decode(broken)
    with pytest.raises(ValueError):
        base45.b45decode(broken)


@pytest.mark.parametrize(
    "text, data",
    [
        ("", b""),
        ("00", b"\x00"),
        ("000", b"\x00\x00"),
        ("U5", b"\xff"),
        ("FGW", b"\xff\xff"),
        ("BB8", b"AB"),
        ("%69 VD92EX0", b"Hello!!"),
        ("UJCLQE7W581", b"base-45"),
        ("QED8WEX0", b"ietf!"),  # RFC 9285
    ],
)
def test_b45decode_known_values(text, data):
    assert hd.b45decode(text) == data == base45.b45decode(text)


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "0000",
        "GGW",
        ":::",
        "V5",
        "::",
        "bb8",
        "BB8\n",
        " BB8 ",
        "BB=",
        "ÄB8",
        "BB8\x00",
        "BB",
    ],
)
def test_b45decode_rejects(text):
    with pytest.raises(ValueError):
        hd.b45decode(text)


@pytest.mark.parametrize("size", [0, 1, 2, 511, 512, 513, 1023, 1024, 1025, 2900])  # around the 256-group blocks
def test_b45decode_block_boundaries(size):
    data = bytes(range(256)) * 12
    data = data[:size]
    assert hd.b45decode(codec.b45encode(data)) == data
    text = codec.b45encode(data) + "GGW"  # an overflowing group at the very end
    with pytest.raises(ValueError):
        hd.b45decode(text)


def test_b45decode_is_fast():
    text = codec.b45encode(bytes(range(256)) + bytes(range(77)))  # 333 bytes → 500 characters
    assert len(text) == 500
    rounds = 2000
    best = min(_timed(lambda: hd.b45decode(text), rounds) for _ in range(3))
    # ≈10 µs on a developer machine; the bound leaves room for slow CI runners.
    assert best < 100e-6, f"{best * 1e6:.1f} µs per call"


def _timed(fn, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds


# --- totality -----------------------------------------------------------------------------------


@SETTINGS
@given(st.text(max_size=400))
def test_decode_random_text(text):
    outcome(text)
    outcome("HC1:" + text)


@SETTINGS
@given(st.binary(max_size=600))
def test_decode_random_bytes(data):
    assert isinstance(outcome("HC1:" + codec.b45encode(data)), hd.MalformedError)
    outcome("HC1:" + codec.b45encode(zlib.compress(data)))


_SCALARS = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=True)
)
_KEYS = st.integers(min_value=-300, max_value=300) | st.text(max_size=4)
_TAGS = st.sampled_from([0, 1, 2, 4, 5, 18, 24, 28, 29, 30, 35, 36, 37, 61, 98, 258, 55799])
CBOR_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(_KEYS, children, max_size=5)
        | st.builds(cbor2.CBORTag, _TAGS, children)
    ),
    max_leaves=25,
)


@SETTINGS
@given(CBOR_VALUES, st.booleans())
def test_decode_random_cbor(value, inside_sign1):
    try:
        encoded = cbor2.dumps(value)
    except (cbor2.CBOREncodeError, ValueError, TypeError):
        return
    if inside_sign1:  # a well-formed envelope around random protected header / payload contents
        protected = cbor2.dumps({1: -7, 4: es256().kid})
        encoded = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, encoded, b"\x00" * 64]))
    outcome(qr_of_cose(encoded))


def _mutate(data, operation: str, position: int, value: int):
    """Apply one mutation to bytes or str; `position` and `value` are already in range for `data`."""
    if isinstance(data, str):
        alphabet = codec.BASE45_ALPHABET + "a~\n"
        if operation == "flip":
            return data[:position] + alphabet[value % len(alphabet)] + data[position + 1 :]
        if operation == "truncate":
            return data[:position]
        if operation == "insert":
            return data[:position] + alphabet[value % len(alphabet)] + data[position:]
        return data[:position] + data[position + 1 :]
    if operation == "flip":
        return data[:position] + bytes([data[position] ^ (1 << (value % 8))]) + data[position + 1 :]
    if operation == "truncate":
        return data[:position]
    if operation == "insert":
        return data[:position] + bytes([value % 256]) + data[position:]
    return data[:position] + data[position + 1 :]


@SETTINGS
@given(st.data())
def test_decode_mutations_of_a_valid_hcert(data):
    qr, _, cwt, cose = valid()
    layer = data.draw(st.sampled_from(["text", "compressed", "cose", "cwt", "cwt-resigned"]), label="layer")
    operation = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]), label="operation")
    count = data.draw(st.integers(min_value=1, max_value=3), label="mutations")

    def mutated(original):
        for _ in range(count):
            position = data.draw(st.integers(min_value=0, max_value=max(0, len(original) - 1)))
            value = data.draw(st.integers(min_value=0, max_value=255))
            if original and (operation != "insert" or position <= len(original)):
                original = _mutate(original, operation, position, value)
        return original

    if layer == "text":
        text = "HC1:" + mutated(qr[4:])
    elif layer == "compressed":
        text = "HC1:" + codec.b45encode(mutated(zlib.compress(cose, 9)))
    elif layer == "cose":
        text = qr_of_cose(mutated(cose))
    else:
        new_cwt = mutated(cwt)
        if layer == "cwt":  # the original signature over the changed CWT
            protected, _, _, signature = cbor2.loads(cose).value
            text = qr_of_cose(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, new_cwt, signature])))
        else:
            text = qr_of_cose(codec.Signer(es256()).sign(new_cwt))

    result = outcome(text)
    if isinstance(result, hd.DecodedHcert):
        original = cbor2.loads(cose).value
        untouched = (result.protected, result.payload, result.signature) == (original[0], original[2], original[3])
        verified = hd.verify_signature(result, es256().certificate_der)
        if layer == "cwt-resigned":
            assert verified
        else:
            assert verified is untouched


# --- the happy path -------------------------------------------------------------------------------


def test_valid_hcert_decodes_and_verifies():
    qr, dcc, cwt, cose = valid()
    decoded = hd.decode(qr)
    assert decoded.dcc == dcc and decoded.entry_type == "TEST"
    assert decoded.kid == es256().kid and decoded.alg == -7
    assert decoded.payload == cwt and decoded.claims == cbor2.loads(cwt)
    assert (decoded.issuer, decoded.issued_at, decoded.expires_at) == ("VN", ISSUED_AT, EXPIRES_AT)
    assert decoded.sig_structure == cbor2.dumps(["Signature1", decoded.protected, b"", cwt])
    assert hd.verify_signature(decoded, es256().certificate_der)
    assert hd.verify_signature(decoded, es256().certificate_der, es256().certificate.public_key())
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.kid = b"\x00" * 8


def test_ps256():
    material = ps256()
    qr = codec.encode_hcert(make_dcc(), signer=codec.Signer(material), issued_at=ISSUED_AT, expires_at=EXPIRES_AT)
    decoded = hd.decode(qr)
    assert decoded.alg == -37 and decoded.kid == material.kid
    assert hd.verify_signature(decoded, material.certificate_der)
    tampered = dataclasses.replace(decoded, signature=decoded.signature[:-1] + bytes([decoded.signature[-1] ^ 1]))
    assert not hd.verify_signature(tampered, material.certificate_der)
    # an ES256 certificate cannot verify a PS256 message: wrong kid, and wrong key type for the alg
    assert not hd.verify_signature(decoded, es256().certificate_der)
    assert not hd.verify_signature(dataclasses.replace(decoded, kid=es256().kid), es256().certificate_der)


def test_verify_rejects_alg_not_matching_the_key():
    # Signed by the EC key but labelled PS256: never verified, whatever the bytes.
    qr = sign1({1: -37, 4: es256().kid}, {})
    decoded = hd.decode(qr)
    assert decoded.alg == -37
    assert hd.verify_signature(decoded, es256().certificate_der) is False
    assert hd.verify_signature(dataclasses.replace(decoded, alg=-7), es256().certificate_der) is True
    assert hd.verify_signature(decoded, b"not a certificate") is False
    assert (
        hd.verify_signature(dataclasses.replace(decoded, alg=-7, signature=b"\x01" * 70), es256().certificate_der)
        is False
    )


def test_kid_and_alg_placement():
    kid = es256().kid
    assert hd.decode(sign1({1: -7, 4: kid}, {})).kid == kid
    assert hd.decode(sign1({1: -7}, {4: kid})).kid == kid  # like CO19
    assert hd.decode(sign1(b"", {1: -7, 4: kid})).alg == -7  # like CO20: empty protected header
    assert hd.decode(sign1(cbor2.dumps({}), {1: -7, 4: kid})).kid == kid
    assert hd.decode(sign1({1: -7, 4: kid}, {4: b"foo"})).kid == kid  # like CO21: protected wins
    for protected, unprotected in [
        ({1: -7, 4: b"foo"}, {4: kid}),  # like CO22
        ({1: -7}, {4: b"foo"}),  # like CO23
        ({1: -7, 4: kid[:7]}, {}),
        ({1: -7, 4: kid + b"\x00"}, {}),
        ({1: -7, 4: kid.hex()[:8]}, {}),
        ({1: -7}, {}),
        ({4: kid}, {}),
        ({1: -8, 4: kid}, {}),  # EdDSA: no DCC issuer signs with it
        ({1: -257, 4: kid}, {}),  # RS256 (PKCS#1 v1.5): not an HCERT algorithm
        ({1: "ES256", 4: kid}, {}),
    ]:
        assert stage_of(sign1(protected, unprotected)) == hd.Stage.COSE, (protected, unprotected)
    assert stage_of(sign1(cbor2.dumps([1, 2]), {})) == hd.Stage.COSE  # protected header not a map
    assert stage_of(sign1(b"\xa1\x01", {})) == hd.Stage.COSE  # protected header not CBOR


def test_cose_envelope_shapes():
    header = {1: -7, 4: es256().kid}
    assert stage_of(sign1(header, {}, tags=(18, 61))) is None  # CWT tag around COSE_Sign1 (CO28)
    assert outcome(sign1(header, {}, tags=())).kid == header[4]  # untagged: allowed by HCERT §3.3.1
    assert stage_of(sign1(header, {}, tags=(61,))) == hd.Stage.COSE  # CWT tag without COSE tag
    assert stage_of(sign1(header, {}, tags=(98,))) == hd.Stage.COSE  # COSE_Sign
    assert stage_of(sign1(header, {}, tags=(17,))) == hd.Stage.COSE  # COSE_Mac0
    assert stage_of(sign1(header, {}, tags=(18, 61, 61))) == hd.Stage.COSE
    cose = valid()[3]
    assert stage_of(qr_of_cose(cose + b"\x00")) == hd.Stage.COSE  # trailing bytes
    assert stage_of(qr_of_cose(cose[:-1])) == hd.Stage.COSE
    assert stage_of(qr_of_cose(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, None, b""])))) == hd.Stage.COSE
    assert stage_of(qr_of_cose(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b"", b""])))) == hd.Stage.COSE


def test_transport_failures():
    cose = valid()[3]
    assert stage_of("hc1:" + valid()[0][4:]) == hd.Stage.PREFIX
    assert stage_of(valid()[0][4:]) == hd.Stage.PREFIX
    assert stage_of(b"HC1:" + valid()[0][4:].encode()) == hd.Stage.PREFIX  # not text
    assert stage_of(valid()[0] + "\n") == hd.Stage.BASE45
    assert stage_of("HC1:" + "0" * (hd.MAX_QR_LENGTH + 3)) == hd.Stage.BASE45
    assert stage_of("HC1:" + codec.b45encode(cose)) == hd.Stage.ZLIB  # not compressed (Z2)
    assert stage_of("HC1:" + codec.b45encode(gzip.compress(cose))) == hd.Stage.ZLIB
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    assert stage_of("HC1:" + codec.b45encode(raw.compress(cose) + raw.flush())) == hd.Stage.ZLIB
    assert stage_of("HC1:" + codec.b45encode(zlib.compress(cose) + b"\x00")) == hd.Stage.ZLIB
    assert stage_of("HC1:" + codec.b45encode(zlib.compress(cose)[:-6])) == hd.Stage.ZLIB  # truncated


def test_zip_bomb_is_bounded():
    bomb = "HC1:" + codec.b45encode(zlib.compress(b"\x00" * 2_500_000, 9))  # fits a QR code: ≈3,600 characters
    assert len(bomb) <= hd.MAX_QR_LENGTH
    start = time.perf_counter()
    assert stage_of(bomb) == hd.Stage.ZLIB
    assert time.perf_counter() - start < 0.5
    just_fits = "HC1:" + codec.b45encode(zlib.compress(b"\x00" * hd.MAX_DECOMPRESSED, 9))
    assert stage_of(just_fits) == hd.Stage.COSE  # decompressed in full, then not CBOR COSE


def _cwt_qr(claims: dict) -> str:
    return qr_of_cose(codec.Signer(es256()).sign(cbor2.dumps(claims)))


def test_cwt_failures():
    dcc = make_dcc()
    good = {1: "VN", 4: EXPIRES_AT, 6: ISSUED_AT, -260: {1: dcc}}
    assert stage_of(_cwt_qr(good)) is None
    without_iss = {k: v for k, v in good.items() if k != 1}
    decoded = hd.decode(_cwt_qr(without_iss))
    assert decoded.issuer is None  # iss is optional in the DCC specification
    assert hd.decode(_cwt_qr({**good, 6: float(ISSUED_AT)})).issued_at == ISSUED_AT
    # RFC 8392 NumericDates may be non-integer: the window is rounded inwards, never widened.
    fractional = hd.decode(_cwt_qr({**good, 6: ISSUED_AT + 0.25, 4: EXPIRES_AT + 0.75}))
    assert (fractional.issued_at, fractional.expires_at) == (ISSUED_AT + 1, EXPIRES_AT)
    for bad in [
        {k: v for k, v in good.items() if k != 4},
        {k: v for k, v in good.items() if k != 6},
        {k: v for k, v in good.items() if k != -260},
        {**good, 1: 704},
        {**good, 4: "tomorrow"},
        {**good, 6: True},
        {**good, 4: float("inf")},
        {**good, 4: 2**70},
        {**good, 6: -1},
        {**good, 4: 1e300},
        {**good, 6: cbor2.CBORTag(1, ISSUED_AT)},
        {**good, -260: {2: dcc}},
        {**good, -260: {1: cbor2.dumps(dcc)}},  # like CBO1
        {**good, -260: {1: {**dcc, "dob": cbor2.CBORTag(1004, "1990-04-30")}}},
        {**good, -260: {1: {**dcc, "x": b"bytes"}}},
        {**good, -260: {1: {**dcc, 7: "int key"}}},
        {**good, -260: {1: {**dcc, "x": float("nan")}}},
        {**good, -260: {1: {**dcc, "x": cbor2.undefined}}},
    ]:
        assert stage_of(_cwt_qr(bad)) == hd.Stage.CBOR
    assert stage_of(qr_of_cose(codec.Signer(es256()).sign(cbor2.dumps([1, 2])))) == hd.Stage.CBOR
    assert stage_of(qr_of_cose(codec.Signer(es256()).sign(cbor2.dumps(good) + b"\x00"))) == hd.Stage.CBOR
    assert stage_of(qr_of_cose(codec.Signer(es256()).sign(b"\xa2\x01\x01\x01\x02"))) == hd.Stage.CBOR  # duplicate key
    deep: list = [0]
    for _ in range(20):
        deep = [deep]
    assert stage_of(_cwt_qr({**good, -260: {1: {**dcc, "x": deep}}})) == hd.Stage.CBOR  # nesting limit


def _dcc_qr(dcc: dict) -> str:
    return codec.encode_hcert(dcc, signer=codec.Signer(es256()), issued_at=ISSUED_AT, expires_at=EXPIRES_AT)


def _schema_error(dcc: dict) -> hd.MalformedError:
    with pytest.raises(hd.MalformedError) as info:
        hd.decode(_dcc_qr(dcc))
    assert info.value.stage == hd.Stage.SCHEMA
    return info.value


def test_schema_failures():
    dcc = make_dcc()
    entry = dcc["t"][0]
    for bad_sc in [
        "2021-08-01 02:15:30Z",
        "2021-08-01T02:15:30",
        "2021-13-01T02:15:30Z",
        "2021-08-01T25:00:00Z",
        "01.08.2021",
        "2021-08-01T02:15:30+0700",
        "",
    ]:
        broken = {**dcc, "t": [{**entry, "sc": bad_sc}]}
        error = _schema_error(broken)
        assert "/t/0/sc" in error.reason and (not bad_sc or bad_sc not in error.reason)
        assert stage_of(_dcc_qr(broken), check_schema=False) is None
    for good_sc in [
        "2021-08-01T02:15:30Z",
        "2021-08-01T09:15:30+07:00",
        "2021-08-01T02:15:30.123Z",
        "2016-12-31T23:59:60Z",  # RFC 3339 allows a leap second
        "2021-08-01t02:15:30z",  # and lower-case separators
    ]:
        assert stage_of(_dcc_qr({**dcc, "t": [{**entry, "sc": good_sc}]})) is None
    missing = {k: v for k, v in entry.items() if k != "tt"}
    _schema_error({**dcc, "t": [missing]})
    error = _schema_error({**dcc, "nam": {**dcc["nam"], "fnt": "Nguyen"}})
    assert "Nguyen" not in error.reason and FAMILY_NAME not in error.reason and "NGUYEN" not in error.reason
    _schema_error({**dcc, "dob": "30.04.1990"})
    _schema_error({**dcc, "t": [entry, entry]})  # two entries
    _schema_error({**dcc, "t": []})
    _schema_error({**dcc, "v": [entry]})  # a test entry and a "vaccination"
    _schema_error({k: v for k, v in dcc.items() if k != "t"})  # no entry at all
    # The one-entry rule holds without the schema check too (entry_type depends on it).
    assert stage_of(_dcc_qr({**dcc, "t": [entry, entry]}), check_schema=False) == hd.Stage.SCHEMA


def test_entry_type_allowed_and_validity_window():
    der = es256().certificate_der  # generated with entry_types=("TEST",)
    assert hd.entry_type_allowed(der, "TEST")
    assert not hd.entry_type_allowed(der, "VACCINATION") and not hd.entry_type_allowed(der, "RECOVERY")
    assert not hd.entry_type_allowed(der, "BOOSTER")
    assert not hd.entry_type_allowed(b"\x30\x03garbage", "TEST")
    every = keys.SigningKeyMaterial.generate("ES256", entry_types=())
    assert all(hd.entry_type_allowed(every.certificate_der, t) for t in keys.ENTRY_TYPES)

    decoded = hd.decode(valid()[0])
    assert hd.cwt_valid_at(decoded, ISSUED_AT) and hd.cwt_valid_at(decoded, EXPIRES_AT)
    assert not hd.cwt_valid_at(decoded, ISSUED_AT - 1) and not hd.cwt_valid_at(decoded, EXPIRES_AT + 1)
    assert not hd.cwt_valid_at(dataclasses.replace(decoded, issued_at=None), ISSUED_AT + 1)
    assert not hd.cwt_valid_at(dataclasses.replace(decoded, expires_at=None), ISSUED_AT + 1)


def test_malformed_error_carries_stage_and_reason():
    error = hd.MalformedError(hd.Stage.ZLIB, "broken")
    assert error.stage is hd.Stage.ZLIB and error.reason == "broken" and str(error) == "ZLIB: broken"
    assert [s.value for s in hd.Stage] == ["PREFIX", "BASE45", "ZLIB", "COSE", "CBOR", "SCHEMA"]
    import pickle

    again = pickle.loads(pickle.dumps(error))
    assert (again.stage, again.reason) == (error.stage, error.reason)
