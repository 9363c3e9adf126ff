"""Configuration: every problem reported at once, secrets never echoed."""

import base64
import os

import pytest

from services.common.config import ConfigError, PersonalDataConfig, env_names, load

GOOD = {
    "DATABASE_URL": "postgresql://u@h/db",
    "REDIS_URL": "redis://h:6379/0",
    "PII_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
    "PII_PEPPER": base64.b64encode(os.urandom(32)).decode(),
    "GRPC_INSECURE": "true",
}


def test_valid_environment_loads_with_defaults():
    config = load(PersonalDataConfig, GOOD)
    assert config.grpc_port == 50051
    assert config.grpc_insecure is True
    assert list(config.pii_keys) == ["k1"]
    assert len(config.pii_pepper) == 32


def test_every_problem_is_reported_together():
    bad = {"GRPC_PORT": "70000", "PII_KEYS": "k1:not-base64!", "LOG_LEVEL": "LOUD", "DB_POOL_MIN": "-1"}
    with pytest.raises(ConfigError) as err:
        load(PersonalDataConfig, bad)
    text = str(err.value)
    for expected in (
        "DATABASE_URL: required",
        "REDIS_URL: required",
        "PII_PEPPER: required",
        "GRPC_PORT",
        "PII_KEYS",
        "LOG_LEVEL",
        "DB_POOL_MIN",
    ):
        assert expected in text
    assert len(err.value.problems) == 7


def test_secret_values_are_never_echoed():
    with pytest.raises(ConfigError) as err:
        load(PersonalDataConfig, {**GOOD, "PII_PEPPER": "c2hvcnQ="})  # base64 of "short"
    assert "PII_PEPPER" in str(err.value)
    assert "c2hvcnQ=" not in str(err.value)


def test_plaintext_must_be_chosen_explicitly():
    env = dict(GOOD)
    del env["GRPC_INSECURE"]
    with pytest.raises(ConfigError) as err:
        load(PersonalDataConfig, env)
    assert "GRPC_INSECURE=true" in str(err.value)


def test_tls_files_must_come_in_pairs_and_exist(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(PersonalDataConfig, {**GOOD, "GRPC_INSECURE": "false", "TLS_CERT_FILE": str(tmp_path / "missing.pem")})
    text = str(err.value)
    assert "TLS_CERT_FILE and TLS_KEY_FILE must be set together" in text
    assert "file not found" in text


def test_short_aes_key_is_refused():
    with pytest.raises(ConfigError) as err:
        load(PersonalDataConfig, {**GOOD, "PII_KEYS": "k1:" + base64.b64encode(b"x" * 16).decode()})
    assert "32 bytes" in str(err.value)


def test_env_names_lists_every_variable():
    names = env_names(PersonalDataConfig)
    assert {"DATABASE_URL", "REDIS_URL", "PII_KEYS", "PII_PEPPER", "GRPC_PORT", "METRICS_PORT"} <= set(names)
    assert len(names) == len(set(names))


def test_retention_periods_must_nest():
    """Feed payloads go before the personal data, the audit of who read data outlives it, and a QR text is
    never erased before its certificate expires."""
    from services.publish_svc.config import PublishConfig
    from tests.conftest import fresh_secrets

    defaults = load(PersonalDataConfig, GOOD)
    assert (defaults.retention_personal_data_days, defaults.retention_feed_payload_days) == (180, 30)
    assert defaults.retention_audit_days == 1825 and defaults.retention_enabled
    for bad, problem in (
        ({"RETENTION_FEED_PAYLOAD_DAYS": "181"}, "RETENTION_FEED_PAYLOAD_DAYS must not exceed"),
        ({"RETENTION_AUDIT_DAYS": "179"}, "RETENTION_AUDIT_DAYS must be at least"),
        ({"RETENTION_PERSONAL_DATA_DAYS": "0"}, "RETENTION_PERSONAL_DATA_DAYS: must be a positive integer"),
    ):
        with pytest.raises(ConfigError) as err:
            load(PersonalDataConfig, {**GOOD, **bad})
        assert problem in str(err.value)
    publish = {**GOOD, **fresh_secrets(), "RETENTION_PERSONAL_DATA_DAYS": "3", "RETENTION_FEED_PAYLOAD_DAYS": "3"}
    with pytest.raises(ConfigError) as err:
        load(PublishConfig, {**publish, "CERTIFICATE_VALIDITY_HOURS": "72"})
    assert "must outlast CERTIFICATE_VALIDITY_HOURS" in str(err.value)
    assert load(PublishConfig, {**publish, "CERTIFICATE_VALIDITY_HOURS": "71"}).retention_personal_data_days == 3
