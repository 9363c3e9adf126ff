import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CertificateStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CERTIFICATE_STATUS_UNSPECIFIED: _ClassVar[CertificateStatus]
    CERTIFICATE_STATUS_VALID: _ClassVar[CertificateStatus]
    CERTIFICATE_STATUS_REVOKED: _ClassVar[CertificateStatus]

class EntryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_TYPE_UNSPECIFIED: _ClassVar[EntryType]
    ENTRY_TYPE_TEST: _ClassVar[EntryType]
    ENTRY_TYPE_VACCINATION: _ClassVar[EntryType]
    ENTRY_TYPE_RECOVERY: _ClassVar[EntryType]

class SigningAlgorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNING_ALGORITHM_UNSPECIFIED: _ClassVar[SigningAlgorithm]
    SIGNING_ALGORITHM_ES256: _ClassVar[SigningAlgorithm]
    SIGNING_ALGORITHM_PS256: _ClassVar[SigningAlgorithm]
    SIGNING_ALGORITHM_ES384: _ClassVar[SigningAlgorithm]
    SIGNING_ALGORITHM_ES512: _ClassVar[SigningAlgorithm]
CERTIFICATE_STATUS_UNSPECIFIED: CertificateStatus
CERTIFICATE_STATUS_VALID: CertificateStatus
CERTIFICATE_STATUS_REVOKED: CertificateStatus
ENTRY_TYPE_UNSPECIFIED: EntryType
ENTRY_TYPE_TEST: EntryType
ENTRY_TYPE_VACCINATION: EntryType
ENTRY_TYPE_RECOVERY: EntryType
SIGNING_ALGORITHM_UNSPECIFIED: SigningAlgorithm
SIGNING_ALGORITHM_ES256: SigningAlgorithm
SIGNING_ALGORITHM_PS256: SigningAlgorithm
SIGNING_ALGORITHM_ES384: SigningAlgorithm
SIGNING_ALGORITHM_ES512: SigningAlgorithm

class Certificate(_message.Message):
    __slots__ = ("certificate_id", "qr", "status", "issued_at", "expires_at", "revoked_at", "result_id", "kid")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    QR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    qr: str
    status: CertificateStatus
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    result_id: str
    kid: bytes
    def __init__(self, certificate_id: _Optional[str] = ..., qr: _Optional[str] = ..., status: _Optional[_Union[CertificateStatus, str]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., result_id: _Optional[str] = ..., kid: _Optional[bytes] = ...) -> None: ...

class SigningCertificate(_message.Message):
    __slots__ = ("kid", "certificate_der", "country", "not_before", "not_after", "allowed_entry_types", "sha256_fingerprint", "algorithm")
    KID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_DER_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ENTRY_TYPES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    kid: bytes
    certificate_der: bytes
    country: str
    not_before: _timestamp_pb2.Timestamp
    not_after: _timestamp_pb2.Timestamp
    allowed_entry_types: _containers.RepeatedScalarFieldContainer[EntryType]
    sha256_fingerprint: str
    algorithm: SigningAlgorithm
    def __init__(self, kid: _Optional[bytes] = ..., certificate_der: _Optional[bytes] = ..., country: _Optional[str] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., allowed_entry_types: _Optional[_Iterable[_Union[EntryType, str]]] = ..., sha256_fingerprint: _Optional[str] = ..., algorithm: _Optional[_Union[SigningAlgorithm, str]] = ...) -> None: ...
