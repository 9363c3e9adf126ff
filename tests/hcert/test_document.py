"""services.hcert.document on its own: the printed page for certificates the services cannot easily make.

Longest names and texts (every free-text field at the schema's 80 characters, letters that compress badly)
still give one page whose QR reads back with modules of at least 0.5 mm; an expired certificate says so in
both languages; a character the font lacks prints as "?" and nothing of the name reaches the log; a missing
font is an error that names the Debian package.
"""

from __future__ import annotations

import logging
import random
import string
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import PIL.Image
import pytest
import zxingcpp

from services.hcert import codec, document, keys, payload, uvci
from services.hcert.decode import decode

DPI = 150


@pytest.fixture(scope="module")
def signer() -> codec.Signer:
    return codec.Signer(keys.SigningKeyMaterial.generate("ES256", timedelta(days=30)))


def hcert(signer: codec.Signer, *, expires_in: timedelta = timedelta(hours=72), **fields) -> str:
    args = dict(
        family_name="Nguyễn",
        given_name="Văn An",
        date_of_birth="1985-03-14",
        test_type="NAAT",
        rat_device_id=None,
        method="RT-PCR cobas",
        sample_collected_at=datetime.now(UTC) - timedelta(hours=3),
        outcome="NEGATIVE",
        testing_centre="CDC Bắc Giang",
        issuer="Ministry of Health of Viet Nam",
        uvci=uvci.new_uvci(),
    )
    args.update(fields)
    now = int(time.time())
    return codec.encode_hcert(
        payload.test_payload(**args),
        signer=signer,
        issued_at=now - 3600,
        expires_at=now + int(expires_in.total_seconds()),
    )


def printed(pdf: bytes, directory: Path) -> tuple[list[Path], str]:
    """(one PNG per page, the text layer with whitespace collapsed)."""
    source = directory / "c.pdf"
    source.write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", str(DPI), "-png", str(source), str(directory / "p")], check=True, timeout=60)
    text = subprocess.run(["pdftotext", str(source), "-"], capture_output=True, text=True, check=True).stdout
    return sorted(directory.glob("p*.png")), " ".join(text.split())


def scramble(n: int, seed: int) -> str:
    """n letters with Vietnamese diacritics in no pattern zlib can shorten (a long QR)."""
    rng = random.Random(seed)
    letters = string.ascii_uppercase + "ĂÂĐÊÔƠƯÁÀẢÃẠẮẰẲẴẶẤẦẨẪẬ"
    return "".join(rng.choice(letters) for _ in range(n))


@pytest.mark.parametrize("paper", ["A4", "A6"])
@pytest.mark.parametrize("status", ["VALID", "REVOKED"])
def test_the_longest_certificate_stays_on_one_page_with_a_readable_qr(signer, tmp_path, paper, status):
    text = hcert(
        signer,
        family_name=scramble(80, 1),
        given_name=scramble(80, 2),
        method=scramble(80, 3),
        testing_centre=scramble(80, 4),
        issuer=scramble(80, 5),
    )
    assert len(text) > 900  # a QR of version 25 or more: the 56 mm of A6 would make modules under 0.5 mm
    pages, layer = printed(document.render(text, status=status, paper=paper), tmp_path)
    assert len(pages) == 1
    codes = zxingcpp.read_barcodes(PIL.Image.open(pages[0]), formats=zxingcpp.BarcodeFormat.QRCode)
    assert [c.text for c in codes] == [text]
    modules = 17 + 4 * int(codes[0].extra["Version"])
    width_mm = (codes[0].position.top_right.x - codes[0].position.top_left.x) / DPI * 25.4
    assert width_mm / modules >= 0.49  # 0.5 mm, less a pixel of measuring
    assert "Họ và tên / Name" in layer and "Trạng thái / Status" in layer
    assert ("REVOKED – NOT VALID" in layer) is (status == "REVOKED")


def test_an_expired_certificate_prints_as_expired_in_both_languages(signer, tmp_path):
    text = hcert(signer, expires_in=timedelta(seconds=1))
    later = datetime.now(UTC) + timedelta(minutes=5)
    _, layer = printed(document.render(text, status="VALID", paper="A6", printed_at=later), tmp_path)
    assert layer.count("ĐÃ HẾT HẠN – KHÔNG CÒN GIÁ TRỊ / EXPIRED – NOT VALID") == 2
    assert "Valid when printed" not in layer
    assert document.content(decode(text), "REVOKED", later).validity == "REVOKED"  # revoked wins


def test_a_character_the_font_lacks_prints_as_a_question_mark_and_is_never_logged(signer, tmp_path, caplog):
    text = hcert(signer, family_name="Nguyễn 阮", given_name="Văn An")
    with caplog.at_level(logging.DEBUG):
        _, layer = printed(document.render(text, status="VALID"), tmp_path)
    assert "Nguyễn ? Văn An" in layer
    assert "阮" not in caplog.text and "Nguy" not in caplog.text


def test_times_are_printed_in_vietnam_time_with_the_zone():
    assert document.vietnam_time(datetime(2026, 12, 31, 20, 5, 59, tzinfo=UTC)) == "2027-01-01 03:05 UTC+7"


def test_a_missing_font_names_the_package_and_a_wrong_paper_size_is_refused(signer, monkeypatch):
    text = hcert(signer)
    with pytest.raises(ValueError, match="A4, A6"):
        document.render(text, status="VALID", paper="A5")
    with pytest.raises(ValueError, match="status"):
        document.render(text, status="EXPIRED")
    monkeypatch.setattr(document, "FONT_BOLD", Path("/nonexistent/DejaVuSans-Bold.ttf"))
    with pytest.raises(document.FontMissing, match="fonts-dejavu-core"):
        document.render(text, status="VALID")


@pytest.mark.parametrize("paper", ["A4", "A6"])
def test_the_widest_uvci_is_printed_whole_on_one_line(signer, tmp_path, paper):
    """A certificate id is one token: set smaller rather than broken across lines, so the printed text (and
    its text layer) holds it whole. "W" and "M" are the widest letters of the alphabet UVCIs use."""
    for filler in ("W" * 25, "M" * 25, "WM" * 12 + "W"):
        body = uvci.PREFIX + filler
        certificate_id = f"{body}#{uvci.check_character(body)}"
        pdf = document.render(hcert(signer, uvci=certificate_id), status="VALID", paper=paper)
        _, text = printed(pdf, tmp_path)
        assert certificate_id in text, (paper, certificate_id)
