"""A person's identity document as the keyed hash that finds them: one normalisation for every room.

Intake stores `keyed_hash("person.identity", "TYPE|COUNTRY|NUMBER")`; a citizen lookup (publish_svc)
and the operator's "who read this person's results" (admin) must compute exactly the same value, so
the text and the hash are built here and nowhere else. Vietnamese documents (CITIZEN_ID, OLD_ID) are
always VN's, whatever country the caller gave.
"""

from __future__ import annotations

from services.common.pii import PiiCipher

PURPOSE = "person.identity"
VIETNAMESE_DOCUMENTS = ("CITIZEN_ID", "OLD_ID")


def identity_text(doc_type: str, country: str, number: str) -> str:
    """ "TYPE|COUNTRY|NUMBER" of a document (`doc_type` as the enum's domain name, e.g. "CITIZEN_ID")."""
    if doc_type in VIETNAMESE_DOCUMENTS:
        country = "VN"
    return f"{doc_type}|{country}|{number}"


def identity_hash(pii: PiiCipher, doc_type: str, country: str, number: str) -> bytes:
    """The keyed hash `persons.identity_hash` holds for this document."""
    return pii.keyed_hash(PURPOSE, identity_text(doc_type, country, number))
