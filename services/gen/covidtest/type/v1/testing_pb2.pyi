import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TestType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEST_TYPE_UNSPECIFIED: _ClassVar[TestType]
    TEST_TYPE_NAAT: _ClassVar[TestType]
    TEST_TYPE_RAPID_ANTIGEN: _ClassVar[TestType]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_NEGATIVE: _ClassVar[Outcome]
    OUTCOME_POSITIVE: _ClassVar[Outcome]
    OUTCOME_INCONCLUSIVE: _ClassVar[Outcome]
    OUTCOME_INVALID_SAMPLE: _ClassVar[Outcome]

class SampleState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLE_STATE_UNSPECIFIED: _ClassVar[SampleState]
    SAMPLE_STATE_REGISTERED: _ClassVar[SampleState]
    SAMPLE_STATE_RESULTED: _ClassVar[SampleState]
    SAMPLE_STATE_RETEST_REQUIRED: _ClassVar[SampleState]
    SAMPLE_STATE_RESAMPLE_REQUIRED: _ClassVar[SampleState]
    SAMPLE_STATE_WITHDRAWN: _ClassVar[SampleState]

class ResultState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_STATE_UNSPECIFIED: _ClassVar[ResultState]
    RESULT_STATE_RELEASED: _ClassVar[ResultState]
    RESULT_STATE_RETEST_REQUIRED: _ClassVar[ResultState]
    RESULT_STATE_RESAMPLE_REQUIRED: _ClassVar[ResultState]
    RESULT_STATE_SUPERSEDED: _ClassVar[ResultState]
    RESULT_STATE_WITHDRAWN: _ClassVar[ResultState]

class WithdrawalReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WITHDRAWAL_REASON_UNSPECIFIED: _ClassVar[WithdrawalReason]
    WITHDRAWAL_REASON_SAMPLE_MIX_UP: _ClassVar[WithdrawalReason]
    WITHDRAWAL_REASON_LAB_ERROR: _ClassVar[WithdrawalReason]
    WITHDRAWAL_REASON_OTHER: _ClassVar[WithdrawalReason]

class ResultEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_EVENT_KIND_UNSPECIFIED: _ClassVar[ResultEventKind]
    RESULT_EVENT_KIND_RELEASED: _ClassVar[ResultEventKind]
    RESULT_EVENT_KIND_AMENDED: _ClassVar[ResultEventKind]
    RESULT_EVENT_KIND_WITHDRAWN: _ClassVar[ResultEventKind]
    RESULT_EVENT_KIND_POOL_POSITIVE_RETEST_REQUIRED: _ClassVar[ResultEventKind]
    RESULT_EVENT_KIND_RESAMPLE_REQUIRED: _ClassVar[ResultEventKind]
    RESULT_EVENT_KIND_SAMPLE_REGISTERED: _ClassVar[ResultEventKind]
TEST_TYPE_UNSPECIFIED: TestType
TEST_TYPE_NAAT: TestType
TEST_TYPE_RAPID_ANTIGEN: TestType
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_NEGATIVE: Outcome
OUTCOME_POSITIVE: Outcome
OUTCOME_INCONCLUSIVE: Outcome
OUTCOME_INVALID_SAMPLE: Outcome
SAMPLE_STATE_UNSPECIFIED: SampleState
SAMPLE_STATE_REGISTERED: SampleState
SAMPLE_STATE_RESULTED: SampleState
SAMPLE_STATE_RETEST_REQUIRED: SampleState
SAMPLE_STATE_RESAMPLE_REQUIRED: SampleState
SAMPLE_STATE_WITHDRAWN: SampleState
RESULT_STATE_UNSPECIFIED: ResultState
RESULT_STATE_RELEASED: ResultState
RESULT_STATE_RETEST_REQUIRED: ResultState
RESULT_STATE_RESAMPLE_REQUIRED: ResultState
RESULT_STATE_SUPERSEDED: ResultState
RESULT_STATE_WITHDRAWN: ResultState
WITHDRAWAL_REASON_UNSPECIFIED: WithdrawalReason
WITHDRAWAL_REASON_SAMPLE_MIX_UP: WithdrawalReason
WITHDRAWAL_REASON_LAB_ERROR: WithdrawalReason
WITHDRAWAL_REASON_OTHER: WithdrawalReason
RESULT_EVENT_KIND_UNSPECIFIED: ResultEventKind
RESULT_EVENT_KIND_RELEASED: ResultEventKind
RESULT_EVENT_KIND_AMENDED: ResultEventKind
RESULT_EVENT_KIND_WITHDRAWN: ResultEventKind
RESULT_EVENT_KIND_POOL_POSITIVE_RETEST_REQUIRED: ResultEventKind
RESULT_EVENT_KIND_RESAMPLE_REQUIRED: ResultEventKind
RESULT_EVENT_KIND_SAMPLE_REGISTERED: ResultEventKind

class PendingSample(_message.Message):
    __slots__ = ("sample_id", "sample_barcode", "sampling_org_id", "lab_org_id", "test_type", "rat_device_id", "collected_at", "registered_at", "sampling_site", "pool_barcode", "state")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    LAB_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    TEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    RAT_DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_SITE_FIELD_NUMBER: _ClassVar[int]
    POOL_BARCODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    sample_barcode: str
    sampling_org_id: str
    lab_org_id: str
    test_type: TestType
    rat_device_id: str
    collected_at: _timestamp_pb2.Timestamp
    registered_at: _timestamp_pb2.Timestamp
    sampling_site: str
    pool_barcode: str
    state: SampleState
    def __init__(self, sample_id: _Optional[str] = ..., sample_barcode: _Optional[str] = ..., sampling_org_id: _Optional[str] = ..., lab_org_id: _Optional[str] = ..., test_type: _Optional[_Union[TestType, str]] = ..., rat_device_id: _Optional[str] = ..., collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sampling_site: _Optional[str] = ..., pool_barcode: _Optional[str] = ..., state: _Optional[_Union[SampleState, str]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("result_id", "sample_id", "sample_barcode", "sampling_org_id", "lab_org_id", "version", "state", "outcome", "test_type", "rat_device_id", "method", "ct_value", "collected_at", "tested_at", "recorded_at", "lab_reference", "pool_barcode", "sampling_site", "amendment_reason", "withdrawal_reason", "withdrawal_reason_text", "withdrawn_at")
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    LAB_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    RAT_DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CT_VALUE_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    TESTED_AT_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    LAB_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    POOL_BARCODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_SITE_FIELD_NUMBER: _ClassVar[int]
    AMENDMENT_REASON_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWAL_REASON_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWAL_REASON_TEXT_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_AT_FIELD_NUMBER: _ClassVar[int]
    result_id: str
    sample_id: str
    sample_barcode: str
    sampling_org_id: str
    lab_org_id: str
    version: int
    state: ResultState
    outcome: Outcome
    test_type: TestType
    rat_device_id: str
    method: str
    ct_value: float
    collected_at: _timestamp_pb2.Timestamp
    tested_at: _timestamp_pb2.Timestamp
    recorded_at: _timestamp_pb2.Timestamp
    lab_reference: str
    pool_barcode: str
    sampling_site: str
    amendment_reason: str
    withdrawal_reason: WithdrawalReason
    withdrawal_reason_text: str
    withdrawn_at: _timestamp_pb2.Timestamp
    def __init__(self, result_id: _Optional[str] = ..., sample_id: _Optional[str] = ..., sample_barcode: _Optional[str] = ..., sampling_org_id: _Optional[str] = ..., lab_org_id: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[_Union[ResultState, str]] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., test_type: _Optional[_Union[TestType, str]] = ..., rat_device_id: _Optional[str] = ..., method: _Optional[str] = ..., ct_value: _Optional[float] = ..., collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lab_reference: _Optional[str] = ..., pool_barcode: _Optional[str] = ..., sampling_site: _Optional[str] = ..., amendment_reason: _Optional[str] = ..., withdrawal_reason: _Optional[_Union[WithdrawalReason, str]] = ..., withdrawal_reason_text: _Optional[str] = ..., withdrawn_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
