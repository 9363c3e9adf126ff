"""Unique vaccination/test certificate identifiers (UVCI, DCC field `ci`).

Ours look like `URN:UVCI:01:VN:<unique>#<check>`: version 01, country VN, an opaque unique part of 25
characters A–Z0–9 (16 random bytes in base 36), then `#` and a check character. The check character is
Luhn mod N with N = 38 over the alphabet `A–Z 0–9 / :`, computed over the whole text before `#`
including the `URN:UVCI:` prefix (eHealth Network UVCI guidelines, Annex 2; the DCC schema repository's
examples do the same).
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:"
_N = len(ALPHABET)  # 38
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UNIQUE_LENGTH = 25  # 36**25 > 2**128
MAX_LENGTH = 80
PREFIX = "URN:UVCI:01:VN:"

_FORMAT = re.compile(r"URN:UVCI:01:[A-Z]{2}:[A-Z0-9/:]+#[A-Z0-9/:]")


def check_character(text: str) -> str:
    """The Luhn mod 38 check character of `text` (the UVCI before `#`, prefix included).

    Raises ValueError if `text` has a character outside the UVCI alphabet (upper case only).
    """
    total = 0
    factor = 2  # the rightmost character is doubled
    try:
        for ch in reversed(text):
            addend = factor * _INDEX[ch]
            total += addend // _N + addend % _N
            factor = 3 - factor
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is not allowed in a UVCI") from None
    return ALPHABET[(_N - total % _N) % _N]


def new_uvci() -> str:
    """A new random UVCI `URN:UVCI:01:VN:<25 characters>#<check>` (42 characters)."""
    value = int.from_bytes(secrets.token_bytes(16), "big")
    digits = []
    for _ in range(_UNIQUE_LENGTH):
        value, digit = divmod(value, 36)
        digits.append(_BASE36[digit])
    body = PREFIX + "".join(reversed(digits))
    return f"{body}#{check_character(body)}"


def is_valid(uvci: str) -> bool:
    """Whether `uvci` is `URN:UVCI:01:<country>:<unique>#<check>`, at most 80 characters, with a correct
    check character."""
    if not isinstance(uvci, str) or len(uvci) > MAX_LENGTH or not _FORMAT.fullmatch(uvci):
        return False
    body, _, check = uvci.rpartition("#")
    return check_character(body) == check
