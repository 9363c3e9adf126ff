"""result_svc configuration: the shared service settings plus intake limits."""

import dataclasses

from services.common.config import ServiceConfig, positive_float, positive_int, setting


def _pool_size(raw: str) -> int:
    value = positive_int(raw)
    if value > 50:
        raise ValueError(f"must be at most 50, got {value}")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResultConfig(ServiceConfig):
    """Settings of result_svc."""

    pool_max_size: int = setting(
        "POOL_MAX_SIZE", _pool_size, default=10, doc="most samples one pool tube may hold (national guidance: 10)"
    )
    idempotency_retention_hours: float = setting(
        "IDEMPOTENCY_RETENTION_HOURS",
        positive_float,
        default=168.0,
        doc="how long a mutation's request_id is remembered (all services); then its row is pruned",
    )
