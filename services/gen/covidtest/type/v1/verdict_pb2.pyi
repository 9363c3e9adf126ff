from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_VALID: _ClassVar[Verdict]
    VERDICT_EXPIRED: _ClassVar[Verdict]
    VERDICT_NOT_YET_VALID: _ClassVar[Verdict]
    VERDICT_TEST_POSITIVE: _ClassVar[Verdict]
    VERDICT_REVOKED: _ClassVar[Verdict]
    VERDICT_RULE_NOT_MET: _ClassVar[Verdict]
    VERDICT_SIGNATURE_INVALID: _ClassVar[Verdict]
    VERDICT_UNKNOWN_ISSUER: _ClassVar[Verdict]
    VERDICT_MALFORMED: _ClassVar[Verdict]
    VERDICT_STATUS_UNKNOWN: _ClassVar[Verdict]

class MalformedStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MALFORMED_STAGE_UNSPECIFIED: _ClassVar[MalformedStage]
    MALFORMED_STAGE_PREFIX: _ClassVar[MalformedStage]
    MALFORMED_STAGE_BASE45: _ClassVar[MalformedStage]
    MALFORMED_STAGE_ZLIB: _ClassVar[MalformedStage]
    MALFORMED_STAGE_COSE: _ClassVar[MalformedStage]
    MALFORMED_STAGE_CBOR: _ClassVar[MalformedStage]
    MALFORMED_STAGE_SCHEMA: _ClassVar[MalformedStage]

class StatusSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_SOURCE_UNSPECIFIED: _ClassVar[StatusSource]
    STATUS_SOURCE_CACHE: _ClassVar[StatusSource]
    STATUS_SOURCE_DATABASE: _ClassVar[StatusSource]
    STATUS_SOURCE_UNCHECKED: _ClassVar[StatusSource]
VERDICT_UNSPECIFIED: Verdict
VERDICT_VALID: Verdict
VERDICT_EXPIRED: Verdict
VERDICT_NOT_YET_VALID: Verdict
VERDICT_TEST_POSITIVE: Verdict
VERDICT_REVOKED: Verdict
VERDICT_RULE_NOT_MET: Verdict
VERDICT_SIGNATURE_INVALID: Verdict
VERDICT_UNKNOWN_ISSUER: Verdict
VERDICT_MALFORMED: Verdict
VERDICT_STATUS_UNKNOWN: Verdict
MALFORMED_STAGE_UNSPECIFIED: MalformedStage
MALFORMED_STAGE_PREFIX: MalformedStage
MALFORMED_STAGE_BASE45: MalformedStage
MALFORMED_STAGE_ZLIB: MalformedStage
MALFORMED_STAGE_COSE: MalformedStage
MALFORMED_STAGE_CBOR: MalformedStage
MALFORMED_STAGE_SCHEMA: MalformedStage
STATUS_SOURCE_UNSPECIFIED: StatusSource
STATUS_SOURCE_CACHE: StatusSource
STATUS_SOURCE_DATABASE: StatusSource
STATUS_SOURCE_UNCHECKED: StatusSource
