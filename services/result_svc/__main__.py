"""`python -m services.result_svc`: run result_svc, with the AdminService and StatisticsService it hosts,
until SIGTERM.

The process serves three rooms: ResultService (services.result_svc), AdminService (services.admin,
operators' administration of the registry, next to the system of record it administers) and
StatisticsService (services.statistics, the health department's figures, read from the system of record
with the summary it keeps). This entry point is the one place where they are composed; none of the
packages imports another of them (the operator CLI in admin reads statistics for its CSV export).
"""

from services.admin.servicer import admin_service
from services.common.runtime import Deps, run_module
from services.common.server import GrpcService
from services.registry.key_sealing import SigningKeySealer
from services.result_svc import service as result_service
from services.result_svc.config import ResultConfig
from services.statistics.servicer import statistics_service


def build(deps: Deps[ResultConfig]) -> list[GrpcService]:
    """Everything a result_svc process serves (tests start the very same composition)."""
    return [
        *result_service.build(deps),
        admin_service(deps, SigningKeySealer(deps.config.signing_keys_kek_public)),
        statistics_service(deps),
    ]


if __name__ == "__main__":
    run_module(result_service.LABEL, ResultConfig, build)
