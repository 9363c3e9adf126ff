"""result_svc configuration: the shared service settings plus intake limits."""

import dataclasses

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from services.common.config import PersonalDataConfig, parse_request_bytes, positive_float, positive_int, setting
from services.registry.key_sealing import parse_kek_public


def _pool_size(raw: str) -> int:
    value = positive_int(raw)
    if value > 50:
        raise ValueError(f"must be at most 50, got {value}")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResultConfig(PersonalDataConfig):
    """Settings of result_svc."""

    pool_max_size: int = setting(
        "POOL_MAX_SIZE", _pool_size, default=10, doc="most samples one pool tube may hold (national guidance: 10)"
    )
    # The largest valid intake request, 1000 samples with every field at its limit, is about 2.6 MB
    # (tests/common/test_request_limits.py computes it); AdminService's PEMs are a few KB.
    max_request_bytes: int = setting(
        "MAX_REQUEST_BYTES",
        parse_request_bytes,
        default=4 * 1024 * 1024,
        doc="largest request message accepted (result_svc and AdminService: 4 MiB); larger is RESOURCE_EXHAUSTED",
    )
    idempotency_retention_hours: float = setting(
        "IDEMPOTENCY_RETENTION_HOURS",
        positive_float,
        default=168.0,
        doc="how long a mutation's request_id is remembered (all services); then its row is pruned",
    )
    signing_keys_kek_public: X25519PublicKey = setting(
        "SIGNING_KEYS_KEK_PUBLIC",
        parse_kek_public,
        doc="public half of the signing-key KEK (base64): AdminService seals new signing keys with it and "
        "cannot open them",
    )
