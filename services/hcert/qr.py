"""QR rendering of HCERT text: alphanumeric mode, error correction Q (never boosted), quiet zone 4."""

from __future__ import annotations

import io

import segno

BORDER = 4  # modules of quiet zone, the QR minimum
FORMATS = ("png", "svg")


def make(text: str) -> segno.QRCode:
    """The QR code for `text`; ValueError if it is not in the QR alphanumeric character set
    (0–9, A–Z, space, $ % * + - . / :), as every "HC1:" text is."""
    return segno.make(text, mode="alphanumeric", error="q", boost_error=False, micro=False)


def render(text: str, fmt: str = "png", scale: int = 4) -> bytes:
    """The QR code as a PNG or SVG document, `scale` pixels (SVG units) per module."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown QR format {fmt!r}: png or svg")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError("scale must be a positive integer")
    out = io.BytesIO()
    make(text).save(out, kind=fmt, scale=scale, border=BORDER)
    return out.getvalue()


def terminal(text: str) -> str:
    """A compact rendering for a terminal: two modules per character cell using half-block characters
    (light modules are drawn as blocks, so it reads correctly on a dark background)."""
    out = io.StringIO()
    make(text).terminal(out=out, border=BORDER, compact=True)
    return out.getvalue()
