"""`mad-train synth-recording`: K sensors x M minutes of continuous streams with class changes.

`--noise-families a,b --all-noise` makes a recording of interference only, from the named noise
families (sensor s carries family s mod F): the held-out replay of docs/data.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tqdm import tqdm

from mad.constants import SAMPLE_RATE_HZ, WINDOW_SECONDS
from mad.data.recording import RecordingWriter
from mad.data.schedule import (
    constant_schedule,
    default_schedule,
    load_schedule_file,
    parse_schedule,
    sensor_steps,
    state_at,
)
from mad.data.synthetic import PRESETS, generate_stream_segment, resolve_noise_families

WINDOW_NS = WINDOW_SECONDS * 1_000_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sensors", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--schedule", type=Path,
                        help="JSON {sensor: [{from_min, label, intensity, to_intensity}]} (mad/data/schedule.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="standard")
    parser.add_argument("--power-freq-hz", type=float, default=60.0)
    parser.add_argument("--start-time-ns", type=int, help="UTC start (rounded down to a 20 s multiple); default now")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--noise-families", default="",
                        help="comma-separated noise families (mad.data.synthetic.NOISE_FAMILIES, 'all', '-name' to "
                             "drop one); sensor s carries family s mod F. Default: the default mixture")
    parser.add_argument("--all-noise", action="store_true",
                        help="every sensor shows Noise for the whole run (instead of the default schedule)")


def run(args: argparse.Namespace) -> int:
    if args.sensors < 1 or args.minutes <= 0 or args.seed < 0:
        raise SystemExit(f"need --sensors >= 1, --minutes > 0, --seed >= 0 (got {args.sensors}, {args.minutes}, "
                         f"{args.seed})")
    if args.schedule and args.all_noise:
        raise SystemExit("mad-train synth-recording: --schedule and --all-noise exclude each other")
    try:
        families = resolve_noise_families([f.strip() for f in args.noise_families.split(",") if f.strip()])
        raw = constant_schedule(args.sensors, "Noise") if args.all_noise else default_schedule(args.sensors)
        schedule = (load_schedule_file(args.schedule, args.sensors) if args.schedule
                    else parse_schedule(raw, args.sensors))
    except ValueError as exc:  # a ScheduleError or an unknown noise family
        raise SystemExit(f"mad-train synth-recording: {exc}") from None
    start_ns = time.time_ns() if args.start_time_ns is None else args.start_time_ns
    start_ns -= start_ns % WINDOW_NS  # windows aligned to the epoch
    n_windows = max(1, int(args.minutes * 60 // WINDOW_SECONDS))
    with RecordingWriter(args.out, overwrite=args.overwrite) as writer:
        for s in range(args.sensors):
            sensor_id = f"sensor-{s}"
            writer.add_sensor(sensor_id, sample_rate_hz=SAMPLE_RATE_HZ, start_time_ns=start_ns,
                              power_freq_hz=args.power_freq_hz)
            steps = sensor_steps(schedule, s)
            desc = f"{sensor_id} ({families[s % len(families)]})" if families else sensor_id
            for w in tqdm(range(n_windows), desc=desc, unit="win"):
                label, intensity = state_at(steps, w * WINDOW_SECONDS / 60, args.minutes)
                window = generate_stream_segment(args.preset, args.seed, s, w, label, intensity, args.power_freq_hz,
                                                 noise_families=families or None)
                t0 = start_ns + w * WINDOW_NS
                writer.append_samples(sensor_id, window.series)
                writer.append_prpd_frame(sensor_id, t0, window.image)
                writer.add_truth(sensor_id, t0, t0 + WINDOW_NS, label)
    print(f"wrote {args.sensors} sensors x {n_windows} windows ({n_windows * WINDOW_SECONDS / 60:g} min) to {args.out}")
    if families:
        print("noise families: " + ", ".join(f"sensor-{s} {families[s % len(families)]}" for s in range(args.sensors)))
    return 0
