"""Sensor-windows per second through the whole agent core (replay of a synthetic recording) on this machine.

Stages are timed by wrapping the core's entry points with time.perf_counter (HDF5 reads, windowing,
model input + pulse activity, pairing incl. PRPD rendering, alarms) and from the batcher's own
inference counter; "other" is what is left of the wall time (replay loop, events, bookkeeping).
Prints the implied real-time capacity: each sensor sends one 20 s window per 20 s.

    .venv/bin/python bench/replay_throughput.py [--sensors 8] [--minutes 2] [--model models/mad_small.safetensors]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

import agent.core.pipeline as pipeline_module
from agent.core.alarms import SensorAlarm
from agent.core.pairing import Pairer
from agent.core.windowing import WINDOW_NS, Windower
from agent.inference import TorchClassifier, load_classifier
from agent.replay import replay
from agent.settings import load_settings
from mad.constants import SAMPLE_RATE_HZ, WINDOW_SECONDS
from mad.data.recording import RecordingWriter, SensorStream, read_recording
from mad.data.synthetic import generate_stream_segment

REPO_MODEL = Path(__file__).resolve().parents[1] / "models" / "mad_small.safetensors"
SECONDS: dict[str, float] = defaultdict(float)


def timed(stage: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SECONDS[stage] += time.perf_counter() - started

    return wrapper


def instrument() -> None:
    """Wrap the core's stage entry points (class attributes, so the Pipeline replay() builds is timed)."""
    for owner, names, stage in (
        (SensorStream, ("read_samples", "read_frame"), "hdf5 read"),
        (Windower, ("add", "close_idle", "close_all"), "windowing"),
        (Pairer, ("add_window", "add_frame", "expire", "release_all"), "pairing (+render)"),
        (SensorAlarm, ("observe",), "alarms"),
    ):
        for name in names:
            setattr(owner, name, timed(stage, getattr(owner, name)))
    for name in ("to_model_signal", "pulse_rate"):
        setattr(pipeline_module, name, timed("model input + activity", getattr(pipeline_module, name)))


def write_recording(path: Path, sensors: int, minutes: float) -> None:
    """Mixed classes so the alarm path is exercised; one PRPD frame per window like a real sensor."""
    windows = max(1, int(minutes * 60 // WINDOW_SECONDS))
    start_ns = 88_000 * WINDOW_NS
    with RecordingWriter(path, overwrite=True) as writer:
        for s in range(sensors):
            sensor_id = f"sensor-{s}"
            writer.add_sensor(sensor_id, sample_rate_hz=SAMPLE_RATE_HZ, start_time_ns=start_ns, power_freq_hz=60.0)
            for w in range(windows):
                label = (s + w // 3) % 5
                window = generate_stream_segment("standard", 0, s, w, label, 0.8)
                t0 = start_ns + w * WINDOW_NS
                writer.append_samples(sensor_id, window.series)
                writer.append_prpd_frame(sensor_id, t0, window.image)


def load_model(path: Path | None):
    if path is not None:
        return load_classifier(path), str(path)
    if REPO_MODEL.is_file():
        return load_classifier(REPO_MODEL), str(REPO_MODEL)
    import mad  # throughput does not depend on the weights: an untrained mad_small costs the same

    model = mad.build_model("mad_small").eval()
    return TorchClassifier(model, name="mad_small-untrained", version="0"), "untrained mad_small (no shipped file)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--batch-max", type=int, default=8)
    parser.add_argument("--chunk-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.sensors < 1 or args.minutes <= 0:
        parser.error(f"need --sensors >= 1 and --minutes > 0, got {args.sensors}, {args.minutes}")

    classifier, model_label = load_model(args.model)
    settings = load_settings(model={"batch_max": args.batch_max})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.h5"
        print(f"writing {args.sensors} sensors x {args.minutes:g} min ...", file=sys.stderr)
        write_recording(path, args.sensors, args.minutes)
        instrument()
        with read_recording(path) as recording:
            outcome = replay(recording, settings, classifier, chunk_seconds=args.chunk_seconds, progress=None)

    windows = len(outcome.results)
    SECONDS["inference"] = float(outcome.counters["inference_seconds_total"])
    SECONDS["other"] = max(0.0, outcome.wall_s - sum(v for k, v in SECONDS.items() if k != "other"))
    rate = windows / outcome.wall_s
    print(f"model: {model_label}; torch threads {torch.get_num_threads()}; cpus {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{args.sensors} sensors x {outcome.simulated_s / 60:.1f} min, batch_max {args.batch_max}, "
          f"{outcome.counters['inference_batches']} batches, {args.chunk_seconds:g} s chunks")
    print(f"{windows} sensor-windows in {outcome.wall_s:.2f} s wall: {rate:.2f} windows/s, "
          f"{1000 / rate:.1f} ms per window")
    print(f"{'stage':<24} {'seconds':>8} {'share':>6} {'ms/window':>9}")
    for stage, seconds in sorted(SECONDS.items(), key=lambda kv: -kv[1]):
        print(f"{stage:<24} {seconds:>8.2f} {100 * seconds / outcome.wall_s:>5.1f}% {1000 * seconds / windows:>9.2f}")
    capacity = rate * WINDOW_SECONDS
    print(f"real-time capacity: {capacity:.0f} sensors on this box (one window per sensor per {WINDOW_SECONDS} s), "
          f"{capacity / 2:.0f} keeping 50% headroom")
    return 0


if __name__ == "__main__":
    sys.exit(main())
