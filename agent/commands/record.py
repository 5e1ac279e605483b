"""`mad-agent record --broker URL --out recorded.h5 --duration S [--sensors a,b] [--rate HZ]`: capture live
sensor topics.

The file is the `mad-recording` format (docs/formats.md): `mad-agent replay` runs it through the
agent. Each sensor is stored at its own rate unless `--rate` is given: then every sensor is stored at
that rate, converted by the agent's own peak-hold resampler (`mad.data.resample`).
Exit 0: recorded (a summary of what was written and what was refused goes to stderr).
2: bad arguments, broker unreachable, or the output cannot be written.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from agent.recorder import RecordSession, check_record_rate
from agent.simulator import SimulationError, parse_broker_url
from agent.wire import SENSOR_ID_RE, SENSOR_ID_RULE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True, help="mqtt://[user[:password]@]host[:port] or mqtts://...")
    parser.add_argument("--ca-file", type=Path, help="CA bundle for mqtts:// (default: system CAs)")
    parser.add_argument("--out", type=Path, required=True, help="recorded.h5 to write")
    parser.add_argument("--duration", type=float, required=True, help="wall-clock seconds to record")
    parser.add_argument("--sensors", help="comma-separated sensor ids (default: every sensor on the broker)")
    parser.add_argument("--rate", type=float, help="store every sensor at this rate (e.g. 7680, the model's), "
                        "converted with the agent's peak-hold resampler (default: each sensor's own rate, lossless)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _fail(message: str) -> int:
    print(f"mad-agent record: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if not args.duration > 0:
        return _fail(f"--duration must be > 0 seconds, got {args.duration}")
    if args.rate is not None:
        try:
            check_record_rate(args.rate)
        except ValueError as exc:
            return _fail(f"--rate: {exc}")
    sensors = None
    if args.sensors is not None:
        sensors = [s.strip() for s in args.sensors.split(",") if s.strip()]
        bad = [s for s in sensors if not SENSOR_ID_RE.match(s)]
        if not sensors or bad:
            return _fail(f"--sensors {args.sensors!r}: ids must match {SENSOR_ID_RULE} (bad: {bad})")
    try:
        session = RecordSession(parse_broker_url(args.broker), args.out, sensors=sensors, overwrite=args.overwrite,
                                ca_file=args.ca_file, rate_hz=args.rate)
    except SimulationError as exc:
        return _fail(str(exc))
    except (FileExistsError, OSError) as exc:
        return _fail(f"--out {args.out}: {exc}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stored = "each sensor's own rate" if args.rate is None else f"{args.rate:g} Hz (peak hold)"
    print(f"recording to {args.out} for {args.duration:g} s at {stored} (Ctrl-C stops early)", file=sys.stderr)
    report = session.run(args.duration, stop)
    for sensor in sorted(set(report.chunks) | set(report.frames)):
        print(f"{sensor}: {report.chunks[sensor]} chunks, {report.frames[sensor]} PRPD frames", file=sys.stderr)
    if report.problems:
        print("adjusted or refused: " + ", ".join(f"{k}={v}" for k, v in sorted(report.problems.items())),
              file=sys.stderr)
    if not report.chunks:
        print("mad-agent record: warning: no sensor data arrived", file=sys.stderr)
    return 0
