"""The public DCC verifier conformance cases (tests/conformance/dcc/common) against services.hcert.decode.

One test per case file. Every field of its EXPECTEDRESULTS is checked against what the library does;
a field without a mapping below fails the test (nothing is skipped or ignored). How each field maps:

- EXPECTEDUNPREFIX          `decode` fails at Stage.PREFIX exactly when False.
- EXPECTEDB45DECODE         False: `decode` fails at Stage.BASE45 (and `b45decode` rejects the case's
                            BASE45 text). True: `decode` gets past Base45, and `b45decode` of the text
                            equals the case's COMPRESSED bytes when given.
- EXPECTEDCOMPRESSION       False: `decode` fails at Stage.ZLIB. True: `decode` gets past zlib, and the
                            COSE fields it returns are those of the case's COSE bytes when given.
- EXPECTEDDECODE            True: `decode(check_schema=False)` succeeds. False: it fails at Stage.COSE
                            or Stage.CBOR (the transport stages before them pass).
- EXPECTEDVERIFY            True: decoding succeeds and `verify_signature(decoded, TESTCTX.CERTIFICATE)`
                            is True. False: the transport stages pass, and then either the COSE/CWT
                            cannot be decoded (no usable signature: CBO2 is not a COSE structure;
                            CO22/CO23 carry a 3-byte kid, which the DCC rule "reject a kid of the wrong
                            length" turns into a COSE failure) or `verify_signature` is False (CO5).
- EXPECTEDSCHEMAVALIDATION  True: `decode` (schema check on) succeeds. False: it fails at Stage.SCHEMA.
- EXPECTEDVALIDJSON         the DCC that `decode` returns equals the case's JSON (True), or decoding
                            fails / differs (False).
- EXPECTEDEXPIRATIONCHECK   `cwt_valid_at(decoded, VALIDATIONCLOCK)` (clock truncated to whole seconds).
- EXPECTEDKEYUSAGE          `entry_type_allowed(TESTCTX.CERTIFICATE, decoded.entry_type)`.
- EXPECTEDPICTUREDECODE     Only two cases carry a 2DCODE picture and no QR reader is installed, so the
                            picture is checked by re-encoding: it "decodes" when it is a PNG whose QR
                            module matrix is identical to the QR code of the case's PREFIX text made
                            with the same version, error correction level and mask (read from the
                            picture's format information) — an identical matrix holds identical text.
                            CO28's PNG matches; Q1's 2DCODE is not a PNG at all (False, as expected).
                            B1 has no picture but expects True: for it the QR *text* path is asserted
                            instead — the text fits a QR code and reaches the decoder past the PREFIX
                            stage (its Base45 failure is EXPECTEDB45DECODE's business). A False
                            expectation without a picture could not be checked and fails the test.
- EXPECTEDVALIDOBJECT       (no case uses it today) True: `decode(check_schema=False)` succeeds and its
                            DCC equals the case's CBOR (if given) decoded independently; False: it fails
                            at Stage.CBOR / Stage.COSE.

Where a case's description disagrees with its EXPECTEDRESULTS the results are followed: CO11 says
"VALID: OID for Recovery present, but DGC for test" but expects EXPECTEDKEYUSAGE False (the list in
BasicDgcTestsList.md says INVALID); DGC3–DGC6 say "INVALID: correct … DGC" but expect schema validity.
Two results go beyond the letter of the DCC specification and are followed: CO19/CO20 carry `alg` (and
`kid`) only in the unprotected header and must verify, so `decode` falls back to the unprotected header
for both (safe, because `verify_signature` only accepts the algorithm matching the trusted key's type).
"""

from __future__ import annotations

import base64
import json
import math
import struct
import zlib
from datetime import datetime
from pathlib import Path

import cbor2
import pytest
import segno

from services.hcert import decode as hd

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance" / "dcc" / "common"
CASES = sorted(CONFORMANCE.glob("*.json"))
assert CASES, f"no conformance cases in {CONFORMANCE}"
ORDER = list(hd.Stage)
TRANSPORT = {hd.Stage.PREFIX, hd.Stage.BASE45, hd.Stage.ZLIB}


def failed_stage(qr: str, *, check_schema: bool = True) -> hd.Stage | None:
    """The stage at which `decode` fails, None if it succeeds; anything but MalformedError propagates."""
    try:
        hd.decode(qr, check_schema=check_schema)
    except hd.MalformedError as exc:
        assert isinstance(exc.stage, hd.Stage) and exc.reason
        return exc.stage
    return None


def decoded(case: dict) -> hd.DecodedHcert:
    return hd.decode(case["PREFIX"], check_schema=False)


def certificate(case: dict) -> bytes:
    return base64.b64decode(case["TESTCTX"]["CERTIFICATE"])


def validation_clock(case: dict) -> int:
    clock = datetime.fromisoformat(case["TESTCTX"]["VALIDATIONCLOCK"].replace("Z", "+00:00"))
    return math.floor(clock.timestamp())


# --- the 2D code picture ----------------------------------------------------------------------


def png_dark_pixels(png: bytes):
    """(width, height, dark(x, y)) of a non-interlaced greyscale PNG (bit depth 1 or 8)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, header, data = 8, None, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])[0] != zlib.crc32(kind + body):
            raise ValueError("PNG chunk CRC mismatch")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            data += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if colour != 0 or interlace or depth not in (1, 8):
        raise ValueError("unsupported PNG layout")
    raw, stride, bpp = zlib.decompress(data), (width * depth + 7) // 8, 1
    rows, previous, i = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = previous[x], (previous[x - bpp] if x >= bpp else 0)
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(line)
        previous = line

    def dark(x: int, y: int) -> bool:
        if depth == 1:
            return not (rows[y][x >> 3] >> (7 - (x & 7))) & 1
        return rows[y][x] < 128

    return width, height, dark


def qr_modules(png: bytes) -> list[list[bool]]:
    """The module matrix of the QR code in the picture (quiet zone removed)."""
    width, height, dark = png_dark_pixels(png)
    ys = [y for y in range(height) if any(dark(x, y) for x in range(width))]
    xs = [x for x in range(width) if any(dark(x, y) for y in range(height))]
    top, left, right = ys[0], xs[0], xs[-1]
    run = 0
    while dark(left + run, top):  # the top-left finder pattern is 7 modules wide
        run += 1
    size = run / 7
    n = round((right - left + 1) / size)
    return [[dark(int(left + (c + 0.5) * size), int(top + (r + 0.5) * size)) for c in range(n)] for r in range(n)]


def picture_holds(png: bytes, text: str) -> bool:
    """Whether the picture is the QR code of `text` (see the module docstring)."""
    try:
        matrix = qr_modules(png)
        n = len(matrix)
        version, rest = divmod(n - 17, 4)
        if rest or not 1 <= version <= 40:
            return False
        bits = [matrix[8][c] for c in (0, 1, 2, 3, 4, 5, 7, 8)] + [matrix[r][8] for r in (7, 5, 4, 3, 2, 1, 0)]
        fmt = int("".join("1" if b else "0" for b in bits), 2) ^ 0b101010000010010
        error, mask = {0b01: "L", 0b00: "M", 0b11: "Q", 0b10: "H"}[fmt >> 13], (fmt >> 10) & 7
    except (ValueError, IndexError, KeyError, zlib.error, struct.error, TypeError):
        return False
    for mode in (None, "alphanumeric", "byte"):
        try:
            code = segno.make(text, version=version, error=error, mask=mask, mode=mode, boost_error=False, micro=False)
        except ValueError:
            continue
        if [[bool(module) for module in row] for row in code.matrix] == matrix:
            return True
    return False


# --- one check per EXPECTEDRESULTS field ------------------------------------------------------


def check_unprefix(case: dict, expected: bool) -> None:
    assert (failed_stage(case["PREFIX"]) != hd.Stage.PREFIX) is expected


def check_b45decode(case: dict, expected: bool) -> None:
    stage = failed_stage(case["PREFIX"])
    if expected:
        assert stage not in (hd.Stage.PREFIX, hd.Stage.BASE45)
        if "COMPRESSED" in case:
            assert hd.b45decode(case["PREFIX"][4:]).hex() == case["COMPRESSED"]
    else:
        assert stage == hd.Stage.BASE45
        with pytest.raises(ValueError):
            hd.b45decode(case.get("BASE45", case["PREFIX"][4:]))


def check_compression(case: dict, expected: bool) -> None:
    stage = failed_stage(case["PREFIX"], check_schema=False)
    if not expected:
        assert stage == hd.Stage.ZLIB
        return
    assert stage not in TRANSPORT
    if "COSE" in case and stage is None:
        message = cbor2.loads(bytes.fromhex(case["COSE"]))
        while isinstance(message, cbor2.CBORTag):
            message = message.value
        protected, _, payload, signature = message
        got = decoded(case)
        assert (got.protected, got.payload, got.signature) == (protected, payload, signature)


def check_decode(case: dict, expected: bool) -> None:
    stage = failed_stage(case["PREFIX"], check_schema=False)
    if expected:
        assert stage is None
    else:
        assert stage in (hd.Stage.COSE, hd.Stage.CBOR)


def check_verify(case: dict, expected: bool) -> None:
    stage = failed_stage(case["PREFIX"], check_schema=False)
    if expected:
        assert stage is None
        assert hd.verify_signature(decoded(case), certificate(case)) is True
        return
    assert stage not in TRANSPORT
    if stage is None:
        assert hd.verify_signature(decoded(case), certificate(case)) is False
    else:
        assert stage in (hd.Stage.COSE, hd.Stage.CBOR)


def check_schema_validation(case: dict, expected: bool) -> None:
    stage = failed_stage(case["PREFIX"], check_schema=True)
    if expected:
        assert stage is None
    else:
        assert stage == hd.Stage.SCHEMA


def check_valid_json(case: dict, expected: bool) -> None:
    assert "JSON" in case, "EXPECTEDVALIDJSON without a JSON field"
    try:
        same = hd.decode(case["PREFIX"]).dcc == case["JSON"]
    except hd.MalformedError:
        same = False
    assert same is expected


def check_expiration(case: dict, expected: bool) -> None:
    assert hd.cwt_valid_at(decoded(case), validation_clock(case)) is expected


def check_key_usage(case: dict, expected: bool) -> None:
    assert hd.entry_type_allowed(certificate(case), decoded(case).entry_type) is expected


def check_picture(case: dict, expected: bool) -> None:
    text = case["PREFIX"]
    if "2DCODE" in case:
        assert picture_holds(base64.b64decode(case["2DCODE"]), text) is expected
        if expected:
            assert failed_stage(text) != hd.Stage.PREFIX
        return
    # No picture in the case: only the text path can be checked, and only for a positive expectation.
    assert expected, "a picture that must not decode, but the case has no picture"
    segno.make(text, error="q", boost_error=False, micro=False)  # the text fits a QR code (raises otherwise)
    assert failed_stage(text) != hd.Stage.PREFIX


def check_valid_object(case: dict, expected: bool) -> None:
    stage = failed_stage(case["PREFIX"], check_schema=False)
    if not expected:
        assert stage in (hd.Stage.COSE, hd.Stage.CBOR)
        return
    assert stage is None
    if "CBOR" in case:
        assert decoded(case).dcc == cbor2.loads(bytes.fromhex(case["CBOR"]))


CHECKS = {
    "EXPECTEDUNPREFIX": check_unprefix,
    "EXPECTEDB45DECODE": check_b45decode,
    "EXPECTEDCOMPRESSION": check_compression,
    "EXPECTEDDECODE": check_decode,
    "EXPECTEDVERIFY": check_verify,
    "EXPECTEDSCHEMAVALIDATION": check_schema_validation,
    "EXPECTEDVALIDJSON": check_valid_json,
    "EXPECTEDEXPIRATIONCHECK": check_expiration,
    "EXPECTEDKEYUSAGE": check_key_usage,
    "EXPECTEDPICTUREDECODE": check_picture,
    "EXPECTEDVALIDOBJECT": check_valid_object,
}


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_conformance_case(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    expected = case.get("EXPECTEDRESULTS")
    assert expected, f"{path.name} has no EXPECTEDRESULTS"
    unmapped = sorted(set(expected) - set(CHECKS))
    assert not unmapped, f"unmapped EXPECTEDRESULTS fields {unmapped}: add a check"
    failures = []
    for field, value in expected.items():
        assert isinstance(value, bool), f"{field} is not a boolean"
        try:
            CHECKS[field](case, value)
        except AssertionError as exc:
            failures.append(f"{field}={value}: {exc}")
    assert not failures, failures
