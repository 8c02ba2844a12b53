"""Agent service settings, from environment variables (and an optional .env)."""

from __future__ import annotations

from dataclasses import dataclass, field

from voicebridge.runtime.config import ConfigError, Env, drain_deadline_s
from voicebridge.runtime.grpc_tls import GrpcTls
from voicebridge.runtime.logs import register_secret

from .backends.elevenlabs.settings import DEFAULT_BASE_URL, ElevenLabsSettings
from .holds import HoldSettings

BACKENDS = ("parrot", "elevenlabs")


@dataclass(frozen=True)
class AgentSettings:
    listen: str
    metrics_port: int
    backend: str
    log_level: str
    log_format: str
    # How long a backend may take to become ready before the caller is told we are busy.
    open_timeout_s: float
    # SIGTERM: calls in progress run on for up to this long, then hear a goodbye (runtime/drain.py).
    drain_deadline_s: float
    parrot_format: str
    elevenlabs: ElevenLabsSettings | None
    tls: GrpcTls = field(default_factory=GrpcTls)  # GRPC_TLS_* / GRPC_INSECURE (runtime/grpc_tls.py)
    metrics_host: str = "127.0.0.1"
    # A conversation whose media stream breaks or detaches waits this long for its call to re-attach
    # (holds.py says why 15 s); 0: never held. And the agent audio kept for that resume.
    hold: HoldSettings = field(default_factory=HoldSettings)

    @classmethod
    def from_env(cls, env: Env | None = None) -> AgentSettings:
        env = env or Env()
        # With ElevenLabs credentials configured, the real backend is the default; otherwise the
        # parrot, so that the stack works out of the box with no key and no network.
        default_backend = "elevenlabs" if env.optional("ELEVENLABS_AGENT_ID") else "parrot"
        backend = env.choice("AGENT_BACKEND", default_backend, BACKENDS)
        listen = env.string("AGENT_LISTEN", "127.0.0.1:50052")
        return cls(
            listen=listen,
            metrics_port=env.integer("AGENT_METRICS_PORT", 9103),
            backend=backend,
            log_level=env.string("LOG_LEVEL", "INFO"),
            log_format=env.choice("LOG_FORMAT", "text", ("text", "json")),
            open_timeout_s=env.number("AGENT_OPEN_TIMEOUT_S", 10.0),
            drain_deadline_s=drain_deadline_s(env),
            parrot_format=env.choice("PARROT_FORMAT", "pcm_16000", ("pcm_16000", "ulaw_8000")),
            elevenlabs=_elevenlabs(env) if backend == "elevenlabs" else None,
            tls=GrpcTls.from_env(env).checked(listen),
            metrics_host=env.string("METRICS_HOST", "127.0.0.1"),
            hold=HoldSettings(
                grace_s=env.number("AGENT_HOLD_GRACE_S", HoldSettings.grace_s),
                buffer_s=env.number("AGENT_HOLD_BUFFER_S", HoldSettings.buffer_s),
            ),
        )

    def __post_init__(self) -> None:
        if self.hold.grace_s < 0 or self.hold.buffer_s <= 0:
            raise ConfigError("AGENT_HOLD_GRACE_S must be >= 0 and AGENT_HOLD_BUFFER_S > 0")
        # The backend's own handshake timeout must fire first, so the caller hears why (busy/timeout).
        if self.elevenlabs is not None and self.elevenlabs.handshake_timeout_s >= self.open_timeout_s:
            raise ConfigError(
                "ELEVENLABS_HANDSHAKE_TIMEOUT_S must be below AGENT_OPEN_TIMEOUT_S "
                f"({self.elevenlabs.handshake_timeout_s} >= {self.open_timeout_s})"
            )


def _elevenlabs(env: Env) -> ElevenLabsSettings:
    api_key = env.optional("ELEVENLABS_API_KEY")
    register_secret(api_key)
    try:
        return ElevenLabsSettings(
            agent_id=env.string("ELEVENLABS_AGENT_ID"),
            api_key=api_key,
            base_url=env.string("ELEVENLABS_BASE_URL", DEFAULT_BASE_URL),
            # With a key, fetch a signed URL per call (works for public and private agents alike).
            requires_auth=env.boolean("ELEVENLABS_REQUIRES_AUTH", api_key is not None),
            handshake_timeout_s=env.number("ELEVENLABS_HANDSHAKE_TIMEOUT_S", 8.0),
            allow_agent_override=env.boolean("ELEVENLABS_ALLOW_AGENT_OVERRIDE", False),
            resume=env.boolean("ELEVENLABS_RESUME", True),
            resume_first_message=env.string("ELEVENLABS_RESUME_FIRST_MESSAGE", ""),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
