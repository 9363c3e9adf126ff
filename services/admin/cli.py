"""The operator CLI: `python -m services.admin …` (or the `covidtest-admin` console script).

Admin is the AdminService servicer (services.admin.servicer) and this CLI, both over the registry
(services.registry). The CLI talks to Postgres directly (DATABASE_URL), for bootstrapping and
break-glass work where no operator token exists yet; day-to-day tooling can use the AdminService RPCs,
which run the same registry functions. Every command prints JSON on stdout; errors go to stderr with a
non-zero exit code (1 refused or failed, 2 bad usage). A token is printed exactly once, when issued.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeAlias, TypeVar

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.admin import documents, reads, rotation
from services.common import migrate
from services.common.auth import Principal, PrincipalKind, Role
from services.common.config import parse_keyring, parse_secret_bytes
from services.common.db import CONNECTION_ERRORS, connect
from services.common.errors import DomainError, FailedPrecondition, InvalidArgument
from services.common.pii import PiiCipher
from services.hcert.document import PAPER_SIZES
from services.registry import principals, province_rules, signing_keys, trusted_certificates, value_sets
from services.registry.key_sealing import SigningKeySealer, new_kek, parse_kek_public
from services.statistics import export, figures, summary
from services.statistics import repository as statistics_repository

T = TypeVar("T")
Command = Callable[[str, argparse.Namespace], Awaitable[object]]  # (database URL, parsed arguments) -> JSON
Areas: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # the parser's top-level commands


class Text(str):
    """A command's answer printed as it is (a CSV export written to stdout), not as JSON."""


class JsonLines(list):
    """A command's answer printed as one JSON object per line (none when empty), not as one document."""


def _emit(obj: object) -> None:
    if isinstance(obj, Text):
        sys.stdout.write(obj)
        return
    if isinstance(obj, JsonLines):
        for item in obj:
            print(json.dumps(item, default=str, ensure_ascii=False))
        return
    print(json.dumps(obj, default=str, ensure_ascii=False))


async def _with_tx(dsn: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    conn = await connect(dsn)
    try:
        async with conn.transaction():
            return await fn(conn)
    finally:
        await conn.close()


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _credential_json(credential: principals.Credential) -> dict[str, Any]:
    out = vars(credential).copy()
    out["fingerprint"] = credential.fingerprint.hex() if credential.fingerprint else None
    return out


def _key_json(key: signing_keys.SigningKeyRow) -> dict[str, Any]:
    out = vars(key).copy()
    out["kid"] = key.kid.hex()
    out["certificate_der"] = None
    out["certificate_pem"] = x509.load_der_x509_certificate(key.certificate_der).public_bytes(Encoding.PEM).decode()
    return out


def _record(row: asyncpg.Record) -> dict[str, Any]:
    return {
        k: (bytes(v).hex() if isinstance(v, (bytes, memoryview)) else v)
        for k, v in dict(row).items()
        if k != "certificate_der"
    }


async def _migrate(dsn: str, args: argparse.Namespace) -> object:
    return {"applied": await migrate.apply(dsn)}


async def _principal(dsn: str, args: argparse.Namespace) -> object:
    """org, partner, device create; org, partner, device, operator list."""
    if args.action == "list":
        rows = await _with_tx(dsn, lambda c: principals.list_principals(c, _KINDS[args.area], args.limit))
        return [dict(r) for r in rows]
    if args.area == "org":
        org_id = await _with_tx(
            dsn, lambda c: principals.create_organisation(c, None, args.name, args.kind, args.province)
        )
        return {"id": org_id, "name": args.name, "kind": args.kind, "province_code": args.province}
    if args.area == "partner":
        partner_id = await _with_tx(
            dsn, lambda c: principals.create_partner(c, None, args.name, args.personal_data_access)
        )
        return {"id": partner_id, "name": args.name, "personal_data_access": args.personal_data_access}
    device_id = await _with_tx(dsn, lambda c: principals.create_checkpoint_device(c, None, args.name, args.province))
    return {"id": device_id, "name": args.name, "province_code": args.province}


async def _credential(dsn: str, args: argparse.Namespace) -> object:
    if args.action == "issue":
        issued = await _with_tx(
            dsn,
            lambda c: principals.issue_token(
                c, None, PrincipalKind(args.principal_kind), args.principal_id, Role(args.role), args.label
            ),
        )
        return {
            "credential_id": issued.credential_id,
            "role": args.role,
            "token": issued.token,
            "note": "the token is shown once; store it in the caller's secret store now",
        }
    if args.action == "register-cert":
        return await _register_certificate(dsn, args)
    if args.action == "list":
        creds = await _with_tx(
            dsn,
            lambda c: principals.list_credentials(
                c,
                PrincipalKind(args.principal_kind) if args.principal_kind else None,
                args.principal_id or "",
                args.include_revoked,
                args.limit,
            ),
        )
        return [_credential_json(c) for c in creds]
    credential = await _with_tx(dsn, lambda c: principals.revoke_credential(c, None, args.credential_id, args.reason))
    return _credential_json(credential)


async def _register_certificate(dsn: str, args: argparse.Namespace) -> object:
    try:
        pem_or_der = _read(args.certificate)
    except OSError as exc:
        raise InvalidArgument(f"cannot read certificate file: {exc.strerror}") from None
    certificate = principals.parse_client_certificate(pem_or_der)
    credential_id = await _with_tx(
        dsn,
        lambda c: principals.register_client_certificate(
            c,
            None,
            PrincipalKind(args.principal_kind),
            args.principal_id,
            Role(args.role),
            certificate.fingerprint,
            certificate.expires_at,
            args.label,
        ),
    )
    return {"credential_id": credential_id, "role": args.role}


async def _trusted_cert(dsn: str, args: argparse.Namespace) -> object:
    if args.action == "import":
        try:
            raw = _read(args.certificate)
        except OSError as exc:
            raise InvalidArgument(f"cannot read {exc.filename}: {exc.strerror}") from None
        return _record(await _with_tx(dsn, lambda c: trusted_certificates.import_trusted(c, None, raw, args.country)))
    if args.action == "remove":
        return _record(
            await _with_tx(dsn, lambda c: trusted_certificates.remove_trusted(c, None, args.trusted_certificate_id))
        )
    return [
        _record(r)
        for r in await _with_tx(dsn, lambda c: trusted_certificates.list_trusted(c, args.country, args.limit, None))
    ]


def _rule_input(args: argparse.Namespace) -> province_rules.RuleInput:
    return province_rules.RuleInput(
        province_code=args.province,
        entry_type=args.entry_type,
        test_type=args.test_type,
        disabled=args.disabled,
        validity=timedelta(hours=args.validity_hours) if args.validity_hours else None,
        accepted_outcomes=tuple(args.accept or ()),
        complete_series_required=args.complete_series,
        min_days_since_last_dose=args.min_days_since_last_dose,
        max_days_since_last_dose=args.max_days_since_last_dose,
        min_days_since_first_positive=args.min_days_since_positive,
        max_days_since_first_positive=args.max_days_since_positive,
        effective_from=datetime.fromisoformat(args.effective_from) if args.effective_from else None,
        description=args.description,
    )


async def _rule(dsn: str, args: argparse.Namespace) -> object:
    if args.action == "set":
        rule = _rule_input(args)
        return _record(await _with_tx(dsn, lambda c: province_rules.set_rule(c, None, rule)))
    return [
        _record(r)
        for r in await _with_tx(
            dsn, lambda c: province_rules.list_rules(c, args.province, args.history, args.limit, None)
        )
    ]


async def _valueset(dsn: str, args: argparse.Namespace) -> object:
    """import: new versions of DCC value sets from the EU gateway's JSON files. list: every version."""
    if args.action == "list":
        return await _with_tx(dsn, lambda c: value_sets.list_value_sets(c, args.name))
    files: list[tuple[str, bytes]] = []
    for path in args.files:
        try:
            with open(path, "rb") as f:
                raw = f.read(value_sets.MAX_FILE_BYTES + 1)  # enough to know it is too large
        except OSError as exc:
            raise InvalidArgument(f"cannot read {path}: {exc.strerror}; nothing was imported") from None
        files.append((os.path.basename(path), raw))
    imported = await _with_tx(dsn, lambda c: value_sets.import_value_sets(c, args.operator, files))
    return [
        {
            "name": i.name,
            "version": i.version,
            "imported": i.created,
            "note": "a new version, in use at once" if i.created else "the same content as the current version",
            "value_set_date": i.value_set_date.isoformat(),
            "values": i.values,
            "active": i.active,
            "content_sha256": i.content_sha256,
            "source_file": i.source_file,
        }
        for i in imported
    ]


def _environment_value(name: str, parse: Callable[[str], T], problems: list[str]) -> T | None:
    """`parse` of environment variable `name`; on a ValueError its problem is added to `problems`."""
    try:
        return parse(os.environ.get(name, ""))
    except ValueError as exc:
        problems.append(f"{name}: {exc}")
        return None


def _sealer_from_environment() -> SigningKeySealer:
    """The signing-key KEK's public half (SIGNING_KEYS_KEK_PUBLIC, as result_svc has it): it seals a new
    key's private half, which only publish_svc can open."""
    problems: list[str] = []
    public = _environment_value("SIGNING_KEYS_KEK_PUBLIC", parse_kek_public, problems)
    if problems or public is None:
        raise InvalidArgument("signing keys are sealed with the signing-key KEK: " + "; ".join(problems))
    return SigningKeySealer(public)


async def _import_signing_key(dsn: str, args: argparse.Namespace, days: timedelta | None) -> object:
    try:
        private_pem = _read(args.private_key)
        certificate_pem = _read(args.certificate) if args.certificate else None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {exc.filename}: {exc.strerror}") from None
    # --keep-in-secret stores only the file's path: the key is never sealed, so no KEK is needed.
    sealer = None if args.keep_in_secret else _sealer_from_environment()
    ref = os.path.abspath(args.private_key) if args.keep_in_secret else None
    key = await _with_tx(
        dsn,
        lambda c: signing_keys.import_key(
            c, None, sealer, private_pem, certificate_pem, days, private_key_ref=ref, purpose=args.purpose
        ),
    )
    return _key_json(key)


async def _signing_key(dsn: str, args: argparse.Namespace) -> object:
    days = timedelta(days=args.validity_days) if getattr(args, "validity_days", None) else None
    if args.action == "new-kek":
        private, public = new_kek()
        return {"SIGNING_KEYS_KEK": private, "SIGNING_KEYS_KEK_PUBLIC": public}
    if args.action == "generate":
        sealer = _sealer_from_environment()
        return _key_json(
            await _with_tx(
                dsn, lambda c: signing_keys.generate(c, None, sealer, args.algorithm, days, purpose=args.purpose)
            )
        )
    if args.action == "import":
        return await _import_signing_key(dsn, args, days)
    if args.action == "activate":
        rotation = await _with_tx(dsn, lambda c: signing_keys.activate(c, None, args.signing_key_id))
        return {
            "activated": _key_json(rotation.activated),
            "deactivated": _key_json(rotation.deactivated) if rotation.deactivated else None,
        }
    if args.action == "retire":
        return _key_json(await _with_tx(dsn, lambda c: signing_keys.retire(c, None, args.signing_key_id, args.force)))
    return [
        _key_json(k)
        for k in await _with_tx(dsn, lambda c: signing_keys.list_keys(c, args.state, args.limit, None, args.purpose))
    ]


def _pepper_from_environment() -> PiiCipher:
    """A cipher that only hashes: PII_PEPPER as for the services. The command never seals or opens
    personal data, so it needs no PII_KEYS; the key it is given is random and never used."""
    problems: list[str] = []
    pepper = _environment_value("PII_PEPPER", parse_secret_bytes, problems)
    if problems or pepper is None:
        raise InvalidArgument("an identity number is looked up by its keyed hash: " + "; ".join(problems))
    return PiiCipher({"unused": os.urandom(32)}, pepper)


async def _reads(dsn: str, args: argparse.Namespace) -> object:
    """Who read a person's results: one JSON line per audited read (when, who, purpose, which results)."""
    document = (
        reads.IdentityDocument(args.identity_type, args.country, args.identity_number) if args.identity_number else None
    )
    pii = _pepper_from_environment() if document is not None else None
    rows = await _with_tx(dsn, lambda c: reads.reads_of_person(c, pii, document, args.person_id, args.limit))
    return JsonLines(
        {
            "at": r.at.isoformat(),
            "principal_kind": r.principal_kind,
            "principal_id": str(r.principal_id),
            "principal_name": r.principal_name,
            "purpose": r.purpose,
            "result_ids": [str(x) for x in r.result_ids],
            "detail": r.detail,
        }
        for r in rows
    )


def _sealing_keys_from_environment() -> PiiCipher:
    """A cipher that only opens: PII_KEYS as for the services (every key id a sealed value may name). The
    command never hashes, so it needs no PII_PEPPER; the pepper it is given is random and never used."""
    problems: list[str] = []
    keys = _environment_value("PII_KEYS", parse_keyring, problems)
    if problems or keys is None:
        raise InvalidArgument("the certificate's QR text is sealed with the personal-data keys: " + "; ".join(problems))
    return PiiCipher(keys, os.urandom(32))


async def _certificate(dsn: str, args: argparse.Namespace) -> object:
    """document: the printable PDF of one certificate, for a sampling site; the read is audited."""
    documents.check_request(args.operator, args.certificate_id, args.size)  # bad usage before any key is read
    pii = _sealing_keys_from_environment()
    conn = await connect(dsn)
    try:
        printed = await documents.print_certificate(conn, pii, args.operator, args.certificate_id, args.size, args.out)
    finally:
        await conn.close()
    return {
        "certificate_id": printed.certificate_id,
        "result_id": str(printed.result_id),
        "status": printed.status,
        "expires_at": printed.expires_at.isoformat(),
        "paper": printed.paper,
        "out": printed.path,
        "bytes": printed.size_bytes,
    }


async def _statistics(dsn: str, args: argparse.Namespace) -> object:
    """export: one kind of the health department's figures for a province as CSV, suppressed cells "<5";
    refresh: bring the daily summary up to date now (--rebuild: every day from the record)."""
    if args.action == "refresh":

        async def refreshed(conn: asyncpg.Connection) -> object:
            if args.rebuild:
                await statistics_repository.reset_progress(conn)
            days = await summary.refresh(conn)
            return {"days": "all" if days == -1 else days, "skipped": days is None}

        return await _with_tx(dsn, refreshed)
    period = None
    if args.kind != "backlog" or args.date_from or args.date_to:
        period = figures.period(args.date_from or "", args.date_to or "", fields=("--from", "--to"))
    province = figures.province(_OPERATOR_CLI, args.province)
    table = await _with_tx(dsn, lambda conn: export.rows(conn, args.kind, province, period))
    text = export.to_csv(args.kind, table)
    if args.out is None:
        return Text(text)
    with open(args.out, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return {"kind": args.kind, "province": province, "rows": len(table), "out": args.out}


# The CLI acts as an operator: it names the province of an export.
_OPERATOR_CLI = Principal(credential_id="", kind=PrincipalKind.OPERATOR, id="cli", role=Role.OPERATOR)


def _rotation_keyring() -> PiiCipher:
    """Every personal-data key, the current (first) one sealing: PII_KEYS and PII_PEPPER as for the services."""
    problems: list[str] = []
    keys = _environment_value("PII_KEYS", parse_keyring, problems)
    pepper = _environment_value("PII_PEPPER", parse_secret_bytes, problems)
    if problems or keys is None or pepper is None:
        raise InvalidArgument(
            "re-encryption needs the services' PII_KEYS (the new key first, the old ones after) and PII_PEPPER: "
            + "; ".join(problems)
        )
    return PiiCipher(keys, pepper)


def _current_key_id(given: str | None) -> str | None:
    """--current-key-id, else the first id of PII_KEYS when it is set (status needs no key itself)."""
    if given:
        return given
    try:
        return next(iter(parse_keyring(os.environ["PII_KEYS"])))
    except (KeyError, ValueError):
        return None


def _progress_line(line: dict[str, object]) -> None:
    print(json.dumps(line, default=str, ensure_ascii=False), flush=True)  # now, not when the run ends


async def _pii_keys(dsn: str, args: argparse.Namespace) -> object:
    """status: values per key id in every sealed column. reencrypt: re-seal old values under the current key."""
    if args.action == "status":
        current = _current_key_id(args.current_key_id)
        conn = await connect(dsn)
        try:
            return (await rotation.status(conn, current)).as_json()
        finally:
            await conn.close()
    pii = _rotation_keyring()
    conn = await connect(dsn)
    try:
        try:
            progress = await rotation.reencrypt(
                conn,
                pii,
                batch_size=args.batch_size,
                max_seconds=args.max_seconds,
                max_batches=args.max_batches,
                report=_progress_line,
            )
        except rotation.KeysMissing as exc:
            raise FailedPrecondition(
                f"values are sealed under key ids PII_KEYS lacks ({exc}): add them after the current key"
            ) from None
        final = await rotation.status(conn, pii.active_key_id)
    finally:
        await conn.close()
    out: dict[str, object] = {
        "event": "stopped" if progress.stopped else "done",
        "stopped": progress.stopped,
        "reencrypted": progress.reencrypted,
        "batches": progress.batches,
        "failed": progress.failed,
        "status": final.as_json(),
    }
    if progress.failed:
        _progress_line(out)
        raise FailedPrecondition(f"{len(progress.failed)} values did not open and keep their old key (listed)")
    return out


_KINDS = {
    "org": PrincipalKind.ORGANISATION,
    "partner": PrincipalKind.PARTNER,
    "device": PrincipalKind.CHECKPOINT_DEVICE,
    "operator": PrincipalKind.OPERATOR,
}


# The command that runs each area of the parser.
_COMMANDS: dict[str, Command] = {
    "migrate": _migrate,
    "org": _principal,
    "partner": _principal,
    "device": _principal,
    "operator": _principal,
    "credential": _credential,
    "signing-key": _signing_key,
    "trusted-cert": _trusted_cert,
    "rule": _rule,
    "valueset": _valueset,
    "reads": _reads,
    "pii-keys": _pii_keys,
    "certificate": _certificate,
    "statistics": _statistics,
}


async def _run(args: argparse.Namespace) -> object:
    return await _COMMANDS[args.area](args.database_url, args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="covidtest-admin", description="Operator CLI of the COVID-19 test-result platform")
    p.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", ""), help="Postgres URL (default: $DATABASE_URL)"
    )
    areas = p.add_subparsers(dest="area", required=True)
    areas.add_parser("migrate", help="apply pending database migrations")
    _add_principal_commands(areas)
    _add_credential_commands(areas)
    _add_signing_key_commands(areas)
    _add_trusted_cert_commands(areas)
    _add_rule_commands(areas)
    _add_valueset_commands(areas)
    _add_reads_command(areas)
    _add_pii_keys_commands(areas)
    _add_certificate_commands(areas)
    _add_statistics_commands(areas)
    return p


def _add_principal_commands(areas: Areas) -> None:
    actions = {
        "org": areas.add_parser("org", help="sampling units, labs, health departments").add_subparsers(
            dest="action", required=True
        ),
        "partner": areas.add_parser("partner", help="feed partners").add_subparsers(dest="action", required=True),
        "device": areas.add_parser("device", help="checkpoint devices").add_subparsers(dest="action", required=True),
        "operator": areas.add_parser(
            "operator", help="operators (registered by their first credential)"
        ).add_subparsers(dest="action", required=True),
    }
    c = actions["org"].add_parser("create")
    c.add_argument("--name", required=True)
    c.add_argument("--kind", required=True, choices=principals.ORG_KINDS)
    c.add_argument("--province", required=True, help="2-digit province code, e.g. 24")
    c = actions["partner"].add_parser("create")
    c.add_argument("--name", required=True)
    c.add_argument(
        "--personal-data-access",
        action="store_true",
        help="the partner receives names and birth dates on the feed (Bluezone does)",
    )
    c = actions["device"].add_parser("create")
    c.add_argument("--name", required=True)
    c.add_argument("--province", required=True)
    for sub in actions.values():
        sub.add_parser("list").add_argument("--limit", type=int, default=100)


def _add_credential_commands(areas: Areas) -> None:
    cred = areas.add_parser("credential", help="tokens and client certificates").add_subparsers(
        dest="action", required=True
    )
    for action in ("issue", "register-cert"):
        c = cred.add_parser(action)
        c.add_argument("--principal-kind", required=True, choices=[k.value for k in PrincipalKind])
        c.add_argument("--principal-id", required=True, help="UUID; for OPERATOR the operator's user name")
        c.add_argument("--role", required=True, choices=[r.value for r in Role])
        c.add_argument("--label", default="")
        if action == "register-cert":
            c.add_argument("--certificate", required=True, help="PEM or DER file")
    c = cred.add_parser("list")
    c.add_argument("--principal-kind", choices=[k.value for k in PrincipalKind])
    c.add_argument("--principal-id")
    c.add_argument("--include-revoked", action="store_true")
    c.add_argument("--limit", type=int, default=100)
    c = cred.add_parser("revoke")
    c.add_argument("credential_id")
    c.add_argument("--reason", default="")


def _add_signing_key_commands(areas: Areas) -> None:
    keys = areas.add_parser(
        "signing-key",
        help="HCERT and checkpoint-bundle signing keys (SIGNING_KEYS_KEK_PUBLIC seals private keys)",
    ).add_subparsers(dest="action", required=True)
    keys.add_parser(
        "new-kek", help="print a new signing-key KEK: SIGNING_KEYS_KEK for publish_svc, its public half for the rest"
    )
    c = keys.add_parser("generate", help="new key and certificate, state PENDING")
    c.add_argument("--algorithm", choices=signing_keys.ALGORITHMS, default="ES256")
    c.add_argument("--validity-days", type=int, help="certificate validity (default 365)")
    _purpose_argument(c)
    c = keys.add_parser("import", help="import a PEM private key (file or mounted Kubernetes Secret)")
    c.add_argument("--private-key", required=True, help="PEM file, never from the repository")
    c.add_argument("--certificate", help="its PEM certificate (else one is created)")
    c.add_argument("--validity-days", type=int)
    c.add_argument(
        "--keep-in-secret",
        action="store_true",
        help="store only the file's path: publish_svc reads the key from the mounted Secret",
    )
    _purpose_argument(c)
    keys.add_parser("activate", help="make it the signing key (rotation)").add_argument("signing_key_id")
    c = keys.add_parser("retire", help="remove from the trust list for good")
    c.add_argument("signing_key_id")
    c.add_argument("--force", action="store_true", help="even with unexpired certificates (key compromise)")
    c = keys.add_parser("list")
    c.add_argument("--state", choices=["PENDING", "ACTIVE", "DEACTIVATED", "RETIRED"])
    c.add_argument("--purpose", choices=signing_keys.PURPOSES, type=str.upper, help="only keys of this purpose")
    c.add_argument("--limit", type=int, default=100)


def _purpose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--purpose",
        choices=signing_keys.PURPOSES,
        type=str.upper,
        default=signing_keys.DCC,
        help="DCC (signs certificates, on the trust list) or BUNDLE (signs the checkpoint bundle devices pin)",
    )


def _add_trusted_cert_commands(areas: Areas) -> None:
    trusted = areas.add_parser(
        "trusted-cert", help="foreign DCC signing certificates in the trust list"
    ).add_subparsers(dest="action", required=True)
    c = trusted.add_parser("import")
    c.add_argument("--certificate", required=True, help="X.509 file, PEM or DER")
    c.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. KR")
    trusted.add_parser("remove").add_argument("trusted_certificate_id")
    c = trusted.add_parser("list")
    c.add_argument("--country")
    c.add_argument("--limit", type=int, default=100)


def _add_rule_commands(areas: Areas) -> None:
    rules = areas.add_parser("rule", help='province rules (versioned; "00" is the national default)').add_subparsers(
        dest="action", required=True
    )
    c = rules.add_parser("set", help="add a new version of a province's rule")
    c.add_argument("--province", required=True)
    c.add_argument("--entry-type", required=True, choices=province_rules.ENTRY_TYPES)
    c.add_argument("--test-type", choices=province_rules.TEST_TYPES)
    c.add_argument("--disabled", action="store_true", help="the province accepts no such entry")
    c.add_argument("--validity-hours", type=int, help="TEST: hours after sample collection")
    c.add_argument("--accept", action="append", choices=["NEGATIVE", "POSITIVE"], help="TEST: accepted outcome")
    c.add_argument("--complete-series", action="store_true")
    for name in (
        "min-days-since-last-dose",
        "max-days-since-last-dose",
        "min-days-since-positive",
        "max-days-since-positive",
    ):
        c.add_argument(f"--{name}", type=int, default=0)
    c.add_argument("--effective-from", help="ISO 8601 with offset; default now")
    c.add_argument("--description", default="")
    c = rules.add_parser("list")
    c.add_argument("--province")
    c.add_argument("--history", action="store_true")
    c.add_argument("--limit", type=int, default=100)


def _add_valueset_commands(areas: Areas) -> None:
    sets = areas.add_parser(
        "valueset", help="DCC value sets (rapid-test devices, test types, …): versions imported from EU files"
    ).add_subparsers(dest="action", required=True)
    c = sets.add_parser(
        "import",
        help="a new version of each set whose file differs from its current version; in use at once by result_svc "
        "and verify_svc (no restart)",
    )
    c.add_argument("files", nargs="+", metavar="FILE", help="an EU DCC value set JSON file (valueSetId, …)")
    c.add_argument("--operator", required=True, help="your operator user name, recorded with the version")
    c = sets.add_parser("list", help="every version of every set, newest first; `current` is the one in use")
    c.add_argument("--name", help="only this set, e.g. covid-19-lab-test-manufacturer-and-name")


def _add_reads_command(areas: Areas) -> None:
    c = areas.add_parser(
        "reads", help="who read a person's results (the read audit), one JSON line per read; needs PII_PEPPER"
    )
    who = c.add_mutually_exclusive_group(required=True)
    who.add_argument("--identity-number", help="the person's identity document number (hashed as intake does)")
    who.add_argument("--person-id", type=uuid.UUID, help="the person's internal id")
    c.add_argument("--identity-type", default="CITIZEN_ID", choices=["CITIZEN_ID", "OLD_ID", "PASSPORT"])
    c.add_argument("--country", default="", help="ISO 3166-1 alpha-2 issuer of a passport")
    c.add_argument("--limit", type=int, default=1000)


def _positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        value = kind(raw)
        if not value > 0:  # type: ignore[operator]
            raise argparse.ArgumentTypeError(f"must be positive, got {raw}")
        return value

    return parse


def _add_pii_keys_commands(areas: Areas) -> None:
    keys = areas.add_parser(
        "pii-keys", help="personal-data key rotation: values per key id, re-encryption under the current key"
    ).add_subparsers(dest="action", required=True)
    c = keys.add_parser("status", help="per table.column, values sealed under each key id (no key needed)")
    c.add_argument("--current-key-id", help="the key id counted as current (default: the first of $PII_KEYS)")
    c = keys.add_parser(
        "reencrypt",
        help="re-seal every value under an old key id with the current (first) key of PII_KEYS; online, "
        "resumable; JSON lines of progress, then the status",
    )
    c.add_argument("--batch-size", type=_positive(int), default=500, help="rows per transaction (default 500)")
    c.add_argument("--max-seconds", type=_positive(float), help="stop after this long (run again to continue)")
    c.add_argument("--max-batches", type=_positive(int), help="stop after this many batches (a trial run)")


def _add_certificate_commands(areas: Areas) -> None:
    certificates = areas.add_parser("certificate", help="issued certificates").add_subparsers(
        dest="action", required=True
    )
    c = certificates.add_parser(
        "document",
        help="the printable PDF of a certificate (QR code and its fields, Vietnamese and English) for a sampling "
        "site; needs PII_KEYS; recorded in the read audit under your operator name",
    )
    c.add_argument("certificate_id", help="the certificate id (UVCI), e.g. URN:UVCI:01:VN:…#…")
    c.add_argument("--size", type=str.upper, choices=PAPER_SIZES, default="A4", help="paper size (default A4)")
    c.add_argument("--out", required=True, help="the PDF file to write (replaced if it exists; mode 0600)")
    c.add_argument("--operator", required=True, help="your operator user name, recorded in the read audit")


def _add_statistics_commands(areas: Areas) -> None:
    stats = areas.add_parser("statistics", help="the health department's statistics").add_subparsers(
        dest="action", required=True
    )
    c = stats.add_parser("export", help="one kind of figures for a province as CSV (counts 1-4 as <5)")
    c.add_argument("--province", required=True, help="2-digit province code")
    c.add_argument("--kind", required=True, choices=figures.KINDS)
    c.add_argument("--from", dest="date_from", help="first day, YYYY-MM-DD (Vietnam time); not for backlog")
    c.add_argument("--to", dest="date_to", help="last day, inclusive (at most 366 days); not for backlog")
    c.add_argument("--out", help="the CSV file to write (replaced if it exists); default: stdout")
    c = stats.add_parser("refresh", help="bring the daily summary up to date now (result_svc does it every 30 s)")
    c.add_argument("--rebuild", action="store_true", help="recompute every day from the record")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.database_url:
        print("error: set DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    try:
        _emit(asyncio.run(_run(args)))
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for v in getattr(exc, "violations", []):
            print(f"  {v.field}: {v.description}", file=sys.stderr)
        return 1
    except migrate.MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CONNECTION_ERRORS as exc:
        print(f"error: cannot reach the database: {type(exc).__name__}", file=sys.stderr)
        return 1
    except asyncpg.UndefinedTableError:
        print("error: the database has no schema yet; run 'migrate' first", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
