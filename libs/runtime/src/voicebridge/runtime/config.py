"""Typed reading of environment variables, with an optional `.env` file.

Each service describes its settings as a frozen dataclass built by a `from_env()` classmethod using
these helpers, so a bad value fails at start-up with the variable's name instead of mid-call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dotenv import load_dotenv


class ConfigError(ValueError):
    """A configuration value is missing or malformed."""


def load_env_file(path: str | None = None) -> None:
    """Load `.env` (or $VOICEBRIDGE_ENV_FILE) if it exists. Real environment variables win."""
    candidate = Path(path or os.environ.get("VOICEBRIDGE_ENV_FILE", ".env"))
    if candidate.is_file():
        load_dotenv(candidate, override=False)


class Env:
    """Reads typed values from a mapping (os.environ by default).

    The methods are named for what they return (`string`, `integer`, `number`, `boolean`), not after
    the builtins, so the builtins keep their meaning inside the class."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ

    def string(self, name: str, default: str | None = None) -> str:
        value = self._env.get(name)
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"{name} is required")
            return default
        return value

    def optional(self, name: str) -> str | None:
        value = self._env.get(name)
        return value if value else None

    def integer(self, name: str, default: int) -> int:
        raw = self._env.get(name)
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None

    def number(self, name: str, default: float) -> float:
        raw = self._env.get(name)
        if not raw:
            return default
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._env.get(name)
        if not raw:
            return default
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value


T = TypeVar("T")


def settings_or_exit(service: str, from_env: Callable[[], T]) -> T:
    """What every service's main() does first: read `.env`, build its settings, or stop with the reason."""
    load_env_file()
    try:
        return from_env()
    except ConfigError as exc:
        raise SystemExit(f"voicebridge-{service}: configuration error: {exc}") from None


@dataclass(frozen=True)
class MuxSettings:
    """How this process carries calls over its internal gRPC hops (runtime/mux/).

    `enabled` (GRPC_MULTIPLEX, read by the clients: edge and media): many calls on one stream per
    process pair (CallBatch/ConverseBatch, else CallMany/ConverseMany); off, one stream per call.
    `interval_s`: the batching window at full load on the multiplexed stream to the next service
    (runtime/mux/batching.py): about one message
    per interval however many calls, none held while messages come slower than that, each call
    message waiting at most that long (0: whatever is ready leaves whenever the sender runs). Each
    client names its own variable and default: see docs/performance.md."""

    enabled: bool = True
    interval_s: float = 0.0

    @classmethod
    def from_env(cls, env: Env, interval_var: str = "", default_interval_ms: float = 0.0) -> MuxSettings:
        interval_ms = env.number(interval_var, default_interval_ms) if interval_var else 0.0
        if not 0 <= interval_ms <= 20:
            raise ConfigError(f"{interval_var} must be between 0 and 20 ms, got {interval_ms}")
        return cls(enabled=env.boolean("GRPC_MULTIPLEX", True), interval_s=interval_ms / 1000.0)


def drain_deadline_s(env: Env) -> float:
    """DRAIN_DEADLINE_S: how long calls in progress may run on after SIGTERM (runtime/drain.py)."""
    value = env.number("DRAIN_DEADLINE_S", 30.0)
    if value < 0:
        raise ConfigError(f"DRAIN_DEADLINE_S must be 0 or more, got {value}")
    return value


def resolve_interval_s(env: Env) -> float:
    """REPLICA_RESOLVE_INTERVAL_S: how often a name of replicas is resolved again (runtime/replicas.py)."""
    value = env.number("REPLICA_RESOLVE_INTERVAL_S", 5.0)
    if not 0.05 <= value <= 300:
        raise ConfigError(f"REPLICA_RESOLVE_INTERVAL_S must be between 0.05 and 300, got {value}")
    return value
