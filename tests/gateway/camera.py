"""A fake camera for Chromium: a Y4M video (YUV4MPEG2, 4:2:0) that shows one QR code, for
`--use-file-for-fake-video-capture`. Chromium loops the file, so a few identical frames make a camera
that shows the code for as long as the test runs.

Pure Python (no numpy): the QR comes from the project's own renderer settings (services.hcert.qr:
alphanumeric mode, error correction Q, quiet zone of 4 modules), drawn in black on a white frame.
"""

from __future__ import annotations

from pathlib import Path

import segno

from services.hcert import qr

WIDTH, HEIGHT = 640, 480
FPS = 10
FRAMES = 3
# Video levels of BT.601 (what Chromium assumes for camera frames): black 16, white 235, no colour (128).
BLACK, WHITE, NEUTRAL = 16, 235, 128


def qr_rows(text: str) -> list[list[bool]]:
    """The QR code of `text` as rows of modules (True = dark), its quiet zone included. An "HC1:" text is
    rendered as the platform renders it (alphanumeric, level Q); anything else in byte mode."""
    code = qr.make(text) if _alphanumeric(text) else segno.make(text, error="q", micro=False)
    return [[bool(module) for module in row] for row in code.matrix_iter(scale=1, border=qr.BORDER)]


def _alphanumeric(text: str) -> bool:
    return all(c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:" for c in text)


def luma_plane(text: str, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """The Y plane of one frame: the code as large as fits in 90 % of the shorter side, centred on white."""
    rows = qr_rows(text)
    scale = int(min(width, height) * 0.9) // len(rows)
    if scale < 2:
        raise ValueError(f"a QR of {len(rows)} modules does not fit a {width}x{height} frame at 2 px per module")
    side = scale * len(rows)
    left, top = (width - side) // 2, (height - side) // 2
    white_row = bytes([WHITE]) * width
    plane = bytearray()
    plane += white_row * top
    margin_left, margin_right = bytes([WHITE]) * left, bytes([WHITE]) * (width - left - side)
    for row in rows:
        line = margin_left + b"".join(bytes([BLACK if dark else WHITE]) * scale for dark in row) + margin_right
        plane += line * scale
    plane += white_row * (height - top - side)
    assert len(plane) == width * height
    return bytes(plane)


def write_y4m(path: Path, text: str, *, width: int = WIDTH, height: int = HEIGHT, frames: int = FRAMES) -> Path:
    """Write a Y4M file of `frames` identical frames showing the QR code of `text`; returns `path`."""
    if width % 2 or height % 2:
        raise ValueError("4:2:0 needs an even width and height")
    luma = luma_plane(text, width, height)
    chroma = bytes([NEUTRAL]) * ((width // 2) * (height // 2))  # grey: the same for Cb and Cr
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{FPS}:1 Ip A1:1 C420\n".encode("ascii"))
        for _ in range(frames):
            out.write(b"FRAME\n")
            out.write(luma)
            out.write(chroma)
            out.write(chroma)
    return path
