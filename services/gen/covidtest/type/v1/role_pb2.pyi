from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_SAMPLER: _ClassVar[Role]
    ROLE_LAB: _ClassVar[Role]
    ROLE_PARTNER: _ClassVar[Role]
    ROLE_CHECKPOINT: _ClassVar[Role]
    ROLE_OPERATOR: _ClassVar[Role]
    ROLE_HEALTH_AUTHORITY: _ClassVar[Role]
ROLE_UNSPECIFIED: Role
ROLE_SAMPLER: Role
ROLE_LAB: Role
ROLE_PARTNER: Role
ROLE_CHECKPOINT: Role
ROLE_OPERATOR: Role
ROLE_HEALTH_AUTHORITY: Role
