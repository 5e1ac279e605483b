"""`mad-agent commission`: learn sensors' backgrounds (N minutes known to be free of PD) before they alarm.

    mad-agent commission recorded.h5 [--sensors a,b] [--minutes 10] [--config agent.toml]
    mad-agent commission --broker mqtt://host --sensors a,b --minutes 10 [--config agent.toml]

From a recording, or captured live from the broker first (as `mad-agent record` does). The windows go
through the agent's own pipeline and model; each sensor's background (noise floor, pulse rate,
verdicts, familiarity) is written to `<agent.state_dir>/backgrounds/<sensor>.json` and used by the agent
from its next start (docs/alarms.md, "Commissioning"). Exit 0: every asked sensor commissioned.
2: bad arguments, config, model, recording or broker, or a sensor with too little data.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import tempfile
import threading
from pathlib import Path

from agent.commands.replay import resolve_model_path
from agent.commissioning import CommissioningError, floor_of, measure, save, warnings_for
from agent.core.pipeline import WindowResult
from agent.core.windowing import WINDOW_NS
from agent.inference import ClassifierError, familiarity_threshold_of, load_classifier
from agent.logging import configure_logging
from agent.recorder import RecordSession
from agent.replay import ReplayError, replay
from agent.settings import ConfigError, load_settings
from agent.simulator import SimulationError, parse_broker_url
from agent.wire import SENSOR_ID_RE, SENSOR_ID_RULE
from mad.constants import WINDOW_SECONDS
from mad.data.recording import RecordingFormatError, read_recording
from mad.runtime.loading import CheckpointError

DEFAULT_MINUTES = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", type=Path, nargs="?",
                        help="recorded.h5 of the sensors while free of PD (or use --broker to capture it live)")
    parser.add_argument("--broker", help="capture live from mqtt://[user[:password]@]host[:port] (or mqtts://) "
                        "for --minutes first")
    parser.add_argument("--ca-file", type=Path, help="CA bundle for mqtts:// (default: system CAs)")
    parser.add_argument("--sensors", help="comma-separated sensor ids (default: every sensor in the recording; "
                        "required with --broker)")
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                        help="minutes of data per sensor: the first N of the recording, or N captured live "
                        "(default %(default)s; at least 1)")
    parser.add_argument("--config", type=Path, help="agent TOML: its state_dir, model and alarm settings are used")
    parser.add_argument("--model", type=Path, help="model file; default: model.path from the config")
    parser.add_argument("--state-dir", type=Path, help="write the backgrounds here instead of agent.state_dir")


def _fail(message: str) -> int:
    print(f"mad-agent commission: error: {message}", file=sys.stderr)
    return 2


def _sensors(text: str | None) -> list[str] | None:
    if text is None:
        return None
    sensors = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in sensors if not SENSOR_ID_RE.match(s)]
    if not sensors or bad:
        raise ValueError(f"--sensors {text!r}: ids must match {SENSOR_ID_RULE} (bad: {bad})")
    return sensors


def _capture(args: argparse.Namespace, sensors: list[str], out: Path) -> None:
    session = RecordSession(parse_broker_url(args.broker), out, sensors=sensors, overwrite=True,
                            ca_file=args.ca_file)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    seconds = args.minutes * 60.0 + WINDOW_SECONDS  # one window more: windows are epoch-aligned
    print(f"capturing {', '.join(sensors)} from {args.broker} for {seconds:g} s (Ctrl-C stops early)",
          file=sys.stderr)
    session.run(seconds, stop)


def run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.minutes) and 1.0 <= args.minutes <= 24 * 60):
        return _fail(f"--minutes must be 1..1440, got {args.minutes}")
    if (args.recording is None) == (args.broker is None):
        return _fail("give a recording or --broker (one of them)")
    try:
        sensors = _sensors(args.sensors)
    except ValueError as exc:
        return _fail(str(exc))
    if args.broker is not None and sensors is None:
        return _fail("--broker needs --sensors (the sensors known to be free of PD)")
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(f"{exc.source}: " + "; ".join(exc.problems))
    configure_logging(settings.logging.format, settings.logging.level)
    state_dir = args.state_dir or settings.agent.state_dir
    model_path = resolve_model_path(settings, args.model)
    try:
        classifier = load_classifier(model_path, settings.model.device, settings.model.threads)
    except (ClassifierError, CheckpointError) as exc:
        return _fail(f"model: {exc}")

    with tempfile.TemporaryDirectory(prefix="mad-commission-") as scratch:
        path = args.recording
        if args.broker is not None:
            path = Path(scratch) / "captured.h5"
            try:
                _capture(args, sensors, path)
            except (SimulationError, OSError) as exc:
                return _fail(str(exc))
        try:
            recording = read_recording(path)
        except RecordingFormatError as exc:
            return _fail(str(exc))
        with recording:
            chosen = sensors or list(recording.sensors)
            missing = [s for s in chosen if s not in recording.sensors]
            if missing:
                return _fail(f"{path}: no usable data for {missing} (found: {sorted(recording.sensors)})")
            results: dict[str, list[WindowResult]] = {s: [] for s in chosen}
            # A recording gives its first N minutes; a capture all it got (N minutes and the part-window before).
            span_ns = round(args.minutes * 60 * 1e9) + (WINDOW_NS if args.broker is not None else 0)
            cutoff = {s: recording.sensors[s].start_time_ns + span_ns for s in chosen}

            def keep(result: WindowResult) -> None:
                if result.window_end_ns <= cutoff[result.sensor_id]:
                    results[result.sensor_id].append(result)

            try:
                replay(recording, settings, classifier, sensors=chosen, on_result=keep, progress=None)
            except ReplayError as exc:
                return _fail(str(exc))
            threshold = familiarity_threshold_of(classifier)
            backgrounds = []
            for sensor in chosen:
                stream = recording.sensors[sensor]
                window = round(WINDOW_SECONDS * stream.sample_rate_hz)
                whole = min(stream.n_samples, round(args.minutes * 60 * stream.sample_rate_hz)) // window
                try:
                    floor = floor_of(stream.read_samples(k * window, (k + 1) * window) for k in range(whole))
                    backgrounds.append(measure(sensor, results[sensor], floor, source=str(args.broker or path),
                                               familiarity_threshold=threshold))
                except CommissioningError as exc:
                    return _fail(str(exc))
    for background in backgrounds:
        try:
            written = save(state_dir, background)
        except CommissioningError as exc:
            return _fail(str(exc))
        verdicts = ", ".join(f"{k} {v:.0%}" for k, v in background.verdicts.items())
        familiar = ("" if background.familiar_fraction is None
                    else f", familiar {background.familiar_fraction:.0%}")
        print(f"{background.sensor_id}: {background.windows} windows ({background.minutes:g} min); floor "
              f"{background.baseline_counts:g} +- {background.noise_sigma_counts:g} counts; activity p50 "
              f"{background.activity_p50:g} p95 {background.activity_p95:g} pulses/s; {verdicts}{familiar} "
              f"-> {written}")
        for warning in warnings_for(background):
            print(f"{background.sensor_id}: warning: {warning}")
    print("the agent uses these backgrounds from its next start (systemctl restart mad-agent)")
    return 0
