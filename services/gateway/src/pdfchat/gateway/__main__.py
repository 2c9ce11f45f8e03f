"""`python -m pdfchat.gateway`: serves the gateway with uvicorn on PDFCHAT_GATEWAY_HOST:PDFCHAT_GATEWAY_PORT."""

from __future__ import annotations

import uvicorn

from pdfchat.common.logs import configure_logging
from pdfchat.gateway.app import create_app
from pdfchat.gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
    )


if __name__ == "__main__":
    main()
