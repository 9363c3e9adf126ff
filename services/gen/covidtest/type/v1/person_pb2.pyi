from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IdentityDocumentType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IDENTITY_DOCUMENT_TYPE_UNSPECIFIED: _ClassVar[IdentityDocumentType]
    IDENTITY_DOCUMENT_TYPE_CITIZEN_ID: _ClassVar[IdentityDocumentType]
    IDENTITY_DOCUMENT_TYPE_OLD_ID: _ClassVar[IdentityDocumentType]
    IDENTITY_DOCUMENT_TYPE_PASSPORT: _ClassVar[IdentityDocumentType]
IDENTITY_DOCUMENT_TYPE_UNSPECIFIED: IdentityDocumentType
IDENTITY_DOCUMENT_TYPE_CITIZEN_ID: IdentityDocumentType
IDENTITY_DOCUMENT_TYPE_OLD_ID: IdentityDocumentType
IDENTITY_DOCUMENT_TYPE_PASSPORT: IdentityDocumentType

class PersonIdentity(_message.Message):
    __slots__ = ("type", "number", "country")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    type: IdentityDocumentType
    number: str
    country: str
    def __init__(self, type: _Optional[_Union[IdentityDocumentType, str]] = ..., number: _Optional[str] = ..., country: _Optional[str] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("identity", "full_name", "date_of_birth", "phone", "province_code", "district_code", "family_name", "given_name", "personal_data_erased")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    FULL_NAME_FIELD_NUMBER: _ClassVar[int]
    DATE_OF_BIRTH_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    DISTRICT_CODE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    PERSONAL_DATA_ERASED_FIELD_NUMBER: _ClassVar[int]
    identity: PersonIdentity
    full_name: str
    date_of_birth: str
    phone: str
    province_code: str
    district_code: str
    family_name: str
    given_name: str
    personal_data_erased: bool
    def __init__(self, identity: _Optional[_Union[PersonIdentity, _Mapping]] = ..., full_name: _Optional[str] = ..., date_of_birth: _Optional[str] = ..., phone: _Optional[str] = ..., province_code: _Optional[str] = ..., district_code: _Optional[str] = ..., family_name: _Optional[str] = ..., given_name: _Optional[str] = ..., personal_data_erased: bool = ...) -> None: ...
