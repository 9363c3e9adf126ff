"""Value sets operators update (issue 18): a rapid-test device imported with `valueset import` is accepted
by the running result_svc at once, with no restart, and refused again once a newer version marks it inactive.
The CLI runs as a subprocess against the module's database; result_svc runs as its own database role."""

import asyncio
import logging
import time

from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.type.v1 import testing_pb2
from services.result_svc.value_sets import ValueSetStore
from tests.result_svc.helpers import rid, sample, unique
from tests.value_set_files import DEVICES, device_list, import_value_sets, imported

RAT = testing_pb2.TEST_TYPE_RAPID_ANTIGEN
NEW_DEVICE = "990001"  # in no published list
DEADLINE_S = 10.0


async def register_rat(stub, sampler, lab, device: str) -> pb.SampleRegistrationResult:
    item = sample(unique("RAT"), lab.id, 7, test_type=RAT, rat_device_id=device)
    reply = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[item]), metadata=sampler.auth
    )
    return reply.results[0]


def refused_device(answer: pb.SampleRegistrationResult) -> bool:
    return answer.status == pb.REGISTRATION_STATUS_REJECTED and [(v.field, v.reason) for v in answer.violations] == [
        ("samples[0].rat_device_id", "VALUE_NOT_IN_VALUE_SET")
    ]


async def until(stub, sampler, lab, device: str, accepted: bool) -> float:
    """Registers a fresh sample with `device` until it is accepted (or refused for its device, `accepted`
    False); the seconds that took. Fails at the deadline."""
    started = time.monotonic()
    while True:
        answer = await register_rat(stub, sampler, lab, device)
        if accepted and answer.status == pb.REGISTRATION_STATUS_CREATED:
            return time.monotonic() - started
        if not accepted and refused_device(answer):
            return time.monotonic() - started
        assert time.monotonic() - started < DEADLINE_S, f"device {device} still answered {answer}"
        await asyncio.sleep(0.02)


async def test_an_imported_device_is_accepted_without_restart_and_refused_once_inactive(
    stub, sampler, lab, database_url, tmp_path
):
    before = await register_rat(stub, sampler, lab, NEW_DEVICE)
    assert refused_device(before), before
    assert (await register_rat(stub, sampler, lab, "1232")).status == pb.REGISTRATION_STATUS_CREATED

    [first] = imported(import_value_sets(database_url, device_list(tmp_path, "devices-1.json", add=(NEW_DEVICE,))))
    assert (first["name"], first["version"], first["imported"]) == (DEVICES, 1, True)
    assert await until(stub, sampler, lab, NEW_DEVICE, accepted=True) < 5  # the NOTIFY, not the hourly refresh
    assert (await register_rat(stub, sampler, lab, "1232")).status == pb.REGISTRATION_STATUS_CREATED

    newer = device_list(tmp_path, "devices-2.json", add=(NEW_DEVICE,), inactive=(NEW_DEVICE, "1232"))
    [second] = imported(import_value_sets(database_url, newer))
    assert (second["version"], second["imported"], second["active"]) == (2, True, first["active"] - 2)
    await until(stub, sampler, lab, NEW_DEVICE, accepted=False)
    assert refused_device(await register_rat(stub, sampler, lab, "1232"))
    # NAAT samples never depended on the list.
    naat = await stub.RegisterSamples(
        pb.RegisterSamplesRequest(request_id=rid(), samples=[sample(unique("N"), lab.id, 8)]), metadata=sampler.auth
    )
    assert naat.created_count == 1


async def test_the_store_keeps_the_last_device_list_while_the_database_refuses_it(own_database, tmp_path, caplog):
    url, pool = own_database
    store = ValueSetStore(url, refresh_seconds=60)
    task = asyncio.create_task(store.run())
    try:
        assert NEW_DEVICE not in await store.rat_devices()  # the shipped list: nothing imported yet
        imported(import_value_sets(url, device_list(tmp_path, "devices.json", add=(NEW_DEVICE,))))
        deadline = time.monotonic() + DEADLINE_S
        while NEW_DEVICE not in store.current.rat_devices:
            assert time.monotonic() < deadline, "the import's NOTIFY did not reach the store"
            await asyncio.sleep(0.02)

        caplog.set_level(logging.WARNING, logger="covidtest.value_sets")
        await pool.execute("ALTER TABLE value_sets RENAME TO value_sets_away")  # every read now fails
        await pool.execute("NOTIFY value_sets")
        while not any("value set refresh failed" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline + DEADLINE_S, "the failed reload was never attempted"
            await asyncio.sleep(0.02)
        assert NEW_DEVICE in await store.rat_devices() and "1232" in store.current.rat_devices
    finally:
        await pool.execute("ALTER TABLE IF EXISTS value_sets_away RENAME TO value_sets")
        store.stop()
        await asyncio.wait_for(task, 10)
