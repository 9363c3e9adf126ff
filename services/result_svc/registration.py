"""RegisterSamples: a sampling unit registers a batch of samples, each for one person, lab and test.

One call runs in steps: check every item's fields (and barcodes repeated within the request); look up
what the database holds for the valid items (labs, barcodes already registered, retest originals and
pools, the last two locked); judge each item against that; write the accepted items with a few
set-based statements; answer item by item. A barcode already registered with the same data is a
replay (ALREADY_REGISTERED), with other data a conflict.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from services.common import audit
from services.common.auth import Principal
from services.common.errors import FieldViolation
from services.common.fields import utcnow
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import testing_pb2
from services.result_svc import repository as repo
from services.result_svc.lifecycle import RETESTABLE, registration_event
from services.result_svc.persons import LookupFactors, PersonSealer
from services.result_svc.validation import Registration, check_batch, check_registration, rpc_violations, violation


@dataclass(slots=True)
class _Accepted:
    """An item that passed every check, with the ids and hashes it will be written with."""

    index: int
    reg: Registration
    sample_id: uuid.UUID
    person_key: bytes
    registration_hash: bytes
    pool_id: uuid.UUID | None
    retest_of: uuid.UUID | None


@dataclass(slots=True)
class _PoolSlot:
    """A pool as this call fills it: existing (locked) or new, with its members counted as items join."""

    id: uuid.UUID
    lab_org_id: uuid.UUID
    test_type: str
    state: str
    members: int


@dataclass(slots=True)
class _Known:
    """What the database holds for the call's valid items, by barcode."""

    labs: set[uuid.UUID]
    existing: dict[str, Any]  # the caller's samples with the items' barcodes
    originals: dict[str, Any]  # the caller's samples named as retest originals (locked)
    pools: dict[str, _PoolSlot]


@dataclass(slots=True)
class _Call:
    """The state of one RegisterSamples call, item by item (keys are item indexes)."""

    org_id: uuid.UUID
    answers: list[pb.SampleRegistrationResult]
    valid: dict[int, Registration] = field(default_factory=dict)
    problems: dict[int, list[FieldViolation]] = field(default_factory=dict)
    accepted: list[_Accepted] = field(default_factory=list)
    new_pools: list[repo.NewPool] = field(default_factory=list)


def _by_barcode(rows: list[asyncpg.Record]) -> dict[str, Any]:
    return {r["barcode"]: r for r in rows}


def _barcode_conflict(path: str) -> FieldViolation:
    return violation(
        f"{path}.sample_barcode", "SAMPLE_BARCODE_CONFLICT", "this barcode is already registered with different data"
    )


def _already_registered(answer: pb.SampleRegistrationResult, sample_id: uuid.UUID) -> None:
    answer.status = pb.REGISTRATION_STATUS_ALREADY_REGISTERED
    answer.sample_id = str(sample_id)


class DeviceList(Protocol):
    """Where the current rapid antigen devices come from (a ValueSetStore: in memory, never a query per sample)."""

    async def rat_devices(self) -> frozenset[str]: ...


class Registrar:
    """Runs RegisterSamples inside the caller's transaction."""

    def __init__(self, sealer: PersonSealer, pool_max_size: int, devices: DeviceList):
        self._sealer = sealer
        self._pool_max = pool_max_size
        self._devices = devices

    async def register(
        self, conn: asyncpg.Connection, caller: Principal, request: pb.RegisterSamplesRequest
    ) -> pb.RegisterSamplesResponse:
        check_batch(request.samples, "samples")
        # Only a call with a rapid antigen sample needs the device list (and waits for its first load).
        rapid = any(item.test_type == testing_pb2.TEST_TYPE_RAPID_ANTIGEN for item in request.samples)
        devices = await self._devices.rat_devices() if rapid else frozenset()
        call = _check_fields(request.samples, uuid.UUID(caller.id), utcnow(), devices)
        known = await _look_up(conn, call)
        for i, reg in call.valid.items():
            self._judge(call, known, i, reg)
        inserted = await self._insert(conn, call)
        await _settle_races(conn, call, inserted)
        created = [a for a in call.accepted if a.sample_id in inserted]
        # Only what this call created: a replayed or already registered sample has its event already.
        await repo.append_outbox(conn, [registration_event(a.sample_id) for a in created])
        await audit.record_many(
            conn, caller, "REGISTER_SAMPLE", "sample", [str(a.sample_id) for a in created], request.request_id
        )
        return _answer(call, created)

    # --- judge: each valid item against what the database holds ------------------------------------

    def _judge(self, call: _Call, known: _Known, i: int, reg: Registration) -> None:
        path = f"samples[{i}]"
        key, reg_hash = self._sealer.person_key(reg.person), self._sealer.registration_hash(reg)
        violations: list[FieldViolation] = []
        row = known.existing.get(reg.barcode)
        if row is not None:
            if _same_hash(row["registration_hash"], reg_hash):
                _already_registered(call.answers[i], row["id"])
                return
            violations.append(_barcode_conflict(path))
        if reg.lab_org_id not in known.labs:
            violations.append(violation(f"{path}.lab_org_id", "LAB_NOT_FOUND", "no registered lab with this id"))
        retest_of = None
        if reg.retest_of_barcode:
            retest_of = _check_retest(known.originals.get(reg.retest_of_barcode), key, path, violations)
        pool_id = None
        if reg.pool_barcode and not violations:
            pool_id = self._join_pool(call, known.pools, reg, reg.pool_barcode, path, violations)
        if violations:
            call.problems[i] = violations
            return
        call.accepted.append(_Accepted(i, reg, uuid.uuid4(), key, reg_hash, pool_id, retest_of))

    def _join_pool(
        self,
        call: _Call,
        pools: dict[str, _PoolSlot],
        reg: Registration,
        barcode: str,
        path: str,
        violations: list[FieldViolation],
    ) -> uuid.UUID | None:
        """The pool the sample joins (opened by its first sample), or None with the reason in `violations`."""
        pool = pools.get(barcode)
        if pool is None:
            pool = pools[barcode] = _PoolSlot(uuid.uuid4(), reg.lab_org_id, reg.test_type, "REGISTERED", 0)
            call.new_pools.append(repo.NewPool(pool.id, call.org_id, barcode, reg.lab_org_id, reg.test_type))
        field = f"{path}.pool_barcode"
        if pool.state != "REGISTERED":
            violations.append(violation(field, "POOL_CLOSED", "the pool already has a result"))
        elif pool.lab_org_id != reg.lab_org_id or pool.test_type != reg.test_type:
            violations.append(violation(field, "POOL_MISMATCH", "lab or test type differs from the pool's"))
        elif pool.members >= self._pool_max:
            violations.append(violation(field, "POOL_FULL", f"a pool holds at most {self._pool_max} samples"))
        else:
            pool.members += 1
            return pool.id
        return None

    # --- apply: write the accepted items --------------------------------------------------------------

    async def _insert(self, conn: asyncpg.Connection, call: _Call) -> set[uuid.UUID]:
        """Writes the pools, persons and samples of the accepted items; returns the sample ids inserted."""
        used_pools = {a.pool_id for a in call.accepted}
        await repo.insert_pools(conn, [p for p in call.new_pools if p.id in used_pools])
        person_rows = {a.person_key: self._sealer.person_row(a.person_key, a.reg.person) for a in call.accepted}
        person_ids = await repo.upsert_persons(conn, list(person_rows.values()))
        # Each sample keeps the lookup factors of its own registration: registering the same identity
        # number again (by any sampling unit, with any phone or birth date) refreshes the person's row
        # but never changes which earlier samples a citizen lookup finds.
        return await repo.insert_samples(
            conn,
            [
                _new_sample(a, call.org_id, person_ids[a.person_key], self._sealer.lookup_factors(a.reg.person))
                for a in call.accepted
            ],
        )


# --- check: fields, and barcodes repeated in the request ----------------------------------------------


def _check_fields(
    samples: Sequence[pb.SampleRegistration], org_id: uuid.UUID, now: datetime, rat_devices: frozenset[str]
) -> _Call:
    call = _Call(
        org_id,
        [pb.SampleRegistrationResult(index=i, sample_barcode=item.sample_barcode) for i, item in enumerate(samples)],
    )
    seen: set[str] = set()
    for i, item in enumerate(samples):
        reg, violations = check_registration(item, f"samples[{i}]", now, rat_devices)
        if reg is not None and reg.barcode in seen:
            violations = [
                violation(
                    f"samples[{i}].sample_barcode",
                    "DUPLICATE_IN_REQUEST",
                    "the barcode appears earlier in this request",
                )
            ]
        if reg is None or violations:
            call.problems[i] = violations
        else:
            seen.add(reg.barcode)
            call.valid[i] = reg
    return call


# --- look up: labs, barcodes already registered, retest originals, pools --------------------------------


async def _look_up(conn: asyncpg.Connection, call: _Call) -> _Known:
    valid = call.valid.values()
    labs = await repo.lab_ids(conn, list({r.lab_org_id for r in valid}))
    existing = await repo.samples_of_org_by_barcode(conn, call.org_id, [r.barcode for r in valid])
    # In the lock order of the repository: pool-creation locks, then the pools, then the samples.
    # (The pool-creation lock also makes the pools' member counts current: every call adding members
    # to a pool holds it, so the pools' lock below never waits for one.)
    pool_barcodes = [r.pool_barcode for r in valid if r.pool_barcode]
    await repo.lock_pool_barcodes(conn, call.org_id, pool_barcodes)
    pools = {
        r["barcode"]: _PoolSlot(r["id"], r["lab_org_id"], r["test_type"], r["state"], r["members"])
        for r in await repo.pools_of_org_by_barcode(conn, call.org_id, pool_barcodes)
    }
    originals = await repo.samples_of_org_by_barcode(
        conn, call.org_id, [r.retest_of_barcode for r in valid if r.retest_of_barcode], lock=True
    )
    return _Known(labs, _by_barcode(existing), _by_barcode(originals), pools)


# --- judge -----------------------------------------------------------------------------------------------


def _same_hash(stored: bytes | None, computed: bytes) -> bool:
    """Whether a stored keyed hash is this one. An erased registration (retention) has none: a barcode it
    used matches no new registration, which is then a conflict, never a replay."""
    return stored is not None and bytes(stored) == computed


def _check_retest(original: Any, key: bytes, path: str, violations: list[FieldViolation]) -> uuid.UUID | None:
    """The id of the sample retested (the caller's, retestable, same person), or None with the reason."""
    field = f"{path}.retest_of_sample_barcode"
    if original is None:
        violations.append(violation(field, "RETEST_OF_NOT_FOUND", "no sample of yours with this barcode"))
    elif original["state"] not in RETESTABLE:
        violations.append(
            violation(
                field,
                "RETEST_OF_STATE_INVALID",
                "the sample must be RETEST_REQUIRED, RESAMPLE_REQUIRED or WITHDRAWN",
            )
        )
    elif original["person_key_hash"] is None:
        violations.append(
            violation(
                field,
                "RETEST_PERSON_MISMATCH",
                "the original sample's personal data was erased under the retention policy: register a new sample",
            )
        )
    elif bytes(original["person_key_hash"]) != key:
        violations.append(violation(field, "RETEST_PERSON_MISMATCH", "the original sample is another person's"))
    else:
        return original["id"]
    return None


# --- apply -----------------------------------------------------------------------------------------------


def _new_sample(a: _Accepted, org_id: uuid.UUID, person_id: uuid.UUID, lookup: LookupFactors) -> repo.NewSample:
    reg = a.reg
    return repo.NewSample(
        id=a.sample_id,
        org_id=org_id,
        barcode=reg.barcode,
        person_id=person_id,
        pool_id=a.pool_id,
        lab_org_id=reg.lab_org_id,
        test_type=reg.test_type,
        rat_device_id=reg.rat_device_id,
        collected_at=reg.collected_at,
        sampling_site=reg.sampling_site,
        retest_of=a.retest_of,
        registration_hash=a.registration_hash,
        lookup_identity_hash=lookup.identity_hash,
        lookup_phone_hash=lookup.phone_hash,
        lookup_dob_hash=lookup.dob_hash,
    )


async def _settle_races(conn: asyncpg.Connection, call: _Call, inserted: set[uuid.UUID]) -> None:
    """An accepted barcode not inserted was registered meanwhile by a concurrent call: the same data is a
    replay, other data a conflict."""
    raced = [a for a in call.accepted if a.sample_id not in inserted]
    if not raced:
        return
    now_existing = _by_barcode(await repo.samples_of_org_by_barcode(conn, call.org_id, [a.reg.barcode for a in raced]))
    for a in raced:
        row = now_existing[a.reg.barcode]
        if _same_hash(row["registration_hash"], a.registration_hash):
            _already_registered(call.answers[a.index], row["id"])
        else:
            call.problems[a.index] = [_barcode_conflict(f"samples[{a.index}]")]


# --- answer ----------------------------------------------------------------------------------------------


def _answer(call: _Call, created: list[_Accepted]) -> pb.RegisterSamplesResponse:
    answers = call.answers
    for a in created:
        answers[a.index].status = pb.REGISTRATION_STATUS_CREATED
        answers[a.index].sample_id = str(a.sample_id)
    for i, violations in call.problems.items():
        answers[i].status = pb.REGISTRATION_STATUS_REJECTED
        answers[i].violations.extend(rpc_violations(violations))
    return pb.RegisterSamplesResponse(
        results=answers,
        created_count=sum(r.status == pb.REGISTRATION_STATUS_CREATED for r in answers),
        already_registered_count=sum(r.status == pb.REGISTRATION_STATUS_ALREADY_REGISTERED for r in answers),
        rejected_count=len(call.problems),
    )
