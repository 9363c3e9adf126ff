"""`python -m services.admin reads`: who read a person's results, from the read audit (issue 14).

Real result_svc and publish_svc over gRPC leave the audit rows (a feed delivery, a citizen lookup, a QR
render); the CLI, run as a real process, finds the person by identity number (hashed as intake does)
or by id and lists the reads as JSON lines.
"""

import asyncio
import subprocess
import time

import asyncpg

from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from tests.admin.cli_runner import json_lines, run_admin
from tests.conftest import bearer
from tests.publish_svc.conftest import new_partner, running_platform
from tests.result_svc.helpers import person, rid, sample, unique


def reads(database_url: str, pepper: str | None, *args: str) -> subprocess.CompletedProcess:
    return run_admin(database_url, {"PII_PEPPER": pepper}, "reads", *args, timeout=60)


lines = json_lines


async def test_reads_lists_who_read_a_persons_results(database_url):
    async with running_platform(database_url) as platform:
        bluezone = await new_partner(database_url, personal_data_access=True)
        auth = bearer(bluezone["token"])
        start = await platform.head() + 1
        await platform.release(2, start=9500)  # 9500 is the person asked about; 9501 someone else
        deadline = time.monotonic() + 15
        while await platform.head() < start + 3:  # two registrations and two results: one feed page
            assert time.monotonic() < deadline, "the relay did not publish the four events"
            await asyncio.sleep(0.05)
        events = await platform.collect(bluezone["token"], start, 2)
        mine = next(e for e in events if e.person.identity.number == person(9500).identity.number)
        found = await platform.publish.GetCitizenResults(
            ppb.GetCitizenResultsRequest(identity=person(9500).identity, date_of_birth="1985-03-14"), metadata=auth
        )
        assert [r.result.result_id for r in found.results] == [mine.result.result_id]
        await platform.publish.GetCertificateQr(
            ppb.GetCertificateQrRequest(certificate_id=mine.certificate.certificate_id, format=ppb.QR_IMAGE_FORMAT_PNG),
            metadata=auth,
        )
        conn = await asyncpg.connect(database_url)
        try:
            name = await conn.fetchval("SELECT name FROM partners WHERE id = $1::uuid", bluezone["id"])
            person_id = await conn.fetchval(
                "SELECT s.person_id FROM results r JOIN samples s ON s.id = r.sample_id WHERE r.id = $1::uuid",
                mine.result.result_id,
            )
        finally:
            await conn.close()
        pepper = platform.env["PII_PEPPER"]

        listed = lines(reads(database_url, pepper, "--identity-number", person(9500).identity.number))
        assert [(r["purpose"], r["principal_id"], r["principal_name"], r["principal_kind"]) for r in listed] == [
            ("FEED_DELIVERY", bluezone["id"], name, "PARTNER"),
            ("CITIZEN_LOOKUP", bluezone["id"], name, "PARTNER"),
            ("QR_RENDER", bluezone["id"], name, "PARTNER"),
        ]
        # Only this person's results, although the feed batch also carried the other person's.
        assert all(r["result_ids"] == [mine.result.result_id] for r in listed)
        assert listed[0]["detail"]["events"] == 4 and all(r["at"] for r in listed)
        assert len(listed[0]["detail"]["pending_sample_ids"]) == 2  # the registrations went in the same page

        by_id = lines(reads(database_url, None, "--person-id", str(person_id)))  # no pepper needed by id
        assert by_id == listed

        # Someone never looked up, a wrong pepper (a different hash), a missing pepper.
        assert lines(reads(database_url, pepper, "--identity-number", "024999999999")) == []
        other_pepper = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
        assert lines(reads(database_url, other_pepper, "--identity-number", person(9500).identity.number)) == []
        missing = reads(database_url, None, "--identity-number", person(9500).identity.number)
        assert missing.returncode == 1 and "PII_PEPPER" in missing.stderr
        assert reads(database_url, pepper).returncode == 2  # an identity number or a person id is required

        # A sample still awaiting its result: the feed page that carried its registration (the person's name
        # and birth date, no result yet) is a read of that person too.
        waiting = person(9502)
        start = await platform.head() + 1
        await platform.results.RegisterSamples(
            rpb.RegisterSamplesRequest(request_id=rid(), samples=[sample(unique("W"), platform.lab["id"], 9502)]),
            metadata=bearer(platform.unit["token"]),
        )
        [registration] = await platform.collect(bluezone["token"], start, 1, pending=True)
        pending = lines(reads(database_url, pepper, "--identity-number", waiting.identity.number))
        assert [(r["purpose"], r["result_ids"]) for r in pending] == [("FEED_DELIVERY", [])]
        assert registration.sample.sample_id in pending[0]["detail"]["pending_sample_ids"]
