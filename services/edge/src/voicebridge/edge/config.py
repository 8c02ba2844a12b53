"""Edge service settings, from environment variables (and an optional .env)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from voicebridge.runtime.config import ConfigError, Env, MuxSettings, drain_deadline_s, resolve_interval_s
from voicebridge.runtime.grpc_tls import GrpcTls
from voicebridge.runtime.logs import register_secret
from voicebridge.runtime.resolvers import plaintext_check_targets

from . import call_params, exposure

MEDIA_STREAM_PATH = "/twilio/media"
VOICE_WEBHOOK_PATH = "/twilio/voice"
STREAM_STATUS_PATH = "/twilio/stream-status"
CALL_STATUS_PATH = "/twilio/call-status"
STREAM_ACTION_PATH = "/twilio/stream-action"  # <Connect action>: the stream ended (edge/stream_action.py)
CALLS_API_PATH = "/calls"
MIN_SECRET_CHARS = 16
# The batching window towards media at full load (runtime/mux/batching.py): caller frames of all calls
# that arrive within it travel in one gRPC message; a lone call's frames cross at once. About one
# message per 6 ms whatever the calls, each frame held at most 6 ms (docs/performance.md).
MEDIA_BATCH_INTERVAL_MS = 6.0
# Custom <Parameter> names: short and plain; the vb_ prefix is voicebridge's own.
VARIABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def variable_problem(name: object, value: object) -> str | None:
    """Why a custom stream parameter (agent variable) is unusable, or None."""
    if not isinstance(name, str) or not VARIABLE_NAME.fullmatch(name):
        return f"variable name {str(name)[:40]!r} must match {VARIABLE_NAME.pattern}"
    if name in call_params.RESERVED or name.startswith("vb_"):
        return f"variable name {name!r} is reserved (vb_ prefix)"
    if not isinstance(value, str):
        return f"variable {name!r} must be a string"
    if len(name) + len(value) >= 500:  # Twilio: name + value under 500 characters
        return f"variable {name!r}: name + value must be under 500 characters"
    return None


# --- privacy and agent control (issue 11: LOG_TRANSCRIPTS, EDGE_API_AGENT_OVERRIDES, stream secret) ---

# Stream parameters that steer the agent rather than inform it; the calls API refuses them unless
# EDGE_API_AGENT_OVERRIDES lists them (the agent service must also allow them, e.g.
# ELEVENLABS_ALLOW_AGENT_OVERRIDE=true for agent_id).
AGENT_CONTROL_VARIABLES = {"agent_id": "selects which agent answers the call"}
AGENT_SYSTEM_PREFIX = "system__"  # ElevenLabs' own system variables: never set by a caller
STREAM_SECRET_LABEL = b"voicebridge stream-token secret v1"


def agent_control_problem(name: str, allowed: frozenset[str]) -> str | None:
    """Why the calls API must refuse variable `name` (it steers the agent), or None."""
    if name.startswith(AGENT_SYSTEM_PREFIX):
        return f"variable {name!r} is reserved: {AGENT_SYSTEM_PREFIX} variables are set by ElevenLabs"
    if name in AGENT_CONTROL_VARIABLES and name not in allowed:
        return (
            f"variable {name!r} {AGENT_CONTROL_VARIABLES[name]}; the API may set it only when "
            f"EDGE_API_AGENT_OVERRIDES lists it"
        )
    return None


def _agent_overrides(raw: str | None) -> frozenset[str]:
    items = frozenset(item.strip() for item in (raw or "").split(",") if item.strip())
    unknown = sorted(items - AGENT_CONTROL_VARIABLES.keys())
    if unknown:
        known = ", ".join(sorted(AGENT_CONTROL_VARIABLES))
        raise ConfigError(f"EDGE_API_AGENT_OVERRIDES: {', '.join(unknown)} unknown (one of: {known})")
    return items


def stream_token_secret(configured: str | None, auth_token: str | None) -> str:
    """EDGE_STREAM_TOKEN_SECRET if set, else a key derived from TWILIO_AUTH_TOKEN (HMAC-SHA256 under a
    fixed label), so every replica and every restart that shares the Twilio settings checks the tokens
    the others minted. Without either (signatures off, local development: tokens are not checked), one
    random secret per process."""
    if configured:
        return configured
    if auth_token:
        return hmac.new(auth_token.encode(), STREAM_SECRET_LABEL, hashlib.sha256).hexdigest()
    return secrets.token_urlsafe(32)


def _agent_variables(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise ConfigError("EDGE_AGENT_VARIABLES must be a JSON object of strings") from None
    if not isinstance(parsed, dict):
        raise ConfigError("EDGE_AGENT_VARIABLES must be a JSON object of strings")
    for name, value in parsed.items():
        problem = variable_problem(name, value)
        if problem:
            raise ConfigError(f"EDGE_AGENT_VARIABLES: {problem}")
    return parsed


def _transfer_destinations(raw: str | None) -> frozenset[str]:
    items = frozenset(item.strip() for item in (raw or "").split(",") if item.strip())
    for item in items:
        if item != "*" and not E164.fullmatch(item) and not item.startswith(("sip:", "sips:")):
            raise ConfigError(f"EDGE_TRANSFER_DESTINATIONS: {item!r} is not E.164, a sip: URI or *")
    return items


@dataclass(frozen=True)
class EdgeSettings:
    host: str
    port: int
    media_target: str
    # The public https:// base URL Twilio uses to reach this edge. Signatures are checked against URLs
    # rebuilt from it, never from the request, so they hold behind proxies and tunnels.
    public_base_url: str
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    twilio_api_base_url: str | None  # tests point the REST client at a local fake
    twilio_from_number: str | None  # default caller id for outbound calls
    validate_signatures: bool
    api_token: str | None  # bearer token for the outbound-call API; the API is off without it
    stream_token_secret: str
    stream_token_ttl_s: float
    max_message_bytes: int
    start_timeout_s: float
    max_pending_streams: int  # WebSockets open but not yet authenticated by a valid start
    media_queue_ms: int
    log_level: str
    log_format: str
    # Extra <Parameter>s on every stream (agent dynamic variables), from EDGE_AGENT_VARIABLES (JSON).
    agent_variables: dict[str, str] = field(default_factory=dict)
    # Where the agent may transfer calls: E.164 numbers or sip: URIs, "*" for anywhere; empty: nowhere.
    transfer_destinations: frozenset[str] = frozenset()
    max_webhook_bytes: int = 64 * 1024
    # How calls travel to media: one multiplexed stream, or one stream each (runtime/mux/).
    mux: MuxSettings = field(default_factory=MuxSettings)
    # Listeners and the media hop: /metrics on its own port, mTLS to media (runtime/grpc_tls.py).
    metrics_port: int = 9101
    metrics_host: str = "127.0.0.1"
    tls: GrpcTls = field(default_factory=GrpcTls)
    # Privacy and agent control: transcripts and DTMF digits in logs only when asked (personal data);
    # agent-steering variables the calls API may set (EDGE_API_AGENT_OVERRIDES).
    log_transcripts: bool = False
    api_agent_overrides: frozenset[str] = frozenset()
    # SIGTERM: Twilio streams in progress run on for up to this long, then hear a goodbye (drain.py);
    # MEDIA_TARGET as a name or list of replicas: how often it is resolved again (runtime/replicas.py).
    drain_deadline_s: float = 30.0
    resolve_interval_s: float = 5.0
    # How many times one call's stream is re-opened after the edge carrying it died (<Connect action>).
    max_stream_reopens: int = 3
    # A media replica that dies mid-call: the call is opened again on another one at most this many
    # times (media_link.py); 0: the call ends with it, as before.
    media_reattach_max: int = 2

    @property
    def rest_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def media_stream_url(self) -> str:
        """The wss:// URL written into TwiML (and validated on the WebSocket upgrade)."""
        parts = urlsplit(self.public_base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{MEDIA_STREAM_PATH}"

    def public_url(self, path: str) -> str:
        return f"{self.public_base_url.rstrip('/')}{path}"

    @classmethod
    def from_env(cls, env: Env | None = None) -> EdgeSettings:
        env = env or Env()
        token = env.optional("TWILIO_AUTH_TOKEN")
        host, port = env.string("EDGE_HOST", "127.0.0.1"), env.integer("EDGE_PORT", 8000)
        public = env.string("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
        if urlsplit(public).scheme not in {"http", "https"}:
            raise ConfigError(f"PUBLIC_BASE_URL must be an http(s) URL, got {public!r}")
        validate = exposure.decide(env, token, host, port, public).validate_signatures
        media_target = env.string("MEDIA_TARGET", "127.0.0.1:50051")
        configured_secret = env.optional("EDGE_STREAM_TOKEN_SECRET")
        stream_secret = stream_token_secret(configured_secret, token)
        api_token = env.optional("EDGE_API_TOKEN")
        for name, value in (("EDGE_STREAM_TOKEN_SECRET", configured_secret), ("EDGE_API_TOKEN", api_token)):
            if value is not None and len(value) < MIN_SECRET_CHARS:
                raise ConfigError(f"{name} must be at least {MIN_SECRET_CHARS} characters")
        from_number = env.optional("TWILIO_FROM_NUMBER")
        if from_number is not None and not E164.fullmatch(from_number):
            raise ConfigError(f"TWILIO_FROM_NUMBER must be E.164 (+15551234567), got {from_number!r}")
        for secret in (token, stream_secret, api_token):
            register_secret(secret)
        reopens = env.integer("EDGE_MAX_STREAM_REOPENS", 3)
        if reopens < 0:
            raise ConfigError(f"EDGE_MAX_STREAM_REOPENS must be 0 or more, got {reopens}")
        return cls(
            host=host,
            port=port,
            media_target=media_target,
            public_base_url=public,
            twilio_account_sid=env.optional("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=token,
            twilio_api_base_url=env.optional("TWILIO_API_BASE_URL"),
            twilio_from_number=from_number,
            validate_signatures=validate,
            api_token=api_token,
            stream_token_secret=stream_secret,
            stream_token_ttl_s=env.number("EDGE_STREAM_TOKEN_TTL_S", 300.0),
            max_message_bytes=env.integer("EDGE_MAX_MESSAGE_BYTES", 64 * 1024),
            start_timeout_s=env.number("EDGE_START_TIMEOUT_S", 10.0),
            max_pending_streams=env.integer("EDGE_MAX_PENDING_STREAMS", 200),
            media_queue_ms=env.integer("EDGE_MEDIA_QUEUE_MS", 1000),
            log_level=env.string("LOG_LEVEL", "INFO"),
            log_format=env.choice("LOG_FORMAT", "text", ("text", "json")),
            agent_variables=_agent_variables(env.optional("EDGE_AGENT_VARIABLES")),
            transfer_destinations=_transfer_destinations(env.optional("EDGE_TRANSFER_DESTINATIONS")),
            max_webhook_bytes=env.integer("EDGE_MAX_WEBHOOK_BYTES", 64 * 1024),
            mux=MuxSettings.from_env(env, "MEDIA_BATCH_INTERVAL_MS", MEDIA_BATCH_INTERVAL_MS),
            metrics_port=env.integer("EDGE_METRICS_PORT", 9101),
            metrics_host=env.string("METRICS_HOST", "127.0.0.1"),
            tls=GrpcTls.from_env(env).checked(targets=plaintext_check_targets(media_target)),
            log_transcripts=env.boolean("LOG_TRANSCRIPTS", False),
            api_agent_overrides=_agent_overrides(env.optional("EDGE_API_AGENT_OVERRIDES")),
            drain_deadline_s=drain_deadline_s(env),
            resolve_interval_s=resolve_interval_s(env),
            max_stream_reopens=reopens,
            media_reattach_max=env.integer("EDGE_MEDIA_REATTACH_MAX", 2),
        )
