"""Load generator: N simulated Twilio callers against the real services, with pass/fail SLOs.

    voicebridge-load --calls 50 --duration 30 --json \\
        --slo-cpu-ms-per-call-s 10 --slo-p99-added-ms 5 --slo-gaps 0 --slo-lost 0
    voicebridge-load --sequential 1000 --json \\
        --slo-rss-growth-mib 4 --slo-teardown-ms 500   # RSS growth, teardown time over back-to-back calls
    voicebridge-load --sequential 1000 --signed-urls --json   # ...and the agent's log redaction set

It starts the ConvAI emulator (a child process; its agent greets, then echoes each caller utterance, so
turns happen) and the three services (agent with the `elevenlabs` backend pointed at the emulator),
or attaches to a running stack (`--attach`). The callers run in this process, paced like Twilio
(20 ms frames on an absolute clock, real-time playout, marks echoed when played), so the services'
processes carry only the services' work. Each caller talks, waits for the reply to finish, and talks
again until the duration is up, then waits for quiet and hangs up.

Where each figure comes from:
- added latency each way: the services' own histograms, as /metrics deltas over the run
  (inbound `agent_elevenlabs_inbound_added_latency_seconds`: caller frame at the edge → its
  user_audio_chunk written to ElevenLabs; outbound `edge_outbound_added_latency_seconds`: agent audio
  received, or due if paced → written to Twilio). Quantiles interpolate inside buckets like
  Prometheus's histogram_quantile; `share_within_5ms` is exact (5 ms is a bucket bound).
- heard turn latency: media's `media_heard_turn_latency_seconds` (deltas), and end to end at the
  callers (end of speech sent → first reply audio played), which includes the emulator's 700 ms
  end-of-speech wait.
- playback gaps: holes in what each caller heard, on the caller's playout timeline (Twilio's buffer,
  played in real time): consecutive 20 ms frames of agent audio more than 40 ms apart, i.e. the
  buffer ran dry for over 20 ms, within one utterance (a silence of 0.5 s or more ends it; the
  scenario's turns are >1 s apart). Media may send frames larger than 20 ms (PLAYOUT_FRAME_MS): how
  they are cut does not matter, only whether the buffer ran dry.
- lost frames: caller audio sent vs user_audio_chunk bytes the emulator received; agent audio the
  emulator sent vs media payload bytes the callers received (20 ms = 160 bytes of μ-law).
- CPU: user+system seconds of the three service processes (psutil) while all N calls are up,
  divided by N × the window: ms of CPU per call-second. Peak RSS: VmHWM of each process.
- teardown (sequential runs): from the caller's hang-up until every service's own gauge of calls in
  progress (edge_calls_active, media_calls_active, agent_sessions_active) reads 0 again, polled every
  10 ms; a call still counted after 10 s is counted as not torn down.

The parts, one concern each: `cli` (the command line, the run from start to report), `runs`
(concurrent and sequential runs), `caller` (one caller, playback gaps), `stack` and `emulator` (the
processes under test), `scrape` (a /metrics page, parsed by prometheus_client), `deltas` (histogram
quantiles and message rates between two scrapes), `procstats` (CPU, RSS, the machine) and `report`
(the figures and the SLO checks). Everything is importable from `voicebridge.sim.loadgen` too.
"""

from voicebridge.sim.voice import speech_like

from .caller import FRAME_BYTES, GAP_S, RATE, UTTERANCE_BREAK_S, CallResult, gaps, run_call
from .cli import main, parse_args
from .deltas import (
    GRPC_WIRE,
    MESSAGE_COUNTERS,
    counter_delta,
    histogram_delta,
    latency_summary,
    message_rates,
    quantile,
    wire_rates,
)
from .emulator import EmulatorProcess
from .procstats import busy_cpu_seconds, cpu_seconds, machine, own_cpu_seconds, peak_rss_bytes, rss_bytes
from .report import HEARD, INBOUND, OUTBOUND, SERVICES, report, slo_checks
from .runs import (
    CALLS_ACTIVE,
    LOOP_LAG,
    REDACTIONS,
    TEARDOWN_GIVE_UP_S,
    calls_in_progress,
    concurrent,
    sequential,
    teardown_seconds,
)
from .scrape import parse, scrape, scrape_sum, scrape_value
from .stack import StackInfo, start_services

__all__ = [
    "CALLS_ACTIVE",
    "FRAME_BYTES",
    "GAP_S",
    "GRPC_WIRE",
    "HEARD",
    "INBOUND",
    "LOOP_LAG",
    "MESSAGE_COUNTERS",
    "OUTBOUND",
    "RATE",
    "REDACTIONS",
    "SERVICES",
    "TEARDOWN_GIVE_UP_S",
    "UTTERANCE_BREAK_S",
    "CallResult",
    "EmulatorProcess",
    "StackInfo",
    "busy_cpu_seconds",
    "calls_in_progress",
    "concurrent",
    "counter_delta",
    "cpu_seconds",
    "gaps",
    "histogram_delta",
    "latency_summary",
    "machine",
    "main",
    "message_rates",
    "own_cpu_seconds",
    "parse",
    "parse_args",
    "peak_rss_bytes",
    "quantile",
    "report",
    "rss_bytes",
    "run_call",
    "scrape",
    "scrape_sum",
    "scrape_value",
    "sequential",
    "slo_checks",
    "speech_like",
    "start_services",
    "teardown_seconds",
    "wire_rates",
]
