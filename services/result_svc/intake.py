"""Sample and result intake: the rules of the system of record.

Batches are applied per item inside one transaction per call: every item is validated first (fields,
then against the database with the affected rows locked), accepted items are written with a few
set-based statements, and the call commits once — so an acknowledged item is durable, a rejected item
changes nothing, and a failure half-way (Postgres lost) rolls the whole call back for the client to
retry with the same request id. Every result state change appends its outbox event in the same
transaction.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import asyncpg

from services.common import audit
from services.common.auth import Principal, Role
from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    require,
)
from services.common.fields import utcnow
from services.common.messages import person_message, result_message
from services.common.pii import PiiCipher
from services.common.protoconv import enum_value, timestamp
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import testing_pb2
from services.result_svc import repository as repo
from services.result_svc.validation import (
    MAX_BATCH,
    PersonData,
    Registration,
    Submission,
    check_barcode,
    check_registration,
    check_result_fields,
    check_submission,
    parse_uuid,
)

# Result state and sample state after an outcome, for an individual sample and for a pool member.
INDIVIDUAL_STATE = {
    "NEGATIVE": "RELEASED",
    "POSITIVE": "RELEASED",
    "INCONCLUSIVE": "RESAMPLE_REQUIRED",
    "INVALID_SAMPLE": "RESAMPLE_REQUIRED",
}
POOL_MEMBER_STATE = {
    "NEGATIVE": "RELEASED",
    "POSITIVE": "RETEST_REQUIRED",
    "INCONCLUSIVE": "RESAMPLE_REQUIRED",
    "INVALID_SAMPLE": "RESAMPLE_REQUIRED",
}
SAMPLE_STATE_OF_RESULT = {
    "RELEASED": "RESULTED",
    "RETEST_REQUIRED": "RETEST_REQUIRED",
    "RESAMPLE_REQUIRED": "RESAMPLE_REQUIRED",
}
EVENT_KIND_OF_RESULT = {
    "RELEASED": "RELEASED",
    "RETEST_REQUIRED": "POOL_POSITIVE_RETEST_REQUIRED",
    "RESAMPLE_REQUIRED": "RESAMPLE_REQUIRED",
}
RETESTABLE = ("RETEST_REQUIRED", "RESAMPLE_REQUIRED", "WITHDRAWN")


def _violation(field: str, reason: str, description: str) -> FieldViolation:
    return FieldViolation(field, description, reason)


def _ambiguous_barcode() -> InvalidArgument:
    return InvalidArgument(
        "several sampling units used this barcode; give sampling_org_id",
        [_violation("sampling_org_id", "SAMPLE_BARCODE_AMBIGUOUS", "required for this barcode")],
        reason="SAMPLE_BARCODE_AMBIGUOUS",
    )


def _check_batch(items, field: str) -> None:
    if not items:
        raise InvalidArgument(f"{field} is empty", [_violation(field, "FIELD_REQUIRED", "1-1000 items")])
    if len(items) > MAX_BATCH:
        raise InvalidArgument(f"too many {field}", [_violation(field, "TOO_MANY_ITEMS", f"at most {MAX_BATCH} items")])


def _rpc_violations(violations: list[FieldViolation]):
    from google.rpc import error_details_pb2

    return [
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description, reason=v.reason)
        for v in violations
    ]


@dataclass
class _Accepted:
    index: int
    reg: Registration
    sample_id: uuid.UUID
    person_key: bytes
    registration_hash: bytes
    pool_id: uuid.UUID | None = None
    retest_of: uuid.UUID | None = None


class Intake:
    def __init__(self, pii: PiiCipher, pool_max_size: int):
        self._pii = pii
        self._pool_max = pool_max_size

    # --- personal data ----------------------------------------------------------------------------

    def person_key(self, person: PersonData) -> bytes:
        if person.identity:
            return self._pii.keyed_hash("person.identity", person.identity)
        return self._pii.keyed_hash(
            "person.phone-dob-name", f"{person.phone}|{person.date_of_birth}|{person.full_name}"
        )

    def _registration_hash(self, reg: Registration) -> bytes:
        # Keyed, not a plain digest: the registration holds personal data.
        canonical = json.dumps(
            [
                reg.barcode,
                vars(reg.person),
                reg.test_type,
                reg.rat_device_id,
                reg.collected_at.isoformat(),
                reg.sampling_site,
                str(reg.lab_org_id),
                reg.pool_barcode,
                reg.retest_of_barcode,
            ],
            ensure_ascii=False,
            sort_keys=True,
        )
        return self._pii.keyed_hash("sample.registration", canonical)

    def _person_row(self, key: bytes, person: PersonData) -> repo.PersonRow:
        seal, hashed = self._pii.seal, self._pii.keyed_hash
        return repo.PersonRow(
            id=uuid.uuid4(),
            person_key_hash=key,
            identity_hash=hashed("person.identity", person.identity) if person.identity else None,
            phone_hash=hashed("person.phone", person.phone) if person.phone else None,
            dob_hash=hashed("person.date_of_birth", person.date_of_birth),
            identity_enc=seal("person.identity", person.identity) if person.identity else None,
            full_name_enc=seal("person.full_name", person.full_name),
            family_name_enc=seal("person.family_name", person.family_name),
            given_name_enc=seal("person.given_name", person.given_name),
            date_of_birth_enc=seal("person.date_of_birth", person.date_of_birth),
            phone_enc=seal("person.phone", person.phone) if person.phone else None,
            province_code=person.province_code,
            district_code=person.district_code,
        )

    # --- RegisterSamples --------------------------------------------------------------------------

    async def register_samples(
        self, conn: asyncpg.Connection, caller: Principal, request
    ) -> pb.RegisterSamplesResponse:
        _check_batch(request.samples, "samples")
        now = utcnow()
        org_id = uuid.UUID(caller.id)
        results = [
            pb.SampleRegistrationResult(index=i, sample_barcode=item.sample_barcode)
            for i, item in enumerate(request.samples)
        ]
        problems: dict[int, list[FieldViolation]] = {}
        valid: dict[int, Registration] = {}
        seen: set[str] = set()
        for i, item in enumerate(request.samples):
            reg, violations = check_registration(item, f"samples[{i}]", now)
            if reg and reg.barcode in seen:
                violations = [
                    _violation(
                        f"samples[{i}].sample_barcode",
                        "DUPLICATE_IN_REQUEST",
                        "the barcode appears earlier in this request",
                    )
                ]
            if violations:
                problems[i] = violations
            else:
                seen.add(reg.barcode)
                valid[i] = reg

        # Against the database: labs, barcodes already registered, retest originals, pools.
        known_labs = await repo.lab_ids(conn, list({r.lab_org_id for r in valid.values()}))
        existing = {
            r["barcode"]: r
            for r in await repo.samples_of_org_by_barcode(conn, org_id, [r.barcode for r in valid.values()])
        }
        originals = {
            r["barcode"]: r
            for r in await repo.samples_of_org_by_barcode(
                conn, org_id, [r.retest_of_barcode for r in valid.values() if r.retest_of_barcode], lock=True
            )
        }
        pool_barcodes = [r.pool_barcode for r in valid.values() if r.pool_barcode]
        await repo.lock_pool_barcodes(conn, org_id, pool_barcodes)
        pools = {r["barcode"]: dict(r) for r in await repo.pools_of_org_by_barcode(conn, org_id, pool_barcodes)}
        new_pools: list[tuple] = []

        accepted: list[_Accepted] = []
        for i, reg in valid.items():
            path = f"samples[{i}]"
            key, reg_hash = self.person_key(reg.person), self._registration_hash(reg)
            violations: list[FieldViolation] = []
            if reg.barcode in existing:
                row = existing[reg.barcode]
                if bytes(row["registration_hash"]) == reg_hash:
                    results[i].status = pb.REGISTRATION_STATUS_ALREADY_REGISTERED
                    results[i].sample_id = str(row["id"])
                    continue
                violations.append(
                    _violation(
                        f"{path}.sample_barcode",
                        "SAMPLE_BARCODE_CONFLICT",
                        "this barcode is already registered with different data",
                    )
                )
            if reg.lab_org_id not in known_labs:
                violations.append(_violation(f"{path}.lab_org_id", "LAB_NOT_FOUND", "no registered lab with this id"))
            retest_of = None
            if reg.retest_of_barcode:
                original = originals.get(reg.retest_of_barcode)
                field = f"{path}.retest_of_sample_barcode"
                if original is None:
                    violations.append(_violation(field, "RETEST_OF_NOT_FOUND", "no sample of yours with this barcode"))
                elif original["state"] not in RETESTABLE:
                    violations.append(
                        _violation(
                            field,
                            "RETEST_OF_STATE_INVALID",
                            "the sample must be RETEST_REQUIRED, RESAMPLE_REQUIRED or WITHDRAWN",
                        )
                    )
                elif bytes(original["person_key_hash"]) != key:
                    violations.append(
                        _violation(field, "RETEST_PERSON_MISMATCH", "the original sample is another person's")
                    )
                else:
                    retest_of = original["id"]
            pool_id = None
            if reg.pool_barcode and not violations:
                pool = pools.get(reg.pool_barcode)
                field = f"{path}.pool_barcode"
                if pool is None:
                    pool = {
                        "id": uuid.uuid4(),
                        "lab_org_id": reg.lab_org_id,
                        "test_type": reg.test_type,
                        "state": "REGISTERED",
                        "members": 0,
                    }
                    pools[reg.pool_barcode] = pool
                    new_pools.append((pool["id"], org_id, reg.pool_barcode, reg.lab_org_id, reg.test_type))
                if pool["state"] != "REGISTERED":
                    violations.append(_violation(field, "POOL_CLOSED", "the pool already has a result"))
                elif pool["lab_org_id"] != reg.lab_org_id or pool["test_type"] != reg.test_type:
                    violations.append(_violation(field, "POOL_MISMATCH", "lab or test type differs from the pool's"))
                elif pool["members"] >= self._pool_max:
                    violations.append(_violation(field, "POOL_FULL", f"a pool holds at most {self._pool_max} samples"))
                else:
                    pool["members"] += 1
                    pool_id = pool["id"]
            if violations:
                problems[i] = violations
                continue
            accepted.append(_Accepted(i, reg, uuid.uuid4(), key, reg_hash, pool_id, retest_of))

        used_pools = {a.pool_id for a in accepted}
        await repo.insert_pools(conn, [p for p in new_pools if p[0] in used_pools])
        person_rows = {a.person_key: self._person_row(a.person_key, a.reg.person) for a in accepted}
        person_ids = await repo.upsert_persons(conn, list(person_rows.values()))
        inserted = await repo.insert_samples(
            conn,
            [
                (
                    a.sample_id,
                    org_id,
                    a.reg.barcode,
                    person_ids[a.person_key],
                    a.pool_id,
                    a.reg.lab_org_id,
                    a.reg.test_type,
                    a.reg.rat_device_id,
                    a.reg.collected_at,
                    a.reg.sampling_site,
                    a.retest_of,
                    a.registration_hash,
                )
                for a in accepted
            ],
        )
        raced = [a for a in accepted if a.sample_id not in inserted]
        if raced:  # registered meanwhile by a concurrent call: same data is a replay, else a conflict
            now_existing = {
                r["barcode"]: r
                for r in await repo.samples_of_org_by_barcode(conn, org_id, [a.reg.barcode for a in raced])
            }
            for a in raced:
                row = now_existing[a.reg.barcode]
                if bytes(row["registration_hash"]) == a.registration_hash:
                    results[a.index].status = pb.REGISTRATION_STATUS_ALREADY_REGISTERED
                    results[a.index].sample_id = str(row["id"])
                else:
                    problems[a.index] = [
                        _violation(
                            f"samples[{a.index}].sample_barcode",
                            "SAMPLE_BARCODE_CONFLICT",
                            "this barcode is already registered with different data",
                        )
                    ]
        for a in accepted:
            if a.sample_id in inserted:
                results[a.index].status = pb.REGISTRATION_STATUS_CREATED
                results[a.index].sample_id = str(a.sample_id)
        for i, violations in problems.items():
            results[i].status = pb.REGISTRATION_STATUS_REJECTED
            results[i].violations.extend(_rpc_violations(violations))
        await audit.record_many(
            conn,
            caller,
            "REGISTER_SAMPLE",
            "sample",
            [str(a.sample_id) for a in accepted if a.sample_id in inserted],
            request.request_id,
        )
        return pb.RegisterSamplesResponse(
            results=results,
            created_count=sum(r.status == pb.REGISTRATION_STATUS_CREATED for r in results),
            already_registered_count=sum(r.status == pb.REGISTRATION_STATUS_ALREADY_REGISTERED for r in results),
            rejected_count=len(problems),
        )

    # --- RecordResults ----------------------------------------------------------------------------

    async def record_results(self, conn: asyncpg.Connection, caller: Principal, request) -> pb.RecordResultsResponse:
        _check_batch(request.results, "results")
        now = utcnow()
        lab_id = uuid.UUID(caller.id)
        out = [pb.ResultSubmissionResult(index=i) for i in range(len(request.results))]
        problems: dict[int, list[FieldViolation]] = {}
        valid: dict[int, Submission] = {}
        seen: set[tuple] = set()
        for i, item in enumerate(request.results):
            sub, violations = check_submission(item, f"results[{i}]", now)
            if sub and (sub.target, sub.sampling_org_id) in seen:
                violations = [
                    _violation(
                        f"results[{i}].{sub.target[0]}_barcode",
                        "DUPLICATE_IN_REQUEST",
                        "this sample or pool appears earlier in this request",
                    )
                ]
            if violations:
                problems[i] = violations
            else:
                seen.add((sub.target, sub.sampling_org_id))
                valid[i] = sub

        sample_barcodes = [s.sample_barcode for s in valid.values() if s.sample_barcode]
        pool_barcodes = [s.pool_barcode for s in valid.values() if s.pool_barcode]
        samples = await repo.lab_samples_by_barcode(conn, lab_id, sample_barcodes)
        pools = await repo.lab_pools_by_barcode(conn, lab_id, pool_barcodes)
        members = await repo.pool_members(conn, [p["id"] for p in pools])
        current = await repo.current_results(conn, [s["id"] for s in samples] + [m["id"] for m in members])
        found = {s["barcode"] for s in samples}
        elsewhere = await repo.barcodes_at_other_labs(
            conn, lab_id, [b for b in sample_barcodes if b not in found], "samples"
        )
        members_of: dict[uuid.UUID, list] = {}
        for m in members:
            members_of.setdefault(m["pool_id"], []).append(m)

        new_results: list[repo.NewResult] = []
        affected: dict[int, list[tuple]] = {}  # item index → [(sample row, NewResult)]
        pool_updates: list[tuple] = []
        for i, sub in valid.items():
            path = f"results[{i}]"
            kind, barcode = sub.target
            rows = samples if kind == "sample" else pools
            candidates = [
                r
                for r in rows
                if r["barcode"] == barcode and (sub.sampling_org_id is None or r["org_id"] == sub.sampling_org_id)
            ]
            field = f"{path}.{kind}_barcode"
            if not candidates:
                if kind == "sample" and barcode in elsewhere:
                    problems[i] = [
                        _violation(
                            field,
                            "SAMPLE_ASSIGNED_TO_OTHER_LAB",
                            "the sample was sent to another lab; only that lab records its result",
                        )
                    ]
                elif kind == "sample":
                    problems[i] = [_violation(field, "SAMPLE_NOT_FOUND", "no sample with this barcode was sent to you")]
                else:
                    problems[i] = [_violation(field, "POOL_NOT_FOUND", "no pool with this barcode was sent to you")]
                continue
            if len(candidates) > 1:
                problems[i] = [
                    _violation(
                        f"{path}.sampling_org_id",
                        "SAMPLE_BARCODE_AMBIGUOUS",
                        "several sampling units used this barcode; give sampling_org_id",
                    )
                ]
                continue
            target = candidates[0]
            targets = [target] if kind == "sample" else members_of.get(target["id"], [])
            violations = self._check_recordable(sub, kind, target, targets, current, path)
            if violations is None:  # exactly this result is already recorded: a replay
                out[i].status = pb.RECORDING_STATUS_ALREADY_RECORDED
                out[i].samples.extend(self._recorded(m, current[m["id"]]) for m in targets)
                continue
            if violations:
                problems[i] = violations
                continue
            state_of = INDIVIDUAL_STATE if kind == "sample" else POOL_MEMBER_STATE
            affected[i] = []
            for member in targets:
                result = repo.NewResult(
                    uuid.uuid4(),
                    member["id"],
                    1,
                    sub.outcome,
                    state_of[sub.outcome],
                    lab_id,
                    member["pool_id"],
                    sub.tested_at,
                    sub.method,
                    sub.ct_value,
                    sub.lab_reference,
                )
                new_results.append(result)
                affected[i].append((member, result))
            if kind == "pool":
                pool_updates.append(
                    (
                        target["id"],
                        SAMPLE_STATE_OF_RESULT[state_of[sub.outcome]],
                        sub.outcome,
                        sub.tested_at,
                        sub.method,
                        sub.ct_value,
                        sub.lab_reference,
                    )
                )

        await repo.insert_results(conn, new_results)
        await repo.set_sample_states(conn, [(r.sample_id, SAMPLE_STATE_OF_RESULT[r.state]) for r in new_results])
        await repo.set_pool_results(conn, pool_updates)
        await repo.append_outbox(
            conn,
            [
                (
                    EVENT_KIND_OF_RESULT[r.state],
                    r.id,
                    r.sample_id,
                    {
                        "result_id": str(r.id),
                        "sample_id": str(r.sample_id),
                        "version": 1,
                        "outcome": r.outcome,
                        "state": r.state,
                        "pool_id": str(r.pool_id) if r.pool_id else None,
                    },
                )
                for r in new_results
            ],
        )
        for i, pairs in affected.items():
            out[i].status = pb.RECORDING_STATUS_RECORDED
            out[i].samples.extend(
                pb.RecordedSample(
                    sample_id=str(m["id"]),
                    sample_barcode=m["barcode"],
                    sample_state=enum_value(testing_pb2.SampleState, SAMPLE_STATE_OF_RESULT[r.state]),
                    result_id=str(r.id),
                    result_version=1,
                    result_state=enum_value(testing_pb2.ResultState, r.state),
                )
                for m, r in pairs
            )
        for i, violations in problems.items():
            out[i].status = pb.RECORDING_STATUS_REJECTED
            out[i].violations.extend(_rpc_violations(violations))
        await audit.record_many(
            conn, caller, "RECORD_RESULT", "result", [str(r.id) for r in new_results], request.request_id
        )
        return pb.RecordResultsResponse(
            results=out,
            recorded_count=len(affected),
            already_recorded_count=sum(r.status == pb.RECORDING_STATUS_ALREADY_RECORDED for r in out),
            rejected_count=len(problems),
        )

    def _check_recordable(self, sub: Submission, kind: str, target, targets, current, path: str):
        """Violations of recording `sub`; [] if it may be recorded; None if it is already recorded as is."""
        field = f"{path}.{kind}_barcode"
        if kind == "sample" and target["pool_id"] is not None:
            return [_violation(field, "SAMPLE_IS_POOLED", "the sample is pooled: record the pool's result")]
        already = target["state"] != "REGISTERED"
        if already:
            if kind == "pool":
                same = target["outcome"] is not None and sub.same_result(
                    target["outcome"],
                    target["tested_at"],
                    target["method"],
                    target["ct_value"],
                    target["lab_reference"],
                )
                same = same and all(m["id"] in current for m in targets)
            else:
                previous = current.get(target["id"])
                same = (
                    previous is not None
                    and previous["version"] == 1
                    and previous["state"] not in ("WITHDRAWN",)
                    and sub.same_result(
                        previous["outcome"],
                        previous["tested_at"],
                        previous["method"],
                        previous["ct_value"],
                        previous["lab_reference"],
                    )
                )
            if same:
                return None
            return [_violation(field, "SAMPLE_ALREADY_RESULTED", "a different result is recorded: use AmendResult")]
        violations = []
        if any(sub.tested_at < m["collected_at"] for m in targets):
            violations.append(
                _violation(
                    f"{path}.tested_at", "TESTED_BEFORE_COLLECTED", "tested_at is before the sample was collected"
                )
            )
        if sub.ct_value is not None and any(m["test_type"] != "NAAT" for m in targets):
            violations.append(_violation(f"{path}.ct_value", "FIELD_NOT_ALLOWED", "only for NAAT"))
        return violations

    @staticmethod
    def _recorded(sample, result) -> pb.RecordedSample:
        return pb.RecordedSample(
            sample_id=str(sample["id"]),
            sample_barcode=sample["barcode"],
            sample_state=enum_value(testing_pb2.SampleState, sample["state"]),
            result_id=str(result["id"]),
            result_version=result["version"],
            result_state=enum_value(testing_pb2.ResultState, result["state"]),
        )

    # --- AmendResult / WithdrawResult -------------------------------------------------------------

    async def _resolve_for_change(self, conn, lab_id: uuid.UUID, barcode: str, org: uuid.UUID | None):
        rows = [
            r for r in await repo.lab_samples_by_barcode(conn, lab_id, [barcode]) if org is None or r["org_id"] == org
        ]
        if not rows:
            if await repo.barcodes_at_other_labs(conn, lab_id, [barcode], "samples"):
                raise PermissionDenied("the sample was sent to another lab", reason="SAMPLE_ASSIGNED_TO_OTHER_LAB")
            raise NotFound("no sample with this barcode was sent to you", reason="SAMPLE_NOT_FOUND")
        if len(rows) > 1:
            raise _ambiguous_barcode()
        sample = rows[0]
        if sample["state"] == "WITHDRAWN":
            raise FailedPrecondition("the sample's result was withdrawn", reason="SAMPLE_WITHDRAWN")
        previous = (await repo.current_results(conn, [sample["id"]])).get(sample["id"])
        if previous is None:
            raise FailedPrecondition("the sample has no result yet: use RecordResults", reason="SAMPLE_NOT_RESULTED")
        return sample, previous

    async def amend_result(self, conn: asyncpg.Connection, caller: Principal, request) -> pb.AmendResultResponse:
        now = utcnow()
        violations: list[FieldViolation] = []
        check_barcode(request.sample_barcode, "sample_barcode", violations)
        org = parse_uuid(request.sampling_org_id, "sampling_org_id", violations, required=False)
        ct = request.ct_value if request.HasField("ct_value") else None
        outcome, tested_at = check_result_fields(
            request.outcome, request.tested_at, request.method, ct, request.lab_reference, "", violations, now
        )
        reason = " ".join(request.reason.split())
        if not reason or len(reason) > 500:
            violations.append(
                _violation(
                    "reason",
                    "FIELD_REQUIRED" if not reason else "FIELD_FORMAT_INVALID",
                    "1-500 characters, no personal data",
                )
            )
        violations = [FieldViolation(v.field.lstrip("."), v.description, v.reason) for v in violations]
        if violations:
            raise InvalidArgument("invalid amendment", violations)
        lab_id = uuid.UUID(caller.id)
        sample, previous = await self._resolve_for_change(conn, lab_id, request.sample_barcode, org)
        if tested_at < sample["collected_at"]:
            raise InvalidArgument(
                "tested_at is before the sample was collected",
                [_violation("tested_at", "TESTED_BEFORE_COLLECTED", "after collected_at")],
            )
        if ct is not None and sample["test_type"] != "NAAT":
            raise InvalidArgument(
                "ct_value is only for NAAT", [_violation("ct_value", "FIELD_NOT_ALLOWED", "only for NAAT")]
            )
        submission = Submission(
            request.sample_barcode, None, org, outcome, tested_at, request.method, ct, request.lab_reference
        )
        if (
            submission.same_result(
                previous["outcome"],
                previous["tested_at"],
                previous["method"],
                previous["ct_value"],
                previous["lab_reference"],
            )
            and previous["state"] == INDIVIDUAL_STATE[outcome]
        ):
            raise FailedPrecondition("the amendment changes nothing", reason="AMENDMENT_NO_CHANGE")
        await repo.supersede(conn, previous["id"])
        new = repo.NewResult(
            uuid.uuid4(),
            sample["id"],
            previous["version"] + 1,
            outcome,
            INDIVIDUAL_STATE[outcome],
            lab_id,
            None,
            tested_at,
            request.method,
            ct,
            request.lab_reference,
            reason,
        )
        await repo.insert_results(conn, [new])
        sample_state = SAMPLE_STATE_OF_RESULT[new.state]
        await repo.set_sample_states(conn, [(sample["id"], sample_state)])
        await repo.append_outbox(
            conn,
            [
                (
                    "AMENDED",
                    new.id,
                    sample["id"],
                    {
                        "result_id": str(new.id),
                        "sample_id": str(sample["id"]),
                        "version": new.version,
                        "outcome": outcome,
                        "state": new.state,
                        "previous_result_id": str(previous["id"]),
                    },
                )
            ],
        )
        await audit.record(
            conn,
            caller,
            "AMEND_RESULT",
            "result",
            str(new.id),
            request.request_id,
            {"superseded_result_id": str(previous["id"])},
        )
        result = (await repo.results_of_sample(conn, sample["id"]))[0]
        return pb.AmendResultResponse(
            result=result_message(result),
            superseded_result_id=str(previous["id"]),
            sample_state=enum_value(testing_pb2.SampleState, sample_state),
        )

    async def withdraw_result(self, conn: asyncpg.Connection, caller: Principal, request) -> pb.WithdrawResultResponse:
        violations: list[FieldViolation] = []
        check_barcode(request.sample_barcode, "sample_barcode", violations)
        org = parse_uuid(request.sampling_org_id, "sampling_org_id", violations, required=False)
        reason = (
            testing_pb2.WithdrawalReason.Name(request.reason).removeprefix("WITHDRAWAL_REASON_")
            if request.reason in testing_pb2.WithdrawalReason.values()
            else "UNSPECIFIED"
        )
        text = " ".join(request.reason_text.split())
        if reason == "UNSPECIFIED":
            violations.append(_violation("reason", "FIELD_REQUIRED", "SAMPLE_MIX_UP, LAB_ERROR or OTHER"))
        if len(text) > 500 or (reason == "OTHER" and not text):
            violations.append(
                _violation(
                    "reason_text",
                    "FIELD_REQUIRED" if not text else "FIELD_FORMAT_INVALID",
                    "0-500 characters; 1-500 when reason is OTHER",
                )
            )
        if violations:
            raise InvalidArgument("invalid withdrawal", violations)
        sample, previous = await self._resolve_for_change(conn, uuid.UUID(caller.id), request.sample_barcode, org)
        await repo.withdraw(conn, previous["id"], reason, text)
        await repo.set_sample_states(conn, [(sample["id"], "WITHDRAWN")])
        await repo.append_outbox(
            conn,
            [
                (
                    "WITHDRAWN",
                    previous["id"],
                    sample["id"],
                    {
                        "result_id": str(previous["id"]),
                        "sample_id": str(sample["id"]),
                        "version": previous["version"],
                        "state": "WITHDRAWN",
                        "withdrawal_reason": reason,
                    },
                )
            ],
        )
        await audit.record(
            conn,
            caller,
            "WITHDRAW_RESULT",
            "result",
            str(previous["id"]),
            request.request_id,
            {"withdrawal_reason": reason},
        )
        result = (await repo.results_of_sample(conn, sample["id"]))[0]
        return pb.WithdrawResultResponse(result=result_message(result), sample_state=testing_pb2.SAMPLE_STATE_WITHDRAWN)

    # --- reads ------------------------------------------------------------------------------------

    async def get_sample(self, conn: asyncpg.Connection, caller: Principal, request) -> pb.GetSampleResponse:
        violations: list[FieldViolation] = []
        org_id = uuid.UUID(caller.id)
        scope = "s.org_id = $1" if caller.role is Role.SAMPLER else "s.lab_org_id = $1"
        which = request.WhichOneof("sample")
        if which == "sample_id":
            sample_id = parse_uuid(request.sample_id, "sample_id", violations)
            require(violations)
            rows = await repo.sample_with_person(conn, f"{scope} AND s.id = $2", org_id, sample_id)
        elif which == "sample_barcode":
            check_barcode(request.sample_barcode, "sample_barcode", violations)
            sampling_org = parse_uuid(request.sampling_org_id, "sampling_org_id", violations, required=False)
            require(violations)
            rows = await repo.sample_with_person(
                conn,
                f"{scope} AND s.barcode = $2 AND ($3::uuid IS NULL OR s.org_id = $3)",
                org_id,
                request.sample_barcode,
                sampling_org,
            )
        else:
            raise InvalidArgument(
                "sample_id or sample_barcode is required",
                [_violation("sample_id", "FIELD_REQUIRED", "sample_id or sample_barcode")],
            )
        if not rows:
            raise NotFound("no such sample", reason="SAMPLE_NOT_FOUND")
        if len(rows) > 1:
            raise _ambiguous_barcode()
        row = rows[0]
        sample = pb.Sample(
            sample_id=str(row["id"]),
            sample_barcode=row["barcode"],
            sampling_org_id=str(row["org_id"]),
            lab_org_id=str(row["lab_org_id"]),
            state=enum_value(testing_pb2.SampleState, row["state"]),
            person=person_message(self._pii, row),
            test_type=enum_value(testing_pb2.TestType, row["test_type"]),
            rat_device_id=row["rat_device_id"] or "",
            collected_at=timestamp(row["collected_at"]),
            sampling_site=row["sampling_site"],
            pool_barcode=row["pool_barcode"],
            retest_of_sample_id=str(row["retest_of"]) if row["retest_of"] else "",
            retest_of_sample_barcode=row["retest_of_barcode"],
            retest_sample_ids=[str(i) for i in row["retest_sample_ids"]],
            registered_at=timestamp(row["registered_at"]),
            results=[result_message(r) for r in await repo.results_of_sample(conn, row["id"])],
        )
        return pb.GetSampleResponse(sample=sample)

    async def list_results(self, conn, caller: Principal, limit: int, after, filters: dict):
        scope = "s.org_id" if caller.role is Role.SAMPLER else "r.lab_org_id"
        return await repo.list_results(
            conn,
            scope,
            uuid.UUID(caller.id),
            filters["start"],
            filters["end"],
            filters["outcomes"],
            filters["states"],
            after,
            limit,
        )
