import datetime

from services.gen.covidtest.type.v1 import certificate_pb2 as _certificate_pb2
from services.gen.covidtest.type.v1 import testing_pb2 as _testing_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProvinceRule(_message.Message):
    __slots__ = ("rule_id", "version", "province_code", "entry_type", "test_type", "disabled", "validity", "accepted_outcomes", "complete_series_required", "min_days_since_last_dose", "max_days_since_last_dose", "min_days_since_first_positive", "max_days_since_first_positive", "effective_from", "description", "created_at")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_TYPE_FIELD_NUMBER: _ClassVar[int]
    TEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_SERIES_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    MIN_DAYS_SINCE_LAST_DOSE_FIELD_NUMBER: _ClassVar[int]
    MAX_DAYS_SINCE_LAST_DOSE_FIELD_NUMBER: _ClassVar[int]
    MIN_DAYS_SINCE_FIRST_POSITIVE_FIELD_NUMBER: _ClassVar[int]
    MAX_DAYS_SINCE_FIRST_POSITIVE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    version: int
    province_code: str
    entry_type: _certificate_pb2.EntryType
    test_type: _testing_pb2.TestType
    disabled: bool
    validity: _duration_pb2.Duration
    accepted_outcomes: _containers.RepeatedScalarFieldContainer[_testing_pb2.Outcome]
    complete_series_required: bool
    min_days_since_last_dose: int
    max_days_since_last_dose: int
    min_days_since_first_positive: int
    max_days_since_first_positive: int
    effective_from: _timestamp_pb2.Timestamp
    description: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, rule_id: _Optional[str] = ..., version: _Optional[int] = ..., province_code: _Optional[str] = ..., entry_type: _Optional[_Union[_certificate_pb2.EntryType, str]] = ..., test_type: _Optional[_Union[_testing_pb2.TestType, str]] = ..., disabled: bool = ..., validity: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., accepted_outcomes: _Optional[_Iterable[_Union[_testing_pb2.Outcome, str]]] = ..., complete_series_required: bool = ..., min_days_since_last_dose: _Optional[int] = ..., max_days_since_last_dose: _Optional[int] = ..., min_days_since_first_positive: _Optional[int] = ..., max_days_since_first_positive: _Optional[int] = ..., effective_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
