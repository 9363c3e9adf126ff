"""`python -m services.gateway`: run the HTTP/JSON gateway until SIGTERM."""

import sys

from services.common import logs, tracing
from services.common.config import ConfigError, load
from services.gateway.app import serve_until_signal
from services.gateway.config import GatewayConfig


def main() -> int:
    try:
        config = load(GatewayConfig)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level)
    tracing.configure_from_environment("gateway")  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    import uvloop

    uvloop.run(serve_until_signal(config))
    return 0


sys.exit(main())
