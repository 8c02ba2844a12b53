"""`voicebridge-call` usage errors (the call itself is placed in tests/e2e/test_edge_calls.py)."""

from __future__ import annotations

import pytest

from voicebridge.edge import cli


def test_refuses_to_run_without_the_api_token_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EDGE_API_TOKEN", raising=False)
    assert cli.main(["--to", "+15551230000"]) == 2
    assert "EDGE_API_TOKEN" in capsys.readouterr().err


def test_unreachable_edge_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGE_API_TOKEN", "api-token-0123456789abcdef")
    assert cli.main(["--to", "+15551230000", "--edge-url", "http://127.0.0.1:9", "--timeout", "2"]) == 1
    assert "cannot reach the edge" in capsys.readouterr().err


def test_variables_must_be_name_value() -> None:
    with pytest.raises(SystemExit, match="name=value"):
        cli._variables(["novalue"])
