"""The DCC value sets as operators keep them current: versions imported from the EU gateway's JSON files.

A value set (rapid-test devices, test types, test results, the disease, countries, vaccines) is named by its
`valueSetId`. Its **current version** is the highest version imported into `value_sets` (migrations/0014);
while none is imported, it is the file shipped in services/hcert/dcc/valuesets (version 0, the first).
`python -m services.admin valueset import FILE…` checks each file strictly (the EU format: valueSetId,
valueSetDate, valueSetValues of code → display, lang, active, version, system), adds a version for each set
whose content differs from its current version (the same content again adds nothing), audits it, and
NOTIFYs `value_sets` in the same transaction. result_svc (intake's `rat_device_id`) and verify_svc (a rapid
antigen certificate's device) hold the current versions in memory, loaded by `load_current` in the
background and at once on that notification: never read per sample or per scan. The SQL is in
`repository.value_sets`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

import asyncpg
from prometheus_client import Gauge

from services.common import audit
from services.common.errors import FieldViolation, InvalidArgument
from services.common.fields import has_control
from services.hcert import valuesets as shipped
from services.registry.principals import OPERATOR_NAME
from services.registry.repository import value_sets as repo

log = logging.getLogger("covidtest.value_sets")
VALUE_SET_VERSION = Gauge(
    "covidtest_value_set_version", "The version of each DCC value set this process uses (0: the shipped file)", ["name"]
)

# The rapid antigen test devices (DCC `ma`): intake accepts, and verification recognises, only its active codes.
RAT_DEVICES = "covid-19-lab-test-manufacturer-and-name"

# What a file may hold: far above every EU publication (the device list has a few hundred entries, ~100 KB).
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_VALUES = 20_000
MAX_CODE_CHARS = 100
MAX_TEXT_CHARS = 500  # display and system
MAX_VERSION_CHARS = 200  # a value's version: a date, or a SNOMED CT release URI
MAX_PROBLEMS_LISTED = 20
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_UNPRINTABLE = re.compile(r"[\x7f-\x9f]")  # json.dumps escapes C0 controls itself
_TOP_KEYS = ("valueSetId", "valueSetDate", "valueSetValues")
_VALUE_KEYS = {"display", "lang", "active", "version", "system"}


@dataclass(frozen=True)
class ValueSet:
    """One version of a value set."""

    name: str  # valueSetId
    date: date  # valueSetDate
    values: Mapping[str, Mapping[str, Any]]  # code → {"display", "active", and lang, version, system if given}
    content_sha256: bytes  # of the canonical JSON of name, date and values (see _canonical)
    version: int = 0  # 0: the shipped file

    @functools.cached_property
    def active_codes(self) -> frozenset[str]:
        return frozenset(code for code, value in self.values.items() if value.get("active") is True)


class CurrentValueSets:
    """An immutable view of the current version of every known value set, and the active rapid-test devices."""

    def __init__(self, sets: Mapping[str, ValueSet]):
        self.sets: Mapping[str, ValueSet] = MappingProxyType(dict(sets))
        devices = self.sets.get(RAT_DEVICES)
        self.rat_devices: frozenset[str] = devices.active_codes if devices is not None else frozenset()

    def versions(self) -> dict[str, int]:
        return {name: value_set.version for name, value_set in self.sets.items()}


# --- the strict check of a file ----------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _quoted(code: str) -> str:
    """A code as a field path shows it: JSON-quoted with every control character escaped (C0, DEL, C1: the
    operator's terminal prints none), at most 40 characters."""
    text = json.dumps(code if len(code) <= 40 else code[:40] + "…", ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _canonical(name: str, value_set_date: date, values: Mapping[str, Any]) -> bytes:
    """The content as one canonical JSON text (sorted keys, no spaces): what `content_sha256` is taken of."""
    content = {"valueSetDate": value_set_date.isoformat(), "valueSetId": name, "valueSetValues": values}
    return json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _refused(source: str, problems: list[FieldViolation]) -> InvalidArgument:
    listed = problems[:MAX_PROBLEMS_LISTED]
    if len(problems) > len(listed):
        more = len(problems) - len(listed)
        listed.append(FieldViolation("valueSetValues", f"… and {more} more problems", "FIELD_FORMAT_INVALID"))
    return InvalidArgument(f"{source}: not a valid DCC value set file; nothing was imported", listed)


def _text_problem(value: Any, max_chars: int, *, required: bool) -> str | None:
    """What is wrong with an optional or required single-line text of a value, or None."""
    if not isinstance(value, str):
        return "required: a non-empty string" if required and value is None else "must be a string"
    if required and not value.strip():
        return "required: a non-empty string"
    if len(value) > max_chars:
        return f"at most {max_chars} characters"
    if has_control(value):
        return "no control characters"
    return None


def _check_value(code: str, value: Any, problems: list[FieldViolation]) -> None:
    path = f"valueSetValues[{_quoted(code)}]"
    if not code or len(code) > MAX_CODE_CHARS or code != code.strip():
        problems.append(
            FieldViolation(
                path, f"a code is 1-{MAX_CODE_CHARS} characters, no surrounding spaces", "FIELD_FORMAT_INVALID"
            )
        )
    elif has_control(code):
        problems.append(FieldViolation(path, "a code has no control characters", "FIELD_FORMAT_INVALID"))
    if not isinstance(value, dict):
        problems.append(FieldViolation(path, "must be an object with display and active", "FIELD_FORMAT_INVALID"))
        return
    for key in sorted(set(value) - _VALUE_KEYS):
        problems.append(
            FieldViolation(
                f"{path}.{_quoted(key)}",
                "not a field of the EU format (display, lang, active, version, system)",
                "FIELD_NOT_ALLOWED",
            )
        )
    display = _text_problem(value.get("display"), MAX_TEXT_CHARS, required=True)
    if display:
        reason = "FIELD_REQUIRED" if display.startswith("required") else "FIELD_FORMAT_INVALID"
        problems.append(FieldViolation(f"{path}.display", display, reason))
    if "active" not in value:
        problems.append(FieldViolation(f"{path}.active", "required: true or false", "FIELD_REQUIRED"))
    elif not isinstance(value["active"], bool):
        problems.append(FieldViolation(f"{path}.active", "must be true or false", "FIELD_FORMAT_INVALID"))
    for key, limit in (("system", MAX_TEXT_CHARS), ("version", MAX_VERSION_CHARS)):
        if key in value and (problem := _text_problem(value[key], limit, required=False)):
            problems.append(FieldViolation(f"{path}.{key}", problem, "FIELD_FORMAT_INVALID"))
    if "lang" in value and not (isinstance(value["lang"], str) and LANG.match(value["lang"])):
        problems.append(FieldViolation(f"{path}.lang", "a language tag such as en", "FIELD_FORMAT_INVALID"))


def _check_header(document: dict, known: Collection[str] | None, problems: list[FieldViolation]) -> date | None:
    for key in _TOP_KEYS:
        if key not in document:
            problems.append(FieldViolation(key, "required", "FIELD_REQUIRED"))
    for key in sorted(set(document) - set(_TOP_KEYS)):
        problems.append(
            FieldViolation(
                _quoted(key),
                "not a field of the EU format (valueSetId, valueSetDate, valueSetValues)",
                "FIELD_NOT_ALLOWED",
            )
        )
    name = document.get("valueSetId")
    if "valueSetId" in document:
        if not isinstance(name, str) or not NAME.match(name):
            problems.append(
                FieldViolation("valueSetId", "1-100 of A-Z, a-z, 0-9, '.', '_', '-'", "FIELD_FORMAT_INVALID")
            )
        elif known is not None and name not in known:
            problems.append(
                FieldViolation(
                    "valueSetId", "one of the DCC value sets: " + ", ".join(sorted(known)), "VALUE_NOT_IN_VALUE_SET"
                )
            )
    raw_date = document.get("valueSetDate")
    if "valueSetDate" not in document:
        return None
    try:
        if not isinstance(raw_date, str) or not DATE.match(raw_date):
            raise ValueError
        value_set_date = date.fromisoformat(raw_date)
    except ValueError:
        problems.append(FieldViolation("valueSetDate", "a date: YYYY-MM-DD", "FIELD_FORMAT_INVALID"))
        return None
    if value_set_date > (datetime.now(UTC) + timedelta(days=1)).date():
        problems.append(FieldViolation("valueSetDate", "must not lie in the future", "TIME_IN_FUTURE"))
    return value_set_date


def _parse(raw: bytes, source: str, known: Collection[str] | None) -> ValueSet:
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidArgument(f"{source}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; nothing was imported")
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise InvalidArgument(f"{source}: not UTF-8 text; nothing was imported") from None
    except _DuplicateKey as exc:
        raise InvalidArgument(
            f"{source}: the key {_quoted(str(exc))} appears twice in one object; nothing was imported"
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"{source}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); nothing was imported"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"{source}: not JSON data ({str(exc)[:80]}); nothing was imported") from None
    if not isinstance(document, dict):
        raise InvalidArgument(f"{source}: a value set file is a JSON object; nothing was imported")
    problems: list[FieldViolation] = []
    value_set_date = _check_header(document, known, problems)
    values = document.get("valueSetValues")
    if "valueSetValues" in document:
        if not isinstance(values, dict) or not values:
            problems.append(
                FieldViolation("valueSetValues", "an object of at least one code → value", "FIELD_REQUIRED")
            )
        elif len(values) > MAX_VALUES:
            problems.append(FieldViolation("valueSetValues", f"at most {MAX_VALUES} codes", "TOO_MANY_ITEMS"))
        else:
            for code, value in values.items():
                _check_value(code, value, problems)
    if problems:
        raise _refused(source, problems)
    assert isinstance(values, dict) and value_set_date is not None  # else a problem was found above
    name = document["valueSetId"]
    return ValueSet(name, value_set_date, values, hashlib.sha256(_canonical(name, value_set_date, values)).digest())


@functools.cache
def _shipped() -> tuple[CurrentValueSets, dict[str, str]]:
    sets: dict[str, ValueSet] = {}
    files: dict[str, str] = {}
    for path in shipped.shipped_files():
        value_set = _parse(path.read_bytes(), path.name, None)
        sets[value_set.name], files[value_set.name] = value_set, path.name
    return CurrentValueSets(sets), files


def builtin() -> CurrentValueSets:
    """The shipped files (services/hcert/dcc/valuesets), each its set's version 0; they define the known sets."""
    return _shipped()[0]


def parse_value_set(raw: bytes, source: str) -> ValueSet:
    """A value set file checked strictly: InvalidArgument (naming `source` and every problem) when it is not
    in the EU format, not one of the known sets, or beyond the sizes above."""
    return _parse(raw, source, builtin().sets.keys())


# --- the current versions, as the services hold them ---------------------------------------------------------


def _from_row(row: asyncpg.Record) -> ValueSet:
    values = row["set_values"]
    if not isinstance(values, dict):
        raise ValueError(f"value set {row['name']} version {row['version']}: set_values is not an object")
    return ValueSet(row["name"], row["value_set_date"], values, bytes(row["content_sha256"]), row["version"])


async def load_current(conn: asyncpg.Connection, previous: CurrentValueSets | None = None) -> CurrentValueSets:
    """The current version of every known set: the highest imported, else the shipped file. Only versions
    `previous` does not hold are read; `previous` itself comes back when nothing changed."""
    base = builtin()
    latest = {name: version for name, version in (await repo.latest_versions(conn)).items() if name in base.sets}
    held = previous or base
    wanted = {name: latest.get(name, 0) for name in base.sets}
    if previous is not None and previous.versions() == wanted:
        return previous
    sets = {
        name: held.sets[name] if name in held.sets and held.sets[name].version == version else base.sets[name]
        for name, version in wanted.items()
    }
    missing = [(name, version) for name, version in wanted.items() if sets[name].version != version]
    for row in await repo.versions(conn, missing):
        sets[row["name"]] = _from_row(row)
    current = CurrentValueSets(sets)
    before = held.versions()
    for name, value_set in current.sets.items():
        VALUE_SET_VERSION.labels(name).set(value_set.version)
        if previous is None or before.get(name) != value_set.version:
            log.info(
                "value set in use",
                extra={
                    "fields": {
                        "value_set": name,
                        "version": value_set.version,
                        "values": len(value_set.values),
                        "active": len(value_set.active_codes),
                    }
                },
            )
    return current


# --- import and list (the operator CLI) -----------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedValueSet:
    """What an import did to one set: a new version (`created`), or none since the content is the current one."""

    name: str
    version: int  # the set's current version after the import (0: the shipped file)
    created: bool
    value_set_date: date
    values: int
    active: int
    content_sha256: str  # hex
    source_file: str


async def import_value_sets(
    conn: asyncpg.Connection, operator: str, files: Sequence[tuple[str, bytes]]
) -> list[ImportedValueSet]:
    """Imports each (file name, content) in the caller's transaction: every file is checked before anything is
    written, and a refused file imports nothing of any."""
    if not OPERATOR_NAME.match(operator or ""):
        raise InvalidArgument(
            "invalid operator name",
            [
                FieldViolation(
                    "operator", "your operator user name: 1-64 of a-z, 0-9, '.', '_', '-'", "FIELD_FORMAT_INVALID"
                )
            ],
        )
    if not files:
        raise InvalidArgument(
            "no value set file given", [FieldViolation("files", "one or more files", "FIELD_REQUIRED")]
        )
    parsed = [(source, parse_value_set(raw, source)) for source, raw in files]
    first_of: dict[str, str] = {}
    for source, value_set in parsed:
        if value_set.name in first_of:
            raise InvalidArgument(
                f"{first_of[value_set.name]} and {source} are both {value_set.name}: import one version of a set at "
                "a time; nothing was imported",
                [FieldViolation("files", "one file per value set", "DUPLICATE_IN_REQUEST")],
            )
        first_of[value_set.name] = source
    await repo.lock_versions(conn)
    done: list[ImportedValueSet] = []
    for source, value_set in parsed:
        current = await repo.latest(conn, value_set.name)
        current_sha256 = bytes(current["content_sha256"]) if current else builtin().sets[value_set.name].content_sha256
        version = current["version"] if current else 0
        created = current_sha256 != value_set.content_sha256
        if created:
            version += 1
            await repo.insert_version(
                conn,
                name=value_set.name,
                version=version,
                value_set_date=value_set.date,
                values=dict(value_set.values),
                content_sha256=value_set.content_sha256,
                source_file=source,
                imported_by=operator,
            )
            await audit.record(
                conn,
                None,
                "IMPORT_VALUE_SET",
                "value_set",
                value_set.name,
                details={
                    "version": version,
                    "values": len(value_set.values),
                    "active": len(value_set.active_codes),
                    "content_sha256": value_set.content_sha256.hex(),
                    "operator": operator,
                },
            )
        done.append(
            ImportedValueSet(
                value_set.name,
                version,
                created,
                value_set.date,
                len(value_set.values),
                len(value_set.active_codes),
                value_set.content_sha256.hex(),
                source,
            )
        )
    if any(d.created for d in done):
        await repo.notify_value_sets(conn)
    return done


async def list_value_sets(conn: asyncpg.Connection, name: str | None = None) -> list[dict[str, Any]]:
    """Every version of every known set (or of `name`): by name, newest first, the shipped file (version 0)
    last; `current` marks the version the services use."""
    base = builtin()
    if name is not None and name not in base.sets:
        raise InvalidArgument(
            "no such value set",
            [FieldViolation("name", "one of: " + ", ".join(sorted(base.sets)), "VALUE_NOT_IN_VALUE_SET")],
        )
    imported: dict[str, list[asyncpg.Record]] = {}
    for row in await repo.list_versions(conn, name):
        imported.setdefault(row["name"], []).append(row)
    out: list[dict[str, Any]] = []
    for set_name in sorted([name] if name else base.sets):
        rows = imported.get(set_name, [])
        for i, row in enumerate(rows):
            out.append(
                {
                    "name": set_name,
                    "version": row["version"],
                    "current": i == 0,
                    "value_set_date": row["value_set_date"].isoformat(),
                    "values": row["value_count"],
                    "active": row["active_count"],
                    "content_sha256": bytes(row["content_sha256"]).hex(),
                    "source": "import",
                    "source_file": row["source_file"],
                    "imported_by": row["imported_by"],
                    "imported_at": row["imported_at"].isoformat(),
                }
            )
        first = base.sets[set_name]
        out.append(
            {
                "name": set_name,
                "version": 0,
                "current": not rows,
                "value_set_date": first.date.isoformat(),
                "values": len(first.values),
                "active": len(first.active_codes),
                "content_sha256": first.content_sha256.hex(),
                "source": "shipped",
                "source_file": f"services/hcert/dcc/valuesets/{_shipped()[1][set_name]}",
                "imported_by": None,
                "imported_at": None,
            }
        )
    return out
