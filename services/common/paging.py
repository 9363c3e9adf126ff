"""AIP-158 paging: page sizes and opaque page tokens.

A token carries the sort key of the last row returned (keyset paging: stable under inserts, no
OFFSET scans) and a digest of the request's filters, so a token replayed with other filters is
refused with PAGE_TOKEN_INVALID. Tokens are opaque to clients, but not secret: every query still
applies the caller's scope, so a crafted token can only move within what the caller may see.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence

from services.common.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", [FieldViolation("page_size", "0..1000; 0 means 100")])
    return DEFAULT_PAGE_SIZE if requested == 0 else min(requested, MAX_PAGE_SIZE)


def _filters_digest(filters: object) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(last_key: list, filters: object) -> str:
    raw = json.dumps({"k": last_key, "f": _filters_digest(filters)}, default=str, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _invalid() -> InvalidArgument:
    return InvalidArgument(
        "page_token is not valid",
        [FieldViolation("page_token", "use the next_page_token of the previous page", "PAGE_TOKEN_INVALID")],
        reason="PAGE_TOKEN_INVALID",
    )


def decode_token(token: str, filters: object, parse: Sequence[Callable] | None = None) -> list | None:
    """The last sort key of the previous page, or None for the first page.

    `parse` gives one parser per key element (e.g. `(datetime.fromisoformat, uuid.UUID)`): a token
    whose key does not parse is PAGE_TOKEN_INVALID here, never a database error later."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key, digest = data["k"], data["f"]
        if not isinstance(key, list):
            raise ValueError
        if parse is not None:
            if len(key) != len(parse) or not all(isinstance(k, (str, int)) for k in key):
                raise ValueError
            key = [convert(k) for convert, k in zip(parse, key)]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise _invalid() from None
    if digest != _filters_digest(filters):
        raise InvalidArgument(
            "page_token belongs to a request with other filters",
            [FieldViolation("page_token", "keep every filter the same while paging", "PAGE_TOKEN_INVALID")],
            reason="PAGE_TOKEN_INVALID",
        )
    return key
