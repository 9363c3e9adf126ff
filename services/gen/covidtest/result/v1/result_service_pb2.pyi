import datetime

from services.gen.covidtest.type.v1 import person_pb2 as _person_pb2
from services.gen.covidtest.type.v1 import testing_pb2 as _testing_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import error_details_pb2 as _error_details_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegistrationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGISTRATION_STATUS_UNSPECIFIED: _ClassVar[RegistrationStatus]
    REGISTRATION_STATUS_CREATED: _ClassVar[RegistrationStatus]
    REGISTRATION_STATUS_ALREADY_REGISTERED: _ClassVar[RegistrationStatus]
    REGISTRATION_STATUS_REJECTED: _ClassVar[RegistrationStatus]

class RecordingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORDING_STATUS_UNSPECIFIED: _ClassVar[RecordingStatus]
    RECORDING_STATUS_RECORDED: _ClassVar[RecordingStatus]
    RECORDING_STATUS_ALREADY_RECORDED: _ClassVar[RecordingStatus]
    RECORDING_STATUS_REJECTED: _ClassVar[RecordingStatus]
REGISTRATION_STATUS_UNSPECIFIED: RegistrationStatus
REGISTRATION_STATUS_CREATED: RegistrationStatus
REGISTRATION_STATUS_ALREADY_REGISTERED: RegistrationStatus
REGISTRATION_STATUS_REJECTED: RegistrationStatus
RECORDING_STATUS_UNSPECIFIED: RecordingStatus
RECORDING_STATUS_RECORDED: RecordingStatus
RECORDING_STATUS_ALREADY_RECORDED: RecordingStatus
RECORDING_STATUS_REJECTED: RecordingStatus

class SampleRegistration(_message.Message):
    __slots__ = ("sample_barcode", "person", "test_type", "rat_device_id", "collected_at", "sampling_site", "lab_org_id", "pool_barcode", "retest_of_sample_barcode")
    SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    TEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    RAT_DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_SITE_FIELD_NUMBER: _ClassVar[int]
    LAB_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_BARCODE_FIELD_NUMBER: _ClassVar[int]
    RETEST_OF_SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    sample_barcode: str
    person: _person_pb2.Person
    test_type: _testing_pb2.TestType
    rat_device_id: str
    collected_at: _timestamp_pb2.Timestamp
    sampling_site: str
    lab_org_id: str
    pool_barcode: str
    retest_of_sample_barcode: str
    def __init__(self, sample_barcode: _Optional[str] = ..., person: _Optional[_Union[_person_pb2.Person, _Mapping]] = ..., test_type: _Optional[_Union[_testing_pb2.TestType, str]] = ..., rat_device_id: _Optional[str] = ..., collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sampling_site: _Optional[str] = ..., lab_org_id: _Optional[str] = ..., pool_barcode: _Optional[str] = ..., retest_of_sample_barcode: _Optional[str] = ...) -> None: ...

class SampleRegistrationResult(_message.Message):
    __slots__ = ("index", "sample_barcode", "status", "sample_id", "violations")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    index: int
    sample_barcode: str
    status: RegistrationStatus
    sample_id: str
    violations: _containers.RepeatedCompositeFieldContainer[_error_details_pb2.BadRequest.FieldViolation]
    def __init__(self, index: _Optional[int] = ..., sample_barcode: _Optional[str] = ..., status: _Optional[_Union[RegistrationStatus, str]] = ..., sample_id: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[_error_details_pb2.BadRequest.FieldViolation, _Mapping]]] = ...) -> None: ...

class RegisterSamplesRequest(_message.Message):
    __slots__ = ("request_id", "samples")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    samples: _containers.RepeatedCompositeFieldContainer[SampleRegistration]
    def __init__(self, request_id: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[SampleRegistration, _Mapping]]] = ...) -> None: ...

class RegisterSamplesResponse(_message.Message):
    __slots__ = ("results", "created_count", "already_registered_count", "rejected_count")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ALREADY_REGISTERED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SampleRegistrationResult]
    created_count: int
    already_registered_count: int
    rejected_count: int
    def __init__(self, results: _Optional[_Iterable[_Union[SampleRegistrationResult, _Mapping]]] = ..., created_count: _Optional[int] = ..., already_registered_count: _Optional[int] = ..., rejected_count: _Optional[int] = ...) -> None: ...

class ResultSubmission(_message.Message):
    __slots__ = ("sample_barcode", "pool_barcode", "sampling_org_id", "outcome", "tested_at", "method", "ct_value", "lab_reference")
    SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    POOL_BARCODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TESTED_AT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CT_VALUE_FIELD_NUMBER: _ClassVar[int]
    LAB_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    sample_barcode: str
    pool_barcode: str
    sampling_org_id: str
    outcome: _testing_pb2.Outcome
    tested_at: _timestamp_pb2.Timestamp
    method: str
    ct_value: float
    lab_reference: str
    def __init__(self, sample_barcode: _Optional[str] = ..., pool_barcode: _Optional[str] = ..., sampling_org_id: _Optional[str] = ..., outcome: _Optional[_Union[_testing_pb2.Outcome, str]] = ..., tested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., method: _Optional[str] = ..., ct_value: _Optional[float] = ..., lab_reference: _Optional[str] = ...) -> None: ...

class RecordedSample(_message.Message):
    __slots__ = ("sample_id", "sample_barcode", "sample_state", "result_id", "result_version", "result_state")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_STATE_FIELD_NUMBER: _ClassVar[int]
    RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_STATE_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    sample_barcode: str
    sample_state: _testing_pb2.SampleState
    result_id: str
    result_version: int
    result_state: _testing_pb2.ResultState
    def __init__(self, sample_id: _Optional[str] = ..., sample_barcode: _Optional[str] = ..., sample_state: _Optional[_Union[_testing_pb2.SampleState, str]] = ..., result_id: _Optional[str] = ..., result_version: _Optional[int] = ..., result_state: _Optional[_Union[_testing_pb2.ResultState, str]] = ...) -> None: ...

class ResultSubmissionResult(_message.Message):
    __slots__ = ("index", "status", "samples", "violations")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    index: int
    status: RecordingStatus
    samples: _containers.RepeatedCompositeFieldContainer[RecordedSample]
    violations: _containers.RepeatedCompositeFieldContainer[_error_details_pb2.BadRequest.FieldViolation]
    def __init__(self, index: _Optional[int] = ..., status: _Optional[_Union[RecordingStatus, str]] = ..., samples: _Optional[_Iterable[_Union[RecordedSample, _Mapping]]] = ..., violations: _Optional[_Iterable[_Union[_error_details_pb2.BadRequest.FieldViolation, _Mapping]]] = ...) -> None: ...

class RecordResultsRequest(_message.Message):
    __slots__ = ("request_id", "results")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    results: _containers.RepeatedCompositeFieldContainer[ResultSubmission]
    def __init__(self, request_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ResultSubmission, _Mapping]]] = ...) -> None: ...

class RecordResultsResponse(_message.Message):
    __slots__ = ("results", "recorded_count", "already_recorded_count", "rejected_count")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RECORDED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ALREADY_RECORDED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ResultSubmissionResult]
    recorded_count: int
    already_recorded_count: int
    rejected_count: int
    def __init__(self, results: _Optional[_Iterable[_Union[ResultSubmissionResult, _Mapping]]] = ..., recorded_count: _Optional[int] = ..., already_recorded_count: _Optional[int] = ..., rejected_count: _Optional[int] = ...) -> None: ...

class AmendResultRequest(_message.Message):
    __slots__ = ("request_id", "sample_barcode", "sampling_org_id", "outcome", "tested_at", "method", "ct_value", "lab_reference", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    TESTED_AT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    CT_VALUE_FIELD_NUMBER: _ClassVar[int]
    LAB_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sample_barcode: str
    sampling_org_id: str
    outcome: _testing_pb2.Outcome
    tested_at: _timestamp_pb2.Timestamp
    method: str
    ct_value: float
    lab_reference: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., sample_barcode: _Optional[str] = ..., sampling_org_id: _Optional[str] = ..., outcome: _Optional[_Union[_testing_pb2.Outcome, str]] = ..., tested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., method: _Optional[str] = ..., ct_value: _Optional[float] = ..., lab_reference: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AmendResultResponse(_message.Message):
    __slots__ = ("result", "superseded_result_id", "sample_state")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_RESULT_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_STATE_FIELD_NUMBER: _ClassVar[int]
    result: _testing_pb2.Result
    superseded_result_id: str
    sample_state: _testing_pb2.SampleState
    def __init__(self, result: _Optional[_Union[_testing_pb2.Result, _Mapping]] = ..., superseded_result_id: _Optional[str] = ..., sample_state: _Optional[_Union[_testing_pb2.SampleState, str]] = ...) -> None: ...

class WithdrawResultRequest(_message.Message):
    __slots__ = ("request_id", "sample_barcode", "sampling_org_id", "reason", "reason_text")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REASON_TEXT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sample_barcode: str
    sampling_org_id: str
    reason: _testing_pb2.WithdrawalReason
    reason_text: str
    def __init__(self, request_id: _Optional[str] = ..., sample_barcode: _Optional[str] = ..., sampling_org_id: _Optional[str] = ..., reason: _Optional[_Union[_testing_pb2.WithdrawalReason, str]] = ..., reason_text: _Optional[str] = ...) -> None: ...

class WithdrawResultResponse(_message.Message):
    __slots__ = ("result", "sample_state")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_STATE_FIELD_NUMBER: _ClassVar[int]
    result: _testing_pb2.Result
    sample_state: _testing_pb2.SampleState
    def __init__(self, result: _Optional[_Union[_testing_pb2.Result, _Mapping]] = ..., sample_state: _Optional[_Union[_testing_pb2.SampleState, str]] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("sample_id", "sample_barcode", "sampling_org_id", "lab_org_id", "state", "person", "test_type", "rat_device_id", "collected_at", "sampling_site", "pool_barcode", "retest_of_sample_id", "retest_of_sample_barcode", "retest_sample_ids", "registered_at", "results")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    LAB_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    TEST_TYPE_FIELD_NUMBER: _ClassVar[int]
    RAT_DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_SITE_FIELD_NUMBER: _ClassVar[int]
    POOL_BARCODE_FIELD_NUMBER: _ClassVar[int]
    RETEST_OF_SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    RETEST_OF_SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    RETEST_SAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    sample_barcode: str
    sampling_org_id: str
    lab_org_id: str
    state: _testing_pb2.SampleState
    person: _person_pb2.Person
    test_type: _testing_pb2.TestType
    rat_device_id: str
    collected_at: _timestamp_pb2.Timestamp
    sampling_site: str
    pool_barcode: str
    retest_of_sample_id: str
    retest_of_sample_barcode: str
    retest_sample_ids: _containers.RepeatedScalarFieldContainer[str]
    registered_at: _timestamp_pb2.Timestamp
    results: _containers.RepeatedCompositeFieldContainer[_testing_pb2.Result]
    def __init__(self, sample_id: _Optional[str] = ..., sample_barcode: _Optional[str] = ..., sampling_org_id: _Optional[str] = ..., lab_org_id: _Optional[str] = ..., state: _Optional[_Union[_testing_pb2.SampleState, str]] = ..., person: _Optional[_Union[_person_pb2.Person, _Mapping]] = ..., test_type: _Optional[_Union[_testing_pb2.TestType, str]] = ..., rat_device_id: _Optional[str] = ..., collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sampling_site: _Optional[str] = ..., pool_barcode: _Optional[str] = ..., retest_of_sample_id: _Optional[str] = ..., retest_of_sample_barcode: _Optional[str] = ..., retest_sample_ids: _Optional[_Iterable[str]] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., results: _Optional[_Iterable[_Union[_testing_pb2.Result, _Mapping]]] = ...) -> None: ...

class GetSampleRequest(_message.Message):
    __slots__ = ("sample_id", "sample_barcode", "sampling_org_id")
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_BARCODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_ORG_ID_FIELD_NUMBER: _ClassVar[int]
    sample_id: str
    sample_barcode: str
    sampling_org_id: str
    def __init__(self, sample_id: _Optional[str] = ..., sample_barcode: _Optional[str] = ..., sampling_org_id: _Optional[str] = ...) -> None: ...

class GetSampleResponse(_message.Message):
    __slots__ = ("sample",)
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    sample: Sample
    def __init__(self, sample: _Optional[_Union[Sample, _Mapping]] = ...) -> None: ...

class ListResultsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "start_time", "end_time", "outcomes", "states")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    outcomes: _containers.RepeatedScalarFieldContainer[_testing_pb2.Outcome]
    states: _containers.RepeatedScalarFieldContainer[_testing_pb2.ResultState]
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcomes: _Optional[_Iterable[_Union[_testing_pb2.Outcome, str]]] = ..., states: _Optional[_Iterable[_Union[_testing_pb2.ResultState, str]]] = ...) -> None: ...

class ListResultsResponse(_message.Message):
    __slots__ = ("results", "next_page_token")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_testing_pb2.Result]
    next_page_token: str
    def __init__(self, results: _Optional[_Iterable[_Union[_testing_pb2.Result, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
