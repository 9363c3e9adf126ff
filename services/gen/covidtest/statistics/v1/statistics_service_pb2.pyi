import datetime

from services.gen.covidtest.type.v1 import verdict_pb2 as _verdict_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SuppressibleCount(_message.Message):
    __slots__ = ("value", "suppressed")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    value: int
    suppressed: bool
    def __init__(self, value: _Optional[int] = ..., suppressed: bool = ...) -> None: ...

class SuppressibleRate(_message.Message):
    __slots__ = ("value", "suppressed")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    value: float
    suppressed: bool
    def __init__(self, value: _Optional[float] = ..., suppressed: bool = ...) -> None: ...

class SuppressibleDuration(_message.Message):
    __slots__ = ("value", "suppressed")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    value: _duration_pb2.Duration
    suppressed: bool
    def __init__(self, value: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., suppressed: bool = ...) -> None: ...

class DayRange(_message.Message):
    __slots__ = ("from_date", "to_date")
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    from_date: str
    to_date: str
    def __init__(self, from_date: _Optional[str] = ..., to_date: _Optional[str] = ...) -> None: ...

class ListTestCountsRequest(_message.Message):
    __slots__ = ("province_code", "range", "page_size", "page_token")
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    province_code: str
    range: DayRange
    page_size: int
    page_token: str
    def __init__(self, province_code: _Optional[str] = ..., range: _Optional[_Union[DayRange, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TestCountRow(_message.Message):
    __slots__ = ("date", "district_code", "lab_organisation_id", "tests", "positives", "positivity", "pools_tested", "pools_positive", "pool_positivity")
    DATE_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_CODE_FIELD_NUMBER: _ClassVar[int]
    LAB_ORGANISATION_ID_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    POSITIVES_FIELD_NUMBER: _ClassVar[int]
    POSITIVITY_FIELD_NUMBER: _ClassVar[int]
    POOLS_TESTED_FIELD_NUMBER: _ClassVar[int]
    POOLS_POSITIVE_FIELD_NUMBER: _ClassVar[int]
    POOL_POSITIVITY_FIELD_NUMBER: _ClassVar[int]
    date: str
    district_code: str
    lab_organisation_id: str
    tests: SuppressibleCount
    positives: SuppressibleCount
    positivity: SuppressibleRate
    pools_tested: SuppressibleCount
    pools_positive: SuppressibleCount
    pool_positivity: SuppressibleRate
    def __init__(self, date: _Optional[str] = ..., district_code: _Optional[str] = ..., lab_organisation_id: _Optional[str] = ..., tests: _Optional[_Union[SuppressibleCount, _Mapping]] = ..., positives: _Optional[_Union[SuppressibleCount, _Mapping]] = ..., positivity: _Optional[_Union[SuppressibleRate, _Mapping]] = ..., pools_tested: _Optional[_Union[SuppressibleCount, _Mapping]] = ..., pools_positive: _Optional[_Union[SuppressibleCount, _Mapping]] = ..., pool_positivity: _Optional[_Union[SuppressibleRate, _Mapping]] = ...) -> None: ...

class ListTestCountsResponse(_message.Message):
    __slots__ = ("rows", "next_page_token", "as_of")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[TestCountRow]
    next_page_token: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, rows: _Optional[_Iterable[_Union[TestCountRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListTurnaroundRequest(_message.Message):
    __slots__ = ("province_code", "range", "page_size", "page_token")
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    province_code: str
    range: DayRange
    page_size: int
    page_token: str
    def __init__(self, province_code: _Optional[str] = ..., range: _Optional[_Union[DayRange, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class TurnaroundRow(_message.Message):
    __slots__ = ("date", "district_code", "lab_organisation_id", "count", "p50", "p90")
    DATE_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_CODE_FIELD_NUMBER: _ClassVar[int]
    LAB_ORGANISATION_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P90_FIELD_NUMBER: _ClassVar[int]
    date: str
    district_code: str
    lab_organisation_id: str
    count: SuppressibleCount
    p50: SuppressibleDuration
    p90: SuppressibleDuration
    def __init__(self, date: _Optional[str] = ..., district_code: _Optional[str] = ..., lab_organisation_id: _Optional[str] = ..., count: _Optional[_Union[SuppressibleCount, _Mapping]] = ..., p50: _Optional[_Union[SuppressibleDuration, _Mapping]] = ..., p90: _Optional[_Union[SuppressibleDuration, _Mapping]] = ...) -> None: ...

class ListTurnaroundResponse(_message.Message):
    __slots__ = ("rows", "next_page_token", "as_of")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[TurnaroundRow]
    next_page_token: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, rows: _Optional[_Iterable[_Union[TurnaroundRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetLabBacklogRequest(_message.Message):
    __slots__ = ("province_code",)
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    province_code: str
    def __init__(self, province_code: _Optional[str] = ...) -> None: ...

class LabBacklogRow(_message.Message):
    __slots__ = ("lab_organisation_id", "under_24_hours", "from_24_to_48_hours", "over_48_hours")
    LAB_ORGANISATION_ID_FIELD_NUMBER: _ClassVar[int]
    UNDER_24_HOURS_FIELD_NUMBER: _ClassVar[int]
    FROM_24_TO_48_HOURS_FIELD_NUMBER: _ClassVar[int]
    OVER_48_HOURS_FIELD_NUMBER: _ClassVar[int]
    lab_organisation_id: str
    under_24_hours: SuppressibleCount
    from_24_to_48_hours: SuppressibleCount
    over_48_hours: SuppressibleCount
    def __init__(self, lab_organisation_id: _Optional[str] = ..., under_24_hours: _Optional[_Union[SuppressibleCount, _Mapping]] = ..., from_24_to_48_hours: _Optional[_Union[SuppressibleCount, _Mapping]] = ..., over_48_hours: _Optional[_Union[SuppressibleCount, _Mapping]] = ...) -> None: ...

class GetLabBacklogResponse(_message.Message):
    __slots__ = ("labs", "as_of")
    LABS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    labs: _containers.RepeatedCompositeFieldContainer[LabBacklogRow]
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, labs: _Optional[_Iterable[_Union[LabBacklogRow, _Mapping]]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListVerdictCountsRequest(_message.Message):
    __slots__ = ("province_code", "range", "page_size", "page_token")
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    province_code: str
    range: DayRange
    page_size: int
    page_token: str
    def __init__(self, province_code: _Optional[str] = ..., range: _Optional[_Union[DayRange, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class VerdictCountRow(_message.Message):
    __slots__ = ("hour", "checkpoint_device_id", "verdict", "count")
    HOUR_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    hour: _timestamp_pb2.Timestamp
    checkpoint_device_id: str
    verdict: _verdict_pb2.Verdict
    count: SuppressibleCount
    def __init__(self, hour: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., checkpoint_device_id: _Optional[str] = ..., verdict: _Optional[_Union[_verdict_pb2.Verdict, str]] = ..., count: _Optional[_Union[SuppressibleCount, _Mapping]] = ...) -> None: ...

class ListVerdictCountsResponse(_message.Message):
    __slots__ = ("rows", "next_page_token")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[VerdictCountRow]
    next_page_token: str
    def __init__(self, rows: _Optional[_Iterable[_Union[VerdictCountRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
