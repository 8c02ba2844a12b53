"""Logging set-up: one line per event, the call's SID on every line, secrets never printed.

`call_context(call_sid)` tags every log record made inside it (contextvars follow asyncio tasks).
`register_secret(value)` masks a value wherever it would appear in a log line; per-call secrets go in a
`redaction.SecretScope` instead, forgotten when the call ends.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator

import orjson

from .redaction import redact, register_secret

__all__ = ["call_context", "redact", "register_secret", "setup_logging"]

_call_sid: contextvars.ContextVar[str] = contextvars.ContextVar("call_sid", default="-")


@contextlib.contextmanager
def call_context(call_sid: str) -> Iterator[None]:
    token = _call_sid.set(call_sid or "-")
    try:
        yield
    finally:
        # An async generator closed by the loop's finalizer (its stream was cancelled mid-yield) exits
        # in another context, where the token does not apply and nothing is left to restore.
        with contextlib.suppress(ValueError):
            _call_sid.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.call_sid = _call_sid.get()
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "call_sid": getattr(record, "call_sid", "-"),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(entry).decode())


def setup_logging(service: str, level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once per process: `fmt` is "text" for people, "json" for collectors."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter(service))
    else:
        handler.setFormatter(
            _TextFormatter(f"%(asctime)s %(levelname)s {service} [%(call_sid)s] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "httpx", "httpcore", "twilio.http_client"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
