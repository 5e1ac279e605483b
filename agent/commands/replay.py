"""`mad-agent replay recorded.h5`: run a recording through the agent's core on a simulated clock.

Alarms print as they happen (readable lines on stdout, or JSON lines with --json), then a summary
and, where the file has ground truth, a score per sensor. Exit 0: replayed. 2: the recording,
config, model or arguments cannot be used (one line naming the problem, no traceback). 130:
stopped with Ctrl-C (the summary covers the part replayed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from agent import commissioning
from agent.core.events import AlarmEvent
from agent.inference import Classifier, ClassifierError, load_classifier
from agent.logging import configure_logging
from agent.replay import DEFAULT_CHUNK_SECONDS, ReplayError, ReplayOutcome, replay
from agent.scoring import SensorScore, score_replay
from agent.settings import AgentSettings, ConfigError, ModelSection, load_settings
from agent.timeline import plot_timeline
from mad.data.recording import RecordingFormatError, read_recording
from mad.runtime.loading import CheckpointError

REPO_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", type=Path, help="recorded.h5 (mad-recording format, docs/formats.md)")
    parser.add_argument("--config", type=Path, help="agent TOML (the same file the live agent uses)")
    parser.add_argument("--model", type=Path, help="model file; default: model.path from the config, else "
                        "models/mad_small.safetensors in this repository")
    parser.add_argument("--speed", type=float, help="pace against the wall clock (1 = real time); default: as fast "
                        "as possible")
    parser.add_argument("--json", action="store_true", help="alarms as JSON lines on stdout (summary on stderr)")
    parser.add_argument("--out", type=Path, help="also write the alarms as JSON lines to this file")
    parser.add_argument("--plot", type=Path, help="write a timeline PNG (probabilities, alarms, truth)")
    parser.add_argument("--sensors", help="comma-separated sensor ids to replay (default: all valid ones)")
    parser.add_argument("--backgrounds", type=Path, metavar="STATE_DIR",
                        help="judge sensors against the backgrounds commissioned in this state dir (its "
                        "backgrounds/ folder, as the live agent does); default: none")
    parser.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS,
                        help="seconds of samples per replayed chunk (default %(default)s)")


def resolve_model_path(settings: AgentSettings, explicit: Path | None) -> Path:
    """--model, else the configured model.path; an unset (default) path falls back to the repo's models/."""
    if explicit is not None:
        return explicit
    configured = settings.model.path
    default = ModelSection.model_fields["path"].default
    if configured == default and not configured.exists():
        return REPO_MODELS_DIR / default.name  # same file name as the deployed default: one source of truth
    return configured


def _fail(message: str) -> int:
    print(f"mad-agent replay: error: {message}", file=sys.stderr)
    return 2


def _alarm_line(event: AlarmEvent) -> str:
    p = event.probabilities.get(event.class_name, float("nan"))
    degraded = f"  degraded: {event.degraded_reason}" if event.degraded else ""
    return (f"{event.window_end}  {event.kind.upper():<6} {event.sensor_id:<16} {event.class_name:<8} "
            f"severity={event.severity:<6} p={p:.3f}{degraded}")


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_summary(outcome: ReplayOutcome, scores: dict[str, SensorScore], classifier: Classifier, path: Path,
                  stream: TextIO) -> None:
    def say(line: str = "") -> None:
        print(line, file=stream)

    realtime = outcome.simulated_s / outcome.wall_s if outcome.wall_s > 0 else float("inf")
    say()
    say(f"replayed {path}: {len(outcome.sensors)} sensor(s), {outcome.simulated_s / 60:.1f} min recorded, "
        f"model {classifier.name} {classifier.version}")
    say(f"wall time {outcome.wall_s:.2f} s, {len(outcome.results)} windows, {outcome.windows_per_s:.2f} windows/s "
        f"({realtime:.0f}x real time)")
    threshold = getattr(classifier, "familiarity_threshold", None)
    say("familiarity gate: " + ("off (the model has no calibration)" if threshold is None else
                                f"on, unfamiliar below {threshold:.4g}"))
    say(f"{'sensor':<16} {'windows':>7} {'degraded':>8} {'unfamiliar':>10} {'new':>4} {'update':>6} {'end':>4}")
    windows, degraded = outcome.windows_per_sensor, outcome.degraded_per_sensor
    unfamiliar = outcome.unfamiliar_per_sensor
    for sensor in outcome.sensors:
        kinds = [e.kind for e in outcome.events if e.sensor_id == sensor]
        say(f"{sensor:<16} {windows[sensor]:>7} {degraded[sensor]:>8} {unfamiliar[sensor]:>10} "
            f"{kinds.count('new'):>4} {kinds.count('update'):>6} {kinds.count('end'):>4}")
    if scores:
        say()
        say("against ground truth (definitions: docs/replay.md)")
        say(f"{'sensor':<16} {'accuracy':>8} {'faults':>6} {'missed':>6} {'false':>5}  "
            "per fault: detection delay s / clear delay s")
        for sensor, score in scores.items():
            faults = ", ".join(
                f"{f.class_name} {_fmt(f.detection_delay_s, '.0f')} / {_fmt(f.clear_delay_s, '.0f')}"
                for f in score.faults
            ) or "-"
            accuracy = _fmt(None if score.accuracy is None else 100 * score.accuracy, ".1f")
            say(f"{sensor:<16} {accuracy + '%':>8} {len(score.faults):>6} {score.missed:>6} "
                f"{len(score.false_alarms):>5}  {faults}")
            for alarm in score.false_alarms:
                say(f"{'':<16} false alarm: {alarm.class_name} in a window whose truth is {alarm.truth or 'unknown'}")
    counters = {k: v for k, v in sorted(outcome.counters.items()) if v}
    say()
    say("counters: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in counters.items()))


def run(args: argparse.Namespace) -> int:
    if args.speed is not None and not args.speed > 0:
        return _fail(f"--speed must be > 0 (1 = real time), got {args.speed}")
    if not args.chunk_seconds > 0:
        return _fail(f"--chunk-seconds must be > 0, got {args.chunk_seconds}")
    sensors = None
    if args.sensors is not None:
        sensors = [s.strip() for s in args.sensors.split(",") if s.strip()]
        if not sensors:
            return _fail(f"--sensors {args.sensors!r} names no sensor")
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(f"{exc.source}: " + "; ".join(exc.problems))
    configure_logging(settings.logging.format, settings.logging.level)  # stderr, as it is when a line is written

    try:
        recording = read_recording(args.recording)
    except RecordingFormatError as exc:
        return _fail(str(exc))
    with recording:
        for problem in recording.errors.values():
            print(f"mad-agent replay: warning: skipping broken sensor: {problem}", file=sys.stderr)
        model_path = resolve_model_path(settings, args.model)
        try:
            classifier = load_classifier(model_path, settings.model.device, settings.model.threads)
        except (ClassifierError, CheckpointError) as exc:
            return _fail(f"model: {exc}")
        try:
            out_file = args.out.open("w", encoding="utf-8") if args.out else None
        except OSError as exc:
            return _fail(f"--out {args.out}: {exc.strerror}")
        try:
            outcome = _replay(args, recording, settings, classifier, sensors, out_file)
        except ReplayError as exc:
            return _fail(str(exc))
        finally:
            if out_file is not None:
                out_file.close()
        truth = {s: recording.sensors[s].truth for s in outcome.sensors}

    summary_stream = sys.stderr if args.json else sys.stdout
    for problem in outcome.failed_sensors.values():
        print(f"mad-agent replay: warning: {problem}", file=sys.stderr)
    scores = score_replay(truth, outcome.events, outcome.results)
    print_summary(outcome, scores, classifier, args.recording, summary_stream)
    if args.plot is not None:
        try:
            plot_timeline(outcome.results, outcome.events, truth, args.plot, sensors=outcome.sensors,
                          title=f"{args.recording.name}: {classifier.name} {classifier.version}")
        except (OSError, ValueError) as exc:
            return _fail(f"--plot {args.plot}: {exc}")
        print(f"timeline written to {args.plot}", file=summary_stream)
    if not outcome.results and outcome.failed_sensors:
        return _fail("no window could be replayed (every sensor failed to read)")
    if outcome.interrupted:
        print("mad-agent replay: interrupted: the summary covers the part replayed", file=sys.stderr)
        return 130
    return 0


def _replay(args: argparse.Namespace, recording, settings: AgentSettings, classifier: Classifier,
            sensors: list[str] | None, out_file: TextIO | None) -> ReplayOutcome:
    background_activity = None
    if args.backgrounds is not None:
        loaded = commissioning.load(args.backgrounds, settings.limits.max_sensors)
        for name, problem in loaded.problems.items():
            print(f"mad-agent replay: warning: background {name} ignored: {problem}", file=sys.stderr)
        background_activity = {s: b.activity_p95 for s, b in loaded.backgrounds.items()}
        print(f"backgrounds: {len(background_activity)} sensor(s) commissioned in {args.backgrounds}", file=sys.stderr)

    def on_event(event: AlarmEvent) -> None:
        line = event.to_json()
        print(line if args.json else _alarm_line(event), flush=True)
        if out_file is not None:
            out_file.write(line + "\n")
            out_file.flush()

    return replay(recording, settings, classifier, sensors=sensors, speed=args.speed,
                  chunk_seconds=args.chunk_seconds, on_event=on_event, progress=None,
                  background_activity=background_activity)
