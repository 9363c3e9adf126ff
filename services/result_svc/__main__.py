"""`python -m services.result_svc`: run result_svc until SIGTERM."""

from services.common.runtime import run_module
from services.result_svc.config import ResultConfig
from services.result_svc.service import LABEL, build

run_module(LABEL, ResultConfig, build)
