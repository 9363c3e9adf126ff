"""gateway configuration: where the gRPC services are, what HTTP it serves, and its limits.

The gateway holds no database, cache or key: only the addresses of the services it forwards to.
"""

from __future__ import annotations

import dataclasses
import os

from services.common.config import (
    parse_bool,
    parse_log_level,
    parse_port,
    parse_request_bytes,
    positive_float,
    setting,
)

DNS_SCHEME = "dns:///"


def parse_target(raw: str) -> str:
    """A gRPC target: "host:port" (one connection per service), or "dns:///host:port" (every address the
    name resolves to, e.g. a headless Service's ready pods, with calls balanced round robin over them)."""
    target = raw.strip()
    host, sep, port = target.removeprefix(DNS_SCHEME).rpartition(":")
    if not sep or not host or "/" in host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"expected host:port or dns:///host:port, got {raw!r}")
    return target


def parse_origins(raw: str) -> frozenset[str]:
    """Comma-separated browser origins ("https://checkpoint.example.vn") allowed cross-origin calls."""
    origins = frozenset(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    wrong = sorted(o for o in origins if not o.startswith(("https://", "http://")) or o.count("/") != 2)
    if wrong:
        raise ValueError(f"origins are scheme://host[:port] without a path: {', '.join(wrong)}")
    return origins


@dataclasses.dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """Settings of the HTTP/JSON gateway."""

    http_host: str = setting("GATEWAY_HTTP_HOST", default="0.0.0.0", doc="address the HTTP server binds")
    http_port: int = setting("GATEWAY_HTTP_PORT", parse_port, default=8080, doc="HTTP port (0 = any free port)")
    result_target: str = setting(
        "RESULT_SVC_TARGET", parse_target, doc="result_svc's gRPC target, host:port or dns:///host:port"
    )
    publish_target: str = setting(
        "PUBLISH_SVC_TARGET", parse_target, doc="publish_svc's gRPC target, host:port or dns:///host:port"
    )
    verify_target: str = setting(
        "VERIFY_SVC_TARGET", parse_target, doc="verify_svc's gRPC target, host:port or dns:///host:port"
    )
    upstream_insecure: bool = setting(
        "UPSTREAM_INSECURE",
        parse_bool,
        default=False,
        doc="plaintext gRPC to the services (local use only); otherwise TLS checked against UPSTREAM_CA_FILE",
    )
    upstream_ca_file: str = setting(
        "UPSTREAM_CA_FILE", default="", doc="CA certificates (PEM) the services' TLS certificates are checked against"
    )
    upstream_client_cert_file: str = setting(
        "UPSTREAM_CLIENT_CERT_FILE",
        default="",
        doc="client certificate (PEM) shown to services that require mutual TLS; never registered to a principal",
    )
    upstream_client_key_file: str = setting(
        "UPSTREAM_CLIENT_KEY_FILE", default="", secret=True, doc="private key (PEM) of UPSTREAM_CLIENT_CERT_FILE"
    )
    upstream_server_name: str = setting(
        "UPSTREAM_SERVER_NAME",
        default="",
        doc="name expected in the services' TLS certificates (empty: the host of each target)",
    )
    cors_origins: frozenset = setting(
        "CORS_ORIGINS",
        parse_origins,
        default=frozenset(),
        doc="browser origins allowed to call the API cross-origin (comma-separated; empty: none)",
    )
    max_request_bytes: int = setting(
        "MAX_REQUEST_BYTES",
        parse_request_bytes,
        # The largest valid request, RegisterSamples with 500 samples, is about 3 MB of JSON, and 7.5 MB when a
        # client escapes every non-ASCII character as \uXXXX: 8 MiB admits every valid request.
        default=8 * 1024 * 1024,
        doc="largest HTTP request body accepted (413 beyond it)",
    )
    deadline_seconds: float = setting(
        "UPSTREAM_DEADLINE_SECONDS", positive_float, default=10.0, doc="deadline of each forwarded gRPC call"
    )
    metrics_port: int = setting("METRICS_PORT", parse_port, default=9100, doc="Prometheus /metrics HTTP port")
    shutdown_grace_seconds: float = setting(
        "SHUTDOWN_GRACE_SECONDS", positive_float, default=20.0, doc="time in-flight requests get on SIGTERM"
    )
    log_level: str = setting("LOG_LEVEL", parse_log_level, default="INFO", doc="DEBUG, INFO, WARNING or ERROR")
    checkpoint_assets_dir: str = setting(
        "CHECKPOINT_ASSETS_DIR",
        default="",
        doc="directory holding zxing-wasm's dist/ (empty: node_modules/zxing-wasm/dist of the checkout)",
    )

    def validate(self) -> list[str]:
        problems = []
        if not self.upstream_insecure and not self.upstream_ca_file:
            problems.append("UPSTREAM_CA_FILE is required unless UPSTREAM_INSECURE=true (plaintext, local use only)")
        if self.upstream_insecure and (self.upstream_ca_file or self.upstream_client_cert_file):
            problems.append("UPSTREAM_INSECURE=true contradicts UPSTREAM_CA_FILE / UPSTREAM_CLIENT_CERT_FILE")
        if bool(self.upstream_client_cert_file) != bool(self.upstream_client_key_file):
            problems.append("UPSTREAM_CLIENT_CERT_FILE and UPSTREAM_CLIENT_KEY_FILE go together")
        for name in ("upstream_ca_file", "upstream_client_cert_file", "upstream_client_key_file"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                problems.append(f"{name.upper()}: file not found: {path}")
        return problems
