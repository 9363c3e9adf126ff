"""The offline verifier for operators and device makers: the service's verdict logic without a server.

    python -m services.verify_svc.offline --bundle FILE --bundle-key CERT [--delta FILE ...]
                                          [--province 24] [--at ISO-8601] [--language en] QR [QR ...]
    python -m services.verify_svc.offline --trust PATH [--trust PATH ...] [--rules FILE] [--province 24]
                                          [--at ISO-8601] [--language en] QR [QR ...]

With `--bundle` (a full checkpoint bundle, from GetCheckpointBundle or /bundle/v1/latest) the trust list,
the rules and the revocations all come from the bundle, after its signature is checked against the pinned
bundle certificate(s) `--bundle-key` (PEM or DER); `--delta` files (/bundle/v1/delta/N) are applied in
order. A bundle that fails its signature, is signed by another key, or has expired (valid_until before
the scan time) is refused: exit status 2 and nothing is verified, because a stale bundle no longer knows
what was revoked. Our own certificates are then REVOKED when the bundle lists them, VALID otherwise
(status_source BUNDLE: the bundle lists every revoked certificate of ours that has not expired).

Without a bundle: a trust PATH is a signing certificate (PEM or DER) or a folder of them; its country is
the certificate's subject C. `--rules` is the JSON of a VerifyService.GetRules answer; without it no
province rule applies, so a genuine entry gets RULE_NOT_MET. Revocation status is then not available
(UNCHECKED). With a bundle, a rapid antigen test's device is checked against the active device list it
carries, as verify_svc checks it; without one it is not checked.

A QR is the scanned text, or a PNG/JPEG file of the code (read with zxing-cpp). Prints one JSON object
per QR, whatever happens, and uses the same Verifier as verify_svc; a trust certificate whose key no DCC
algorithm uses is skipped with a warning on stderr. `--language vi` gives the verdict's `reason` in
Vietnamese (the catalogue of services.common.i18n, as verify_svc answers); the default, English, keeps the
output stable for scripts.
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

from services.common import i18n
from services.gen.covidtest.verify.v1 import verify_service_pb2 as pb
from services.hcert import decode as hdecode
from services.registry import checkpoint_bundle as cb
from services.registry.province_rules import Rule, rule_from_message
from services.registry.value_sets import RAT_DEVICES, CurrentValueSets, ValueSet
from services.verify_svc.status import UNCHECKED, Status
from services.verify_svc.trust import Snapshot, TrustedKey, trusted_key, usable_key
from services.verify_svc.verifier import Verifier

BUNDLE = "BUNDLE"  # the status source of a verdict whose revocation status came from the bundle


class _Offline:
    """No live status offline (a LiveStatus): every lookup is UNCHECKED (and only own keys would ask)."""

    async def status(self, certificate_id: str) -> Status:
        return Status(None, UNCHECKED)


class BundleStatus:
    """The live status of our own certificates as the bundle knows it: it lists every revoked one that has
    not expired, so a certificate it does not list was not revoked when the bundle was issued."""

    def __init__(self, bundle: cb.Bundle):
        self._revoked = frozenset(bundle.content[cb.REVOKED])

    async def status(self, certificate_id: str) -> Status:
        revoked = cb.revocation_hash(certificate_id) in self._revoked
        return Status("REVOKED" if revoked else "VALID", BUNDLE)


def snapshot_of(bundle: cb.Bundle) -> Snapshot:
    """The bundle's trust list, rules and rapid-test device list as the Verifier's snapshot (unusable
    certificates skipped, as verify_svc skips them; a bundle without a device list approves every device)."""
    found = [usable_key(e["certificate"], e["country"], e["own"]) for e in bundle.content[cb.TRUST_LIST].values()]
    rules = [cb.rule_of(e) for e in bundle.content[cb.RULES].values()]
    devices = cb.rat_devices_of(bundle)
    value_sets = None
    if devices is not None:
        values = {code: {"display": display, "active": True} for code, display in devices.items()}
        listed = ValueSet(RAT_DEVICES, bundle.issued_at.date(), values, bundle.content_sha256, bundle.version)
        value_sets = CurrentValueSets({RAT_DEVICES: listed})
    return Snapshot([k for k in found if k is not None], rules, bundle.version, value_sets)


def _read_certificate(path: str) -> x509.Certificate:
    raw = Path(path).read_bytes()
    if raw.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(raw)
    return x509.load_der_x509_certificate(raw)


def load_bundle(path: str, deltas: list[str], pinned_paths: list[str], at: datetime) -> cb.Bundle:
    """The verified bundle with `deltas` applied; SystemExit(2) with the reason when it must not be used."""
    try:
        pinned = [_read_certificate(p) for p in pinned_paths]
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read a bundle key certificate: {exc}") from None
    try:
        bundle = cb.read_bundle(Path(path).read_bytes(), pinned)
        for delta in deltas:
            bundle = cb.apply(bundle, cb.read_delta(Path(delta).read_bytes(), pinned))
    except OSError as exc:
        raise SystemExit(f"error: cannot read {exc.filename}: {exc.strerror}") from None
    except cb.BundleError as exc:
        print(json.dumps({"error": str(exc), "reason": exc.reason}), flush=True)
        raise SystemExit(2) from None
    if bundle.valid_until < at:
        reason = f"the bundle (version {bundle.version}) expired at {bundle.valid_until.isoformat()}: fetch a new one"
        print(json.dumps({"error": reason, "reason": "BUNDLE_EXPIRED"}), flush=True)
        raise SystemExit(2)
    return bundle


class FixedTrust:
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


async def check(verifier: Verifier, text: str, at: datetime, province: str, language: str = "en") -> dict[str, Any]:
    """The verdict of one QR, and what the QR itself says: its payload, whether a trusted key verifies it.
    `reason` is in `language`."""
    result = await verifier.verify(text, at, province)
    out: dict[str, Any] = {
        "verdict": result.verdict,
        "reason": i18n.verdict_reason(result.reason, result.verdict, language),
        "stage": result.stage or None,
        "kid": result.kid.hex() if result.kid else None,
        "entry_type": result.entry_type or None,
        "issuer_country": result.issuer_country or None,
        "certificate_id": result.certificate_id or None,
        "rule": f"{result.rule.rule_id}@{result.rule.version}" if result.rule else None,
        "status_source": result.status_source or None,
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
    parser.add_argument("--bundle", help="a full checkpoint bundle (COSE_Sign1 file)")
    parser.add_argument("--delta", action="append", default=[], help="a bundle delta to apply, in order (repeatable)")
    parser.add_argument("--bundle-key", action="append", default=[], help="pinned bundle certificate (repeatable)")
    parser.add_argument("--trust", action="append", help="certificate file or folder (repeatable; not with --bundle)")
    parser.add_argument("--rules", help="JSON of a GetRules answer (not with --bundle)")
    parser.add_argument("--province", default="24", help="province whose rules apply (default 24, Bắc Giang)")
    parser.add_argument("--at", help="scan time, ISO 8601 (default now)")
    parser.add_argument(
        "--language", choices=i18n.SUPPORTED, default="en", help="language of the verdict's reason (default en)"
    )
    parser.add_argument("qr", nargs="+", help="HC1: text or a PNG/JPEG of the QR code")
    args = parser.parse_args(argv)
    try:
        at = datetime.fromisoformat(args.at.replace("Z", "+00:00")) if args.at else datetime.now(UTC)
    except ValueError:
        parser.error(f"--at is not ISO 8601: {args.at}")
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if args.bundle:
        if args.trust or args.rules:
            parser.error("--bundle brings the trust list and the rules: leave out --trust and --rules")
        if not args.bundle_key:
            parser.error("--bundle needs the pinned bundle certificate: --bundle-key")
        bundle = load_bundle(args.bundle, args.delta, args.bundle_key, at)
        verifier = Verifier(FixedTrust(snapshot_of(bundle)), BundleStatus(bundle))
    else:
        if not args.trust:
            parser.error("either --bundle or --trust is required")
        keys = load_certificates(args.trust)
        verifier = Verifier(FixedTrust(Snapshot(keys, load_rules(args.rules), 0)), _Offline())
    failed = False
    for argument in args.qr:
        try:
            text = read_qr(argument)
        except (ValueError, OSError) as exc:
            print(json.dumps({"input": argument, "error": str(exc)}), flush=True)
            failed = True
            continue
        try:
            out = asyncio.run(check(verifier, text, at, args.province, args.language))
        except Exception as exc:  # noqa: BLE001 - one line per QR whatever happens
            out = {"input": argument, "error": f"{type(exc).__name__}: {exc}"}
            failed = True
        print(json.dumps(out, ensure_ascii=False), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
