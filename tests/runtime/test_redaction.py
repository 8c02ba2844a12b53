"""Log redaction: long-lived secrets stay masked; a call's secrets are forgotten when its scope closes."""

from __future__ import annotations

import logging

import pytest

from voicebridge.runtime.logs import setup_logging
from voicebridge.runtime.redaction import SecretScope, redact, redaction_count, register_secret


def test_scoped_secret_is_masked_inside_the_scope_and_forgotten_after() -> None:
    baseline = redaction_count()
    url = "wss://example.test/v1/convai/conversation?agent_id=a&conversation_signature=sig-0123456789"
    with SecretScope(url, "sig-0123456789") as scope:
        assert redaction_count() == baseline + 2
        assert "sig-0123456789" not in redact(f"connecting to {url}")
        scope.close()  # idempotent: the with block closes it again
    assert redaction_count() == baseline
    assert redact("sig-0123456789") == "sig-0123456789"


def test_scope_is_released_when_the_call_fails() -> None:
    baseline = redaction_count()
    with pytest.raises(RuntimeError), SecretScope("per-call-secret-1"):
        raise RuntimeError("the call failed")
    assert redaction_count() == baseline


def test_a_value_two_calls_share_stays_masked_until_both_end() -> None:
    first, second = SecretScope("shared-secret-42"), SecretScope("shared-secret-42")
    first.close()
    assert redact("shared-secret-42") == "***"
    second.close()
    assert redact("shared-secret-42") == "shared-secret-42"


def test_long_lived_secrets_outlive_scopes_of_the_same_value() -> None:
    register_secret("long-lived-api-key-0123")
    with SecretScope("long-lived-api-key-0123"):
        pass
    assert redact("key long-lived-api-key-0123") == "key ***"


def test_short_values_are_never_registered() -> None:
    baseline = redaction_count()
    with SecretScope("abc", None, ""):
        assert redaction_count() == baseline


def test_log_lines_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("test")
    with SecretScope("line-secret-0123456"):
        logging.getLogger("t").warning("url had line-secret-0123456 in it")
    assert "line-secret-0123456" not in capsys.readouterr().err
