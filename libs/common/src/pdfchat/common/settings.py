"""Settings sections shared by the services.

Every service composes its settings class from these sections by inheritance, so every variable has a
flat name with the `PDFCHAT_` prefix (`PDFCHAT_DATABASE_URL`, `PDFCHAT_NATS_URL`, ...). Development
defaults work on one machine; outside dev mode an unsafe default is refused at start-up with a message
naming the variable to set.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-insecure-jwt-secret-change-me"
DEV_WEBHOOK_SECRET = "dev-insecure-webhook-secret"

Environment = Literal["dev", "test", "prod"]


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PDFCHAT_", extra="ignore", frozen=True, use_attribute_docstrings=True)

    env: Environment = "dev"
    """dev enables development conveniences (dev tokens, default secrets); prod refuses them."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""
    grpc_host: str = "127.0.0.1"
    """Interface the gRPC server binds to; 0.0.0.0 in containers."""
    shutdown_grace_seconds: float = 10.0
    """How long in-flight RPCs may run after SIGTERM before they are cancelled."""
    health_check_interval_seconds: float = 2.0
    """How often a service re-checks its dependencies to report SERVING or NOT_SERVING."""
    grpc_max_pending_calls: int = 20_000
    """Calls a gRPC server accepts ahead of its handlers. gRPC's own default (1,000) cancels part of any
    larger burst before a handler sees it; the hard limit is twice this."""

    @property
    def is_dev(self) -> bool:
        return self.env in ("dev", "test")


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PDFCHAT_", extra="ignore", frozen=True, use_attribute_docstrings=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/pdfchat"
    """PostgreSQL with pgvector; asyncpg DSN (a socket directory works as ?host=/path)."""
    database_pool_min: int = 1
    """Connections each service process keeps open."""
    database_pool_max: int = 10
    """Most connections one service process opens."""


class NatsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PDFCHAT_", extra="ignore", frozen=True, use_attribute_docstrings=True)

    nats_url: str = "nats://127.0.0.1:4222"
    """NATS server with JetStream enabled."""
    jobs_namespace: str = "pdfchat"
    """Prefix of job subjects and streams (`<ns>.jobs.parse`, `<NS>_JOBS`); tests use their own."""


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PDFCHAT_", extra="ignore", frozen=True, use_attribute_docstrings=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for edge rate limits, LLM limits and cache, and the chat replay buffer."""


class ObjectStoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PDFCHAT_", extra="ignore", frozen=True, use_attribute_docstrings=True)

    object_store: Literal["local", "s3"] = "local"
    """Where originals are kept: a local directory, or S3 and S3-compatible servers."""
    object_store_dir: str = ".data/objects"
    """Root directory of the local object store."""
    s3_bucket: str = "pdfchat"
    """Bucket for originals when PDFCHAT_OBJECT_STORE=s3."""
    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, Ceph, ...); unset for AWS."""
    s3_region: str = "us-east-1"
    """Region of the bucket."""
    s3_access_key_id: str | None = None
    """Access key; unset uses the default AWS credential chain."""
    s3_secret_access_key: str | None = None
    """Secret key that goes with the access key."""


class ServiceAddresses(BaseSettings):
    """host:port of every gRPC service, for the clients that call them."""

    model_config = SettingsConfigDict(env_prefix="PDFCHAT_", extra="ignore", frozen=True, use_attribute_docstrings=True)

    ingestion_addr: str = "127.0.0.1:50061"
    """IngestionService; the ingestion process also binds this port."""
    worker_pdf_addr: str = "127.0.0.1:50062"
    """worker_pdf health endpoint."""
    embedding_addr: str = "127.0.0.1:50063"
    """EmbeddingService."""
    vector_index_addr: str = "127.0.0.1:50064"
    """VectorIndexService."""
    orchestrator_addr: str = "127.0.0.1:50065"
    """OrchestratorService."""
    chat_addr: str = "127.0.0.1:50066"
    """ChatService."""


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PDFCHAT_", extra="ignore", frozen=True, use_attribute_docstrings=True)

    env: Environment = "dev"
    jwt_secret: str = Field(default=DEV_JWT_SECRET)
    """HS256 key for bearer tokens. Must be set outside dev."""
    jwt_issuer: str = "pdfchat"
    """`iss` claim issued and required."""
    jwt_ttl_seconds: int = 12 * 3600
    """Lifetime of issued tokens."""

    @model_validator(mode="after")
    def _refuse_dev_secret_outside_dev(self) -> AuthSettings:
        refuse_dev_default(self.env, "PDFCHAT_JWT_SECRET", self.jwt_secret, DEV_JWT_SECRET)
        return self


def refuse_dev_default(env: str, variable: str, value: str, dev_default: str) -> None:
    """Raises at start-up when a development secret would be used outside dev."""
    if env == "prod" and value == dev_default:
        raise ValueError(f"{variable} still has its development default; set it to a secret value")


def port_of(address: str) -> int:
    """The port of a `host:port` address: a service binds the port its own *_ADDR names."""
    _, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"address {address!r} has no port")
    return int(port)
