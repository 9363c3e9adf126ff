"""The DCC JSON payload (schema 1.3) for a test entry, and ICAO 9303 name transliteration."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime

from services.hcert import uvci as _uvci

SCHEMA_VERSION = "1.3.0"
MAX_TEXT = 80  # maxLength of every free-text field in the schema

DISEASE_COVID19 = "840539006"  # SNOMED CT: COVID-19
TEST_TYPES = {"NAAT": "LP6464-4", "RAPID_ANTIGEN": "LP217198-3"}  # LOINC
TEST_RESULTS = {"NEGATIVE": "260415000", "POSITIVE": "260373001"}  # SNOMED CT: not detected / detected
COUNTRY = "VN"

# ICAO Doc 9303 Part 3 §6 transliterations that are not simply "drop the diacritic".
_ICAO_SPECIAL = {
    "Đ": "D",
    "đ": "D",
    "Ð": "D",
    "ð": "D",
    "Ä": "AE",
    "ä": "AE",
    "Ö": "OE",
    "ö": "OE",
    "Ü": "UE",
    "ü": "UE",
    "Å": "AA",
    "å": "AA",
    "Æ": "AE",
    "æ": "AE",
    "Ø": "OE",
    "ø": "OE",
    "Œ": "OE",
    "œ": "OE",
    "ß": "SS",
    "ẞ": "SS",
    "Þ": "TH",
    "þ": "TH",
    "Ĳ": "IJ",
    "ĳ": "IJ",
    "Ł": "L",
    "ł": "L",
    "Ħ": "H",
    "ħ": "H",
    "ı": "I",
    "Ŀ": "L",
    "ŀ": "L",
}
_SPECIAL_TABLE = str.maketrans(_ICAO_SPECIAL)
_NOT_MRZ = re.compile(r"[^A-Z<]+")
_FILLERS = re.compile(r"<{2,}")
_DOB = re.compile(r"(19|20)\d\d(-\d\d){0,2}")


def transliterate(name: str) -> str:
    """The ICAO 9303 machine-readable form of a name: A–Z and "<" only, at most 80 characters.

    Upper case; diacritics removed (Vietnamese tones and vowel marks, Đ → D; German umlauts and ß follow
    ICAO: Ö → OE, ß → SS); spaces and hyphens become "<" (runs collapsed, none at either end);
    everything else (apostrophes, digits, non-Latin scripts) is dropped.
    """
    text = unicodedata.normalize("NFC", name).translate(_SPECIAL_TABLE)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    text = text.upper()
    text = "".join("<" if (c.isspace() or c in "-‐‑‒–—") else c for c in text)
    text = _FILLERS.sub("<", _NOT_MRZ.sub("", text)).strip("<")
    return text[:MAX_TEXT].rstrip("<")


def _text(value: str | None, field: str, *, required: bool = False) -> str:
    value = " ".join((value or "").split())  # no control characters or runs of whitespace
    if required and not value:
        raise ValueError(f"{field} is required")
    return value[:MAX_TEXT]


def _date_of_birth(value: date | str | None) -> str:
    if isinstance(value, datetime):
        raise ValueError("date_of_birth must be a date, not a datetime")
    if isinstance(value, date):
        text = value.isoformat()
    else:
        text = value or ""
    if text and not _DOB.fullmatch(text):
        raise ValueError("date_of_birth must be YYYY, YYYY-MM or YYYY-MM-DD between 1900 and 2099, or empty")
    return text


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with seconds precision and "Z", as the DCC `sc` wants it."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("sample_collected_at must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_payload(
    *,
    family_name: str,
    given_name: str,
    date_of_birth: date | str,
    test_type: str,
    rat_device_id: str | None,
    method: str | None,
    sample_collected_at: datetime,
    outcome: str,
    testing_centre: str,
    issuer: str,
    uvci: str,
) -> dict:
    """The DCC JSON for one test entry, valid against DCC.combined-schema.json.

    `test_type` is "NAAT" (with `method` as the NAAT test name `nm`, omitted when empty) or
    "RAPID_ANTIGEN" (with `rat_device_id` as the device identifier `ma`, required). `outcome` is
    "NEGATIVE" or "POSITIVE". Free-text fields are cut to the schema's 80 characters. Raises ValueError
    for anything that cannot make a valid certificate.
    """
    if test_type not in TEST_TYPES:
        raise ValueError(f"test_type must be NAAT or RAPID_ANTIGEN, not {test_type!r}")
    if outcome not in TEST_RESULTS:
        raise ValueError(f"only NEGATIVE and POSITIVE results are certified, not {outcome!r}")
    if not _uvci.is_valid(uvci):
        raise ValueError(f"not a valid UVCI: {uvci!r}")

    family, given = _text(family_name, "family_name"), _text(given_name, "given_name")
    name: dict[str, str] = {}
    if family:
        name["fn"], name["fnt"] = family, transliterate(family)
    if given:
        name["gn"], name["gnt"] = given, transliterate(given)
    if not (name.get("fnt") or name.get("gnt")):
        raise ValueError("the name has no Latin letters to transliterate (fnt and gnt would both be empty)")

    entry: dict[str, str] = {"tg": DISEASE_COVID19, "tt": TEST_TYPES[test_type]}
    if test_type == "NAAT":
        if rat_device_id:
            raise ValueError("rat_device_id is only for RAPID_ANTIGEN tests")
        nm = _text(method, "method")
        if nm:
            entry["nm"] = nm
    else:
        entry["ma"] = _text(rat_device_id, "rat_device_id", required=True)
    entry["sc"] = format_time(sample_collected_at)
    entry["tr"] = TEST_RESULTS[outcome]
    entry["tc"] = _text(testing_centre, "testing_centre", required=True)
    entry["co"] = COUNTRY
    entry["is"] = _text(issuer, "issuer", required=True)
    entry["ci"] = uvci
    return {"ver": SCHEMA_VERSION, "nam": name, "dob": _date_of_birth(date_of_birth), "t": [entry]}


test_payload.__test__ = False  # type: ignore[attr-defined]  # a builder, not a pytest test, even when imported into a test module
