"""AIP-158 paging: page sizes and opaque page tokens.

A token carries the sort key of the last row returned (keyset paging: stable under inserts, no
OFFSET scans) and a digest of the request's filters, so a token replayed with other filters is
refused with PAGE_TOKEN_INVALID. Tokens are opaque to clients, but not secret: every query still
applies the caller's scope, so a crafted token can only move within what the caller may see.

A crafted token is PAGE_TOKEN_INVALID, never an error deeper down: its size and JSON nesting are
bounded before it is parsed (deep nesting would exhaust the parser's recursion), and every key
element must have the shape the list's own tokens have: text without NUL (Postgres refuses it), an
integer that fits a bigint, a timestamp with its offset that converts to UTC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from services.common.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# The longest token a list hands out is a device list's (province, a 200-character name written as
# JSON \u escapes, id) key: about 3,400 characters. Twice that leaves room without parsing megabytes.
MAX_TOKEN_CHARS = 8192
# {"k": [...], "f": "..."}: an object holding a list of scalars.
MAX_TOKEN_DEPTH = 2
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", [FieldViolation("page_size", "0..1000; 0 means 100")])
    return DEFAULT_PAGE_SIZE if requested == 0 else min(requested, MAX_PAGE_SIZE)


def _filters_digest(filters: object) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(last_key: list, filters: object) -> str:
    raw = json.dumps({"k": last_key, "f": _filters_digest(filters)}, default=str, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def bigint(value: object) -> int:
    """A key parser: an integer (or its digits) within Postgres bigint, else ValueError."""
    if isinstance(value, bool):
        raise ValueError("not an integer")
    number = int(value)  # type: ignore[call-overload]  # str or int: decode_token checked the element type
    if not BIGINT_MIN <= number <= BIGINT_MAX:
        raise ValueError("out of bigint range")
    return number


def _nesting(raw: str) -> int:
    """The deepest nesting of JSON arrays and objects in `raw`, brackets inside strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _checked(value: object) -> object:
    """A parsed key element as it may reach a query, else ValueError."""
    if isinstance(value, bool):
        raise ValueError("not a key")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL in text")  # no stored value holds one: Postgres refuses it
    if isinstance(value, int) and not BIGINT_MIN <= value <= BIGINT_MAX:
        raise ValueError("out of bigint range")
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("no offset")  # every token's timestamp is written with its offset
        return value.astimezone(UTC)  # OverflowError near year 1 or 9999: caught as invalid
    return value


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
    if len(token) > MAX_TOKEN_CHARS:
        raise _invalid()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if _nesting(raw) > MAX_TOKEN_DEPTH:
            raise ValueError
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError
        key, digest = data["k"], data["f"]
        if not isinstance(key, list) or not isinstance(digest, str):
            raise ValueError
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in key):
            raise ValueError
        # As written in the token (no list writes an integer beyond bigint) and as parsed (what reaches a query).
        key = [_checked(k) for k in key]
        if parse is not None:
            if len(key) != len(parse):
                raise ValueError
            key = [_checked(convert(k)) for convert, k in zip(parse, key)]
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError, binascii.Error):
        raise _invalid() from None
    if digest != _filters_digest(filters):
        raise InvalidArgument(
            "page_token belongs to a request with other filters",
            [FieldViolation("page_token", "keep every filter the same while paging", "PAGE_TOKEN_INVALID")],
            reason="PAGE_TOKEN_INVALID",
        )
    return key
