"""Settings of the ingestion service (flat `PDFCHAT_*` environment variables)."""

from __future__ import annotations

from pydantic import Field

from pdfchat.common.settings import (
    CommonSettings,
    DatabaseSettings,
    NatsSettings,
    ObjectStoreSettings,
    ServiceAddresses,
)

MIB = 1024 * 1024


class IngestionSettings(CommonSettings, DatabaseSettings, NatsSettings, ObjectStoreSettings, ServiceAddresses):
    max_upload_bytes: int = Field(default=100 * MIB, gt=0)
    """Largest original accepted by Upload (PDFCHAT_MAX_UPLOAD_BYTES); larger uploads are refused."""
    upload_temp_dir: str | None = None
    """Where uploads are spooled while they stream in; the system temp directory when unset."""
    reconcile_after_seconds: float = Field(default=30.0, gt=0)
    """A queued document whose parse job was not accepted this long ago is re-published (and a deleted
    one whose clean-up failed is purged again)."""
    reconcile_interval_seconds: float = Field(default=10.0, gt=0)
    """How often the reconciler looks for such documents."""
    watch_resync_seconds: float = Field(default=15.0, gt=0)
    """A watcher re-reads its document this often even without a notification (a safety net)."""
