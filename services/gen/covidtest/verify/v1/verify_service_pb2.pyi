import datetime

from services.gen.covidtest.type.v1 import certificate_pb2 as _certificate_pb2
from services.gen.covidtest.type.v1 import province_rule_pb2 as _province_rule_pb2
from services.gen.covidtest.type.v1 import testing_pb2 as _testing_pb2
from services.gen.covidtest.type.v1 import verdict_pb2 as _verdict_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerifyRequest(_message.Message):
    __slots__ = ("qr", "scanned_at")
    QR_FIELD_NUMBER: _ClassVar[int]
    SCANNED_AT_FIELD_NUMBER: _ClassVar[int]
    qr: str
    scanned_at: _timestamp_pb2.Timestamp
    def __init__(self, qr: _Optional[str] = ..., scanned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("verdict", "reason", "malformed_stage", "family_name", "given_name", "family_name_transliterated", "given_name_transliterated", "date_of_birth", "entry_type", "test_type", "sample_collected_at", "valid_until", "certificate_id", "issuer_country", "status_source", "rule_id", "rule_version", "checked_at", "kid", "accept_with_warning", "signature_valid", "schema_error")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MALFORMED_STAGE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_TRANSLITERATED_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_TRANSLITERATED_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_TYPE_FIELD_NUMBER: _ClassVar[int]
    TEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUER_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    STATUS_SOURCE_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    KID_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_WITH_WARNING_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_VALID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_ERROR_FIELD_NUMBER: _ClassVar[int]
    verdict: _verdict_pb2.Verdict
    reason: str
    malformed_stage: _verdict_pb2.MalformedStage
    family_name: str
    given_name: str
    family_name_transliterated: str
    given_name_transliterated: str
    date_of_birth: str
    entry_type: _certificate_pb2.EntryType
    test_type: _testing_pb2.TestType
    sample_collected_at: _timestamp_pb2.Timestamp
    valid_until: _timestamp_pb2.Timestamp
    certificate_id: str
    issuer_country: str
    status_source: _verdict_pb2.StatusSource
    rule_id: str
    rule_version: int
    checked_at: _timestamp_pb2.Timestamp
    kid: bytes
    accept_with_warning: bool
    signature_valid: bool
    schema_error: str
    def __init__(self, verdict: _Optional[_Union[_verdict_pb2.Verdict, str]] = ..., reason: _Optional[str] = ..., malformed_stage: _Optional[_Union[_verdict_pb2.MalformedStage, str]] = ..., family_name: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name_transliterated: _Optional[str] = ..., given_name_transliterated: _Optional[str] = ..., date_of_birth: _Optional[str] = ..., entry_type: _Optional[_Union[_certificate_pb2.EntryType, str]] = ..., test_type: _Optional[_Union[_testing_pb2.TestType, str]] = ..., sample_collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., certificate_id: _Optional[str] = ..., issuer_country: _Optional[str] = ..., status_source: _Optional[_Union[_verdict_pb2.StatusSource, str]] = ..., rule_id: _Optional[str] = ..., rule_version: _Optional[int] = ..., checked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kid: _Optional[bytes] = ..., accept_with_warning: bool = ..., signature_valid: bool = ..., schema_error: _Optional[str] = ...) -> None: ...

class VerifyBatchRequest(_message.Message):
    __slots__ = ("scans",)
    SCANS_FIELD_NUMBER: _ClassVar[int]
    scans: _containers.RepeatedCompositeFieldContainer[VerifyRequest]
    def __init__(self, scans: _Optional[_Iterable[_Union[VerifyRequest, _Mapping]]] = ...) -> None: ...

class VerifyBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[VerifyResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[VerifyResponse, _Mapping]]] = ...) -> None: ...

class GetRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRulesResponse(_message.Message):
    __slots__ = ("province_code", "ruleset_version", "rules")
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    RULESET_VERSION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    province_code: str
    ruleset_version: int
    rules: _containers.RepeatedCompositeFieldContainer[_province_rule_pb2.ProvinceRule]
    def __init__(self, province_code: _Optional[str] = ..., ruleset_version: _Optional[int] = ..., rules: _Optional[_Iterable[_Union[_province_rule_pb2.ProvinceRule, _Mapping]]] = ...) -> None: ...

class GetTrustListRequest(_message.Message):
    __slots__ = ("since_version",)
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    since_version: int
    def __init__(self, since_version: _Optional[int] = ...) -> None: ...

class GetTrustListResponse(_message.Message):
    __slots__ = ("version", "full", "added", "removed_sha256_fingerprints")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_SHA256_FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    version: int
    full: bool
    added: _containers.RepeatedCompositeFieldContainer[_certificate_pb2.SigningCertificate]
    removed_sha256_fingerprints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., full: bool = ..., added: _Optional[_Iterable[_Union[_certificate_pb2.SigningCertificate, _Mapping]]] = ..., removed_sha256_fingerprints: _Optional[_Iterable[str]] = ...) -> None: ...

class GetCheckpointBundleRequest(_message.Message):
    __slots__ = ("since_version",)
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    since_version: int
    def __init__(self, since_version: _Optional[int] = ...) -> None: ...

class GetCheckpointBundleResponse(_message.Message):
    __slots__ = ("version", "full", "bundle", "deltas")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    version: int
    full: bool
    bundle: bytes
    deltas: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, version: _Optional[int] = ..., full: bool = ..., bundle: _Optional[bytes] = ..., deltas: _Optional[_Iterable[bytes]] = ...) -> None: ...
