"""Gateway settings: the shared sections plus what only the edge needs (listen address, limits, CORS)."""

from __future__ import annotations

from pdfchat.common.settings import AuthSettings, CommonSettings, RedisSettings, ServiceAddresses

MIB = 1024 * 1024


class GatewaySettings(CommonSettings, AuthSettings, RedisSettings, ServiceAddresses):
    gateway_host: str = "127.0.0.1"
    """Interface the HTTP server binds to; 0.0.0.0 in containers."""
    gateway_port: int = 8080
    """HTTP port of the gateway (REST, WebSocket, web app)."""
    max_upload_bytes: int = 100 * MIB
    """Largest PDF accepted; the gateway answers 413 as soon as a stream goes over it."""
    cors_origins: str = ""
    """Comma-separated origins allowed to call the API from a browser; empty disables CORS."""
    rate_limit_per_minute: int = 600
    """Requests per tenant per minute at the edge (fixed window in Redis); 0 disables the limit."""
    rpc_timeout_seconds: float = 30.0
    """Deadline of unary calls to the services."""
    upload_timeout_seconds: float = 600.0
    """Deadline of one streamed upload to ingestion."""
    chat_timeout_seconds: float = 300.0
    """Deadline of one streamed answer (SendMessage, ResumeMessage)."""
    watch_timeout_seconds: float = 3600.0
    """Deadline of one document watch; the client watches again after it."""
    ws_auth_timeout_seconds: float = 10.0
    """How long a WebSocket may stay open without authenticating."""

    @property
    def allowed_origins(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
