"""Upload passwords of encrypted PDFs, kept encrypted at rest.

worker_pdf needs the password in every parse job of the document, including the ones the reconciler
re-publishes and the ones a reprocess publishes later, so ingestion must keep it; it keeps it only as a
Fernet token (AES-128-CBC with HMAC-SHA256) under a key derived from PDFCHAT_PASSWORD_ENCRYPTION_KEY.
The plain text exists only in memory while a job is built and in the JetStream message, which the
work-queue stream removes once the job is acked. A token that no longer decrypts (the key was changed)
yields no password: the worker then reports "password required" instead of the service failing.
"""

from __future__ import annotations

import base64
import hashlib
import logging

from cryptography.fernet import Fernet, InvalidToken

log = logging.getLogger(__name__)


class PasswordBox:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))

    def seal(self, password: str) -> str | None:
        """The token to store for `password`; None when there is none."""
        if not password:
            return None
        return self._fernet.encrypt(password.encode()).decode()

    def open(self, token: str | None) -> str:
        """The password in `token`; empty when there is none or it cannot be decrypted."""
        if not token:
            return ""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            log.warning("a stored PDF password cannot be decrypted with the current key; publishing without it")
            return ""
