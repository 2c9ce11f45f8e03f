import pytest
from pydantic import ValidationError

from pdfchat.chat.settings import ChatSettings
from pdfchat.common.settings import port_of


def test_defaults_match_the_design() -> None:
    settings = ChatSettings()
    assert settings.top_k == 8
    assert settings.answer_deadline_seconds == 120
    assert settings.replay_ttl_seconds == 3600
    assert port_of(settings.chat_addr) == 50066


def test_answer_deadline_must_leave_a_minute_of_queueing_for_llm_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDFCHAT_ANSWER_DEADLINE_SECONDS", "30")
    with pytest.raises(ValidationError, match="PDFCHAT_ANSWER_DEADLINE_SECONDS"):
        ChatSettings()
