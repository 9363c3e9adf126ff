"""verify_svc configuration: the shared service settings (services.common.config.ServiceConfig)."""

import dataclasses

from services.common.config import ServiceConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class VerifyConfig(ServiceConfig):
    """Settings of verify_svc. Service-specific settings are added here as the service grows."""
