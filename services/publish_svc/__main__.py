"""`python -m services.publish_svc`: run publish_svc until SIGTERM."""

from services.common.runtime import run_module
from services.publish_svc.config import PublishConfig
from services.publish_svc.service import LABEL, build

run_module(LABEL, PublishConfig, build)
