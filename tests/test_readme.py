"""The README is the front door: its configuration table must list every variable the services read."""

from pathlib import Path

import pytest

from services.common.config import env_names
from services.gateway.config import GatewayConfig
from services.publish_svc.config import PublishConfig
from services.result_svc.config import ResultConfig
from services.verify_svc.config import VerifyConfig

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("config_cls", [ResultConfig, PublishConfig, VerifyConfig, GatewayConfig])
def test_every_environment_variable_is_documented(config_cls):
    missing = [name for name in env_names(config_cls) if f"`{name}`" not in README]
    assert not missing, f"README configuration table lacks {missing}"


def test_readme_names_the_two_commands():
    assert "make run" in README and "make test" in README
