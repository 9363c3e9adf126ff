"""decode_token: the tokens lists hand out still decode; crafted ones are PAGE_TOKEN_INVALID, never another error."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.common.errors import InvalidArgument
from services.common.paging import MAX_TOKEN_CHARS, _filters_digest, bigint, decode_token, encode_token

FILTERS = {"province_code": None}


def crafted(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def refused(token: str, parse=(str,)) -> None:
    with pytest.raises(InvalidArgument) as err:
        decode_token(token, FILTERS, parse)
    assert err.value.reason == "PAGE_TOKEN_INVALID"
    assert [(v.field, v.reason) for v in err.value.violations] == [("page_token", "PAGE_TOKEN_INVALID")]


def test_the_longest_valid_tokens_still_decode():
    # A device list's key with a 200-character name outside the BMP (12 JSON characters each).
    row_id, name = str(uuid.uuid4()), "𝔸" * 200
    token = encode_token(["24", name, row_id], FILTERS)
    assert len(token) < MAX_TOKEN_CHARS
    assert decode_token(token, FILTERS, (str, str, str)) == ["24", name, row_id]


def test_valid_keys_of_every_shape_round_trip():
    created, row_id = datetime(2026, 3, 1, 8, 30, tzinfo=UTC), uuid.uuid4()
    token = encode_token([created.isoformat(), str(row_id)], FILTERS)
    assert decode_token(token, FILTERS, (datetime.fromisoformat, uuid.UUID)) == [created, row_id]
    # An offset other than UTC is the same instant, given back in UTC.
    local = datetime(2026, 3, 1, 15, 30, tzinfo=timezone(timedelta(hours=7)))
    token = encode_token([local.isoformat(), str(row_id)], FILTERS)
    assert decode_token(token, FILTERS, (datetime.fromisoformat, uuid.UUID))[0] == created
    for version in (1, 2**63 - 1):
        assert decode_token(encode_token([version], FILTERS), FILTERS, (bigint,)) == [version]
    assert decode_token("", FILTERS, (bigint,)) is None


@pytest.mark.parametrize(
    ("key", "parse"),
    [
        ([2**63], (bigint,)),
        ([-(2**63) - 1], (bigint,)),
        (["9" * 40], (bigint,)),
        ([True], (bigint,)),
        ([1.0], (bigint,)),
        ([None], (str,)),
        (["a\x00b"], (str,)),
        ([2**70], (str,)),  # an integer element beyond bigint, whatever the parser
        (["0001-01-01T00:00:00+05:00"], (datetime.fromisoformat,)),
        (["9999-12-31T23:59:59-05:00"], (datetime.fromisoformat,)),
        (["2026-01-01T00:00:00"], (datetime.fromisoformat,)),
        ([["nested"]], (str,)),
        (["a", "b"], (str,)),
    ],
)
def test_crafted_keys_are_page_token_invalid(key, parse):
    # With the right digest, so that only the key itself can be what is refused.
    refused(crafted(json.dumps({"k": key, "f": _filters_digest(FILTERS)}).encode()), parse)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"k":' + b"[" * 2000 + b"]" * 2000 + b',"f":""}',
        b'{"k":[{"a":{"b":1}}],"f":""}',
        b'{"k":["x"],"f":7}',
        b'["k","f"]',
        b"\xff\xfe",
    ],
)
def test_crafted_payloads_are_page_token_invalid(payload):
    refused(crafted(payload))


def test_an_oversized_token_is_refused_before_it_is_parsed():
    refused("W" * (MAX_TOKEN_CHARS + 1))
    refused("\x00")


def test_brackets_inside_strings_do_not_count_as_nesting():
    token = encode_token(['[[["{x}"]]]\\"[['], FILTERS)
    assert decode_token(token, FILTERS, (str,)) == ['[[["{x}"]]]\\"[[']
