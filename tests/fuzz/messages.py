"""Hypothesis strategies that build protobuf messages from descriptors alone (as found through server
reflection): every field type with its extremes, oneofs with at most one member set, repeated fields
with duplicates, nested messages to a bounded depth, google.protobuf.Timestamp/Duration with extreme
seconds and nanos, and mutations of valid seed requests (a field anywhere inside replaced, cleared or —
a string — bent by one character, or an element of a repeated field duplicated)."""

from __future__ import annotations

import base64
import math

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
MAX_DEPTH = 4
MAX_REPEATED = 6


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    extremes = sorted({low, high, 0, 1, max(low, -1), high - 1, low + 1, min(high, 2**31 - 1), min(high, 2**53 + 1)})
    extremes = [v for v in extremes if low <= v <= high]
    return st.one_of(st.sampled_from(extremes), st.integers(low, high), st.integers(max(low, -1000), min(high, 1000)))


_B64 = base64.urlsafe_b64encode
INTERESTING_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\r\n",
    "\x1b[31m\x7f\x85\x9b",
    "\u202eevil\u202c",  # RTL override
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "Nguyễn Văn An",
    "😷🧪" * 50,
    "\ufeff\u200b\u2028\u2029",
    "\U0010ffff\ud7ff\ue000",
    "x" * 10_000,
    "é" * 5_000,
    "0" * 10_241,
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "6ba7b8109dad11d180b400c04fd430c8",
    "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
    "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "F-0123456789",
    "POOL-abcdef0123",
    "URN:UVCI:01:VN:ABC123#X",
    "HC1:",
    "HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH-R6IOO",
    "HC1:" + "6BF" * 1500,
    "HC2:6BFOXN",
    "hc1:6BFOXN*TS0BI$ZD.P9UOL97O4-2HH77HRM3DSPTLRR+%3.ABD",
    "ctk_" + "A" * 43,
    "Bearer x",
    _B64(b'{"k":[1],"f":"x"}').decode(),
    _B64(b'{"k":[null],"f":null}').decode(),
    _B64(b'{"k":["' + b"\\u0000" + b'"],"f":""}').decode(),
    _B64(b'{"k":[9223372036854775808],"f":""}').decode(),
    _B64(b'{"k":["9999-12-31T23:59:59+00:00",1],"f":""}').decode(),
    _B64(b"[" * 5000 + b"]" * 5000).decode(),
    _B64(b"\xff\xfe\x00").decode(),
    "====",
    "!!notbase64!!",
    '{"a": 1}',
    "[]",
    "null",
    "NaN",
    "-1",
    "9" * 40,
    "+84912345678",
    "0912345678",
    "1985-02-29",
    "0000-00-00",
    "9999-12-31",
    "24",
    "VN",
    "' OR '1'='1",
    "%s%n%x",
    "../../etc/passwd",
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
]
_CHARS = st.one_of(
    st.sampled_from("\x00\x01\x07\t\n\r\x0b\x1b\x1f\x7f\x85\x9b\u200b\u202e\ufeff -:{}\"'\\%"),
    st.characters(codec="utf-8", exclude_categories=("Cs",)),
)
TEXT = st.one_of(
    st.sampled_from(INTERESTING_TEXT),
    st.text(alphabet=_CHARS, max_size=40),
    st.text(alphabet=st.sampled_from("0123456789ABCDEF-"), min_size=1, max_size=40),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\x00", "😷", "9", "é"]), st.integers(0, 10_240)),
)
BYTES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\x00", b"\xff" * 10_000, b"0\x82\x01\x00", b"-----BEGIN CERTIFICATE-----\n"]),
    st.builds(lambda n: bytes(range(256)) * n, st.integers(0, 40)),
)
FLOAT = st.one_of(
    st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 3.4028235e38, 1e39, 45.0]),
    st.floats(),
)
FLOAT32 = st.one_of(
    st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 3.4028234663852886e38, -1.0, 1e-45, 45.0]),
    st.floats(width=32),
)
# Seconds around the edges: Timestamp's valid range (0001-01-01 .. 9999-12-31), just beyond it, int64.
SECONDS = st.one_of(
    st.sampled_from(
        [0, 1, -1, 253402300799, 253402300800, -62135596800, -62135596801, 315576000000, 315576000001, 10**12]
        + [2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 2**53]
    ),
    st.integers(*INT64),
    st.integers(-(10**10), 10**11),
)
NANOS = st.one_of(st.sampled_from([0, 1, -1, 999_999_999, 1_000_000_000, -999_999_999, *INT32]), st.integers(*INT32))


def _time_like(cls: type[Message], seconds_now: int) -> st.SearchStrategy[Message]:
    near_now = st.integers(seconds_now - 10 * 365 * 86400, seconds_now + 86400)
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), st.one_of(SECONDS, near_now), st.one_of(NANOS, st.just(0)))


class MessageStrategies:
    """Strategies for the messages of one descriptor pool (the one reflection built)."""

    def __init__(self, seconds_now: int):
        self._now = seconds_now
        self._cache: dict[tuple[str, int], st.SearchStrategy] = {}

    def scalar(self, field: FieldDescriptor) -> st.SearchStrategy:
        t = field.type
        if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
            return _integers(*INT32)
        if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
            return _integers(*INT64)
        if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
            return _integers(*UINT32)
        if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
            return _integers(*UINT64)
        if t == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if t == FieldDescriptor.TYPE_FLOAT:
            return FLOAT32
        if t == FieldDescriptor.TYPE_DOUBLE:
            return FLOAT
        if t == FieldDescriptor.TYPE_STRING:
            return TEXT
        if t == FieldDescriptor.TYPE_BYTES:
            return BYTES
        if t == FieldDescriptor.TYPE_ENUM:
            known = [v.number for v in field.enum_type.values]
            # Open (proto3) enums carry unknown numbers too.
            return st.one_of(st.sampled_from(known), _integers(*INT32))
        raise AssertionError(f"unhandled field type {t} of {field.full_name}")

    def value(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy:
        """One value of `field` (an element, for a repeated field)."""
        if field.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP):
            return self.message(field.message_type, depth + 1)
        return self.scalar(field)

    def message(self, descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        key = (descriptor.full_name, depth)
        if key not in self._cache:
            cls = GetMessageClass(descriptor)
            if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
                strategy = _time_like(cls, self._now)
            elif depth > MAX_DEPTH:
                strategy = st.just(cls())
            else:
                strategy = self._composite(descriptor, cls, depth)
            self._cache[key] = strategy
        return self._cache[key]

    def _composite(self, descriptor: Descriptor, cls, depth: int) -> st.SearchStrategy[Message]:
        @st.composite
        def build(draw) -> Message:
            message = cls()
            for oneof in descriptor.oneofs:  # real and synthetic (proto3 `optional`): at most one member
                choice = draw(st.sampled_from([None, *oneof.fields]))
                if choice is not None:
                    self.assign(message, choice, draw(self.field_value(choice, depth)))
            for field in descriptor.fields:
                if field.containing_oneof is None and draw(st.integers(0, 3)):
                    self.assign(message, field, draw(self.field_value(field, depth)))
            return message

        return build()

    def field_value(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy:
        """The whole value of `field`: a list for a repeated field (with the same item twice at times)."""
        if not field.is_repeated:
            return self.value(field, depth)
        items = st.lists(self.value(field, depth), max_size=MAX_REPEATED)
        return st.one_of(items, items.filter(bool).map(lambda xs: xs + xs[:1]))

    @staticmethod
    def assign(message: Message, field: FieldDescriptor, value) -> None:
        if field.is_repeated:
            container = getattr(message, field.name)
            del container[:]
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for entry in value:
                    k, v = entry.key, entry.value
                    if field.message_type.fields_by_name["value"].message_type is not None:
                        container[k].CopyFrom(v)
                    else:
                        container[k] = v
            elif field.message_type is not None:
                for item in value:
                    container.add().CopyFrom(item)
            else:
                container.extend(value)
        elif field.message_type is not None:
            getattr(message, field.name).CopyFrom(value)
        else:
            setattr(message, field.name, value)

    def mutant(self, seeds: list[Message]) -> st.SearchStrategy[Message]:
        """A valid seed with one to three changes: a field (anywhere inside) replaced by a drawn value or
        cleared, or an element of a repeated field appended again (a duplicate)."""

        @st.composite
        def build(draw) -> Message:
            message = draw(st.sampled_from(seeds))
            message = type(message).FromString(message.SerializeToString())  # a copy
            for _ in range(draw(st.integers(1, 3))):
                spots = list(_spots(message))
                holder, field = draw(st.sampled_from(spots))
                action = draw(st.sampled_from(["replace", "replace", "replace", "bend", "clear", "duplicate"]))
                if action == "bend" and field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
                    setattr(holder, field.name, draw(_bent(getattr(holder, field.name))))
                elif action == "clear":
                    holder.ClearField(field.name)
                elif action == "duplicate" and field.is_repeated:
                    container = getattr(holder, field.name)
                    if len(container):
                        item = container[draw(st.integers(0, len(container) - 1))]
                        if field.message_type is not None:
                            container.add().CopyFrom(item)
                        else:
                            container.append(item)
                else:
                    self.assign(holder, field, draw(self.field_value(field, 1)))
            return message

        return build()


def _bent(value: str) -> st.SearchStrategy[str]:
    """`value` cut short, or with one character replaced or inserted: a token or id almost right."""
    at = st.integers(0, len(value))
    char = st.one_of(st.sampled_from('\x00=_-/+{}[]"0~é'), st.characters(codec="utf-8", exclude_categories=("Cs",)))
    return st.one_of(
        at.map(lambda i: value[:i]),
        st.tuples(at, char).map(lambda t: value[: t[0]] + t[1] + value[t[0] + 1 :]),
        st.tuples(at, char).map(lambda t: value[: t[0]] + t[1] + value[t[0] :]),
    )


def _spots(message: Message):
    """(holder, field) for every field of `message` and of the messages set inside it."""
    for field in message.DESCRIPTOR.fields:
        yield message, field
        if field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        if field.is_repeated:
            for item in getattr(message, field.name):
                yield from _spots(item)
        elif message.HasField(field.name):
            yield from _spots(getattr(message, field.name))


def short(value, limit: int = 1500) -> str:
    """repr of a request, truncated for an assertion message."""
    text = repr(value) if isinstance(value, bytes) else f"{type(value).__name__}<{_text(value)}>"
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _text(message: Message) -> str:
    try:
        from google.protobuf import text_format

        return text_format.MessageToString(message, as_one_line=True)
    except Exception:  # noqa: BLE001 - only a description for the failure message
        return repr(message)
