"""The checkpoint web page: a phone's browser scans a QR code with the camera and shows the verdict.

The page (static/checkpoint/) is plain HTML, CSS and JavaScript; it reads QR codes with zxing-wasm
(npm, MIT), whose script and .wasm are served from our own URLs, never from a CDN. It calls the
gateway's own /v1/rules and /v1/verify with the device's bearer token, so it needs nothing else from
the server. Only an explicit list of files is served: no directory listing, no path from the request
ever reaches the file system. Every response carries a strict Content-Security-Policy (no inline script
or style, nothing from another origin) and the headers that keep the page from being framed, sniffed
or cached.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from services.gateway.routes import ROUTE

PAGE_DIR = Path(__file__).resolve().parent / "static" / "checkpoint"
PAGE_PREFIX = "/checkpoint/"
HTML = "text/html; charset=utf-8"
# The page's own files: URL name → content type. Nothing else under PAGE_DIR is served.
PAGE_FILES = {
    "index.html": HTML,
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class _Asset:
    """One file served under a fixed URL."""

    path: Path
    content_type: str

    def load(self) -> tuple[bytes, str]:
        """The file's bytes and their ETag, read on first use and kept: a deployment never changes them."""
        body = self.path.read_bytes()
        return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _serve(asset: _Asset, url: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    cached: list[tuple[bytes, str]] = []

    async def handle(request: web.Request) -> web.Response:
        request[ROUTE] = url
        if not cached:
            try:
                cached.append(await asyncio.to_thread(asset.load))  # the .wasm is 1 MB: not on the loop
            except FileNotFoundError:
                raise web.HTTPNotFound(headers=SECURITY_HEADERS) from None
        body, etag = cached[0]
        # The HTML is never stored (it is the entry point: a fix must reach every phone at once); the
        # other files are revalidated on each load, so a stale app.js never runs with a new index.html.
        caching = "no-store" if asset.content_type == HTML else "no-cache"
        headers = {**SECURITY_HEADERS, "Cache-Control": caching, "ETag": etag}
        if caching == "no-cache" and etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers={**headers, "Content-Type": asset.content_type})

    return handle


def add_checkpoint_page(app: web.Application, assets_dir: Path) -> None:
    """Mount the checkpoint page: / and /checkpoint redirect to /checkpoint/, the page's own files under
    /checkpoint/, and zxing-wasm's reader (script and .wasm, from `assets_dir`, zxing-wasm's dist/) under
    /checkpoint/vendor/zxing/."""
    files = {name: _Asset(PAGE_DIR / name, kind) for name, kind in PAGE_FILES.items()}
    vendor = {
        "reader.js": _Asset(assets_dir / "iife" / "reader" / "index.js", "text/javascript; charset=utf-8"),
        "zxing_reader.wasm": _Asset(assets_dir / "reader" / "zxing_reader.wasm", "application/wasm"),
    }
    for name, asset in files.items():
        app.router.add_get(f"{PAGE_PREFIX}{name}", _serve(asset, f"{PAGE_PREFIX}{name}"))
    for name, asset in vendor.items():
        app.router.add_get(f"{PAGE_PREFIX}vendor/zxing/{name}", _serve(asset, f"{PAGE_PREFIX}vendor/zxing/{name}"))
    app.router.add_get(PAGE_PREFIX, _serve(files["index.html"], PAGE_PREFIX))

    async def to_page(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={**SECURITY_HEADERS, "Location": PAGE_PREFIX})

    app.router.add_get("/", to_page)
    app.router.add_get(PAGE_PREFIX.rstrip("/"), to_page)
