"""`python -m services.verify_svc`: run verify_svc until SIGTERM."""

from services.common.runtime import run_module
from services.verify_svc.config import VerifyConfig
from services.verify_svc.service import LABEL, build

run_module(LABEL, VerifyConfig, build)
