import datetime

from services.gen.covidtest.type.v1 import certificate_pb2 as _certificate_pb2
from services.gen.covidtest.type.v1 import province_rule_pb2 as _province_rule_pb2
from services.gen.covidtest.type.v1 import role_pb2 as _role_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrganisationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORGANISATION_KIND_UNSPECIFIED: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_SAMPLING_UNIT: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_LAB: _ClassVar[OrganisationKind]
    ORGANISATION_KIND_HEALTH_DEPARTMENT: _ClassVar[OrganisationKind]

class PrincipalKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRINCIPAL_KIND_UNSPECIFIED: _ClassVar[PrincipalKind]
    PRINCIPAL_KIND_ORGANISATION: _ClassVar[PrincipalKind]
    PRINCIPAL_KIND_PARTNER: _ClassVar[PrincipalKind]
    PRINCIPAL_KIND_CHECKPOINT_DEVICE: _ClassVar[PrincipalKind]
    PRINCIPAL_KIND_OPERATOR: _ClassVar[PrincipalKind]

class CredentialKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDENTIAL_KIND_UNSPECIFIED: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_TOKEN: _ClassVar[CredentialKind]
    CREDENTIAL_KIND_CLIENT_CERTIFICATE: _ClassVar[CredentialKind]

class SigningKeyPurpose(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNING_KEY_PURPOSE_UNSPECIFIED: _ClassVar[SigningKeyPurpose]
    SIGNING_KEY_PURPOSE_DCC: _ClassVar[SigningKeyPurpose]
    SIGNING_KEY_PURPOSE_BUNDLE: _ClassVar[SigningKeyPurpose]

class SigningKeyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNING_KEY_STATE_UNSPECIFIED: _ClassVar[SigningKeyState]
    SIGNING_KEY_STATE_PENDING: _ClassVar[SigningKeyState]
    SIGNING_KEY_STATE_ACTIVE: _ClassVar[SigningKeyState]
    SIGNING_KEY_STATE_DEACTIVATED: _ClassVar[SigningKeyState]
    SIGNING_KEY_STATE_RETIRED: _ClassVar[SigningKeyState]
ORGANISATION_KIND_UNSPECIFIED: OrganisationKind
ORGANISATION_KIND_SAMPLING_UNIT: OrganisationKind
ORGANISATION_KIND_LAB: OrganisationKind
ORGANISATION_KIND_HEALTH_DEPARTMENT: OrganisationKind
PRINCIPAL_KIND_UNSPECIFIED: PrincipalKind
PRINCIPAL_KIND_ORGANISATION: PrincipalKind
PRINCIPAL_KIND_PARTNER: PrincipalKind
PRINCIPAL_KIND_CHECKPOINT_DEVICE: PrincipalKind
PRINCIPAL_KIND_OPERATOR: PrincipalKind
CREDENTIAL_KIND_UNSPECIFIED: CredentialKind
CREDENTIAL_KIND_TOKEN: CredentialKind
CREDENTIAL_KIND_CLIENT_CERTIFICATE: CredentialKind
SIGNING_KEY_PURPOSE_UNSPECIFIED: SigningKeyPurpose
SIGNING_KEY_PURPOSE_DCC: SigningKeyPurpose
SIGNING_KEY_PURPOSE_BUNDLE: SigningKeyPurpose
SIGNING_KEY_STATE_UNSPECIFIED: SigningKeyState
SIGNING_KEY_STATE_PENDING: SigningKeyState
SIGNING_KEY_STATE_ACTIVE: SigningKeyState
SIGNING_KEY_STATE_DEACTIVATED: SigningKeyState
SIGNING_KEY_STATE_RETIRED: SigningKeyState

class Organisation(_message.Message):
    __slots__ = ("organisation_id", "name", "kind", "province_code", "created_at")
    ORGANISATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    organisation_id: str
    name: str
    kind: OrganisationKind
    province_code: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, organisation_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[OrganisationKind, str]] = ..., province_code: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Partner(_message.Message):
    __slots__ = ("partner_id", "name", "personal_data_access", "created_at")
    PARTNER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERSONAL_DATA_ACCESS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    partner_id: str
    name: str
    personal_data_access: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, partner_id: _Optional[str] = ..., name: _Optional[str] = ..., personal_data_access: bool = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CheckpointDevice(_message.Message):
    __slots__ = ("device_id", "name", "province_code", "created_at")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    name: str
    province_code: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, device_id: _Optional[str] = ..., name: _Optional[str] = ..., province_code: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Principal(_message.Message):
    __slots__ = ("kind", "id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    kind: PrincipalKind
    id: str
    def __init__(self, kind: _Optional[_Union[PrincipalKind, str]] = ..., id: _Optional[str] = ...) -> None: ...

class Credential(_message.Message):
    __slots__ = ("credential_id", "principal", "role", "kind", "description", "created_at", "expires_at", "revoked_at", "revocation_reason", "certificate_sha256_fingerprint")
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_REASON_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_SHA256_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    credential_id: str
    principal: Principal
    role: _role_pb2.Role
    kind: CredentialKind
    description: str
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    revoked_at: _timestamp_pb2.Timestamp
    revocation_reason: str
    certificate_sha256_fingerprint: str
    def __init__(self, credential_id: _Optional[str] = ..., principal: _Optional[_Union[Principal, _Mapping]] = ..., role: _Optional[_Union[_role_pb2.Role, str]] = ..., kind: _Optional[_Union[CredentialKind, str]] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revocation_reason: _Optional[str] = ..., certificate_sha256_fingerprint: _Optional[str] = ...) -> None: ...

class SigningKey(_message.Message):
    __slots__ = ("signing_key_id", "state", "certificate", "created_at", "activated_at", "deactivated_at", "retired_at", "certificates_signed", "last_certificate_expires_at", "purpose")
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    DEACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    RETIRED_AT_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_SIGNED_FIELD_NUMBER: _ClassVar[int]
    LAST_CERTIFICATE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    signing_key_id: str
    state: SigningKeyState
    certificate: _certificate_pb2.SigningCertificate
    created_at: _timestamp_pb2.Timestamp
    activated_at: _timestamp_pb2.Timestamp
    deactivated_at: _timestamp_pb2.Timestamp
    retired_at: _timestamp_pb2.Timestamp
    certificates_signed: int
    last_certificate_expires_at: _timestamp_pb2.Timestamp
    purpose: SigningKeyPurpose
    def __init__(self, signing_key_id: _Optional[str] = ..., state: _Optional[_Union[SigningKeyState, str]] = ..., certificate: _Optional[_Union[_certificate_pb2.SigningCertificate, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deactivated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retired_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., certificates_signed: _Optional[int] = ..., last_certificate_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., purpose: _Optional[_Union[SigningKeyPurpose, str]] = ...) -> None: ...

class TrustedCertificate(_message.Message):
    __slots__ = ("trusted_certificate_id", "certificate", "imported_at", "removed_at")
    TRUSTED_CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_AT_FIELD_NUMBER: _ClassVar[int]
    trusted_certificate_id: str
    certificate: _certificate_pb2.SigningCertificate
    imported_at: _timestamp_pb2.Timestamp
    removed_at: _timestamp_pb2.Timestamp
    def __init__(self, trusted_certificate_id: _Optional[str] = ..., certificate: _Optional[_Union[_certificate_pb2.SigningCertificate, _Mapping]] = ..., imported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., removed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateOrganisationRequest(_message.Message):
    __slots__ = ("request_id", "name", "kind", "province_code")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    kind: OrganisationKind
    province_code: str
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[OrganisationKind, str]] = ..., province_code: _Optional[str] = ...) -> None: ...

class CreateOrganisationResponse(_message.Message):
    __slots__ = ("organisation",)
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    organisation: Organisation
    def __init__(self, organisation: _Optional[_Union[Organisation, _Mapping]] = ...) -> None: ...

class ListOrganisationsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "kind", "province_code")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    kind: OrganisationKind
    province_code: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., kind: _Optional[_Union[OrganisationKind, str]] = ..., province_code: _Optional[str] = ...) -> None: ...

class ListOrganisationsResponse(_message.Message):
    __slots__ = ("organisations", "next_page_token")
    ORGANISATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    organisations: _containers.RepeatedCompositeFieldContainer[Organisation]
    next_page_token: str
    def __init__(self, organisations: _Optional[_Iterable[_Union[Organisation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreatePartnerRequest(_message.Message):
    __slots__ = ("request_id", "name", "personal_data_access")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERSONAL_DATA_ACCESS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    personal_data_access: bool
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ..., personal_data_access: bool = ...) -> None: ...

class CreatePartnerResponse(_message.Message):
    __slots__ = ("partner",)
    PARTNER_FIELD_NUMBER: _ClassVar[int]
    partner: Partner
    def __init__(self, partner: _Optional[_Union[Partner, _Mapping]] = ...) -> None: ...

class ListPartnersRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPartnersResponse(_message.Message):
    __slots__ = ("partners", "next_page_token")
    PARTNERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    partners: _containers.RepeatedCompositeFieldContainer[Partner]
    next_page_token: str
    def __init__(self, partners: _Optional[_Iterable[_Union[Partner, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateCheckpointDeviceRequest(_message.Message):
    __slots__ = ("request_id", "name", "province_code")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    name: str
    province_code: str
    def __init__(self, request_id: _Optional[str] = ..., name: _Optional[str] = ..., province_code: _Optional[str] = ...) -> None: ...

class CreateCheckpointDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: CheckpointDevice
    def __init__(self, device: _Optional[_Union[CheckpointDevice, _Mapping]] = ...) -> None: ...

class ListCheckpointDevicesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "province_code")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    province_code: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., province_code: _Optional[str] = ...) -> None: ...

class ListCheckpointDevicesResponse(_message.Message):
    __slots__ = ("devices", "next_page_token")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[CheckpointDevice]
    next_page_token: str
    def __init__(self, devices: _Optional[_Iterable[_Union[CheckpointDevice, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class IssueCredentialRequest(_message.Message):
    __slots__ = ("request_id", "principal", "role", "description", "expires_at")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    principal: Principal
    role: _role_pb2.Role
    description: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., principal: _Optional[_Union[Principal, _Mapping]] = ..., role: _Optional[_Union[_role_pb2.Role, str]] = ..., description: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IssueCredentialResponse(_message.Message):
    __slots__ = ("credential", "token")
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    token: str
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class ListCredentialsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "principal_kind", "principal_id", "include_revoked")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_KIND_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    principal_kind: PrincipalKind
    principal_id: str
    include_revoked: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., principal_kind: _Optional[_Union[PrincipalKind, str]] = ..., principal_id: _Optional[str] = ..., include_revoked: bool = ...) -> None: ...

class ListCredentialsResponse(_message.Message):
    __slots__ = ("credentials", "next_page_token")
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    credentials: _containers.RepeatedCompositeFieldContainer[Credential]
    next_page_token: str
    def __init__(self, credentials: _Optional[_Iterable[_Union[Credential, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RevokeCredentialRequest(_message.Message):
    __slots__ = ("request_id", "credential_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    credential_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., credential_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class RegisterClientCertificateRequest(_message.Message):
    __slots__ = ("request_id", "principal", "role", "certificate_der", "certificate_pem", "sha256_fingerprint", "description")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_DER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    SHA256_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    principal: Principal
    role: _role_pb2.Role
    certificate_der: bytes
    certificate_pem: str
    sha256_fingerprint: str
    description: str
    def __init__(self, request_id: _Optional[str] = ..., principal: _Optional[_Union[Principal, _Mapping]] = ..., role: _Optional[_Union[_role_pb2.Role, str]] = ..., certificate_der: _Optional[bytes] = ..., certificate_pem: _Optional[str] = ..., sha256_fingerprint: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class RegisterClientCertificateResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: Credential
    def __init__(self, credential: _Optional[_Union[Credential, _Mapping]] = ...) -> None: ...

class GenerateSigningKeyRequest(_message.Message):
    __slots__ = ("request_id", "algorithm", "validity", "purpose")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    algorithm: _certificate_pb2.SigningAlgorithm
    validity: _duration_pb2.Duration
    purpose: SigningKeyPurpose
    def __init__(self, request_id: _Optional[str] = ..., algorithm: _Optional[_Union[_certificate_pb2.SigningAlgorithm, str]] = ..., validity: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., purpose: _Optional[_Union[SigningKeyPurpose, str]] = ...) -> None: ...

class GenerateSigningKeyResponse(_message.Message):
    __slots__ = ("signing_key",)
    SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    signing_key: SigningKey
    def __init__(self, signing_key: _Optional[_Union[SigningKey, _Mapping]] = ...) -> None: ...

class ImportSigningKeyRequest(_message.Message):
    __slots__ = ("request_id", "private_key_pem", "certificate_pem", "validity", "purpose")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    private_key_pem: str
    certificate_pem: str
    validity: _duration_pb2.Duration
    purpose: SigningKeyPurpose
    def __init__(self, request_id: _Optional[str] = ..., private_key_pem: _Optional[str] = ..., certificate_pem: _Optional[str] = ..., validity: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., purpose: _Optional[_Union[SigningKeyPurpose, str]] = ...) -> None: ...

class ImportSigningKeyResponse(_message.Message):
    __slots__ = ("signing_key",)
    SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    signing_key: SigningKey
    def __init__(self, signing_key: _Optional[_Union[SigningKey, _Mapping]] = ...) -> None: ...

class ActivateSigningKeyRequest(_message.Message):
    __slots__ = ("request_id", "signing_key_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    signing_key_id: str
    def __init__(self, request_id: _Optional[str] = ..., signing_key_id: _Optional[str] = ...) -> None: ...

class ActivateSigningKeyResponse(_message.Message):
    __slots__ = ("activated", "deactivated")
    ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    DEACTIVATED_FIELD_NUMBER: _ClassVar[int]
    activated: SigningKey
    deactivated: SigningKey
    def __init__(self, activated: _Optional[_Union[SigningKey, _Mapping]] = ..., deactivated: _Optional[_Union[SigningKey, _Mapping]] = ...) -> None: ...

class RetireSigningKeyRequest(_message.Message):
    __slots__ = ("request_id", "signing_key_id", "force")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    signing_key_id: str
    force: bool
    def __init__(self, request_id: _Optional[str] = ..., signing_key_id: _Optional[str] = ..., force: bool = ...) -> None: ...

class RetireSigningKeyResponse(_message.Message):
    __slots__ = ("signing_key",)
    SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    signing_key: SigningKey
    def __init__(self, signing_key: _Optional[_Union[SigningKey, _Mapping]] = ...) -> None: ...

class ListSigningKeysRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "purpose")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: SigningKeyState
    purpose: SigningKeyPurpose
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[SigningKeyState, str]] = ..., purpose: _Optional[_Union[SigningKeyPurpose, str]] = ...) -> None: ...

class ListSigningKeysResponse(_message.Message):
    __slots__ = ("signing_keys", "next_page_token")
    SIGNING_KEYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    signing_keys: _containers.RepeatedCompositeFieldContainer[SigningKey]
    next_page_token: str
    def __init__(self, signing_keys: _Optional[_Iterable[_Union[SigningKey, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ImportTrustedCertificateRequest(_message.Message):
    __slots__ = ("request_id", "certificate_der", "certificate_pem", "country")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_DER_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    certificate_der: bytes
    certificate_pem: str
    country: str
    def __init__(self, request_id: _Optional[str] = ..., certificate_der: _Optional[bytes] = ..., certificate_pem: _Optional[str] = ..., country: _Optional[str] = ...) -> None: ...

class ImportTrustedCertificateResponse(_message.Message):
    __slots__ = ("trusted_certificate",)
    TRUSTED_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    trusted_certificate: TrustedCertificate
    def __init__(self, trusted_certificate: _Optional[_Union[TrustedCertificate, _Mapping]] = ...) -> None: ...

class ListTrustedCertificatesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "country")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    country: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., country: _Optional[str] = ...) -> None: ...

class ListTrustedCertificatesResponse(_message.Message):
    __slots__ = ("trusted_certificates", "next_page_token")
    TRUSTED_CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trusted_certificates: _containers.RepeatedCompositeFieldContainer[TrustedCertificate]
    next_page_token: str
    def __init__(self, trusted_certificates: _Optional[_Iterable[_Union[TrustedCertificate, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RemoveTrustedCertificateRequest(_message.Message):
    __slots__ = ("request_id", "trusted_certificate_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_CERTIFICATE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    trusted_certificate_id: str
    def __init__(self, request_id: _Optional[str] = ..., trusted_certificate_id: _Optional[str] = ...) -> None: ...

class RemoveTrustedCertificateResponse(_message.Message):
    __slots__ = ("trusted_certificate",)
    TRUSTED_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    trusted_certificate: TrustedCertificate
    def __init__(self, trusted_certificate: _Optional[_Union[TrustedCertificate, _Mapping]] = ...) -> None: ...

class SetProvinceRuleRequest(_message.Message):
    __slots__ = ("request_id", "rule")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    rule: _province_rule_pb2.ProvinceRule
    def __init__(self, request_id: _Optional[str] = ..., rule: _Optional[_Union[_province_rule_pb2.ProvinceRule, _Mapping]] = ...) -> None: ...

class SetProvinceRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: _province_rule_pb2.ProvinceRule
    def __init__(self, rule: _Optional[_Union[_province_rule_pb2.ProvinceRule, _Mapping]] = ...) -> None: ...

class ListProvinceRulesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "province_code", "include_history")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_CODE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    province_code: str
    include_history: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., province_code: _Optional[str] = ..., include_history: bool = ...) -> None: ...

class ListProvinceRulesResponse(_message.Message):
    __slots__ = ("rules", "next_page_token")
    RULES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[_province_rule_pb2.ProvinceRule]
    next_page_token: str
    def __init__(self, rules: _Optional[_Iterable[_Union[_province_rule_pb2.ProvinceRule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
