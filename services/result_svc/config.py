"""result_svc configuration: the shared service settings (services.common.config.ServiceConfig)."""

import dataclasses

from services.common.config import ServiceConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResultConfig(ServiceConfig):
    """Settings of result_svc. Service-specific settings are added here as the service grows."""
