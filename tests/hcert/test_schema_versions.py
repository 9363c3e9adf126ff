"""A DCC is checked against the schema of the version it declares (issue 16): each published version
ships (dcc/schema-versions), an unpublished minor or patch version falls back to the nearest older one
of its major version, and anything else is refused precisely."""

from __future__ import annotations

import copy

import pytest

from services.hcert import codec
from services.hcert import decode as hd
from tests.hcert.test_decode_properties import EXPIRES_AT, ISSUED_AT, es256

VACCINATION = {
    "nam": {"fn": "Muller", "fnt": "MULLER"},
    "dob": "1980-05-05",
    "v": [{"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 2,
           "sd": 2, "dt": "2021-06-01", "co": "DE", "is": "RKI", "ci": "URN:UVCI:01:DE:XYZ#4"}],
}  # fmt: skip


def dcc(ver: str | None, change=lambda d: None) -> dict:
    out = copy.deepcopy(VACCINATION)
    if ver is not None:
        out["ver"] = ver
    change(out)
    return out


def schema_failure(payload: dict) -> str | None:
    qr = codec.encode_hcert(payload, signer=codec.Signer(es256()), issued_at=ISSUED_AT, expires_at=EXPIRES_AT)
    try:
        hd.decode(qr)
    except hd.MalformedError as exc:
        assert exc.stage == hd.Stage.SCHEMA, exc
        return exc.reason
    return None


def test_every_published_version_ships():
    assert [".".join(map(str, v)) for v in hd.SCHEMA_VERSIONS] == [
        "1.0.0", "1.0.1", "1.1.0", "1.2.0", "1.2.1", "1.3.0", "1.3.1", "1.3.2", "1.3.3",
    ]  # fmt: skip


@pytest.mark.parametrize("ver", ["1.0.0", "1.0.1", "1.1.0", "1.2.0", "1.2.1", "1.3.0", "1.3.1", "1.3.2", "1.3.3"])
def test_a_plain_certificate_of_each_version_is_valid_under_its_own_schema(ver):
    assert schema_failure(dcc(ver)) is None


@pytest.mark.parametrize(
    "ver, change, where",
    [
        ("1.0.0", lambda d: d.update(dob="1980"), "/dob"),  # partial birth dates came with 1.1.0
        ("1.2.1", lambda d: d["v"][0].update(dn=10, sd=10), "/v/0/dn"),  # dose numbers above 9 with 1.3.0
        ("1.2.1", lambda d: d["nam"].update(fnt="M" * 60), "/nam/fnt"),  # 80 characters with 1.3.0
        ("1.3.1", lambda d: d.update(nam={"gnt": "MAX"}), "/nam"),  # a given name alone with 1.3.2
    ],
)
def test_what_only_a_later_version_allows_is_refused_under_an_earlier_one(ver, change, where):
    reason = schema_failure(dcc(ver, change))
    assert reason is not None and where in reason and ver in reason
    assert schema_failure(dcc("1.3.3", change)) is None  # the schema 1.3.3 alone (as before) took it


def test_an_unpublished_version_falls_back_to_the_nearest_older_one_of_its_major_version():
    assert hd.schema_version_for("1.3.9") == (1, 3, 3)
    assert hd.schema_version_for("1.2.7") == (1, 2, 1)
    assert hd.schema_version_for("1.4.0") == (1, 3, 3)
    assert schema_failure(dcc("1.3.9")) is None
    # 1.2.7 falls back to 1.2.1, which has no dose numbers above 9.
    assert "/v/0/dn" in (schema_failure(dcc("1.2.7", lambda d: d["v"][0].update(dn=10, sd=10))) or "")


@pytest.mark.parametrize("ver", [None, "2.0.0", "0.9.0", "1.3", "1.3.0-rc1", "١.٣.٠", 130])
def test_a_missing_malformed_or_unknown_major_version_is_refused(ver):
    payload = dcc(None) if ver is None else {**dcc(None), "ver": ver}
    reason = schema_failure(payload)
    assert reason is not None and "ver" in reason
