import pytest
from pydantic import ValidationError

from pdfchat.common.settings import DEV_JWT_SECRET, AuthSettings, port_of


def test_dev_jwt_secret_is_refused_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDFCHAT_ENV", "prod")
    monkeypatch.delenv("PDFCHAT_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="PDFCHAT_JWT_SECRET"):
        AuthSettings()


def test_dev_jwt_secret_is_accepted_in_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDFCHAT_ENV", "dev")
    assert AuthSettings().jwt_secret == DEV_JWT_SECRET


def test_prod_accepts_a_real_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDFCHAT_ENV", "prod")
    monkeypatch.setenv("PDFCHAT_JWT_SECRET", "s3cret-from-the-vault")
    assert AuthSettings().jwt_secret == "s3cret-from-the-vault"


def test_port_of_reads_the_port_of_an_address() -> None:
    assert port_of("127.0.0.1:50061") == 50061
    assert port_of("[::1]:8080") == 8080
    with pytest.raises(ValueError, match="no port"):
        port_of("localhost")
