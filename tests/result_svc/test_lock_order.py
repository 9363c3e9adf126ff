"""Concurrent calls on the same pools and samples lock rows in one global order, so none deadlocks.

Each round runs, all at once, pairs of calls that used to take their row locks in opposite orders:
RecordResults naming a member of one pool and another pool (against the mirror image), a pool and one
of its members (against the pool alone), RegisterSamples with a retest of a pool member and a sample
joining another pool (against RecordResults of both pools), registrations that share persons or
barcodes in opposite orders, and AmendResult / WithdrawResult on pool members while the pool is
recorded again. No call may fail (a deadlock ends as INTERNAL), every outcome must be one that some
serial order of the calls gives, and Postgres must count no deadlock in the test's database.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import asyncpg
import grpc

from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import testing_pb2 as t
from tests.result_svc.helpers import ago, result, rid, sample, unique

ROUNDS = 25


@dataclass
class _Pool:
    barcode: str
    members: list[pb.SampleRegistration]


def _pool(lab_id: str, size: int, first_person: int) -> _Pool:
    barcode = unique("LP")
    return _Pool(barcode, [sample(unique("LM"), lab_id, first_person + i, pool_barcode=barcode) for i in range(size)])


@dataclass
class _Round:
    """The rows one round works on (a fresh set per round, so rounds do not meet)."""

    n: int  # first person number of the round
    a_p: _Pool  # A: two registered pools recorded crosswise
    a_q: _Pool
    b: _Pool  # B: a registered pool recorded twice, once with a member named too
    c_open: _Pool  # C: a registered pool a sample joins while it is recorded
    c_done: _Pool  # C: a positive pool whose member is retested meanwhile
    d: _Pool  # D: a negative pool whose members are amended and withdrawn meanwhile
    e_x: pb.SampleRegistration  # E: seeds two persons registered again in opposite orders
    e_y: pb.SampleRegistration


def _round(lab_id: str, r: int) -> _Round:
    n = 700_000 + r * 100
    return _Round(
        n=n,
        a_p=_pool(lab_id, 2, n),
        a_q=_pool(lab_id, 2, n + 10),
        b=_pool(lab_id, 2, n + 20),
        c_open=_pool(lab_id, 1, n + 30),
        c_done=_pool(lab_id, 2, n + 40),
        d=_pool(lab_id, 3, n + 50),
        e_x=sample(unique("LX"), lab_id, n + 60),
        e_y=sample(unique("LY"), lab_id, n + 61),
    )


def _pools(rd: _Round) -> list[_Pool]:
    return [rd.a_p, rd.a_q, rd.b, rd.c_open, rd.c_done, rd.d]


async def _unchecked(call):
    """The reply, or the failed call's (code, details)."""
    try:
        return await call
    except grpc.aio.AioRpcError as err:
        return (err.code(), err.details())


def _calls(stub, sampler, lab, rd: _Round, tested) -> dict[str, object]:
    def record(*items):
        return stub.RecordResults(pb.RecordResultsRequest(request_id=rid(), results=list(items)), metadata=lab.auth)

    def register(*items):
        return stub.RegisterSamples(
            pb.RegisterSamplesRequest(request_id=rid(), samples=list(items)), metadata=sampler.auth
        )

    negative = dict(outcome=t.OUTCOME_NEGATIVE, tested_at=tested)
    n, lab_id = rd.n, lab.id
    retested = rd.c_done.members[0]
    return {
        # A: each call locks a member of one pool and the other pool.
        "a1": record(result(sample_barcode=rd.a_p.members[0].sample_barcode), result(pool_barcode=rd.a_q.barcode)),
        "a2": record(result(sample_barcode=rd.a_q.members[0].sample_barcode), result(pool_barcode=rd.a_p.barcode)),
        # B: a pool and one of its members, against the pool alone (the same result: one is a replay).
        "b1": record(
            result(sample_barcode=rd.b.members[0].sample_barcode), result(pool_barcode=rd.b.barcode, **negative)
        ),
        "b2": record(result(pool_barcode=rd.b.barcode, **negative)),
        # C: a retest of a positive pool's member and a sample joining an open pool, against both pools recorded.
        "c1": register(
            sample(unique("LR"), lab_id, n + 40, retest_of_sample_barcode=retested.sample_barcode),
            sample(unique("LJ"), lab_id, n + 70, pool_barcode=rd.c_open.barcode),
        ),
        "c2": record(
            result(pool_barcode=rd.c_open.barcode, **negative),
            result(t.OUTCOME_POSITIVE, pool_barcode=rd.c_done.barcode, tested_at=tested, ct_value=30.0),
        ),
        # D: corrections of two members while the pool is recorded again and a third member is named.
        "d1": stub.AmendResult(
            pb.AmendResultRequest(
                request_id=rid(),
                sample_barcode=rd.d.members[0].sample_barcode,
                outcome=t.OUTCOME_POSITIVE,
                tested_at=tested,
                method="RT-PCR cobas",
                ct_value=25.0,
                lab_reference="LIS-2",
                reason="pool result mis-keyed",
            ),
            metadata=lab.auth,
        ),
        "d2": stub.WithdrawResult(
            pb.WithdrawResultRequest(
                request_id=rid(), sample_barcode=rd.d.members[1].sample_barcode, reason=t.WITHDRAWAL_REASON_LAB_ERROR
            ),
            metadata=lab.auth,
        ),
        "d3": record(
            result(sample_barcode=rd.d.members[2].sample_barcode), result(pool_barcode=rd.d.barcode, **negative)
        ),
        # E: two known persons registered again, in opposite orders.
        "e1": register(sample(unique("LE"), lab_id, n + 60), sample(unique("LE"), lab_id, n + 61)),
        "e2": register(sample(unique("LE"), lab_id, n + 61), sample(unique("LE"), lab_id, n + 60)),
        # F: two barcodes registered by two calls in opposite orders, with different data.
        **_crossed_barcodes(register, lab_id, n),
    }


def _crossed_barcodes(register, lab_id: str, n: int) -> dict[str, object]:
    first, second = unique("LF"), unique("LF")
    return {
        "f1": register(sample(first, lab_id, n + 80), sample(second, lab_id, n + 81)),
        "f2": register(sample(second, lab_id, n + 82), sample(first, lab_id, n + 83)),
    }


def _statuses(reply) -> list[int]:
    return [item.status for item in reply.results]


def _reasons(reply) -> list[list[str]]:
    return [[v.reason for v in item.violations] for item in reply.results]


R, A, X = pb.RECORDING_STATUS_RECORDED, pb.RECORDING_STATUS_ALREADY_RECORDED, pb.RECORDING_STATUS_REJECTED
CREATED, REJECTED = pb.REGISTRATION_STATUS_CREATED, pb.REGISTRATION_STATUS_REJECTED


def _check_round(rd: _Round, replies: dict[str, object]) -> None:
    """Every reply is one that some serial order of the round's calls gives."""
    pooled = ["SAMPLE_IS_POOLED"]
    for name in ("a1", "a2"):
        assert _statuses(replies[name]) == [X, R] and _reasons(replies[name])[0] == pooled, replies[name]
    assert sorted([_statuses(replies["b1"])[1], _statuses(replies["b2"])[0]]) == [R, A]
    assert _reasons(replies["b1"])[0] == pooled
    c1, c2 = replies["c1"], replies["c2"]
    assert _statuses(c2) == [R, A], c2
    joined = _statuses(c1)[1] == CREATED  # the sample joined before the pool was recorded, or found it closed
    assert _statuses(c1)[0] == CREATED and (joined or _reasons(c1)[1] == ["POOL_CLOSED"]), c1
    assert len(c2.results[0].samples) == (2 if joined else 1), c2
    assert replies["d1"].result.version == 2 and replies["d2"].result.state == t.RESULT_STATE_WITHDRAWN
    assert _statuses(replies["d3"]) == [X, A] and _reasons(replies["d3"])[0] == pooled
    assert _statuses(replies["e1"]) == _statuses(replies["e2"]) == [CREATED, CREATED]
    f1, f2 = _statuses(replies["f1"]), _statuses(replies["f2"])
    # Each barcode is created by exactly one call; the other call finds it taken with other data.
    assert sorted([f1[0], f2[1]]) == sorted([f1[1], f2[0]]) == [CREATED, REJECTED], (f1, f2)


async def _deadlocks(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")


async def _until_alone(conn: asyncpg.Connection, timeout_s: float = 10.0) -> None:
    """Wait until every other backend of this database has exited (a backend flushes its statistics,
    the deadlock count among them, before it leaves pg_stat_activity)."""
    deadline = time.monotonic() + timeout_s
    while await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ):
        assert time.monotonic() < deadline, "the server's connections did not close"
        await asyncio.sleep(0.02)


async def _stored(conn: asyncpg.Connection, rounds: list[_Round]) -> list[asyncpg.Record]:
    """Members whose first result disagrees with their pool: every member of a resulted pool has one
    (the pool's), a member of an open pool none."""
    barcodes = [p.barcode for rd in rounds for p in _pools(rd)]
    return await conn.fetch(
        """SELECT p.barcode, p.state, s.barcode AS member, s.state AS member_state,
                  (SELECT count(*) FROM results r WHERE r.sample_id = s.id AND r.version = 1) AS firsts
           FROM pools p JOIN samples s ON s.pool_id = p.id
           WHERE p.barcode = ANY($1::text[])
             AND (p.outcome IS NULL)
                 <> ((SELECT count(*) FROM results r WHERE r.sample_id = s.id AND r.version = 1) = 0)
           ORDER BY p.barcode""",
        barcodes,
    )


async def test_concurrent_pool_calls_never_deadlock(database_url, sampler, lab):
    from services.common.config import load
    from services.common.runtime import start_service
    from services.result_svc import __main__ as result_process
    from services.result_svc.config import ResultConfig
    from tests.conftest import result_svc_env, service_env

    # Enough connections for every call of a round to hold one at once.
    config = load(ResultConfig, result_svc_env(service_env(database_url, DB_POOL_MAX="16")))
    server = await start_service("result_svc", config, result_process.build, serve_metrics_port=False)
    check = await asyncpg.connect(database_url)
    failures: list[tuple[int, str, object]] = []
    try:
        before = await _deadlocks(check)
        rounds = [_round(lab.id, r) for r in range(ROUNDS)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = result_service_pb2_grpc.ResultServiceStub(channel)
            seeds = [m for rd in rounds for p in _pools(rd) for m in p.members] + [
                s for rd in rounds for s in (rd.e_x, rd.e_y)
            ]
            for start in range(0, len(seeds), 1000):
                reply = await stub.RegisterSamples(
                    pb.RegisterSamplesRequest(request_id=rid(), samples=seeds[start : start + 1000]),
                    metadata=sampler.auth,
                )
                assert reply.created_count == len(seeds[start : start + 1000]), reply
            tested = ago(hours=1)
            resulted = [
                item
                for rd in rounds
                for item in (
                    result(t.OUTCOME_POSITIVE, pool_barcode=rd.c_done.barcode, tested_at=tested, ct_value=30.0),
                    result(t.OUTCOME_NEGATIVE, pool_barcode=rd.d.barcode, tested_at=tested),
                )
            ]
            reply = await stub.RecordResults(
                pb.RecordResultsRequest(request_id=rid(), results=resulted), metadata=lab.auth
            )
            assert reply.recorded_count == len(resulted), reply

            for r, rd in enumerate(rounds):
                calls = _calls(stub, sampler, lab, rd, tested)
                answers = await asyncio.gather(*(_unchecked(c) for c in calls.values()))
                replies = dict(zip(calls, answers, strict=True))
                failed = [(r, name, a) for name, a in replies.items() if isinstance(a, tuple)]
                failures += failed
                if not failed:
                    _check_round(rd, replies)
        by_call = Counter(f"{name}: {code.name}" for _, name, (code, _) in failures)
        assert not failures, f"{len(failures)} calls failed: {sorted(by_call.items())}"
        assert await _stored(check, rounds) == []
    finally:
        await server.stop(0)
    try:
        await _until_alone(check)
        assert await _deadlocks(check) == before, "Postgres detected a deadlock"
    finally:
        await check.close()
