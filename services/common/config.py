"""Typed configuration from environment variables.

Each service has one frozen dataclass whose fields declare their environment variable, parser and
default with `setting(...)`. `load(cls)` reads them all and reports every bad value together in one
`ConfigError`, so an operator fixes a deployment in one go. `env_names(cls)` lists the variables a
class reads (the Kubernetes manifest tests compare it with deploy/, so config and manifests cannot
drift). Nothing deep in request code reads the environment.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from services.common.i18n import DEFAULT_LANGUAGE, parse_language

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_REQUIRED = object()


class ConfigError(Exception):
    """Every problem found in the environment, one per line."""

    def __init__(self, problems: list[str]):
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


def setting(
    env: str, parse: Callable[[str], Any] = str, default: Any = _REQUIRED, *, secret: bool = False, doc: str = ""
):
    """Declare a field read from environment variable `env`; no default means required."""
    meta = {"env": env, "parse": parse, "secret": secret, "doc": doc, "required": default is _REQUIRED}
    if default is _REQUIRED:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# --- parsers: each raises ValueError with a message fit for an operator -------------------------------


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def parse_port(raw: str) -> int:
    port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, got {port}")
    return port


def positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {value}")
    return value


def parse_request_bytes(raw: str) -> int:
    """A request size limit in bytes: 1 KiB to 64 MiB."""
    value = int(raw)
    if not 1024 <= value <= 64 * 1024 * 1024:
        raise ValueError(f"must be 1024..67108864 bytes, got {value}")
    return value


def positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError(f"must be a positive number, got {value}")
    return value


def parse_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return level


def parse_keyring(raw: str) -> dict[str, bytes]:
    """`id1:base64key,id2:base64key` → {id: 32-byte AES key}. The first entry encrypts new data."""
    ring: dict[str, bytes] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        key_id, sep, b64 = part.partition(":")
        if not sep or not key_id:
            raise ValueError("expected comma-separated 'key_id:base64' entries")
        if not key_id.isascii() or len(key_id) > 32:
            raise ValueError("key ids are ASCII, at most 32 characters")
        try:
            key = base64.b64decode(b64, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"key {key_id!r} is not valid base64") from exc
        if len(key) != 32:
            raise ValueError(f"key {key_id!r} must be 32 bytes (AES-256), got {len(key)}")
        ring[key_id] = key
    if not ring:
        raise ValueError("at least one key is required")
    return ring


def parse_secret_bytes(raw: str) -> bytes:
    try:
        value = base64.b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise ValueError("must be base64") from exc
    if len(value) < 32:
        raise ValueError("must be at least 32 bytes of randomness")
    return value


def parse_dsn(raw: str) -> str:
    if not raw.startswith(("postgres://", "postgresql://")):
        raise ValueError("must be a postgresql:// URL")
    return raw


def parse_redis_url(raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return raw


# --- loading ------------------------------------------------------------------------------------------

C = TypeVar("C", bound="DataclassInstance")  # a config dataclass


class Setting(NamedTuple):
    """One environment variable a config class reads, as the README's configuration table shows it."""

    name: str
    default: str  # "required" when it has none
    doc: str
    secret: bool


def load(cls: type[C], environ: Mapping[str, str] | None = None) -> C:
    """Build `cls` from the environment, raising ConfigError listing every bad or missing value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if "env" not in meta:
            continue
        raw = environ.get(meta["env"])
        if raw is None or raw == "":
            if meta["required"]:
                problems.append(f"{meta['env']}: required but not set")
            continue
        try:
            values[field.name] = meta["parse"](raw)
        except (ValueError, TypeError) as exc:
            # A secret's raw value is never echoed back.
            shown = "" if meta["secret"] else f" (got {raw!r})"
            problems.append(f"{meta['env']}: {exc}{shown}")
    if problems:
        raise ConfigError(problems)
    config = cls(**values)
    check = getattr(config, "validate", None)
    if problems := check() if check else []:  # checks across settings, once each parses
        raise ConfigError(problems)
    return config


def env_names(cls) -> list[str]:
    """Every environment variable `cls` reads."""
    return [f.metadata["env"] for f in dataclasses.fields(cls) if "env" in f.metadata]


def describe(cls) -> list[Setting]:
    """Every variable `cls` reads, for the README's configuration table."""
    rows = []
    for f in dataclasses.fields(cls):
        if "env" not in f.metadata:
            continue
        default = "required" if f.metadata["required"] else repr(f.default)
        rows.append(Setting(f.metadata["env"], default, f.metadata["doc"], f.metadata["secret"]))
    return rows


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """What every service needs: listening, storage, identity, logs and metrics."""

    database_url: str = setting("DATABASE_URL", parse_dsn, doc="Postgres primary (system of record)")
    redis_url: str = setting("REDIS_URL", parse_redis_url, doc="Redis hot cache")
    grpc_host: str = setting("GRPC_HOST", default="0.0.0.0", doc="address the gRPC server binds")
    grpc_port: int = setting("GRPC_PORT", parse_port, default=50051, doc="gRPC port (0 = any free port)")
    metrics_port: int = setting("METRICS_PORT", parse_port, default=9100, doc="Prometheus /metrics HTTP port")
    health_port: int = setting(
        "HEALTH_PORT",
        parse_port,
        default=0,
        doc="extra plaintext port serving only grpc.health.v1, for kubelet probes under mutual TLS (0 = off)",
    )
    grpc_insecure: bool = setting(
        "GRPC_INSECURE",
        parse_bool,
        default=False,
        doc="serve plaintext gRPC; only for local use, must be set explicitly when no TLS files are given",
    )
    tls_cert_file: str = setting("TLS_CERT_FILE", default="", doc="server certificate chain (PEM)")
    tls_key_file: str = setting("TLS_KEY_FILE", default="", secret=True, doc="server private key (PEM)")
    tls_client_ca_file: str = setting(
        "TLS_CLIENT_CA_FILE",
        default="",
        doc="CA bundle for client certificates; set it to require mutual TLS",
    )
    auth_cache_seconds: float = setting(
        "AUTH_CACHE_SECONDS",
        float,
        default=10.0,
        doc="how long a resolved credential is cached (revocation delay)",
    )
    auth_db_timeout_seconds: float = setting(
        "AUTH_DB_TIMEOUT_SECONDS",
        positive_float,
        default=0.5,
        doc="longest wait for a credential lookup; past it a known credential is served from its last resolution",
    )
    auth_unknown_lookups_per_second: float = setting(
        "AUTH_UNKNOWN_LOOKUPS_PER_SECOND",
        positive_float,
        default=20.0,
        doc="database lookups of credentials not known to the process, per client address per second; "
        "beyond (and the burst) RESOURCE_EXHAUSTED without a lookup. Known credentials are never limited",
    )
    auth_unknown_lookup_burst: int = setting(
        "AUTH_UNKNOWN_LOOKUP_BURST",
        positive_int,
        default=40,
        doc="unknown-credential lookups one client address may make at once before the per-second rate applies",
    )
    max_request_bytes: int = setting(
        "MAX_REQUEST_BYTES",
        parse_request_bytes,
        default=64 * 1024,
        doc="largest request message accepted; a larger one is refused RESOURCE_EXHAUSTED by grpc before it "
        "is parsed or its caller checked (default per service)",
    )
    redis_prefix: str = setting("REDIS_PREFIX", default="ct", doc="namespace in front of every Redis key")
    db_pool_min: int = setting("DB_POOL_MIN", positive_int, default=2, doc="Postgres pool minimum connections")
    db_pool_max: int = setting("DB_POOL_MAX", positive_int, default=10, doc="Postgres pool maximum connections")
    server_processes: int = setting(
        "SERVER_PROCESSES",
        positive_int,
        default=1,
        doc="processes serving the gRPC port together (SO_REUSEPORT), e.g. one per core; needs a fixed GRPC_PORT",
    )
    helper_threads_batch: bool = setting(
        "HELPER_THREADS_BATCH",
        parse_bool,
        default=True,
        doc="run grpc's poller and helper threads under SCHED_BATCH so they do not preempt the event loop (Linux)",
    )
    shutdown_grace_seconds: float = setting(
        "SHUTDOWN_GRACE_SECONDS",
        positive_float,
        default=20.0,
        doc="drain time for in-flight calls on SIGTERM",
    )
    log_level: str = setting("LOG_LEVEL", parse_log_level, default="INFO", doc="DEBUG, INFO, WARNING or ERROR")
    default_language: str = setting(
        "DEFAULT_LANGUAGE",
        parse_language,
        default=DEFAULT_LANGUAGE,
        doc="vi or en: the language of verdict reasons and of errors' google.rpc.LocalizedMessage for a call "
        "whose accept-language metadata names neither (the English error message is always sent too)",
    )

    def validate(self) -> list[str]:
        problems = []
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            problems.append("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            problems.append("TLS_CLIENT_CA_FILE (mutual TLS) needs TLS_CERT_FILE and TLS_KEY_FILE")
        if not self.tls_cert_file and not self.grpc_insecure:
            problems.append("no TLS configured: set TLS_CERT_FILE/TLS_KEY_FILE, or GRPC_INSECURE=true for local use")
        if self.tls_cert_file and self.grpc_insecure:
            problems.append("GRPC_INSECURE=true contradicts TLS_CERT_FILE")
        for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                problems.append(f"{name.upper()}: file not found: {path}")
        if self.server_processes > 1 and self.grpc_port == 0:
            problems.append("SERVER_PROCESSES > 1 needs a fixed GRPC_PORT (the processes share it)")
        if self.db_pool_min > self.db_pool_max:
            problems.append("DB_POOL_MIN must not exceed DB_POOL_MAX")
        return problems


@dataclasses.dataclass(frozen=True, kw_only=True)
class PersonalDataConfig(ServiceConfig):
    """A service that reads or writes personal data (result_svc, publish_svc) and so holds its keys;
    verify_svc, exposed to every checkpoint, does not: a compromise there yields no key."""

    pii_keys: dict = setting(
        "PII_KEYS",
        parse_keyring,
        secret=True,
        doc="AES-256 keys for personal data, `id:base64,...`; the first encrypts, all decrypt",
    )
    pii_pepper: bytes = setting(
        "PII_PEPPER",
        parse_secret_bytes,
        secret=True,
        doc="HMAC-SHA-256 pepper (base64, >= 32 bytes) for lookups",
    )
    # Retention (docs/retention.md): each service erases and deletes what it owns by these periods.
    retention_enabled: bool = setting(
        "RETENTION_ENABLED",
        parse_bool,
        default=True,
        doc="run the retention job (erase personal data, redact feed payloads, delete old audit rows) in "
        "the background",
    )
    retention_personal_data_days: int = setting(
        "RETENTION_PERSONAL_DATA_DAYS",
        positive_int,
        default=180,
        doc="a person's personal data is erased this many days after their last registration or result; "
        "a certificate's QR text this many days after issue",
    )
    retention_feed_payload_days: int = setting(
        "RETENTION_FEED_PAYLOAD_DAYS",
        positive_int,
        default=30,
        doc="feed events lose their person and QR text (redacted, kept at their position) this many days "
        "after relaying; at most RETENTION_PERSONAL_DATA_DAYS",
    )
    retention_audit_days: int = setting(
        "RETENTION_AUDIT_DAYS",
        positive_int,
        default=1825,
        doc="audit rows (audit_log, personal_data_reads) are deleted this many days after they were written; "
        "at least RETENTION_PERSONAL_DATA_DAYS",
    )
    retention_interval_seconds: float = setting(
        "RETENTION_INTERVAL_SECONDS",
        positive_float,
        default=3600.0,
        doc="how often the retention job looks for what is due",
    )
    retention_batch_size: int = setting(
        "RETENTION_BATCH_SIZE",
        positive_int,
        default=500,
        doc="rows the retention job changes per transaction (short transactions, locks skipped, never waited for)",
    )

    def validate(self) -> list[str]:
        problems = super().validate()
        if self.retention_feed_payload_days > self.retention_personal_data_days:
            problems.append("RETENTION_FEED_PAYLOAD_DAYS must not exceed RETENTION_PERSONAL_DATA_DAYS")
        if self.retention_audit_days < self.retention_personal_data_days:
            problems.append(
                "RETENTION_AUDIT_DAYS must be at least RETENTION_PERSONAL_DATA_DAYS (who read data outlives the data)"
            )
        return problems
