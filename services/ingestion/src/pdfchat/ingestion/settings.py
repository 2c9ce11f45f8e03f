"""Settings of the ingestion service (flat `PDFCHAT_*` environment variables)."""

from __future__ import annotations

from pydantic import Field, model_validator

from pdfchat.common.settings import (
    DEV_WEBHOOK_SECRET,
    CommonSettings,
    DatabaseSettings,
    NatsSettings,
    ObjectStoreSettings,
    ServiceAddresses,
    refuse_dev_default,
)

DEV_PASSWORD_ENCRYPTION_KEY = "dev-insecure-password-encryption-key"

MIB = 1024 * 1024


class IngestionSettings(CommonSettings, DatabaseSettings, NatsSettings, ObjectStoreSettings, ServiceAddresses):
    max_upload_bytes: int = Field(default=100 * MIB, gt=0)
    """Largest original accepted by Upload (PDFCHAT_MAX_UPLOAD_BYTES); larger uploads are refused."""
    max_upload_pages: int = Field(default=2000, gt=0)
    """Longest PDF accepted by Upload, in pages; longer ones are refused (413) before anything is stored."""
    upload_temp_dir: str | None = None
    """Where uploads are spooled while they stream in; the system temp directory when unset."""
    reconcile_after_seconds: float = Field(default=30.0, gt=0)
    """A queued document whose parse job was not accepted this long ago is re-published (and a deleted
    one whose clean-up failed is purged again, a READY version whose swap in vector_index failed is
    activated again)."""
    reconcile_interval_seconds: float = Field(default=10.0, gt=0)
    """How often the reconciler looks for such documents."""
    watch_resync_seconds: float = Field(default=15.0, gt=0)
    """A watcher re-reads its document this often even without a notification (a safety net)."""
    stuck_after_seconds: float = Field(default=900.0, gt=0)
    """A document QUEUED, PARSING or EMBEDDING without any progress for this long is stuck: its parse job is
    published again (parsing and embedding are idempotent), up to PDFCHAT_MAX_PARSE_ATTEMPTS times."""
    max_parse_attempts: int = Field(default=3, ge=1)
    """Publishes of a version's parse job (the first included) before a stuck document is FAILED, with a
    reason naming the stage it was stuck in."""
    sweep_delay_seconds: float = Field(default=900.0, ge=0)
    """After a delete or a version swap, the document's stale segments are deleted once more this much
    later, removing what a worker racing the first clean-up wrote; longer than a job can live
    (AckWait x MaxDeliver)."""
    password_encryption_key: str = DEV_PASSWORD_ENCRYPTION_KEY
    """Key that encrypts stored PDF passwords (uploads of encrypted PDFs). Must be set outside dev."""
    webhook_secret: str = DEV_WEBHOOK_SECRET
    """Default HMAC-SHA256 key that signs outcome callbacks (`X-Pdfchat-Signature: sha256=<hex>`) for
    tenants without their own. Must be set outside dev."""
    webhook_tenant_secrets: dict[str, str] = Field(default_factory=dict)
    """Per-tenant webhook secrets as JSON, `{"tenant": "secret"}`; override PDFCHAT_WEBHOOK_SECRET."""
    callback_max_attempts: int = Field(default=8, ge=1)
    """Attempts to deliver one outcome callback before it is recorded as failed."""
    callback_backoff_seconds: float = Field(default=2.0, gt=0)
    """Wait before the second attempt; doubles after each failed attempt."""
    callback_backoff_max_seconds: float = Field(default=600.0, gt=0)
    """Longest wait between two attempts."""
    callback_timeout_seconds: float = Field(default=10.0, gt=0)
    """Time limit of one callback POST."""
    callback_interval_seconds: float = Field(default=1.0, gt=0)
    """How often the callback sender looks for due deliveries."""

    @model_validator(mode="after")
    def _refuse_dev_secrets_outside_dev(self) -> IngestionSettings:
        refuse_dev_default(self.env, "PDFCHAT_WEBHOOK_SECRET", self.webhook_secret, DEV_WEBHOOK_SECRET)
        refuse_dev_default(
            self.env, "PDFCHAT_PASSWORD_ENCRYPTION_KEY", self.password_encryption_key, DEV_PASSWORD_ENCRYPTION_KEY
        )
        return self
