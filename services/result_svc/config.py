"""result_svc configuration: the shared service settings plus intake limits."""

import dataclasses

from services.common.config import PersonalDataConfig, parse_request_bytes, positive_float, positive_int, setting


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
