"""`mad-agent simulate --broker URL --sensors K`: synthetic PD sensors published at real rate over MQTT.

Exit 0: ran for --duration (or until Ctrl-C / SIGTERM). 2: bad arguments, schedule or broker.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from agent.simulator import (
    DEFAULT_MATRIX_BINS,
    PRPD_FORMATS,
    SimulationConfig,
    SimulationError,
    WindowSource,
    connect_client,
    load_schedule,
    new_client_id,
    parse_broker_url,
    run_simulation,
)
from mad.data.synthetic import PRESETS

FLUSH_TIMEOUT_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True, help="mqtt://[user[:password]@]host[:port] or mqtts://...")
    parser.add_argument("--ca-file", type=Path, help="CA bundle for mqtts:// (default: system CAs)")
    parser.add_argument("--sensors", type=int, default=3, help="number of sensors (ids <prefix>0..K-1)")
    parser.add_argument("--prefix", default="sensor-", help="sensor id prefix (default %(default)s)")
    parser.add_argument("--schedule", type=Path, help="fault schedule JSON, as for mad-train synth-recording: "
                        "{sensor index: [{from_min, label, intensity, to_intensity}]}")
    parser.add_argument("--duration", type=float, default=600.0,
                        help="seconds of sensor data (event time) per sensor (default %(default)s)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="event time runs this many times faster than the wall clock (default 1 = real rate)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="standard")
    parser.add_argument("--power-freq-hz", type=float, default=60.0)
    parser.add_argument("--chunk-seconds", type=float, default=1.0, help="seconds of samples per PD chunk")
    parser.add_argument("--pool", type=int, default=0,
                        help="cycle N pre-generated windows per class instead of generating each window "
                             "(load tests: cheap, but the data repeats); 0 = off")
    parser.add_argument("--prpd-format", choices=PRPD_FORMATS, default="png",
                        help="PRPD frames as the generator's PNG image or as a count matrix (phase x amplitude "
                             "bins, docs/mqtt.md) that the agent draws itself (default %(default)s)")
    parser.add_argument("--matrix-bins", type=_bins, default="x".join(map(str, DEFAULT_MATRIX_BINS)),
                        metavar="PHASExAMP",
                        help="count-matrix bins with --prpd-format matrix (default %(default)s)")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--start-time-ns", type=int, help="event time (UTC ns) of the stream start; default now, so "
                        "at --speed 1 sample timestamps match the wall clock (the first window is then partial)")


def _bins(text: str) -> tuple[int, int]:
    """`128x64` -> (128, 64); the range is checked by WindowSource against the wire limits."""
    phase, sep, amp = text.lower().partition("x")
    if not sep or not phase.isdigit() or not amp.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected PHASExAMP, e.g. 128x64")
    return int(phase), int(amp)


def _fail(message: str) -> int:
    print(f"mad-agent simulate: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    raw_schedule = None
    if args.schedule is not None:
        try:
            raw_schedule = json.loads(args.schedule.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            return _fail(f"--schedule {args.schedule}: unreadable ({exc})")
    if args.seed < 0:
        return _fail(f"--seed must be >= 0, got {args.seed}")
    start_ns = time.time_ns() if args.start_time_ns is None else args.start_time_ns
    try:
        broker = parse_broker_url(args.broker)
        config = SimulationConfig(
            sensors=args.sensors, duration_s=args.duration, speed=args.speed, chunk_s=args.chunk_seconds,
            seed=args.seed, preset=args.preset, power_freq_hz=args.power_freq_hz, pool=args.pool,
            sensor_prefix=args.prefix, start_ns=start_ns,
            schedule=load_schedule(raw_schedule, args.sensors, args.duration) if args.sensors >= 1 else {},
        )
        source = WindowSource(args.preset, args.seed, args.power_freq_hz, args.pool, args.prpd_format,
                              args.matrix_bins)
        client = connect_client(broker, new_client_id(), args.ca_file)
    except SimulationError as exc:
        return _fail(str(exc))

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"simulating {config.sensors} sensor(s) x {config.duration_s:g} s at {config.speed:g}x to "
          f"{broker.host}:{broker.port}" + (f" (pool of {config.pool} windows per class)" if config.pool else ""),
          file=sys.stderr)
    last: list = []

    def publish(topic: str, payload: bytes) -> None:
        last[:] = [client.publish(topic, payload, qos=args.qos)]

    try:
        report = run_simulation(config, source, publish, stop)
        try:
            if last:
                last[0].wait_for_publish(FLUSH_TIMEOUT_S)  # paho sends in order: the last one out means all out
        except (RuntimeError, ValueError) as exc:
            print(f"mad-agent simulate: warning: last messages not confirmed: {exc}", file=sys.stderr)
    finally:
        client.disconnect()
        client.loop_stop()
    print(f"sent {report.chunks} chunks and {report.frames} PRPD frames ({report.bytes / 1e6:.1f} MB) in "
          f"{report.wall_s:.1f} s; publisher fell behind its schedule by at most {report.max_lag_s:.2f} s",
          file=sys.stderr)
    return 0
