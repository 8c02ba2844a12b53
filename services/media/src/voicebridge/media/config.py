"""Media service settings, from environment variables (and an optional .env)."""

from __future__ import annotations

from dataclasses import dataclass, field

from voicebridge.runtime.config import ConfigError, Env, MuxSettings, drain_deadline_s, resolve_interval_s
from voicebridge.runtime.grpc_tls import GrpcTls
from voicebridge.runtime.resolvers import plaintext_check_targets

# The batching window towards the agent at full load, as the edge's MEDIA_BATCH_INTERVAL_MS: about one
# message per 6 ms whatever the calls, none held while a lone call's frames come 20 ms apart.
AGENT_BATCH_INTERVAL_MS = 6.0


@dataclass(frozen=True)
class PlayoutConfig:
    """How agent audio is paced to the caller (see playout.py)."""

    # Audio per frame sent to the edge, and so per Twilio media message. 60 ms: a third of the
    # messages of 20 ms frames on both outbound hops and the Twilio WebSocket (docs/performance.md).
    # A clear still flushes Twilio's whole buffer at once; what sits there grows by 40 ms at most
    # (the lead plus one frame, see playout.py).
    frame_ms: int = 60
    lead_ms: int = 60  # how far ahead of real time we keep Twilio's buffer: what a clear has to flush
    mark_interval_ms: int = 100  # a playback mark at least this often while talking
    # Frames of every call leave on one shared grid of this many ms, up to one tick before they are
    # due (on top of the lead): the pacers of all calls then wake together and their frames cross to
    # the edge in one gRPC message per tick instead of one per frame. 0: each frame exactly when due.
    tick_ms: int = 20
    max_queued_s: float = 120.0  # agent audio held for pacing, at most

    def __post_init__(self) -> None:
        if not 10 <= self.frame_ms <= 100:
            raise ConfigError("PLAYOUT_FRAME_MS must be between 10 and 100")
        if not 0 <= self.lead_ms <= 1000:
            raise ConfigError("PLAYOUT_LEAD_MS must be between 0 and 1000")
        if not 0 <= self.tick_ms <= self.frame_ms:
            raise ConfigError("PLAYOUT_TICK_MS must be between 0 and PLAYOUT_FRAME_MS")
        if self.mark_interval_ms < self.frame_ms:
            raise ConfigError("PLAYOUT_MARK_INTERVAL_MS must be at least PLAYOUT_FRAME_MS")


@dataclass(frozen=True)
class BargeInConfig:
    """When the caller's voice stops the agent (see bargein.py for the why of each knob)."""

    enabled: bool = True
    # webrtcvad mode while the agent talks: 3 rejects most non-speech (docs/telephone-audio.md#vad).
    aggressiveness: int = 3
    # Gated speech in this many ms of the last `onset_window_ms` -> pause the agent.
    onset_ms: int = 40
    onset_window_ms: int = 60
    # A backchannel ("mm-hm", "yeah", "okay") is over this long after its onset: speech still going on
    # later (`late_ms` of it within `late_window_ms`, and `confirm_ms` since the onset in all) confirms
    # the interruption.
    backchannel_ms: int = 700
    late_ms: int = 150
    late_window_ms: int = 300
    # At `decide_ms`: speech in at least this share of the frames after `backchannel_ms` confirms too.
    late_share: float = 0.25
    confirm_ms: int = 250
    # Nothing louder than echo and noise for this long -> the utterance ended: resume playback.
    release_ms: int = 600
    # The pause is decided (confirmed or resumed) at the latest this long after the onset.
    decide_ms: int = 1500
    # Speech within this long after a resume is the same utterance: it may stop the agent, not pause it.
    credit_ms: int = 600
    # Frames louder than echo and this much above the noise floor keep an utterance going (not webrtcvad).
    active_margin_db: float = 5.0
    # Speech that confirms must also be this much above the line's loud moments (its 90th percentile
    # level over 3 s without the agent's echo: babble's peaks), and is timed from the first such frame.
    peak_margin_db: float = 3.0
    # Caller audio must be louder than the loudest recent agent audio minus this to count as the caller.
    echo_margin_db: float = 6.0
    # How long after being played agent audio can come back as echo.
    echo_window_ms: int = 400
    # Once the echo path is known: caller audio must be this much louder than the expected echo.
    echo_excess_db: float = 6.0
    # Level-envelope correlation above which the caller's line is taken to carry the agent's echo.
    echo_correlation: float = 0.5
    # Caller audio must be this much above the line's noise floor...
    noise_margin_db: float = 6.0
    # ...taken as this percentile of the caller line's level over the last 3 s.
    noise_percentile: float = 50.0
    # Quieter than this is line noise, whatever the VAD says.
    min_level_dbfs: float = -50.0

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError("BARGE_IN_VAD_AGGRESSIVENESS must be 0..3")
        if not 0 < self.onset_ms <= self.onset_window_ms:
            raise ValueError("BARGE_IN_ONSET_MS must be positive and at most the onset window")
        if self.confirm_ms < self.onset_ms:
            raise ValueError("BARGE_IN_CONFIRM_MS must be at least BARGE_IN_ONSET_MS")
        if self.release_ms <= 0 or self.echo_window_ms < 0:
            raise ValueError("BARGE_IN_RELEASE_MS must be positive and the echo window non-negative")
        if not (
            0 < self.late_ms <= self.late_window_ms and self.backchannel_ms + self.late_ms <= self.decide_ms
        ):
            raise ValueError(
                "BARGE_IN_LATE_MS must be positive, at most BARGE_IN_LATE_WINDOW_MS, and"
                " BARGE_IN_BACKCHANNEL_MS + BARGE_IN_LATE_MS at most BARGE_IN_DECIDE_MS"
            )


@dataclass(frozen=True)
class MediaSettings:
    listen: str
    metrics_port: int
    agent_target: str
    log_level: str
    log_format: str
    # SIGTERM: calls in progress run on for up to this long, then hear a goodbye (runtime/drain.py).
    drain_deadline_s: float
    playout: PlayoutConfig
    vad_aggressiveness: int
    vad_onset_ms: int
    vad_offset_ms: int
    barge_in: BargeInConfig
    # Caller audio kept while the agent is still connecting (beyond it, the oldest is dropped).
    pre_ready_buffer_ms: int
    # Caller audio queued for a slow agent link before the oldest is dropped (never block the edge).
    agent_queue_ms: int
    # Agent end -> how long we wait for its last words to be heard before hanging up anyway.
    drain_timeout_s: float
    # An agent stream lost mid-call (its process died) is continued on a new agent session given the
    # call so far (SessionStart.resume, docs/failover.md); off: the call ends.
    agent_resume: bool = True
    # How calls travel from the edge and to the agent: multiplexed or one stream each (runtime/mux/).
    mux: MuxSettings = field(default_factory=MuxSettings)
    # mTLS for both hops (serving the edge, calling the agent): GRPC_TLS_* / GRPC_INSECURE.
    tls: GrpcTls = field(default_factory=GrpcTls)
    metrics_host: str = "127.0.0.1"
    # AGENT_TARGET as a name or list of replicas: how often it is resolved again.
    resolve_interval_s: float = 5.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> MediaSettings:
        env = env or Env()
        listen = env.string("MEDIA_LISTEN", "127.0.0.1:50051")
        agent_target = env.string("AGENT_TARGET", "127.0.0.1:50052")
        return cls(
            listen=listen,
            metrics_port=env.integer("MEDIA_METRICS_PORT", 9102),
            agent_target=agent_target,
            log_level=env.string("LOG_LEVEL", "INFO"),
            log_format=env.choice("LOG_FORMAT", "text", ("text", "json")),
            drain_deadline_s=drain_deadline_s(env),
            playout=PlayoutConfig(
                frame_ms=env.integer("PLAYOUT_FRAME_MS", PlayoutConfig.frame_ms),
                lead_ms=env.integer("PLAYOUT_LEAD_MS", 60),
                mark_interval_ms=env.integer("PLAYOUT_MARK_INTERVAL_MS", 100),
                tick_ms=env.integer("PLAYOUT_TICK_MS", 20),
            ),
            vad_aggressiveness=env.integer("VAD_AGGRESSIVENESS", 2),
            vad_onset_ms=env.integer("VAD_ONSET_MS", 30),
            vad_offset_ms=env.integer("VAD_OFFSET_MS", 400),
            barge_in=_barge_in(env),
            pre_ready_buffer_ms=env.integer("PRE_READY_BUFFER_MS", 2000),
            agent_queue_ms=env.integer("AGENT_QUEUE_MS", 1000),
            drain_timeout_s=env.number("DRAIN_TIMEOUT_S", 30.0),
            agent_resume=env.boolean("AGENT_RESUME", True),
            mux=MuxSettings.from_env(env, "AGENT_BATCH_INTERVAL_MS", AGENT_BATCH_INTERVAL_MS),
            tls=GrpcTls.from_env(env).checked(listen, plaintext_check_targets(agent_target)),
            metrics_host=env.string("METRICS_HOST", "127.0.0.1"),
            resolve_interval_s=resolve_interval_s(env),
        )


def _barge_in(env: Env) -> BargeInConfig:
    defaults = BargeInConfig()
    try:
        return BargeInConfig(
            enabled=env.boolean("BARGE_IN", defaults.enabled),
            aggressiveness=env.integer("BARGE_IN_VAD_AGGRESSIVENESS", defaults.aggressiveness),
            onset_ms=env.integer("BARGE_IN_ONSET_MS", defaults.onset_ms),
            onset_window_ms=env.integer("BARGE_IN_ONSET_WINDOW_MS", defaults.onset_window_ms),
            backchannel_ms=env.integer("BARGE_IN_BACKCHANNEL_MS", defaults.backchannel_ms),
            late_ms=env.integer("BARGE_IN_LATE_MS", defaults.late_ms),
            late_window_ms=env.integer("BARGE_IN_LATE_WINDOW_MS", defaults.late_window_ms),
            late_share=env.number("BARGE_IN_LATE_SHARE", defaults.late_share),
            confirm_ms=env.integer("BARGE_IN_CONFIRM_MS", defaults.confirm_ms),
            release_ms=env.integer("BARGE_IN_RELEASE_MS", defaults.release_ms),
            decide_ms=env.integer("BARGE_IN_DECIDE_MS", defaults.decide_ms),
            credit_ms=env.integer("BARGE_IN_CREDIT_MS", defaults.credit_ms),
            active_margin_db=env.number("BARGE_IN_ACTIVE_MARGIN_DB", defaults.active_margin_db),
            peak_margin_db=env.number("BARGE_IN_PEAK_MARGIN_DB", defaults.peak_margin_db),
            echo_margin_db=env.number("BARGE_IN_ECHO_MARGIN_DB", defaults.echo_margin_db),
            echo_window_ms=env.integer("BARGE_IN_ECHO_WINDOW_MS", defaults.echo_window_ms),
            echo_excess_db=env.number("BARGE_IN_ECHO_EXCESS_DB", defaults.echo_excess_db),
            echo_correlation=env.number("BARGE_IN_ECHO_CORRELATION", defaults.echo_correlation),
            noise_margin_db=env.number("BARGE_IN_NOISE_MARGIN_DB", defaults.noise_margin_db),
            noise_percentile=env.number("BARGE_IN_NOISE_PERCENTILE", defaults.noise_percentile),
            min_level_dbfs=env.number("BARGE_IN_MIN_LEVEL_DBFS", defaults.min_level_dbfs),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
