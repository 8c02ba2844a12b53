"""Barge-in evaluation: the media service's detector against a generated corpus of phone calls.

    voicebridge-bargein-eval [--json] [--trials 60] [--minutes 10] [--seed 7]

Every trial is a stretch of agent speech playing to the caller, and what the caller's line sends back:
the agent's own voice as echo (a speakerphone: -10 to -30 dB, 50-300 ms late), white or babble noise
(20/10/5 dB below the caller's speech), the caller cutting in at a random moment (>= 500 ms of
espeak-ng speech), or only a backchannel ("mhm", under 300 ms). Everything goes through G.711 as on a
phone line. The exact `BargeInDetector` the media service runs decides, frame by frame, on the same
clock the media service would use; when it pauses, the agent's audio (and so its echo) stops, as a
Twilio `clear` would make it; when it resumes, the agent goes on.

Reported per condition: onset -> clear latency p50/p95 (true start of the caller's speech to the
pause, i.e. the clear), missed barge-ins (real interruptions never confirmed), false barge-ins per
minute of agent speech (interruptions confirmed with no caller speaking), and false pauses per minute
(a clear that then resumed: the caller hears a short gap, the agent is not interrupted).
The corpus is espeak-ng speech (voices differ between agent, callers and babble); levels: agent and
caller speech at -20 dBFS active level. A call's echo path does not change between the agent's turns,
so each trial first plays a 3 s greeting the caller hears in silence (the detector learns the line);
"first turn (cold)" rows show the very first turn of a call, where it has learnt nothing yet.
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
BACKCHANNELS = ["mhm", "uh huh", "yeah", "okay", "right"]
AGENT_VOICES = ["en-gb", "en-gb+f3"]
CALLER_VOICES = ["en-us", "en-us+f2", "en-us+m3", "en-sc"]
BABBLE_VOICES = ["en-us+m1", "en-us+f4", "en-gb+m4", "en-sc+f1", "en-us+m7", "en-gb+f2"]


# -- corpus -----------------------------------------------------------------------------------------


def _espeak(text: str, voice: str, tmp: Path) -> np.ndarray:
    wav = tmp / "s.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(wav), text], check=True)  # noqa: S603, S607
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
        backs = []
        for text in BACKCHANNELS:
            for voice in CALLER_VOICES:
                x = _at_level(_espeak(text, voice, tmp), -20)[: int(0.28 * RATE)]  # < 300 ms
                fade = min(len(x), 160)
                x[-fade:] *= np.linspace(1, 0, fade)
                backs.append(x)
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
    snr_db: float = 0.0
    echo_db: float | None = None  # echo level relative to the agent's playback
    caller: str = "speech"  # speech | backchannel | none
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
    Condition("clean, first turn (cold)", warm=False),
    Condition("echo -10 dB, first turn (cold)", echo_db=-10, warm=False),
]
FALSE_CONDITIONS = [
    Condition("echo -10 dB alone", echo_db=-10, caller="none"),
    Condition("echo -20 dB + backchannels", echo_db=-20, caller="backchannel"),
    Condition("white 10 dB + backchannels", "white", 10, caller="backchannel"),
    Condition("babble 10 dB alone", "babble", 10, caller="none"),
    Condition("echo -10 dB alone, first turn (cold)", echo_db=-10, caller="none", warm=False),
]


@dataclass
class TrialResult:
    onset_to_clear_s: float | None  # interruption trials: None if never paused
    confirmed: bool
    false_confirms: int
    false_pauses: int
    agent_seconds: float


def _phone(x: np.ndarray) -> np.ndarray:
    pcm = np.clip(x, -32768, 32767).astype("<i2").tobytes()
    return np.frombuffer(ulaw_decode(ulaw_encode(pcm)), "<i2").astype(np.float64)


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

    caller = np.zeros(n)
    onsets: list[int] = []
    if cond.caller == "speech":
        utterance = corpus.callers[int(rng.integers(len(corpus.callers)))]
        at = turn + int(rng.uniform(0.3, 0.45 * agent_s) * RATE)
        take = utterance[: n - at]
        caller[at : at + len(take)] += take
        onsets.append(at)
    elif cond.caller == "backchannel":
        at = turn + int(rng.uniform(0.5, 1.5) * RATE)
        while at < n - RATE:
            bc = corpus.backchannels[int(rng.integers(len(corpus.backchannels)))]
            caller[at : at + len(bc)] += bc
            at += len(bc) + int(rng.uniform(1.5, 4.0) * RATE)
    noise = np.zeros(n)
    if cond.noise != "none":
        level = 32768 * 10 ** ((-20 - cond.snr_db) / 20)  # SNR against the caller's -20 dBFS speech
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
    result = TrialResult(None, False, 0, 0, 0.0)
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
                if onsets and result.onset_to_clear_s is None and t + FRAME >= onsets[0]:
                    result.onset_to_clear_s = (t + FRAME - onsets[0]) / RATE
            elif v.decision is Decision.RESUME:
                paused = False
                if not (onsets and pause_at and pause_at >= onsets[0]):
                    result.false_pauses += 1
            elif v.decision is Decision.CONFIRM:
                if onsets and pause_at is not None and pause_at >= onsets[0]:
                    result.confirmed = True
                else:
                    result.false_confirms += 1
                return result
    return result


# -- the whole evaluation ---------------------------------------------------------------------------


def evaluate(trials: int, minutes: float, seed: int, config: BargeInConfig | None = None) -> dict[str, Any]:
    config = config or BargeInConfig()
    corpus = make_corpus()
    rng = np.random.default_rng(seed)
    rows = []
    for cond in CONDITIONS:
        latencies, missed, false_confirms, false_pauses, seconds = [], 0, 0, 0, 0.0
        for _ in range(trials):
            r = run_trial(rng, corpus, cond, config)
            if r.onset_to_clear_s is not None and r.confirmed:
                latencies.append(r.onset_to_clear_s)
            missed += not r.confirmed
            false_confirms += r.false_confirms
            false_pauses += r.false_pauses
            seconds += r.agent_seconds
        rows.append(_row(cond, trials, latencies, missed, false_confirms, false_pauses, seconds))
    for cond in FALSE_CONDITIONS:
        false_confirms, false_pauses, seconds = 0, 0, 0.0
        while seconds < minutes * 60:
            r = run_trial(rng, corpus, cond, config)
            false_confirms += r.false_confirms
            false_pauses += r.false_pauses
            seconds += r.agent_seconds
        rows.append(_row(cond, 0, [], 0, false_confirms, false_pauses, seconds))
    return {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "config": config.__dict__,
        "trials_per_condition": trials,
        "false_rate_minutes": minutes,
        "conditions": rows,
        "targets": _targets(rows),
    }


def _row(cond, trials, latencies, missed, false_confirms, false_pauses, seconds) -> dict[str, Any]:
    minutes = seconds / 60
    return {
        "condition": cond.name,
        "interruptions": trials,
        "onset_to_clear_p50_ms": round(float(np.percentile(latencies, 50)) * 1000) if latencies else None,
        "onset_to_clear_p95_ms": round(float(np.percentile(latencies, 95)) * 1000) if latencies else None,
        "missed": missed,
        "caught_pct": round(100 * (trials - missed) / trials, 1) if trials else None,
        "agent_speech_min": round(minutes, 1),
        "false_barge_ins_per_min": round(false_confirms / minutes, 3) if minutes else None,
        "false_pauses_per_min": round(false_pauses / minutes, 3) if minutes else None,
    }


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {r["condition"]: r for r in rows}
    clean, white10 = by["clean"], by["white 10 dB"]
    echo_bc, echo10 = by["echo -20 dB + backchannels"], by["echo -10 dB alone"]
    checks = [
        ("clean onset->clear p50 (ms)", clean["onset_to_clear_p50_ms"], "<=", 100),
        ("clean onset->clear p95 (ms)", clean["onset_to_clear_p95_ms"], "<=", 150),
        ("caught at white 10 dB (%)", white10["caught_pct"], ">=", 98),
        (
            "false barge-ins per 10 min, echo -20 dB + backchannels",
            10 * echo_bc["false_barge_ins_per_min"],
            "<=",
            1,
        ),
        ("false barge-ins, echo -10 dB alone (per 10 min)", 10 * echo10["false_barge_ins_per_min"], "<=", 0),
    ]
    out = []
    for name, value, op, limit in checks:
        ok = value is not None and (value <= limit if op == "<=" else value >= limit)
        out.append({"target": name, "value": value, "limit": f"{op} {limit}", "pass": ok})
    return out


def render(report: dict[str, Any]) -> str:
    head = (
        f"{'condition':<30} {'n':>3} {'p50 ms':>7} {'p95 ms':>7} {'missed':>6} {'caught':>7} "
        f"{'agent min':>9} {'false/min':>9} {'pauses/min':>10}"
    )
    lines = ["voicebridge barge-in evaluation", "", head, "-" * len(head)]
    for r in report["conditions"]:

        def f(v: Any, width: int) -> str:
            return f"{'-' if v is None else v:>{width}}"

        lines.append(
            f"{r['condition']:<30} {f(r['interruptions'] or None, 3)} {f(r['onset_to_clear_p50_ms'], 7)} "
            f"{f(r['onset_to_clear_p95_ms'], 7)} {f(r['missed'] if r['interruptions'] else None, 6)} "
            f"{f(r['caught_pct'], 7)} {r['agent_speech_min']:>9} {f(r['false_barge_ins_per_min'], 9)} "
            f"{f(r['false_pauses_per_min'], 10)}"
        )
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
    args = parser.parse_args(argv)
    began = time.monotonic()
    report = evaluate(args.trials, args.minutes, args.seed)
    report["seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(report, indent=2) if args.json else render(report))
    sys.exit(0)


if __name__ == "__main__":
    main()
