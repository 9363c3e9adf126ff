"""`python -m services.result_svc`: run result_svc, with the AdminService it hosts, until SIGTERM.

The process serves two rooms: ResultService (services.result_svc) and AdminService (services.admin,
operators' administration of the registry, next to the system of record it administers). This entry
point is the one place where they are composed; neither package imports the other.
"""

from services.admin.servicer import admin_service
from services.common.runtime import Deps, run_module
from services.common.server import GrpcService
from services.registry.key_sealing import SigningKeySealer
from services.result_svc import service as result_service
from services.result_svc.config import ResultConfig


def build(deps: Deps[ResultConfig]) -> list[GrpcService]:
    """Everything a result_svc process serves (tests start the very same composition)."""
    return [*result_service.build(deps), admin_service(deps, SigningKeySealer(deps.config.signing_keys_kek_public))]


if __name__ == "__main__":
    run_module(result_service.LABEL, ResultConfig, build)
