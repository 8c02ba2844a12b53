"""The values no log line may print: long-lived secrets for the process's life, per-call ones for the call's.

Long-lived secrets (API keys, the Twilio auth token, the stream-token secret) are registered once with
`register_secret` and stay. Per-call secrets (an ElevenLabs signed URL, its conversation signature) are
registered in a `SecretScope` owned by the call and forgotten when it closes, on every path, errors
included: otherwise a busy process would remember every call's URL, and every log line would cost more
with each call served. `voicebridge_log_redactions` shows how many values are masked now, so a leak of
scopes shows on a dashboard (and in `voicebridge-load --sequential`).
"""

from __future__ import annotations

import collections
from types import TracebackType

from prometheus_client import Gauge

MIN_SECRET_LEN = 6
MASK = "***"

_permanent: set[str] = set()
_scoped: collections.Counter[str] = collections.Counter()  # a value two live calls share stays until both end


def register_secret(value: str | None) -> None:
    """Never print `value` in any log line, for the rest of the process's life."""
    if value and len(value) >= MIN_SECRET_LEN:
        _permanent.add(value)


def redaction_count() -> int:
    """How many distinct values are masked now."""
    return len(_permanent | _scoped.keys())


def redact(text: str) -> str:
    for secret in (*_permanent, *_scoped):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class SecretScope:
    """Values masked in logs until `close()` (or the end of a `with` block): one call's secrets.

    Close is idempotent, so every path that ends the call may call it."""

    def __init__(self, *values: str | None) -> None:
        self._values: list[str] = []
        self._closed = False
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        if self._closed:
            raise RuntimeError("secret scope already closed")
        if value and len(value) >= MIN_SECRET_LEN:
            self._values.append(value)
            _scoped[value] += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for value in self._values:
            _scoped[value] -= 1
            if _scoped[value] <= 0:
                del _scoped[value]
        self._values.clear()

    def __enter__(self) -> SecretScope:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


LOG_REDACTIONS = Gauge("voicebridge_log_redactions", "Distinct secret values masked in this process's logs")
LOG_REDACTIONS.set_function(redaction_count)
