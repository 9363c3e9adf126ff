"""The offline verifier for operators and device makers: the service's verdict logic without a server.

    python -m services.verify_svc.offline --trust PATH [--trust PATH ...] [--rules FILE] [--province 24]
                                          [--at ISO-8601] QR [QR ...]

A trust PATH is a signing certificate (PEM or DER) or a folder of them; its country is the
certificate's subject C. A QR is the scanned text, or a PNG/JPEG file of the code (read with
zxing-cpp). `--rules` is the JSON of a VerifyService.GetRules answer (what a device downloads); without
it no province rule applies, so a genuine entry gets RULE_NOT_MET. Revocation status is not available
offline (UNCHECKED). Prints one JSON object per QR, whatever happens, and uses the same Verifier as
verify_svc; a trust certificate whose key no DCC algorithm uses is skipped with a warning on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from google.protobuf import json_format

from services.gen.covidtest.verify.v1 import verify_service_pb2 as pb
from services.hcert import decode as hdecode
from services.registry.province_rules import Rule, rule_from_message
from services.verify_svc.status import UNCHECKED, Status
from services.verify_svc.trust import Snapshot, TrustedKey, trusted_key
from services.verify_svc.verifier import Verifier


class _Offline:
    """No live status offline (a LiveStatus): every lookup is UNCHECKED (and only own keys would ask)."""

    async def status(self, certificate_id: str) -> Status:
        return Status(None, UNCHECKED)


class _Trust:
    """A TrustView of one fixed snapshot: the command line's certificates and rules."""

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot


def _country(cert: x509.Certificate) -> str:
    """The subject's C ("" without one); a country name is always text."""
    countries = cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    value = countries[0].value if countries else ""
    return value if isinstance(value, str) else value.decode()


def load_certificates(paths: list[str]) -> list[TrustedKey]:
    """Every certificate in `paths` (files, or the files of folders) as a trusted key of another country."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise SystemExit(f"error: no such file or folder: {path}")
    keys: list[TrustedKey] = []
    for file in files:
        raw = file.read_bytes()
        try:
            cert = (
                x509.load_pem_x509_certificate(raw)
                if raw.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_certificate(raw)
            )
        except ValueError:
            raise SystemExit(f"error: not an X.509 certificate: {file}") from None
        try:
            keys.append(trusted_key(cert.public_bytes(Encoding.DER), _country(cert), own=False))
        except Exception as exc:  # noqa: BLE001 - one unusable certificate must not stop the run
            # A key no DCC algorithm uses (Ed25519, a P-192 curve, short RSA): said once, the rest verify.
            print(f"warning: {file}: unusable signing certificate, skipped ({exc})", file=sys.stderr, flush=True)
    return keys


def load_rules(path: str | None) -> list[Rule]:
    if not path:
        return []
    try:
        answer = json_format.Parse(Path(path).read_text(encoding="utf-8"), pb.GetRulesResponse())
    except (OSError, json_format.ParseError) as exc:
        raise SystemExit(f"error: cannot read rules {path}: {exc}") from None
    return [rule_from_message(r) for r in answer.rules]


def read_qr(argument: str) -> str:
    """The text itself, or the text of the QR code in an image file."""
    path = Path(argument)
    if not argument.startswith("HC1:") and path.suffix.lower() in (".png", ".jpg", ".jpeg") and path.is_file():
        import zxingcpp
        from PIL import Image

        codes = zxingcpp.read_barcodes(Image.open(path))
        if not codes:
            raise ValueError(f"no QR code found in {path}")
        return codes[0].text
    return argument


async def check(verifier: Verifier, text: str, at: datetime, province: str) -> dict[str, Any]:
    """The verdict of one QR, and what the QR itself says: its payload, whether a trusted key verifies it."""
    result = await verifier.verify(text, at, province)
    out: dict[str, Any] = {
        "verdict": result.verdict,
        "reason": result.reason,
        "stage": result.stage or None,
        "kid": result.kid.hex() if result.kid else None,
        "entry_type": result.entry_type or None,
        "issuer_country": result.issuer_country or None,
        "certificate_id": result.certificate_id or None,
        "rule": f"{result.rule.rule_id}@{result.rule.version}" if result.rule else None,
        # The signature and the content are separate findings (the Verifier's): a payload that fails
        # its schema may still be genuinely signed, and the verdict is then MALFORMED at stage SCHEMA.
        "signature_valid": result.signature_valid,
        "schema_valid": False if result.schema_error else None,  # None: not decoded far enough to tell
        "schema_error": result.schema_error or None,
        "cwt_valid_at": None,
        "payload": None,
    }
    try:
        decoded = hdecode.decode(text, check_schema=False)
    except hdecode.MalformedError:
        return out
    out["kid"] = (decoded.kid or b"").hex()  # never None after decode
    out["entry_type"] = decoded.entry_type
    out["payload"] = decoded.dcc
    out["cwt_valid_at"] = hdecode.cwt_valid_at(decoded, int(at.timestamp()))
    out["schema_valid"] = not result.schema_error
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.verify_svc.offline", description=__doc__.splitlines()[0])
    parser.add_argument("--trust", action="append", required=True, help="certificate file or folder (repeatable)")
    parser.add_argument("--rules", help="JSON of a GetRules answer")
    parser.add_argument("--province", default="24", help="province whose rules apply (default 24, Bắc Giang)")
    parser.add_argument("--at", help="scan time, ISO 8601 (default now)")
    parser.add_argument("qr", nargs="+", help="HC1: text or a PNG/JPEG of the QR code")
    args = parser.parse_args(argv)
    try:
        at = datetime.fromisoformat(args.at.replace("Z", "+00:00")) if args.at else datetime.now(UTC)
    except ValueError:
        parser.error(f"--at is not ISO 8601: {args.at}")
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    keys = load_certificates(args.trust)
    verifier = Verifier(_Trust(Snapshot(keys, load_rules(args.rules), 0)), _Offline())
    failed = False
    for argument in args.qr:
        try:
            text = read_qr(argument)
        except (ValueError, OSError) as exc:
            print(json.dumps({"input": argument, "error": str(exc)}), flush=True)
            failed = True
            continue
        try:
            out = asyncio.run(check(verifier, text, at, args.province))
        except Exception as exc:  # noqa: BLE001 - one line per QR whatever happens
            out = {"input": argument, "error": f"{type(exc).__name__}: {exc}"}
            failed = True
        print(json.dumps(out, ensure_ascii=False), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
