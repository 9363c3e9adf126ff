"""The printable certificate (issue 18), tested as a person at a sampling site meets it.

Over real gRPC against real result_svc and publish_svc: a released result's certificate is rendered as a PDF
on A4 and A6; the PDF is printed to an image with pdftoppm (poppler-utils) and the QR code read back from the
image with zxing-cpp, which must give exactly the certificate's "HC1:" text; the PDF's text layer
(pdftotext) must carry the holder's name with its diacritics, the other fields and the bilingual labels. A
revoked certificate still prints, saying so in both languages. Partners without personal-data access are
refused, unknown and malformed ids answer NOT_FOUND and INVALID_ARGUMENT, and every document rendered is in
the read audit. The operator CLI writes the same document to a file.
"""

from __future__ import annotations

import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import PIL.Image
import pytest
import zxingcpp

from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.type.v1 import certificate_pb2 as c
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.hcert.decode import decode
from tests.admin.cli_runner import json_lines, run_admin
from tests.conftest import bearer
from tests.grpc_errors import error_reason, violations
from tests.publish_svc.conftest import new_partner
from tests.result_svc.helpers import rid

PRINT_DPI = 150  # an ordinary office scan; the QR must read back at this resolution
# Page sizes in PostScript points (1/72 inch), as pdfinfo reports them.
PAGE_POINTS = {"A4": (595.28, 841.89), "A6": (297.64, 419.53)}
MIN_MODULE_MM = 0.5  # smaller modules are hard for a phone camera to read from paper
LABELS = (
    "Họ và tên / Name",
    "Ngày sinh / Date of birth",
    "Loại xét nghiệm / Test type",
    "Kết quả / Result",
    "Nơi xét nghiệm / Testing centre",
    "Mã chứng nhận / Certificate ID",
    "Đơn vị cấp / Issuer",
    "Trạng thái / Status",
)
REVOKED = "ĐÃ THU HỒI – KHÔNG CÒN GIÁ TRỊ / REVOKED – NOT VALID"


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)


def printed_pages(pdf: bytes, directory: Path) -> list[Path]:
    """The PDF printed to PNG images, one per page, as a scanner would see them."""
    source = directory / "certificate.pdf"
    source.write_bytes(pdf)
    _run("pdftoppm", "-r", str(PRINT_DPI), "-png", str(source), str(directory / "page"))
    return sorted(directory.glob("page*.png"))


def text_layer(pdf: bytes, directory: Path) -> str:
    """What pdftotext reads from the PDF, whitespace collapsed to single spaces."""
    source = directory / "text.pdf"
    source.write_bytes(pdf)
    return " ".join(_run("pdftotext", str(source), "-").stdout.split())


def page_size(pdf: bytes, directory: Path) -> tuple[float, float]:
    source = directory / "info.pdf"
    source.write_bytes(pdf)
    found = re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", _run("pdfinfo", str(source)).stdout)
    assert found, "pdfinfo reports no page size"
    return float(found.group(1)), float(found.group(2))


def read_qr_codes(image: Path) -> list:
    return zxingcpp.read_barcodes(PIL.Image.open(image), formats=zxingcpp.BarcodeFormat.QRCode)


def vietnam_time(value: datetime) -> str:
    """Independent of the renderer: UTC + 7 hours, to the minute, the zone named."""
    return (value.astimezone(UTC) + timedelta(hours=7)).strftime("%Y-%m-%d %H:%M") + " UTC+7"


async def released_certificate(platform, partner: dict, n: int):
    """A released result's feed event (with its certificate and, for an entitled partner, the QR text)."""
    start = await platform.head() + 1
    await platform.release(1, start=n)
    return (await platform.collect(partner["token"], start, 1))[0]


async def document_reads(db, partner: dict) -> list[tuple[str, list[str], dict]]:
    rows = await db.fetch(
        "SELECT purpose, result_ids, detail FROM personal_data_reads "
        "WHERE principal_id = $1::uuid AND purpose = 'DOCUMENT_RENDER' ORDER BY id",
        partner["id"],
    )
    return [(r["purpose"], [str(x) for x in r["result_ids"]], r["detail"]) for r in rows]


def assert_reads_as_the_certificate(pdf: bytes, paper: str, qr_text: str, directory: Path) -> str:
    """One page of the paper size whose printed QR gives back `qr_text`, with modules big enough for paper;
    returns the text layer."""
    assert pdf.startswith(b"%PDF-")
    width, height = page_size(pdf, directory)
    assert (width, height) == pytest.approx(PAGE_POINTS[paper], abs=0.5)
    pages = printed_pages(pdf, directory)
    assert len(pages) == 1, "the certificate fits on one page"
    codes = read_qr_codes(pages[0])
    assert [code.text for code in codes] == [qr_text]
    code = codes[0]
    assert code.format == zxingcpp.BarcodeFormat.QRCode and code.ec_level == "Q"
    modules = 17 + 4 * int(code.extra["Version"])
    symbol_mm = (code.position.top_right.x - code.position.top_left.x) / PRINT_DPI * 25.4
    assert symbol_mm / modules >= MIN_MODULE_MM, f"{symbol_mm / modules:.2f} mm per module"
    return text_layer(pdf, directory)


async def test_a4_and_a6_documents_print_the_qr_and_the_fields_a_person_reads(platform, database_url, db, tmp_path):
    partner = await new_partner(database_url, personal_data_access=True)
    event = await released_certificate(platform, partner, 9600)
    qr_text = event.certificate.qr
    assert qr_text.startswith("HC1:")
    test = decode(qr_text).dcc["t"][0]
    auth = bearer(partner["token"])

    for n, (size, paper) in enumerate(
        ((ppb.PAPER_SIZE_UNSPECIFIED, "A4"), (ppb.PAPER_SIZE_A4, "A4"), (ppb.PAPER_SIZE_A6, "A6"))
    ):
        reply = await platform.publish.GetCertificateDocument(
            ppb.GetCertificateDocumentRequest(certificate_id=event.certificate.certificate_id, paper_size=size),
            metadata=auth,
        )
        assert reply.content_type == "application/pdf"
        assert reply.status == c.CERTIFICATE_STATUS_VALID
        assert reply.expires_at == event.certificate.expires_at
        directory = tmp_path / f"{n}-{paper}"
        directory.mkdir()
        text = assert_reads_as_the_certificate(reply.document, paper, qr_text, directory)

        for label in LABELS:
            assert label in text, label
        assert "Nguyễn Văn An" in text  # nam.fn + nam.gn, with the diacritics
        assert "NGUYEN<<VAN<AN" in text  # fnt<<gnt
        assert "1985-03-14" in text
        assert "Xét nghiệm PCR (NAAT) / PCR test (NAAT)" in text
        assert "ÂM TÍNH / NEGATIVE" in text
        assert vietnam_time(event.result.collected_at.ToDatetime(tzinfo=UTC)) in text  # sample time, UTC+7
        assert vietnam_time(event.certificate.expires_at.ToDatetime(tzinfo=UTC)) in text  # valid until
        for value in (test["tc"], test["ci"], test["is"], test["nm"]):  # what the QR says, word for word
            assert value in text, value
        assert test["ci"] == event.certificate.certificate_id
        assert "Có giá trị khi in / Valid when printed" in text
        assert "REVOKED" not in text and "THU HỒI" not in text
        # Each document is one read-audit row, with the certificate's result and the paper size.
        assert len(await document_reads(db, partner)) == n + 1

    assert await document_reads(db, partner) == [
        ("DOCUMENT_RENDER", [event.result.result_id], {"paper": "A4"}),
        ("DOCUMENT_RENDER", [event.result.result_id], {"paper": "A4"}),
        ("DOCUMENT_RENDER", [event.result.result_id], {"paper": "A6"}),
    ]
    row = await db.fetchrow(
        "SELECT principal_kind, principal_id::text AS principal_id FROM personal_data_reads "
        "WHERE principal_id = $1::uuid AND purpose = 'DOCUMENT_RENDER' LIMIT 1",
        partner["id"],
    )
    assert (row["principal_kind"], row["principal_id"]) == ("PARTNER", partner["id"])


async def test_a_revoked_certificate_still_prints_and_says_it_is_not_valid_in_both_languages(
    platform, database_url, tmp_path
):
    partner = await new_partner(database_url, personal_data_access=True)
    event = await released_certificate(platform, partner, 9610)
    start = await platform.head() + 1
    await platform.results.WithdrawResult(
        rpb.WithdrawResultRequest(
            request_id=rid(), sample_barcode=event.result.sample_barcode, reason=t.WITHDRAWAL_REASON_SAMPLE_MIX_UP
        ),
        metadata=bearer(platform.lab["token"]),
    )
    withdrawn = (await platform.collect(partner["token"], start, 1))[0]
    assert withdrawn.revoked_certificate_id == event.certificate.certificate_id  # committed with the revocation

    for size, paper in ((ppb.PAPER_SIZE_A4, "A4"), (ppb.PAPER_SIZE_A6, "A6")):
        reply = await platform.publish.GetCertificateDocument(
            ppb.GetCertificateDocumentRequest(certificate_id=event.certificate.certificate_id, paper_size=size),
            metadata=bearer(partner["token"]),
        )
        assert reply.status == c.CERTIFICATE_STATUS_REVOKED
        directory = tmp_path / paper
        directory.mkdir()
        text = assert_reads_as_the_certificate(reply.document, paper, event.certificate.qr, directory)
        assert text.count(REVOKED) == 2, text  # the banner at the top and the status line
        assert "Chứng nhận này đã bị thu hồi" in text and "This certificate has been revoked" in text
        assert "Valid when printed" not in text
        assert "Nguyễn Văn An" in text


async def test_a_partner_without_personal_data_access_may_not_print_certificates(platform, database_url, db):
    entitled = await new_partner(database_url, personal_data_access=True)
    plain = await new_partner(database_url, personal_data_access=False)
    event = await released_certificate(platform, entitled, 9620)
    for certificate_id in (event.certificate.certificate_id, "URN:UVCI:01:VN:NOPE#A", "\x00"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await platform.publish.GetCertificateDocument(
                ppb.GetCertificateDocumentRequest(certificate_id=certificate_id), metadata=bearer(plain["token"])
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(err.value) == "PERSONAL_DATA_NOT_ENTITLED"
    assert await document_reads(db, plain) == []


@pytest.mark.parametrize(
    "request_, field, reason",
    [
        (ppb.GetCertificateDocumentRequest(), "certificate_id", "FIELD_REQUIRED"),
        (ppb.GetCertificateDocumentRequest(certificate_id="U" * 81), "certificate_id", "FIELD_REQUIRED"),
        (ppb.GetCertificateDocumentRequest(certificate_id="URN:UVCI:01:VN:\x00#A"), "certificate_id", None),
        (ppb.GetCertificateDocumentRequest(certificate_id="URN:UVCI:01:VN:AB\x1f#C"), "certificate_id", None),
        (
            ppb.GetCertificateDocumentRequest(certificate_id="URN:UVCI:01:VN:NOPE#A", paper_size=7),
            "paper_size",
            "FIELD_OUT_OF_RANGE",
        ),
    ],
)
async def test_a_malformed_request_is_invalid_argument_with_the_field(platform, database_url, request_, field, reason):
    partner = await new_partner(database_url, personal_data_access=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.publish.GetCertificateDocument(request_, metadata=bearer(partner["token"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (field, reason or "FIELD_FORMAT_INVALID") in violations(err.value)


async def test_an_unknown_certificate_is_not_found_and_no_read(platform, database_url, db):
    partner = await new_partner(database_url, personal_data_access=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.publish.GetCertificateDocument(
            ppb.GetCertificateDocumentRequest(certificate_id="URN:UVCI:01:VN:NOPE#A", paper_size=ppb.PAPER_SIZE_A6),
            metadata=bearer(partner["token"]),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(err.value) == "CERTIFICATE_NOT_FOUND"
    assert await document_reads(db, partner) == []


async def test_the_operator_cli_writes_the_same_document_and_records_the_read(platform, database_url, db, tmp_path):
    partner = await new_partner(database_url, personal_data_access=True)
    event = await released_certificate(platform, partner, 9630)
    keys = {"PII_KEYS": platform.env["PII_KEYS"]}
    out = tmp_path / "print" / "giay-chung-nhan.pdf"
    out.parent.mkdir()

    def document(*args: str, keys=keys) -> subprocess.CompletedProcess:
        return run_admin(database_url, keys, "certificate", "document", *args, timeout=60)

    done = json_lines(
        document(event.certificate.certificate_id, "--size", "a6", "--out", str(out), "--operator", "lan.nguyen")
    )
    assert done == [
        {
            "certificate_id": event.certificate.certificate_id,
            "result_id": event.result.result_id,
            "status": "VALID",
            "expires_at": event.certificate.expires_at.ToDatetime(tzinfo=UTC).isoformat(),
            "paper": "A6",
            "out": str(out.resolve()),
            "bytes": out.stat().st_size,
        }
    ]
    assert os.stat(out).st_mode & 0o077 == 0  # a name and a birth date: readable by its owner only
    text = assert_reads_as_the_certificate(out.read_bytes(), "A6", event.certificate.qr, tmp_path)
    assert "Nguyễn Văn An" in text and "Họ và tên / Name" in text

    # The read is audited under the operator's name, as the `reads` command shows it.
    rows = await db.fetch(
        "SELECT a.principal_kind, o.name, a.result_ids, a.detail FROM personal_data_reads a "
        "JOIN operators o ON o.id = a.principal_id WHERE a.purpose = 'DOCUMENT_RENDER' AND o.name = 'lan.nguyen'"
    )
    assert [(r["principal_kind"], r["name"], [str(x) for x in r["result_ids"]], r["detail"]) for r in rows] == [
        ("OPERATOR", "lan.nguyen", [event.result.result_id], {"paper": "A6"})
    ]

    # Refusals: no keys, an unknown certificate (no read recorded), a malformed id, a paper size and no --out.
    missing_keys = document(event.certificate.certificate_id, "--out", str(out), "--operator", "lan.nguyen", keys={})
    assert missing_keys.returncode == 1 and "PII_KEYS" in missing_keys.stderr
    unknown = document("URN:UVCI:01:VN:NOPE#A", "--out", str(tmp_path / "x.pdf"), "--operator", "lan.nguyen")
    assert unknown.returncode == 1 and "no certificate" in unknown.stderr
    assert not (tmp_path / "x.pdf").exists() and not list(out.parent.glob(".certificate-*"))
    malformed = document("URN:UVCI:\x01", "--out", str(tmp_path / "x.pdf"), "--operator", "lan.nguyen")
    assert malformed.returncode == 1 and "certificate_id" in malformed.stderr
    assert (
        document(event.certificate.certificate_id, "--size", "A5", "--out", str(out), "--operator", "x").returncode == 2
    )
    assert document(event.certificate.certificate_id, "--operator", "lan.nguyen").returncode == 2
    assert len(rows) == len(
        await db.fetch(
            "SELECT 1 FROM personal_data_reads a JOIN operators o ON o.id = a.principal_id WHERE o.name = 'lan.nguyen'"
        )
    )
