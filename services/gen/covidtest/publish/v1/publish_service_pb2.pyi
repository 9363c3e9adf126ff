import datetime

from services.gen.covidtest.type.v1 import certificate_pb2 as _certificate_pb2
from services.gen.covidtest.type.v1 import person_pb2 as _person_pb2
from services.gen.covidtest.type.v1 import testing_pb2 as _testing_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QrImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QR_IMAGE_FORMAT_UNSPECIFIED: _ClassVar[QrImageFormat]
    QR_IMAGE_FORMAT_PNG: _ClassVar[QrImageFormat]
    QR_IMAGE_FORMAT_SVG: _ClassVar[QrImageFormat]

class PaperSize(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAPER_SIZE_UNSPECIFIED: _ClassVar[PaperSize]
    PAPER_SIZE_A4: _ClassVar[PaperSize]
    PAPER_SIZE_A6: _ClassVar[PaperSize]
QR_IMAGE_FORMAT_UNSPECIFIED: QrImageFormat
QR_IMAGE_FORMAT_PNG: QrImageFormat
QR_IMAGE_FORMAT_SVG: QrImageFormat
PAPER_SIZE_UNSPECIFIED: PaperSize
PAPER_SIZE_A4: PaperSize
PAPER_SIZE_A6: PaperSize

class ResultEvent(_message.Message):
    __slots__ = ("position", "kind", "committed_at", "published_at", "person_key", "person", "result", "certificate", "revoked_certificate_id", "sample")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PERSON_KEY_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    REVOKED_CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    position: int
    kind: _testing_pb2.ResultEventKind
    committed_at: _timestamp_pb2.Timestamp
    published_at: _timestamp_pb2.Timestamp
    person_key: str
    person: _person_pb2.Person
    result: _testing_pb2.Result
    certificate: _certificate_pb2.Certificate
    revoked_certificate_id: str
    sample: _testing_pb2.PendingSample
    def __init__(self, position: _Optional[int] = ..., kind: _Optional[_Union[_testing_pb2.ResultEventKind, str]] = ..., committed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., person_key: _Optional[str] = ..., person: _Optional[_Union[_person_pb2.Person, _Mapping]] = ..., result: _Optional[_Union[_testing_pb2.Result, _Mapping]] = ..., certificate: _Optional[_Union[_certificate_pb2.Certificate, _Mapping]] = ..., revoked_certificate_id: _Optional[str] = ..., sample: _Optional[_Union[_testing_pb2.PendingSample, _Mapping]] = ...) -> None: ...

class StreamResultEventsRequest(_message.Message):
    __slots__ = ("from_position",)
    FROM_POSITION_FIELD_NUMBER: _ClassVar[int]
    from_position: int
    def __init__(self, from_position: _Optional[int] = ...) -> None: ...

class StreamResultEventsResponse(_message.Message):
    __slots__ = ("events", "head_position")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HEAD_POSITION_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ResultEvent]
    head_position: int
    def __init__(self, events: _Optional[_Iterable[_Union[ResultEvent, _Mapping]]] = ..., head_position: _Optional[int] = ...) -> None: ...

class AckResultEventsRequest(_message.Message):
    __slots__ = ("request_id", "position")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    position: int
    def __init__(self, request_id: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class AckResultEventsResponse(_message.Message):
    __slots__ = ("acknowledged_position", "head_position")
    ACKNOWLEDGED_POSITION_FIELD_NUMBER: _ClassVar[int]
    HEAD_POSITION_FIELD_NUMBER: _ClassVar[int]
    acknowledged_position: int
    head_position: int
    def __init__(self, acknowledged_position: _Optional[int] = ..., head_position: _Optional[int] = ...) -> None: ...

class PartnerFeedStatus(_message.Message):
    __slots__ = ("partner_id", "partner_name", "acknowledged_position", "acknowledged_at", "lag_events", "lag", "open_streams")
    PARTNER_ID_FIELD_NUMBER: _ClassVar[int]
    PARTNER_NAME_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_POSITION_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    LAG_EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    OPEN_STREAMS_FIELD_NUMBER: _ClassVar[int]
    partner_id: str
    partner_name: str
    acknowledged_position: int
    acknowledged_at: _timestamp_pb2.Timestamp
    lag_events: int
    lag: _duration_pb2.Duration
    open_streams: int
    def __init__(self, partner_id: _Optional[str] = ..., partner_name: _Optional[str] = ..., acknowledged_position: _Optional[int] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lag_events: _Optional[int] = ..., lag: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., open_streams: _Optional[int] = ...) -> None: ...

class GetFeedStatusRequest(_message.Message):
    __slots__ = ("partner_id",)
    PARTNER_ID_FIELD_NUMBER: _ClassVar[int]
    partner_id: str
    def __init__(self, partner_id: _Optional[str] = ...) -> None: ...

class GetFeedStatusResponse(_message.Message):
    __slots__ = ("head_position", "head_committed_at", "pending_events", "oldest_pending_age", "partners")
    HEAD_POSITION_FIELD_NUMBER: _ClassVar[int]
    HEAD_COMMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    PENDING_EVENTS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_FIELD_NUMBER: _ClassVar[int]
    PARTNERS_FIELD_NUMBER: _ClassVar[int]
    head_position: int
    head_committed_at: _timestamp_pb2.Timestamp
    pending_events: int
    oldest_pending_age: _duration_pb2.Duration
    partners: _containers.RepeatedCompositeFieldContainer[PartnerFeedStatus]
    def __init__(self, head_position: _Optional[int] = ..., head_committed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pending_events: _Optional[int] = ..., oldest_pending_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., partners: _Optional[_Iterable[_Union[PartnerFeedStatus, _Mapping]]] = ...) -> None: ...

class CitizenResult(_message.Message):
    __slots__ = ("person_key", "person", "result", "certificate", "pending_sample")
    PERSON_KEY_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    PENDING_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    person_key: str
    person: _person_pb2.Person
    result: _testing_pb2.Result
    certificate: _certificate_pb2.Certificate
    pending_sample: _testing_pb2.PendingSample
    def __init__(self, person_key: _Optional[str] = ..., person: _Optional[_Union[_person_pb2.Person, _Mapping]] = ..., result: _Optional[_Union[_testing_pb2.Result, _Mapping]] = ..., certificate: _Optional[_Union[_certificate_pb2.Certificate, _Mapping]] = ..., pending_sample: _Optional[_Union[_testing_pb2.PendingSample, _Mapping]] = ...) -> None: ...

class GetCitizenResultsRequest(_message.Message):
    __slots__ = ("identity", "phone", "date_of_birth")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    identity: _person_pb2.PersonIdentity
    phone: str
    date_of_birth: str
    def __init__(self, identity: _Optional[_Union[_person_pb2.PersonIdentity, _Mapping]] = ..., phone: _Optional[str] = ..., date_of_birth: _Optional[str] = ...) -> None: ...

class GetCitizenResultsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CitizenResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CitizenResult, _Mapping]]] = ...) -> None: ...

class GetCertificateQrRequest(_message.Message):
    __slots__ = ("certificate_id", "format", "scale")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    format: QrImageFormat
    scale: int
    def __init__(self, certificate_id: _Optional[str] = ..., format: _Optional[_Union[QrImageFormat, str]] = ..., scale: _Optional[int] = ...) -> None: ...

class GetCertificateQrResponse(_message.Message):
    __slots__ = ("image", "content_type", "status", "expires_at")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    content_type: str
    status: _certificate_pb2.CertificateStatus
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, image: _Optional[bytes] = ..., content_type: _Optional[str] = ..., status: _Optional[_Union[_certificate_pb2.CertificateStatus, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetCertificateDocumentRequest(_message.Message):
    __slots__ = ("certificate_id", "paper_size")
    CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    PAPER_SIZE_FIELD_NUMBER: _ClassVar[int]
    certificate_id: str
    paper_size: PaperSize
    def __init__(self, certificate_id: _Optional[str] = ..., paper_size: _Optional[_Union[PaperSize, str]] = ...) -> None: ...

class GetCertificateDocumentResponse(_message.Message):
    __slots__ = ("document", "content_type", "status", "expires_at")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    content_type: str
    status: _certificate_pb2.CertificateStatus
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, document: _Optional[bytes] = ..., content_type: _Optional[str] = ..., status: _Optional[_Union[_certificate_pb2.CertificateStatus, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
