import logging

import pytest
import structlog
from notifier.settings import NotifierSettings
from notifier_common.logging import configure_logging, mask_email
from pydantic import ValidationError


class TestSettings:
    def test_production_refuses_default_secrets(self) -> None:
        with pytest.raises(ValidationError, match="default secret"):
            NotifierSettings(env="production", _env_file=None)  # type: ignore[call-arg]

    def test_production_starts_with_real_secrets(self) -> None:
        s = NotifierSettings(  # type: ignore[call-arg]
            env="production", secret_key="s3cret", gateway_token="tok", _env_file=None
        )
        assert s.json_logs is True

    def test_env_prefix_is_read(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("NOTIFIER_API_PORT", "9999")
        assert NotifierSettings(_env_file=None).api_port == 9999  # type: ignore[call-arg]


class TestLogging:
    def test_mask_email_keeps_first_letter_and_domain(self) -> None:
        assert mask_email("to alice@example.com, bob@x.org") == "to a***@example.com, b***@x.org"

    def test_json_logs_mask_addresses_and_bind_ids(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging(level="INFO", json=True)
        structlog.contextvars.bind_contextvars(event_id="e-1")
        try:
            structlog.stdlib.get_logger("t").info("letters.sent", recipient="alice@example.com")
        finally:
            structlog.contextvars.clear_contextvars()
            logging.getLogger().handlers.clear()
        err = capsys.readouterr().err
        assert '"event": "letters.sent"' in err
        assert '"event_id": "e-1"' in err
        assert "alice@example.com" not in err
        assert "a***@example.com" in err
