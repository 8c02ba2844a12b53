"""Barge-in evaluation: the media service's detector against a generated corpus of phone calls.

    voicebridge-bargein-eval [--json] [--trials 60] [--minutes 10] [--seed 7] [--only TEXT ...]

Every trial is a stretch of agent speech playing to the caller, and what the caller's line sends back:
the agent's own voice as echo (a speakerphone: -10 to -30 dB, 50-300 ms late), white or babble noise
(20/10/5 dB below the caller's speech), the caller cutting in at a random moment (>= 500 ms of
espeak-ng speech), or only backchannels ("mm hm", "yeah", ... 0.3-0.7 s, at the caller's level).
Everything goes through G.711 as on a phone line. The exact `BargeInDetector` the media service runs
decides, frame by frame, on the same clock the media service would use; when it pauses, the agent's
audio (and so its echo) stops, as a Twilio `clear` would make it; when it resumes, the agent goes on.

Reported per condition: onset -> clear latency p50/p95 (true start of the caller's speech to the
pause, i.e. the clear), missed barge-ins (real interruptions never confirmed), false barge-ins per
minute of agent speech (interruptions confirmed with no caller speaking), and false pauses per minute
(a clear that then resumed: the caller hears a short gap, the agent is not interrupted).
The corpus is espeak-ng speech (voices differ between agent, callers and babble); levels: agent and
caller speech at -20 dBFS active level. A call's echo path does not change between the agent's turns,
so each trial first plays a 3 s greeting the caller hears in silence (the detector learns the line);
"first turn (cold)" rows show the very first turn of a call, where it has learnt nothing yet.
Why one file of ~480 lines: the corpus, the trial loop and the table are one experiment read top to
bottom; the targets are checked against exactly the rows built here.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicebridge.media.audio.g711 import ulaw_decode, ulaw_encode
from voicebridge.media.audio.resample import make_resampler
from voicebridge.media.bargein import BargeInDetector, Decision
from voicebridge.media.config import BargeInConfig

RATE = 8000
FRAME = 160  # 20 ms, as Twilio sends it

AGENT_LINES = [
    "Thanks for calling. Your order shipped yesterday and should arrive by Friday afternoon.",
    "I can help with that. Could you tell me the account number printed on your last statement?",
    "Our opening hours are nine to five on weekdays, and ten until two on Saturdays.",
    "The technician will call thirty minutes before arriving, so please keep your phone nearby.",
    "I have found two appointments next week, one on Tuesday morning and one on Thursday at three.",
    "Your balance is forty two dollars and fifteen cents, due on the twentieth of this month.",
    "To reset your password, I will send a code by text message to the number on file.",
    "I understand. Let me check whether we can waive the late fee this time as a courtesy.",
]
CALLER_LINES = [
    "Wait, stop, I have a question about my bill.",
    "Sorry, can you repeat the last part please?",
    "No no, that is not what I asked for.",
    "Hold on, I need to grab a pen.",
    "Actually I would prefer the Thursday slot.",
    "Excuse me, is there a cheaper option?",
]
#: What callers say over the agent to mean "go on", said at their normal level, 0.3-0.7 s long.
BACKCHANNELS = ["mm hm", "yeah", "okay", "uh huh", "right", "yep"]
BACKCHANNEL_S = (0.3, 0.7)
AGENT_VOICES = ["en-gb", "en-gb+f3"]
CALLER_VOICES = ["en-us", "en-us+f2", "en-us+m3", "en-sc", "en-029", "en-us+f4"]
BABBLE_VOICES = ["en-us+m1", "en-us+f4", "en-gb+m4", "en-sc+f1", "en-us+m7", "en-gb+f2"]


# -- corpus -----------------------------------------------------------------------------------------


def _espeak(text: str, voice: str, tmp: Path, speed: int = 165) -> np.ndarray:
    wav = tmp / "s.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)  # noqa: S603, S607
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        pcm = w.readframes(w.getnframes())
    pcm = make_resampler(rate, RATE).process(pcm)
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    loud = np.nonzero(np.abs(x) > 0.02 * np.abs(x).max())[0]
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def _active_level(x: np.ndarray) -> float:
    frames = x[: len(x) // 80 * 80].reshape(-1, 80)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = rms[rms > 0.1 * rms.max()]
    return float(np.sqrt(np.mean(active**2))) if len(active) else 1.0


def _at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * (32768 * 10 ** (dbfs / 20) / _active_level(x))


def _backchannel(text: str, voice: str, tmp: Path) -> np.ndarray:
    """The word as the caller says it, slowed down until it lasts at least 0.3 s, at most 0.7 s."""
    shortest, longest = (int(s * RATE) for s in BACKCHANNEL_S)
    for speed in (165, 140, 115, 90):
        x = _espeak(text, voice, tmp, speed)
        if len(x) >= shortest:
            break
    x = _at_level(x, -20)[:longest]
    fade = min(len(x), 160)
    x[-fade:] *= np.linspace(1, 0, fade)
    return x


@dataclass
class Corpus:
    agent: list[np.ndarray]
    callers: list[np.ndarray]
    backchannels: list[np.ndarray]
    babble: np.ndarray


def make_corpus() -> Corpus:
    if not shutil.which("espeak-ng"):
        raise SystemExit("espeak-ng is needed to make the corpus (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        agent = [_at_level(_espeak(t, v, tmp), -20) for t in AGENT_LINES for v in AGENT_VOICES]
        callers = [_at_level(_espeak(t, v, tmp), -20) for t in CALLER_LINES for v in CALLER_VOICES]
        backs = [_backchannel(text, voice, tmp) for text in BACKCHANNELS for voice in CALLER_VOICES]
        streams = []
        for i, voice in enumerate(BABBLE_VOICES):
            lines = AGENT_LINES[i:] + AGENT_LINES[:i] + CALLER_LINES
            streams.append(np.concatenate([_at_level(_espeak(t, voice, tmp), -20) for t in lines]))
        n = min(len(s) for s in streams)
        babble = sum(s[:n] for s in streams)
    return Corpus(agent, [c for c in callers if len(c) >= RATE // 2], backs, babble)


# -- one trial --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    name: str
    noise: str = "none"  # none | white | babble
    snr_db: float = 0.0  # noise below the caller's speech level
    echo_db: float | None = None  # echo level relative to the agent's playback
    caller: str = "speech"  # speech | backchannel | none
    caller_dbfs: float = -20.0  # the caller's active speech level (-27: a quiet caller)
    # The echo path is a property of the call, so the detector's estimate carries over between the
    # agent's turns; a warm trial first plays a greeting the caller listens to in silence.
    warm: bool = True


CONDITIONS = [
    Condition("clean"),
    Condition("white 20 dB", "white", 20),
    Condition("white 10 dB", "white", 10),
    Condition("white 5 dB", "white", 5),
    Condition("babble 20 dB", "babble", 20),
    Condition("babble 10 dB", "babble", 10),
    Condition("babble 5 dB", "babble", 5),
    Condition("echo -10 dB", echo_db=-10),
    Condition("echo -20 dB", echo_db=-20),
    Condition("echo -30 dB", echo_db=-30),
    Condition("echo -20 dB + white 10 dB", "white", 10, echo_db=-20),
    Condition("quiet caller (-27 dBFS)", caller_dbfs=-27),
    Condition("quiet caller, echo -20 dB", echo_db=-20, caller_dbfs=-27),
    Condition("quiet caller, echo -10 dB", echo_db=-10, caller_dbfs=-27),
    Condition("clean, first turn (cold)", warm=False),
    Condition("echo -10 dB, first turn (cold)", echo_db=-10, warm=False),
]
FALSE_CONDITIONS = [
    Condition("echo -10 dB alone", echo_db=-10, caller="none"),
    Condition("babble 10 dB alone", "babble", 10, caller="none"),
    Condition("echo -10 dB alone, first turn (cold)", echo_db=-10, caller="none", warm=False),
    Condition("clean + backchannels", caller="backchannel"),
    Condition("echo -20 dB + backchannels", echo_db=-20, caller="backchannel"),
    Condition("white 10 dB + backchannels", "white", 10, caller="backchannel"),
    Condition("babble 10 dB + backchannels", "babble", 10, caller="backchannel"),
]


@dataclass
class TrialResult:
    first_clear_s: float | None = None  # interruption trials: onset -> first clear after it
    decisive_clear_s: float | None = None  # onset -> the clear after which the agent stayed stopped
    clears: int = 0  # clears sent from the caller's onset on (1 = one clean stop)
    confirmed: bool = False
    false_confirms: int = 0
    false_pauses: int = 0
    backchannels: int = 0  # backchannels said while the agent was talking
    agent_seconds: float = 0.0


def _phone(x: np.ndarray) -> np.ndarray:
    pcm = np.clip(x, -32768, 32767).astype("<i2").tobytes()
    return np.frombuffer(ulaw_decode(ulaw_encode(pcm)), "<i2").astype(np.float64)


def _gain_db(x: np.ndarray, db: float) -> np.ndarray:
    return x * 10 ** (db / 20)


def run_trial(
    rng: np.random.Generator,
    corpus: Corpus,
    cond: Condition,
    config: BargeInConfig,
    agent_s: float = 8.0,
) -> TrialResult:
    """Play agent speech, build what the caller's line returns, and let the detector decide."""
    agent = np.concatenate([corpus.agent[i] for i in rng.permutation(len(corpus.agent))])
    greeting_s = 3.0 if cond.warm else 0.0
    total_s = agent_s + greeting_s
    start = int(rng.integers(0, len(agent) - int(total_s * RATE)))
    agent = _phone(agent[start : start + int(total_s * RATE)])
    n = len(agent)
    turn = int(greeting_s * RATE)  # the evaluated turn starts here; before it, the greeting
    delay = int(rng.uniform(0.05, 0.30) * RATE)
    level_db = cond.caller_dbfs + 20  # the corpus is at -20 dBFS

    caller = np.zeros(n)
    onsets: list[int] = []
    backchannel_at: list[int] = []
    if cond.caller == "speech":
        utterance = _gain_db(corpus.callers[int(rng.integers(len(corpus.callers)))], level_db)
        at = turn + int(rng.uniform(0.3, 0.45 * agent_s) * RATE)
        take = utterance[: n - at]
        caller[at : at + len(take)] += take
        onsets.append(at)
    elif cond.caller == "backchannel":
        at = turn + int(rng.uniform(0.5, 1.5) * RATE)
        while at < n - RATE:
            bc = _gain_db(corpus.backchannels[int(rng.integers(len(corpus.backchannels)))], level_db)
            caller[at : at + len(bc)] += bc
            backchannel_at.append(at)
            at += len(bc) + int(rng.uniform(1.5, 4.0) * RATE)
    noise = np.zeros(n)
    if cond.noise != "none":
        level = 32768 * 10 ** ((cond.caller_dbfs - cond.snr_db) / 20)  # SNR against the caller's speech
        if cond.noise == "white":
            noise = rng.normal(0, level, n)
        else:
            off = int(rng.integers(0, len(corpus.babble) - n))
            chunk = corpus.babble[off : off + n]
            noise = chunk * (level / (np.sqrt(np.mean(chunk**2)) + 1e-9))

    detector = BargeInDetector(config)
    # The agent's playback, as media sees it: frame by frame, stopped by a pause, resumed after.
    played = np.zeros(n)  # what actually played at each sample (echo source)
    mic_fixed = caller + noise
    gain = 0.0 if cond.echo_db is None else 10 ** (cond.echo_db / 20)
    pos = 0  # position in the agent's speech
    paused = False
    result = TrialResult()
    pause_at: int | None = None
    for t in range(0, n - FRAME + 1, FRAME):
        if not paused and pos < n:
            take = min(FRAME, n - pos)
            played[t : t + take] = agent[pos : pos + take]
            detector.played(agent[pos : pos + take].astype("<i2").tobytes(), t / RATE)
            pos += take
            if t >= turn:
                result.agent_seconds += take / RATE
        echo = np.zeros(FRAME)
        if gain and t - delay >= 0:
            echo = played[t - delay : t - delay + FRAME] * gain
        mic = _phone(mic_fixed[t : t + FRAME] + echo)
        verdicts = detector.feed(mic.astype("<i2").tobytes(), t / RATE, agent_playing=not paused and pos < n)
        for v in verdicts:
            if v.decision is Decision.PAUSE:
                paused, pause_at = True, t + FRAME
                if onsets and pause_at >= onsets[0]:
                    result.clears += 1
                    if result.first_clear_s is None:
                        result.first_clear_s = (pause_at - onsets[0]) / RATE
            elif v.decision is Decision.RESUME:
                paused = False
                if not (onsets and pause_at and pause_at >= onsets[0]):
                    result.false_pauses += 1
            elif v.decision is Decision.CONFIRM:
                if onsets and pause_at is not None and pause_at >= onsets[0]:
                    result.confirmed = True
                    result.decisive_clear_s = (pause_at - onsets[0]) / RATE
                else:
                    result.false_confirms += 1
                result.backchannels = sum(1 for at in backchannel_at if at <= t)
                return result
    result.backchannels = len(backchannel_at)
    return result


# -- the whole evaluation ---------------------------------------------------------------------------


def evaluate(
    trials: int,
    minutes: float,
    seed: int,
    config: BargeInConfig | None = None,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Every condition (or those whose name contains one of `only`), each with its own random stream:
    a subset gives exactly the rows the full run would."""
    config = config or BargeInConfig()
    corpus = make_corpus()
    rows = []
    for index, cond in enumerate(CONDITIONS + FALSE_CONDITIONS):
        if only and not any(part in cond.name for part in only):
            continue
        rng = np.random.default_rng([seed, index])
        if cond in CONDITIONS:
            rows.append(_row(cond, trials, [run_trial(rng, corpus, cond, config) for _ in range(trials)]))
            continue
        results: list[TrialResult] = []
        while sum(r.agent_seconds for r in results) < minutes * 60:
            results.append(run_trial(rng, corpus, cond, config))
        rows.append(_row(cond, 0, results))
    return {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "config": config.__dict__,
        "trials_per_condition": trials,
        "false_rate_minutes": minutes,
        "conditions": rows,
        "targets": _targets(rows),
    }


def _ms(values: list[float], q: int) -> int | None:
    return round(float(np.percentile(values, q)) * 1000) if values else None


def _row(cond: Condition, trials: int, results: list[TrialResult]) -> dict[str, Any]:
    caught = [r for r in results if r.confirmed]
    first = [r.first_clear_s for r in caught if r.first_clear_s is not None]
    decisive = [r.decisive_clear_s for r in caught if r.decisive_clear_s is not None]
    minutes = sum(r.agent_seconds for r in results) / 60
    false_confirms = sum(r.false_confirms for r in results)
    said = sum(r.backchannels for r in results)
    return {
        "condition": cond.name,
        "interruptions": trials,
        "onset_to_clear_p50_ms": _ms(first, 50),
        "onset_to_clear_p95_ms": _ms(first, 95),
        "decisive_clear_p50_ms": _ms(decisive, 50),
        "decisive_clear_p95_ms": _ms(decisive, 95),
        "clears_per_interruption": round(sum(r.clears for r in caught) / len(caught), 2) if caught else None,
        "missed": trials - len(caught),
        "caught_pct": round(100 * len(caught) / trials, 1) if trials else None,
        "agent_speech_min": round(minutes, 1),
        "false_barge_ins_per_min": round(false_confirms / minutes, 3) if minutes else None,
        "false_pauses_per_min": round(sum(r.false_pauses for r in results) / minutes, 3) if minutes else None,
        "backchannels": said,
        "backchannels_ending_reply_pct": round(100 * false_confirms / said, 1) if said else None,
    }


#: (target, condition, column, how it is compared, limit); a column ending in "_per_10min" is
#: the per-minute column times ten.
TARGETS = [
    ("clean onset->first clear p50 (ms)", "clean", "onset_to_clear_p50_ms", "<=", 50),
    ("clean onset->first clear p95 (ms)", "clean", "onset_to_clear_p95_ms", "<=", 150),
    ("caught clean (%)", "clean", "caught_pct", ">=", 98),
    ("caught at white 10 dB (%)", "white 10 dB", "caught_pct", ">=", 98),
    ("caught at babble 10 dB (%)", "babble 10 dB", "caught_pct", ">=", 90),
    ("caught with echo -20 dB (%)", "echo -20 dB", "caught_pct", ">=", 95),
    ("caught, quiet caller with echo -20 dB (%)", "quiet caller, echo -20 dB", "caught_pct", ">=", 95),
    ("decisive clear p95 at white 10 dB (ms)", "white 10 dB", "decisive_clear_p95_ms", "<=", 300),
    (
        "backchannels ending the reply, clean (%)",
        "clean + backchannels",
        "backchannels_ending_reply_pct",
        "<=",
        2,
    ),
    (
        "backchannels ending the reply, echo -20 dB (%)",
        "echo -20 dB + backchannels",
        "backchannels_ending_reply_pct",
        "<=",
        2,
    ),
    (
        "backchannels ending the reply, white 10 dB (%)",
        "white 10 dB + backchannels",
        "backchannels_ending_reply_pct",
        "<=",
        2,
    ),
    (
        "backchannels ending the reply, babble 10 dB (%)",
        "babble 10 dB + backchannels",
        "backchannels_ending_reply_pct",
        "<=",
        2,
    ),
    (
        "false barge-ins, echo -10 dB alone (per 10 min)",
        "echo -10 dB alone",
        "false_barge_ins_per_10min",
        "<=",
        0,
    ),
]
MAX_CLEARS_PER_INTERRUPTION = 1.1


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {r["condition"]: r for r in rows}
    checks = []
    for name, condition, column, op, limit in TARGETS:
        row = by.get(condition)
        if row is None:  # not run (--only)
            continue
        if column.endswith("_per_10min"):
            per_min = row[column.removesuffix("_per_10min") + "_per_min"]
            value = None if per_min is None else round(10 * per_min, 3)
        else:
            value = row[column]
        checks.append((name, value, op, limit))
    clears = [r["clears_per_interruption"] for r in rows if r["clears_per_interruption"] is not None]
    checks.append(
        (
            "clears per interruption, worst condition",
            max(clears, default=None),
            "<=",
            MAX_CLEARS_PER_INTERRUPTION,
        )
    )
    out = []
    for name, value, op, limit in checks:
        ok = value is not None and (value <= limit if op == "<=" else value >= limit)
        out.append({"target": name, "value": value, "limit": f"{op} {limit}", "pass": ok})
    return out


COLUMNS = [  # (heading, key, width)
    ("n", "interruptions", 3),
    ("first p50", "onset_to_clear_p50_ms", 9),
    ("first p95", "onset_to_clear_p95_ms", 9),
    ("decisive p50", "decisive_clear_p50_ms", 12),
    ("decisive p95", "decisive_clear_p95_ms", 12),
    ("clears/int", "clears_per_interruption", 10),
    ("caught %", "caught_pct", 8),
    ("agent min", "agent_speech_min", 9),
    ("false/min", "false_barge_ins_per_min", 9),
    ("pauses/min", "false_pauses_per_min", 10),
    ("bc", "backchannels", 4),
    ("bc ended %", "backchannels_ending_reply_pct", 10),
]


def render(report: dict[str, Any]) -> str:
    name_width = max(len(r["condition"]) for r in report["conditions"])
    head = f"{'condition':<{name_width}} " + " ".join(f"{h:>{w}}" for h, _, w in COLUMNS)
    lines = [
        "voicebridge barge-in evaluation (times in ms from the caller's onset)",
        "",
        head,
        "-" * len(head),
    ]
    for r in report["conditions"]:
        cells = []
        for _, key, width in COLUMNS:
            v = r[key]
            if not v and key in ("interruptions", "backchannels"):
                v = None
            cells.append(f"{'-' if v is None else v:>{width}}")
        lines.append(f"{r['condition']:<{name_width}} " + " ".join(cells))
    lines += ["", "targets"]
    for t in report["targets"]:
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['value']} (limit {t['limit']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--trials", type=int, default=60, help="interruptions per condition")
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="agent speech per false-barge-in condition"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="run only the conditions whose name contains TEXT (repeatable; rows match the full run's)",
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    report = evaluate(args.trials, args.minutes, args.seed, only=args.only)
    report["seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(report, indent=2) if args.json else render(report))
    sys.exit(0)


if __name__ == "__main__":
    main()
