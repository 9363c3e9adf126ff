"""A printable certificate for a sampling site, from the operator CLI (issue 18): `certificate document`.

The same PDF as PublishService.GetCertificateDocument (services.hcert.document renders both), made here
from Postgres directly: the certificate's sealed QR text is opened with the personal-data keys
(PII_KEYS), and the read is recorded in the read audit (principal kind OPERATOR, purpose DOCUMENT_RENDER)
in the read's own transaction, before the document is made.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from services.admin import repository as repo
from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.common.fields import check_text
from services.common.pii import PiiCipher
from services.hcert import document
from services.registry import principals


@dataclass(frozen=True, slots=True)
class PrintedCertificate:
    certificate_id: str
    result_id: uuid.UUID
    status: str  # as stored: VALID or REVOKED (the paper says EXPIRED too once past expires_at)
    expires_at: datetime
    paper: str
    path: str
    size_bytes: int


def check_request(operator: str, certificate_id: str, paper: str) -> None:
    """InvalidArgument for an operator name that cannot be one, an id no certificate can have (the checks of
    GetCertificateDocument) or a paper size other than A4 and A6."""
    violations: list[FieldViolation] = []
    if not principals.OPERATOR_NAME.match(operator):
        violations.append(FieldViolation("operator", "your operator user name: 1-64 of a-z, 0-9, '.', '_', '-'"))
    if not certificate_id or len(certificate_id) > 80:
        violations.append(FieldViolation("certificate_id", "the UVCI, at most 80 characters", "FIELD_REQUIRED"))
    else:
        check_text(certificate_id, "certificate_id", None, violations)
    if paper not in document.PAPER_SIZES:
        violations.append(FieldViolation("size", "A4 or A6", "FIELD_OUT_OF_RANGE"))
    if violations:
        raise InvalidArgument("invalid request", violations)


async def print_certificate(
    conn: asyncpg.Connection, pii: PiiCipher, operator: str, certificate_id: str, paper: str, out: str
) -> PrintedCertificate:
    """Reads the certificate and records the read (one transaction), renders it and writes the PDF to `out`
    (readable by its owner only: it holds a name and a birth date). Refused before any read when the
    request is malformed, the font is missing or `out` cannot be written."""
    check_request(operator, certificate_id, paper)
    try:
        document.check_fonts()
    except document.FontMissing as exc:
        raise FailedPrecondition(str(exc)) from None
    target = Path(out)
    if not target.parent.is_dir():
        raise InvalidArgument(f"cannot write {out}: its directory does not exist")
    # The temporary file is made first (a directory that cannot be written fails here, before the audited
    # read), in the target's directory, and renamed over it at the end: no half-written PDF at `out`.
    handle, temporary = tempfile.mkstemp(prefix=".certificate-", suffix=".pdf", dir=target.parent)
    try:
        async with conn.transaction():
            found = await repo.certificate_by_uvci(conn, certificate_id)
            if found is None:
                raise NotFound("no certificate with this id", reason="CERTIFICATE_NOT_FOUND")
            sealed = found.qr_enc
            if sealed is None:  # nothing personal is read: no audit row
                raise FailedPrecondition(
                    "the certificate's personal data was erased under the retention policy; its status remains",
                    reason="PERSONAL_DATA_ERASED",
                )
            operator_id = await principals.ensure_operator(conn, operator)
            await repo.record_document_read(conn, operator_id, found.result_id, {"paper": paper})
        pdf = document.render(
            pii.open("certificate.qr", sealed), status=found.status, paper=paper, printed_at=datetime.now(UTC)
        )
        with os.fdopen(handle, "wb") as f:
            handle = -1
            f.write(pdf)
        os.replace(temporary, target)
    except BaseException:
        if handle != -1:
            os.close(handle)
        Path(temporary).unlink(missing_ok=True)
        raise
    return PrintedCertificate(
        found.uvci, found.result_id, found.status, found.expires_at, paper, str(target.resolve()), len(pdf)
    )
