"""Citizen lookup factors belong to the registration that carried them (issue 14, part 2).

A lookup by phone (or identity number) and birth date finds exactly the results whose own registration
had that phone (or identity) and that birth date. A later registration of the same identity number, by
any sampling unit and with any phone or birth date, never changes which earlier results a lookup finds:
neither an attacker's (who would otherwise redirect a victim's lookups to their own phone) nor an
honest typo (which would otherwise break the lookups of every earlier result).
"""

from __future__ import annotations

import grpc
import pytest

from services.common.auth import Role
from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.type.v1 import testing_pb2 as t
from tests.conftest import bearer, make_principal
from tests.publish_svc.conftest import Platform, new_partner
from tests.result_svc.helpers import person, result, rid, sample, unique

VICTIM_DOB = "1985-03-14"  # person()'s birth date
ATTACKER_DOB = "1990-07-21"
ATTACKER_PHONE = "0987654321"


async def register(platform: Platform, token: str, items: list[rpb.SampleRegistration]) -> list[str]:
    reply = await platform.results.RegisterSamples(
        rpb.RegisterSamplesRequest(request_id=rid(), samples=items), metadata=bearer(token)
    )
    assert reply.created_count == len(items), reply
    return [r.sample_id for r in reply.results]


async def record(platform: Platform, barcodes: list[str], outcome=t.OUTCOME_NEGATIVE) -> None:
    reply = await platform.results.RecordResults(
        rpb.RecordResultsRequest(request_id=rid(), results=[result(outcome, sample_barcode=b) for b in barcodes]),
        metadata=bearer(platform.lab["token"]),
    )
    assert reply.rejected_count == 0, reply


async def released_for(platform: Platform, n: int, **person_fields) -> str:
    """A sample of person(n) registered by the platform's sampling unit, with a NEGATIVE result; its barcode."""
    barcode = unique("LF")
    await register(
        platform, platform.unit["token"], [sample(barcode, platform.lab["id"], person=person(n, **person_fields))]
    )
    await record(platform, [barcode])
    return barcode


async def lookup(platform: Platform, auth, *, n: int | None = None, phone: str = "", dob: str) -> list:
    """The sample barcodes a lookup by identity number of person(n) (or by phone) and birth date finds."""
    request = (
        ppb.GetCitizenResultsRequest(identity=person(n).identity, date_of_birth=dob)
        if n is not None
        else ppb.GetCitizenResultsRequest(phone=phone, date_of_birth=dob)
    )
    found = await platform.publish.GetCitizenResults(request, metadata=auth)
    return sorted(r.result.sample_barcode or r.pending_sample.sample_barcode for r in found.results)


@pytest.fixture(scope="module")
async def auth(database_url):
    return bearer((await new_partner(database_url, personal_data_access=True))["token"])


async def test_another_sampler_cannot_redirect_a_victims_lookups_to_their_phone(platform, database_url, auth):
    victim = 7000
    victim_phone = person(victim).phone
    earlier = sorted([await released_for(platform, victim), await released_for(platform, victim)])
    assert await lookup(platform, auth, phone=victim_phone, dob=VICTIM_DOB) == earlier

    # Sampler B registers the victim's identity number with the attacker's phone and birth date.
    attacker_unit = await make_principal(database_url, Role.SAMPLER)
    attacker_barcode = unique("ATK")
    await register(
        platform,
        attacker_unit["token"],
        [
            sample(
                attacker_barcode,
                platform.lab["id"],
                person=person(victim, phone=ATTACKER_PHONE, date_of_birth=ATTACKER_DOB),
            )
        ],
    )

    # The attacker's phone and birth date find nothing of the victim's results, only the attacker's own
    # sample, pending (the factors the attacker registered it with); the victim's identity number with the
    # attacker's birth date likewise finds that registration alone.
    assert await lookup(platform, auth, phone=ATTACKER_PHONE, dob=ATTACKER_DOB) == [attacker_barcode]
    assert await lookup(platform, auth, n=victim, dob=ATTACKER_DOB) == [attacker_barcode]
    # The victim's own factors still find exactly their results.
    assert await lookup(platform, auth, phone=victim_phone, dob=VICTIM_DOB) == earlier
    assert await lookup(platform, auth, n=victim, dob=VICTIM_DOB) == earlier

    # Once the attacker's own sample has a result, their factors find that one only.
    await record(platform, [attacker_barcode])
    assert await lookup(platform, auth, phone=ATTACKER_PHONE, dob=ATTACKER_DOB) == [attacker_barcode]
    assert await lookup(platform, auth, phone=victim_phone, dob=VICTIM_DOB) == earlier


async def test_a_typo_in_a_later_registration_does_not_break_earlier_lookups(platform, auth):
    n = 7100
    phone = person(n).phone
    earlier = await released_for(platform, n)

    # The next registration of the same identity number has a mistyped birth date and phone.
    typo_dob, typo_phone = "1985-04-14", "0900000000"
    later = await released_for(platform, n, date_of_birth=typo_dob, phone=typo_phone)

    assert await lookup(platform, auth, phone=phone, dob=VICTIM_DOB) == [earlier]
    assert await lookup(platform, auth, n=n, dob=VICTIM_DOB) == [earlier]
    # The mistyped registration is found by what it carried, as it was registered.
    assert await lookup(platform, auth, phone=typo_phone, dob=typo_dob) == [later]
    assert await lookup(platform, auth, n=n, dob=typo_dob) == [later]
    assert await lookup(platform, auth, phone=typo_phone, dob=VICTIM_DOB) == []


async def test_retests_and_pooled_samples_are_found_by_their_registrations(platform, auth):
    n = 7200
    first = unique("RT")
    await register(platform, platform.unit["token"], [sample(first, platform.lab["id"], n)])
    await record(platform, [first], outcome=t.OUTCOME_INCONCLUSIVE)
    retest = unique("RT")
    await register(
        platform, platform.unit["token"], [sample(retest, platform.lab["id"], n, retest_of_sample_barcode=first)]
    )
    await record(platform, [retest])
    assert await lookup(platform, auth, n=n, dob=VICTIM_DOB) == sorted([first, retest])
    assert await lookup(platform, auth, phone=person(n).phone, dob=VICTIM_DOB) == sorted([first, retest])

    pooled = await platform.release(2, start=7300, pool=True)
    for i, barcode in enumerate(pooled):
        assert await lookup(platform, auth, n=7300 + i, dob=VICTIM_DOB) == [barcode]
        assert await lookup(platform, auth, phone=person(7300 + i).phone, dob=VICTIM_DOB) == [barcode]


async def test_unknown_and_wrong_birth_date_still_give_the_same_empty_answer(platform, auth):
    n = 7400
    await released_for(platform, n)
    wrong_dob = await platform.publish.GetCitizenResults(
        ppb.GetCitizenResultsRequest(identity=person(n).identity, date_of_birth="1985-03-15"), metadata=auth
    )
    unknown = await platform.publish.GetCitizenResults(
        ppb.GetCitizenResultsRequest(identity=person(987_655).identity, date_of_birth=VICTIM_DOB), metadata=auth
    )
    assert wrong_dob == unknown == ppb.GetCitizenResultsResponse()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.publish.GetCitizenResults(ppb.GetCitizenResultsRequest(date_of_birth=VICTIM_DOB), metadata=auth)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
