"""Conversions between protobuf values and Python domain values (enums by name, timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from services.common.errors import FieldViolation, InvalidArgument

E = TypeVar("E", bound=int)


def enum_name(enum_type: Any, value: int) -> str:
    """ROLE_SAMPLER → "SAMPLER": the domain name of a proto enum value ("" for UNSPECIFIED/unknown)."""
    try:
        full = enum_type.Name(value)
    except ValueError:
        return ""
    prefix = enum_type.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
    name = full.removeprefix(prefix)
    return "" if name == "UNSPECIFIED" else name


_ENUM_VALUES: dict[tuple[Any, str], Any] = {}


def enum_value(enum_type: type[E], name: str) -> E:
    """ "SAMPLER" → ROLE_SAMPLER. Remembered per (enum, name): the verify hot path converts several per scan."""
    key = (enum_type, name)  # the generated enum wrapper, one per enum type
    value = _ENUM_VALUES.get(key)
    if value is None:
        prefix = enum_type.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")  # type: ignore[attr-defined]
        value = _ENUM_VALUES[key] = enum_type.Value(prefix + name)  # type: ignore[attr-defined]
    return value


def timestamp(value: datetime | None) -> Timestamp | None:
    """An aware (or UTC-naive) datetime as a Timestamp. Direct arithmetic: FromDatetime is slow on hot paths."""
    if value is None:
        return None
    converted = Timestamp()
    set_timestamp(converted, value)
    return converted


def set_timestamp(target: Timestamp, value: datetime) -> None:
    """Set a message's Timestamp field in place to an aware (or UTC-naive) datetime."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    target.seconds = int(value.timestamp() // 1)
    target.nanos = value.microsecond * 1000


def to_datetime(ts: Timestamp, field: str = "timestamp") -> datetime:
    """An aware UTC datetime; a Timestamp outside years 1-9999 (or with bad nanos) is INVALID_ARGUMENT."""
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(
            f"{field} is not a valid time",
            [FieldViolation(field, "seconds within years 1-9999, nanos 0-999999999", "FIELD_OUT_OF_RANGE")],
        ) from None
