"""The printable certificate: one HCERT as a PDF on A4 or A6, for a sampling site to print and hand over.

The page holds the QR code and what a person reads, every label Vietnamese first, then English ("Họ và tên /
Name"). Every field is taken from the HCERT itself (decoded with services.hcert.decode), never from the
database, so the paper says exactly what the QR says:

- name: `nam.fn` + `nam.gn` as written, and the ICAO 9303 transliteration `fnt<<gnt`;
- date of birth `dob` (as in the DCC: YYYY-MM-DD, YYYY-MM or YYYY);
- test type `tt` (NAAT or rapid antigen) with the NAAT name `nm` or the rapid-test device `ma` (its name from
  the shipped value set when the code is in it), result `tr`, sample collection `sc` in Vietnam time (UTC+7,
  the zone printed), testing centre `tc`, certificate id `ci` (the UVCI), issuer `is`;
- valid until: the CWT `exp`, in Vietnam time;
- the status when printed. A REVOKED certificate (and one already past `exp`) still prints, with a red
  banner "ĐÃ THU HỒI – KHÔNG CÒN GIÁ TRỊ / REVOKED – NOT VALID" ("ĐÃ HẾT HẠN … / EXPIRED …") at the top and
  the same words as its status: the QR stays on the page (a checkpoint that scans it answers REVOKED), the
  paper says plainly not to rely on it.

The QR is drawn as vector squares (sharp at any printer resolution), the same symbol services.hcert.qr makes
(alphanumeric mode, error correction Q, a 4-module quiet zone): 90 mm wide on A4 and 56 mm on A6, about 0.9
and 0.55 mm a module for a typical certificate, and wider where needed so that no module is smaller than
MIN_MODULE_MM (0.5 mm). To keep to one page the text shrinks (down to 62 %), never the QR.

Text is set in DejaVu Sans, embedded (subset) in the PDF, which covers Vietnamese; a character the font
lacks prints as "?" (the QR keeps it). The font comes from the Debian package fonts-dejavu-core
(FONT_REGULAR, FONT_BOLD); without it `render` raises FontMissing, which names the package.

Rendering takes 0.3–0.5 s of CPU (the font is parsed and subset per document, the layout measured): callers
on an event loop run it in a thread.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from fpdf import FPDF
from fpdf.drawing import PaintedPath
from fpdf.enums import PathPaintRule, XPos, YPos
from fpdf.fonts import TTFFont

from services.hcert import qr, valuesets
from services.hcert.decode import DecodedHcert, decode

# The font: DejaVu Sans covers Latin with every Vietnamese letter (Latin Extended Additional). From the
# Debian package fonts-dejavu-core (.ci/run and deploy/Dockerfile install it); never downloaded.
FONT_PACKAGE = "fonts-dejavu-core"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_REGULAR = FONT_DIR / "DejaVuSans.ttf"
FONT_BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"
MIN_TOKEN_PT = 4.0  # the smallest a one-token value (a UVCI) is set to keep it on one line (A6, all "W")
FAMILY = "DejaVuSans"

CONTENT_TYPE = "application/pdf"
VIETNAM_TIME = timezone(timedelta(hours=7), "UTC+7")
PAPER_SIZES = ("A4", "A6")

# DCC codes (value sets covid-19-lab-test-type and covid-19-lab-result) in both languages.
TEST_TYPES = {
    "LP6464-4": "Xét nghiệm PCR (NAAT) / PCR test (NAAT)",
    "LP217198-3": "Xét nghiệm nhanh kháng nguyên / Rapid antigen test",
}
RESULTS = {"260415000": "ÂM TÍNH / NEGATIVE", "260373001": "DƯƠNG TÍNH / POSITIVE"}
# The status as printed: (status line, banner headline, banner explanation).
STATUS_TEXT = {
    "VALID": ("Có giá trị khi in / Valid when printed", "", ""),
    "REVOKED": (
        "ĐÃ THU HỒI – KHÔNG CÒN GIÁ TRỊ / REVOKED – NOT VALID",
        "ĐÃ THU HỒI – KHÔNG CÒN GIÁ TRỊ / REVOKED – NOT VALID",
        "Chứng nhận này đã bị thu hồi, không dùng làm bằng chứng kết quả xét nghiệm. / "
        "This certificate has been revoked and is no proof of a test result.",
    ),
    "EXPIRED": (
        "ĐÃ HẾT HẠN – KHÔNG CÒN GIÁ TRỊ / EXPIRED – NOT VALID",
        "ĐÃ HẾT HẠN – KHÔNG CÒN GIÁ TRỊ / EXPIRED – NOT VALID",
        "Chứng nhận này đã hết hạn, không dùng làm bằng chứng kết quả xét nghiệm. / "
        "This certificate has expired and is no proof of a test result.",
    ),
}
TITLE = ("GIẤY CHỨNG NHẬN XÉT NGHIỆM COVID-19", "COVID-19 Test Certificate")
SUBTITLE = "Chứng nhận số theo chuẩn EU DCC / Digital certificate in the EU DCC format"
QR_CAPTION = "Quét mã QR để kiểm tra chứng nhận / Scan the QR code to verify the certificate"
FOOTNOTE = (
    "Mã QR là căn cứ kiểm tra; thông tin in trên giấy chỉ để đọc. / "
    "The QR code is what is checked; the printed text is for reading only."
)
# Text sizes tried, largest first, until the page holds everything (the QR keeps its size).
TEXT_SCALES = (1.0, 0.93, 0.86, 0.8, 0.74, 0.68, 0.62)
LINE_MM_PER_PT = 0.45  # line height: 1.28 × the font size
MIN_MODULE_MM = 0.5  # the smallest QR module printed: phone cameras read 0.5 mm modules from paper reliably
RED, BLACK, GREY, RULE_GREY = (176, 0, 32), (0, 0, 0), (90, 90, 90), (200, 200, 200)


class FontMissing(RuntimeError):
    """The font file is not installed: install the Debian package FONT_PACKAGE."""


@dataclass(frozen=True, slots=True)
class Layout:
    """One paper size: page and margins (mm), QR width (mm), font sizes (pt), the label column (mm)."""

    width: float
    height: float
    margin: float
    qr_mm: float
    title_pt: float
    subtitle_pt: float
    banner_pt: float
    label_pt: float
    value_pt: float
    label_mm: float
    small_pt: float


LAYOUTS = {
    "A4": Layout(210, 297, 15, 90, 17, 9, 13, 9, 11, 62, 8),
    "A6": Layout(105, 148, 5, 56, 9.5, 5.5, 7, 5.2, 6.6, 31, 4.8),
}


@dataclass(frozen=True, slots=True)
class Field:
    label: str  # "Vietnamese / English"
    value: str
    strong: bool = False


@dataclass(frozen=True, slots=True)
class Content:
    """What the page says, before layout: testable without reading a PDF."""

    validity: str  # VALID, REVOKED or EXPIRED (printed)
    fields: tuple[Field, ...]
    printed_at: str


def check_fonts() -> None:
    """FontMissing (naming the package to install) unless both font files are there."""
    missing = [str(p) for p in (FONT_REGULAR, FONT_BOLD) if not p.is_file()]
    if missing:
        raise FontMissing(
            f"the printable certificate needs the DejaVu Sans font ({', '.join(missing)} not found): "
            f"install the Debian package {FONT_PACKAGE} (apt-get install {FONT_PACKAGE})"
        )


def vietnam_time(moment: datetime) -> str:
    """ "2026-12-08 13:10 UTC+7": minutes, in Vietnam time, the zone stated."""
    return moment.astimezone(VIETNAM_TIME).strftime("%Y-%m-%d %H:%M UTC+7")


def validity(status: str, expires_at: datetime, at: datetime) -> str:
    """What the paper says of the certificate at `at`: REVOKED above all, then EXPIRED, else VALID."""
    if status not in ("VALID", "REVOKED"):
        raise ValueError(f"unknown certificate status {status!r}")
    if status == "REVOKED":
        return "REVOKED"
    return "EXPIRED" if at >= expires_at else "VALID"


@functools.cache
def _device_names() -> dict[str, str]:
    """Rapid-test device names by DCC `ma` code, from the shipped value set (a code not in it prints alone)."""
    try:
        return {code: str(entry.get("display", "")) for code, entry in valuesets.load("test-manf-example").items()}
    except (OSError, ValueError, KeyError, AttributeError):
        return {}


def _dcc_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def content(decoded: DecodedHcert, status: str, printed_at: datetime) -> Content:
    """The page's fields from a decoded test certificate. ValueError if it holds no test entry."""
    if decoded.entry_type != "TEST" or decoded.expires_at is None:
        raise ValueError("a printable certificate is made of a DCC test entry with an expiry")
    dcc, test = decoded.dcc, decoded.dcc["t"][0]
    names: dict = dcc["nam"] if isinstance(dcc.get("nam"), dict) else {}
    full_name = " ".join(str(names[k]) for k in ("fn", "gn") if names.get(k))
    standardised = "<<".join(str(names[k]) for k in ("fnt", "gnt") if names.get(k))
    expires_at = datetime.fromtimestamp(decoded.expires_at, UTC)
    printed = validity(status, expires_at, printed_at)
    fields = [
        Field("Họ và tên / Name", full_name or "—", strong=True),
        Field("Họ tên chuẩn hoá (ICAO) / Standardised name", standardised or "—"),
        Field("Ngày sinh / Date of birth", str(dcc.get("dob") or "—")),
        Field("Loại xét nghiệm / Test type", TEST_TYPES.get(str(test.get("tt")), str(test.get("tt", "—")))),
    ]
    if test.get("nm"):
        fields.append(Field("Tên xét nghiệm / Test name", str(test["nm"])))
    if test.get("ma"):
        code = str(test["ma"])
        name = _device_names().get(code, "")
        fields.append(Field("Bộ xét nghiệm / Test device", f"{code} – {name}" if name else code))
    collected = _dcc_time(test.get("sc"))
    fields += [
        Field("Kết quả / Result", RESULTS.get(str(test.get("tr")), str(test.get("tr", "—"))), strong=True),
        Field(
            "Lấy mẫu lúc (giờ Việt Nam) / Sample collected (Vietnam time)",
            vietnam_time(collected) if collected else str(test.get("sc", "—")),
        ),
        Field("Nơi xét nghiệm / Testing centre", str(test.get("tc") or "—")),
        Field("Mã chứng nhận / Certificate ID", str(test.get("ci") or "—")),
        Field("Có giá trị đến (giờ Việt Nam) / Valid until (Vietnam time)", vietnam_time(expires_at)),
        Field("Đơn vị cấp / Issuer", str(test.get("is") or "—")),
        Field("Trạng thái / Status", STATUS_TEXT[printed][0], strong=True),
    ]
    return Content(printed, tuple(fields), vietnam_time(printed_at))


def render(qr_text: str, *, status: str, paper: str = "A4", printed_at: datetime | None = None) -> bytes:
    """The PDF of the certificate whose HCERT is `qr_text` ("HC1:…"), `status` VALID or REVOKED (as stored),
    on `paper` A4 or A6. ValueError for anything else (or a text that is no decodable test certificate),
    FontMissing without the font."""
    if paper not in LAYOUTS:
        raise ValueError(f"paper must be one of {', '.join(PAPER_SIZES)}, not {paper!r}")
    check_fonts()
    printed_at = printed_at or datetime.now(UTC)
    page = content(decode(qr_text), status, printed_at)
    return _Page(LAYOUTS[paper], printed_at).draw(qr_text, page)


class _Page:
    """Draws one Content top to bottom. Text sizes shrink (never the QR) until the page holds everything: the
    layout runs once per text scale without drawing (`dry`), measuring, then once for real."""

    def __init__(self, layout: Layout, printed_at: datetime):
        self.layout = layout
        pdf = FPDF(orientation="P", unit="mm", format=(layout.width, layout.height))
        pdf.set_margins(layout.margin, layout.margin, layout.margin)
        pdf.set_auto_page_break(False)  # rows are placed here: a row that would not fit starts a new page
        pdf.add_font(FAMILY, "", str(FONT_REGULAR))
        pdf.add_font(FAMILY, "B", str(FONT_BOLD))
        pdf.set_font(FAMILY, "", layout.value_pt)
        pdf.set_creation_date(printed_at)
        pdf.set_lang("vi")
        pdf.set_title(f"{TITLE[0]} / {TITLE[1]}")  # no name in the metadata
        pdf.set_creator("covidtest platform")
        pdf.add_page()  # the first page is there before measuring: fpdf2 measures text on a page
        self.pdf = pdf
        font = pdf.current_font
        assert isinstance(font, TTFFont)  # the embedded TrueType font just set
        self.glyphs = set(font.cmap)
        self.inner = layout.width - 2 * layout.margin
        self.bottom = layout.height - layout.margin
        self.scale, self.dry, self.y = 1.0, False, 0.0
        self.measured: dict[tuple[str, float, float, str], float] = {}

    def draw(self, qr_text: str, page: Content) -> bytes:
        matrix = [list(row) for row in qr.make(qr_text).matrix_iter(border=qr.BORDER)]
        for scale in TEXT_SCALES:
            self.scale, self.dry = scale, True
            if self.page(matrix, page) <= self.bottom:
                break
        self.dry = False
        self.page(matrix, page)
        return bytes(self.pdf.output())

    def page(self, matrix: list[list[int]], page: Content) -> float:
        """Lays the page out from the top (drawing it unless dry); returns where it ended (mm from the top)."""
        layout, k = self.layout, self.scale
        self.y = layout.margin
        self.banner(page.validity)
        self.block(TITLE[0], layout.title_pt * k, style="B", align="C")
        self.block(TITLE[1], layout.title_pt * 0.8 * k, align="C")
        self.block(SUBTITLE, layout.subtitle_pt * k, color=GREY, align="C")
        self.y += layout.margin * 0.3 * k
        self.qr_code(matrix)
        self.block(QR_CAPTION, layout.small_pt * k, color=GREY, align="C")
        self.y += layout.margin * 0.4 * k
        for field in page.fields:
            self.row(field, page.validity)
        self.y += layout.margin * 0.4 * k
        self.block(f"In lúc / Printed at: {page.printed_at}", layout.small_pt * k, color=GREY)
        self.block(FOOTNOTE, layout.small_pt * k, color=GREY)
        return self.y

    def text(self, value: str) -> str:
        """The text as the font can print it: NFC (precomposed Vietnamese letters), "?" for what it lacks."""
        return "".join(
            c if c.isprintable() and (c == " " or ord(c) in self.glyphs) else "?"
            for c in unicodedata.normalize("NFC", value)
        )

    def block(
        self, value: str, size: float, *, style: str = "", color=BLACK, align: str = "L", x=None, width=None
    ) -> float:
        """A paragraph at self.y, across the page or in the column (x, width); moves self.y below it and
        returns its height."""
        pdf, x, width = self.pdf, self.layout.margin if x is None else x, width or self.inner
        text = self.text(value)
        pdf.set_font(FAMILY, style, size)
        room = width - 2 * pdf.c_margin  # multi_cell keeps a cell margin on each side
        if text and " " not in text and pdf.get_string_width(text) > room:
            # One token (a UVCI): set smaller rather than broken, so it reads — and copies — as one piece.
            size = max(min(size, MIN_TOKEN_PT), size * room / pdf.get_string_width(text) * 0.98)
            pdf.set_font(FAMILY, style, size)
        line = size * LINE_MM_PER_PT
        key = (text, width, size, style)
        if key not in self.measured:  # every block is measured once, however many layout passes ask
            lines = pdf.multi_cell(width, line, text, dry_run=True, output="LINES")
            assert isinstance(lines, list)  # output="LINES": the lines the text breaks into
            self.measured[key] = len(lines) * line
        height = self.measured[key]
        if not self.dry:
            pdf.set_text_color(*color)
            pdf.set_xy(x, self.y)
            pdf.multi_cell(width, line, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.y += height
        return height

    def banner(self, validity: str) -> None:
        """The red box of a certificate that is not valid; nothing for a valid one."""
        _, headline, explanation = STATUS_TEXT[validity]
        if not headline:
            return
        layout, pdf, k = self.layout, self.pdf, self.scale
        pad, top, dry = layout.banner_pt * 0.2 * k, self.y, self.dry
        if not dry:  # measure the text first, then paint the box and the text over it
            self.dry = True
            self.banner(validity)
            height, self.y, self.dry = self.y - top - pad, top, False
            pdf.set_fill_color(*RED)
            pdf.rect(layout.margin, top, self.inner, height, style="F")
        self.y += pad
        white, x, width = (255, 255, 255), layout.margin + pad, self.inner - 2 * pad
        self.block(headline, layout.banner_pt * k, style="B", color=white, align="C", x=x, width=width)
        self.block(explanation, layout.small_pt * k, color=white, align="C", x=x, width=width)
        self.y += 2 * pad  # below the text inside the box, then a gap

    def qr_code(self, matrix: list[list[int]]) -> None:
        """The QR symbol, centred, as one filled path of dark runs (no seams between modules when rasterised)."""
        layout, pdf = self.layout, self.pdf
        # The layout's width, wider for a symbol with many modules (long names) up to the text width: every
        # module is at least MIN_MODULE_MM, whatever the version (40, the largest, fits A6 so).
        width = min(self.inner, max(layout.qr_mm, MIN_MODULE_MM * len(matrix)))
        module = width / len(matrix)
        left, top = (layout.width - width) / 2, self.y
        self.y += width
        if self.dry:
            return
        path = PaintedPath()
        path.style.paint_rule = PathPaintRule.FILL_NONZERO
        path.style.fill_color = "#000000"
        for r, row in enumerate(matrix):
            c = 0
            while c < len(row):
                if not row[c]:
                    c += 1
                    continue
                start = c
                while c < len(row) and row[c]:
                    c += 1
                path.rectangle(left + start * module, top + r * module, (c - start) * module, module)
        with pdf.drawing_context() as drawing:
            drawing.add_item(path, False)  # a fresh path: no defensive deep copy of its thousands of squares

    def row(self, field: Field, validity: str) -> None:
        """One bilingual label and its value side by side, above a hairline. A row that would not fit starts a
        new page (only if no text scale makes the page hold everything)."""
        layout, pdf, k = self.layout, self.pdf, self.scale
        value_style = "B" if field.strong else ""
        gap, pad = layout.label_mm * 0.08, layout.value_pt * 0.075 * k
        value_x = layout.margin + layout.label_mm + gap
        value_mm = self.inner - layout.label_mm - gap
        if not self.dry:
            dry_top = self.y
            self.dry = True
            self.row(field, validity)
            height, self.y, self.dry = self.y - dry_top, dry_top, False
            if self.y + height > self.bottom:
                pdf.add_page()
                self.y = layout.margin
                self.banner(validity)
            pdf.set_draw_color(*RULE_GREY)
            pdf.set_line_width(0.1)
            pdf.line(layout.margin, self.y, layout.width - layout.margin, self.y)
        top = self.y + pad
        self.y = top
        label_h = self.block(field.label, layout.label_pt * k, color=GREY, width=layout.label_mm)
        self.y = top
        not_valid = field.label.startswith("Trạng thái") and validity != "VALID"
        value_h = self.block(
            field.value,
            layout.value_pt * k,
            style=value_style,
            color=RED if not_valid else BLACK,
            x=value_x,
            width=value_mm,
        )
        self.y = top + max(label_h, value_h) + pad
