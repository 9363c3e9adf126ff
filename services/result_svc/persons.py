"""Personal data at intake: the keyed hashes that find a person again, and the sealed row that is stored.

Nothing personal is stored or compared in the clear: a person is recognised by a keyed hash of their
identity document (or of phone, date of birth and name), a registration by a keyed hash of its
content, and the personal fields are sealed with the PII cipher before they reach the database.
"""

from __future__ import annotations

import json
import uuid
from typing import NamedTuple

from services.common.pii import PiiCipher
from services.result_svc.repository import PersonRow
from services.result_svc.validation import PersonData, Registration


class LookupFactors(NamedTuple):
    """The keyed hashes a citizen lookup matches, as one registration carried them (kept on its sample)."""

    identity_hash: bytes | None
    phone_hash: bytes | None
    dob_hash: bytes


class PersonSealer:
    """Keyed hashes and sealed rows of the persons and registrations of RegisterSamples."""

    def __init__(self, pii: PiiCipher):
        self._pii = pii

    def person_key(self, person: PersonData) -> bytes:
        if person.identity:
            return self._pii.keyed_hash("person.identity", person.identity)
        return self._pii.keyed_hash(
            "person.phone-dob-name", f"{person.phone}|{person.date_of_birth}|{person.full_name}"
        )

    def registration_hash(self, reg: Registration) -> bytes:
        """Tells a replayed registration (same data) from a conflicting one (same barcode, other data)."""
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

    def lookup_factors(self, person: PersonData) -> LookupFactors:
        """The hashes GetCitizenResults looks this registration up by (the purposes publish_svc hashes with)."""
        hashed = self._pii.keyed_hash
        return LookupFactors(
            identity_hash=hashed("person.identity", person.identity) if person.identity else None,
            phone_hash=hashed("person.phone", person.phone) if person.phone else None,
            dob_hash=hashed("person.date_of_birth", person.date_of_birth),
        )

    def person_row(self, key: bytes, person: PersonData) -> PersonRow:
        seal = self._pii.seal
        factors = self.lookup_factors(person)
        return PersonRow(
            id=uuid.uuid4(),
            person_key_hash=key,
            identity_hash=factors.identity_hash,
            phone_hash=factors.phone_hash,
            dob_hash=factors.dob_hash,
            identity_enc=seal("person.identity", person.identity) if person.identity else None,
            full_name_enc=seal("person.full_name", person.full_name),
            family_name_enc=seal("person.family_name", person.family_name),
            given_name_enc=seal("person.given_name", person.given_name),
            date_of_birth_enc=seal("person.date_of_birth", person.date_of_birth),
            phone_enc=seal("person.phone", person.phone) if person.phone else None,
            province_code=person.province_code,
            district_code=person.district_code,
        )
