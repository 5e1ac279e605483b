"""`mad-train synth-recording`: K sensors x M minutes of continuous streams with class changes."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tqdm import tqdm

from mad.constants import CLASS_NAMES, SAMPLE_RATE_HZ, WINDOW_SECONDS
from mad.data.recording import RecordingWriter
from mad.data.synthetic import PRESETS, generate_stream_segment

WINDOW_NS = WINDOW_SECONDS * 1_000_000_000


def default_schedule(sensors: int, minutes: float) -> dict[str, list[dict]]:
    """Sensor 0: normal, then a void from minute 3 growing to full intensity; others clean or noisy."""
    schedule = {"0": [{"from_min": 0, "label": "Normal"},
                      {"from_min": 3, "label": "Void", "intensity": 0.1, "to_intensity": 1.0}]}
    for s in range(1, sensors):
        schedule[str(s)] = [{"from_min": 0, "label": "Noise" if s % 2 else "Normal"}]
    return schedule


def _validate_schedule(schedule: object, sensors: int) -> dict[int, list[dict]]:
    if not isinstance(schedule, dict):
        raise SystemExit("schedule must be a JSON object {sensor index: [{from_min, label, intensity?}, ...]}")
    out = {}
    for key, steps in schedule.items():
        if not str(key).isdigit() or int(key) >= sensors:
            raise SystemExit(f"schedule: sensor key {key!r} is not an index below --sensors={sensors}")
        if not isinstance(steps, list) or not steps:
            raise SystemExit(f"schedule[{key!r}] must be a non-empty list")
        for step in steps:
            if not isinstance(step, dict) or step.get("label") not in CLASS_NAMES:
                raise SystemExit(f"schedule[{key!r}]: step {step!r} needs label in {CLASS_NAMES}")
            for name in ("from_min", "intensity", "to_intensity"):
                if name in step and not isinstance(step[name], (int, float)):
                    raise SystemExit(f"schedule[{key!r}]: {name}={step[name]!r} must be a number")
        out[int(key)] = sorted(steps, key=lambda s: s.get("from_min", 0))
    return out


def _state_at(steps: list[dict], minute: float, end_minute: float) -> tuple[int, float]:
    current, nxt_start = steps[0], end_minute
    for k, step in enumerate(steps):
        if step.get("from_min", 0) <= minute:
            current = step
            nxt_start = steps[k + 1].get("from_min", end_minute) if k + 1 < len(steps) else end_minute
    start = current.get("from_min", 0)
    lo = float(current.get("intensity", 0.7))
    hi = float(current.get("to_intensity", lo))
    frac = (minute - start) / max(nxt_start - start, 1e-9)
    return CLASS_NAMES.index(current["label"]), min(max(lo + (hi - lo) * frac, 0.0), 1.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sensors", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--schedule", type=Path, help="JSON {sensor: [{from_min, label, intensity, to_intensity}]}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="standard")
    parser.add_argument("--power-freq-hz", type=float, default=60.0)
    parser.add_argument("--start-time-ns", type=int, help="UTC start (rounded down to a 20 s multiple); default now")
    parser.add_argument("--overwrite", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.sensors < 1 or args.minutes <= 0 or args.seed < 0:
        raise SystemExit(f"need --sensors >= 1, --minutes > 0, --seed >= 0 (got {args.sensors}, {args.minutes}, "
                         f"{args.seed})")
    if args.schedule:
        try:
            raw = json.loads(args.schedule.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"{args.schedule}: unreadable schedule ({exc})") from exc
    else:
        raw = default_schedule(args.sensors, args.minutes)
    schedule = _validate_schedule(raw, args.sensors)
    start_ns = time.time_ns() if args.start_time_ns is None else args.start_time_ns
    start_ns -= start_ns % WINDOW_NS  # windows aligned to the epoch
    n_windows = max(1, int(args.minutes * 60 // WINDOW_SECONDS))
    with RecordingWriter(args.out, overwrite=args.overwrite) as writer:
        for s in range(args.sensors):
            sensor_id = f"sensor-{s}"
            writer.add_sensor(sensor_id, sample_rate_hz=SAMPLE_RATE_HZ, start_time_ns=start_ns,
                              power_freq_hz=args.power_freq_hz)
            steps = schedule.get(s, [{"from_min": 0, "label": "Normal"}])
            for w in tqdm(range(n_windows), desc=sensor_id, unit="win"):
                label, intensity = _state_at(steps, w * WINDOW_SECONDS / 60, args.minutes)
                window = generate_stream_segment(args.preset, args.seed, s, w, label, intensity, args.power_freq_hz)
                t0 = start_ns + w * WINDOW_NS
                writer.append_samples(sensor_id, window.series)
                writer.append_prpd_frame(sensor_id, t0, window.image)
                writer.add_truth(sensor_id, t0, t0 + WINDOW_NS, label)
    print(f"wrote {args.sensors} sensors x {n_windows} windows ({n_windows * WINDOW_SECONDS / 60:g} min) to {args.out}")
    return 0
