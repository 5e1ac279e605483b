"""Replay a recorded.h5 through the agent's core: the recording is the source, a ManualClock the clock.

Every sensor's samples (cut into chunks, as a sensor would send them) and PRPD frames are merged in
arrival order: a chunk arrives when its last sample was taken, a frame when its window ends. Before
each item the clock is set to that arrival time, so windowing, pairing grace, batch waits and
stale/offline timers behave as they would live. Inference runs inline, which makes a replay
deterministic. `speed=None` runs as fast as the CPU allows; `speed=S` paces items against the wall
clock (S=1 is real time).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from agent.core.clock import NS_PER_S, ManualClock
from agent.core.events import AlarmEvent
from agent.core.pipeline import Pipeline, WindowResult
from agent.core.types import PrpdFrame, SampleChunk
from agent.core.windowing import WINDOW_NS
from agent.inference import Classifier
from agent.settings import AgentSettings
from mad.data.recording import Recording, SensorStream

DEFAULT_CHUNK_SECONDS = 5.0  # one HDF5 chunk of the recording format: one read per item
_FRAME, _CHUNK = 0, 1  # at equal arrival times a window's frame goes in before the next chunk closes it


class ReplayError(ValueError):
    """Replay cannot start: unknown sensors asked for, nothing valid to replay, bad pacing."""


@dataclass(frozen=True, slots=True)
class _Item:
    arrival_ns: int
    sensor_id: str
    payload: SampleChunk | PrpdFrame


@dataclass
class ReplayOutcome:
    """Everything a replay produced; the CLI prints it, scoring and the timeline read it."""

    sensors: list[str]
    events: list[AlarmEvent]
    results: list[WindowResult]
    counters: dict[str, float]
    failed_sensors: dict[str, str] = field(default_factory=dict)  # sensor -> read error met mid-replay
    wall_s: float = 0.0
    simulated_s: float = 0.0  # recorded time covered: earliest sensor start to the last arrival
    interrupted: bool = False  # Ctrl-C: the windows fed so far were finished and scored

    @property
    def windows_per_sensor(self) -> dict[str, int]:
        counts = Counter(result.sensor_id for result in self.results)
        return {sensor: counts.get(sensor, 0) for sensor in self.sensors}

    @property
    def degraded_per_sensor(self) -> dict[str, int]:
        counts = Counter(result.sensor_id for result in self.results if result.degraded)
        return {sensor: counts.get(sensor, 0) for sensor in self.sensors}

    @property
    def unfamiliar_per_sensor(self) -> dict[str, int]:
        """Windows the familiarity gate flagged (verdict `unfamiliar`: never a defect vote)."""
        counts = Counter(result.sensor_id for result in self.results if result.unfamiliar)
        return {sensor: counts.get(sensor, 0) for sensor in self.sensors}

    @property
    def windows_per_s(self) -> float:
        return len(self.results) / self.wall_s if self.wall_s > 0 else float("inf")


def replay_settings(settings: AgentSettings) -> AgentSettings:
    """The same settings with inline inference: results then depend on the recording alone."""
    model = settings.model.model_copy(update={"inference_mode": "inline"})
    return settings.model_copy(update={"model": model})


def select_sensors(recording: Recording, wanted: Sequence[str] | None) -> list[str]:
    """Valid sensors to replay, in file order; asking for a missing or broken one is an error."""
    if wanted is None:
        chosen = list(recording.sensors)
    else:
        unknown = [s for s in wanted if s not in recording.sensors]
        if unknown:
            broken = [s for s in unknown if s in recording.errors]
            detail = "; ".join(recording.errors[s] for s in broken)
            raise ReplayError(
                f"{recording.path}: sensors {unknown} not replayable (valid: {sorted(recording.sensors)})"
                + (f"; {detail}" if detail else "")
            )
        chosen = list(dict.fromkeys(wanted))
    if not chosen:
        problems = "; ".join(recording.errors.values()) or "no sensors in /sensors"
        raise ReplayError(f"{recording.path}: no valid sensor to replay ({problems})")
    return chosen


def chunk_samples_for(stream: SensorStream, chunk_seconds: float) -> int:
    return max(1, round(chunk_seconds * stream.sample_rate_hz))


def _sensor_items(stream: SensorStream, chunk_samples: int) -> Iterator[_Item]:
    """One sensor's chunks and frames in arrival order (both are already in time order in the file)."""
    frame_index = 0
    for seq, (t0_ns, samples) in enumerate(stream.iter_chunks(chunk_samples)):
        arrival_ns = t0_ns + round(len(samples) * NS_PER_S / stream.sample_rate_hz)
        while frame_index < stream.n_frames and stream.prpd_start_ns[frame_index] + WINDOW_NS <= arrival_ns:
            yield _frame_item(stream, frame_index)
            frame_index += 1
        chunk = SampleChunk(stream.sensor_id, seq, t0_ns, stream.sample_rate_hz, stream.power_freq_hz, samples)
        yield _Item(arrival_ns, stream.sensor_id, chunk)
    for index in range(frame_index, stream.n_frames):
        yield _frame_item(stream, index)


def _frame_item(stream: SensorStream, index: int) -> _Item:
    start_ns = int(stream.prpd_start_ns[index])
    frame = PrpdFrame(stream.sensor_id, start_ns, stream.read_frame(index))
    return _Item(start_ns + WINDOW_NS, stream.sensor_id, frame)


def _guarded(items: Iterator[_Item], sensor_id: str, failed: dict[str, str], path: object) -> Iterator[_Item]:
    """Stop one sensor at its first unreadable block (truncated or corrupt file) and keep the others."""
    try:
        yield from items
    except (OSError, KeyError, ValueError) as exc:
        failed[sensor_id] = f"{path}: /sensors/{sensor_id}: read failed mid-replay ({exc})"


def merged_items(
    recording: Recording, sensors: Sequence[str], chunk_seconds: float, failed: dict[str, str]
) -> Iterator[_Item]:
    """All sensors' items in arrival order; ties keep frames before chunks, then sensor order."""
    if not chunk_seconds > 0:
        raise ReplayError(f"chunk_seconds must be > 0, got {chunk_seconds}")
    streams = []
    for rank, sensor_id in enumerate(sensors):
        stream = recording.sensors[sensor_id]
        items = _guarded(_sensor_items(stream, chunk_samples_for(stream, chunk_seconds)), sensor_id, failed,
                         recording.path)
        streams.append(
            (item.arrival_ns, _FRAME if isinstance(item.payload, PrpdFrame) else _CHUNK, rank, item) for item in items
        )
    for *_, item in heapq.merge(*streams, key=lambda entry: entry[:3]):
        yield item


def replay(
    recording: Recording,
    settings: AgentSettings,
    classifier: Classifier,
    *,
    sensors: Sequence[str] | None = None,
    speed: float | None = None,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    on_event: Callable[[AlarmEvent], None] | None = None,
    on_result: Callable[[WindowResult], None] | None = None,
    progress: bool | None = False,
    sleep: Callable[[float], None] = time.sleep,
    wall_clock: Callable[[], float] = time.perf_counter,
    event_id_factory: Callable[[], str] | None = None,
    background_activity: Mapping[str, float] | None = None,
) -> ReplayOutcome:
    """Run `sensors` (default: every valid one) of `recording` through a fresh Pipeline.

    `background_activity`: commissioned sensors' background activity (as the live agent loads it from
    its state dir); none by default. `progress=None` shows a tqdm bar only on a terminal.
    `sleep`/`wall_clock` are injectable so pacing can be tested without waiting.
    """
    if speed is not None and not speed > 0:
        raise ReplayError(f"speed must be > 0 (1 = real time), got {speed}")
    chosen = select_sensors(recording, sensors)
    events: list[AlarmEvent] = []
    results: list[WindowResult] = []

    def sink(event: AlarmEvent) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    def collect(result: WindowResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    clock = ManualClock()
    pipeline = Pipeline(
        replay_settings(settings), classifier, clock, sink, on_result=collect, event_id_factory=event_id_factory,
        background_activity=background_activity,
    )
    failed: dict[str, str] = {}
    streams = [recording.sensors[s] for s in chosen]
    total_chunks = sum(-(-stream.n_samples // chunk_samples_for(stream, chunk_seconds)) for stream in streams)
    origin_ns = last_ns = min(stream.start_time_ns for stream in streams)  # recorded time starts here
    interrupted = False
    started = wall_clock()
    hide = None if progress is None else not progress  # tqdm: None = only on a terminal
    with tqdm(total=total_chunks, desc="replay", unit="chunk", disable=hide) as bar:
        try:
            for item in merged_items(recording, chosen, chunk_seconds, failed):
                if speed is not None:
                    due = started + (item.arrival_ns - origin_ns) / NS_PER_S / speed
                    wait = due - wall_clock()
                    if wait > 0:
                        sleep(wait)
                last_ns = max(last_ns, item.arrival_ns)
                clock.set_ns(item.arrival_ns)
                if isinstance(item.payload, SampleChunk):
                    pipeline.on_chunk(item.payload)
                    bar.update(1)
                else:
                    pipeline.on_frame(item.payload)
                pipeline.tick()
        except KeyboardInterrupt:  # a long real-time replay stopped by hand still reports what it saw
            interrupted = True
        pipeline.close()
    wall_s = wall_clock() - started
    simulated_s = (last_ns - origin_ns) / NS_PER_S
    return ReplayOutcome(chosen, events, results, pipeline.counters(), failed, wall_s, simulated_s, interrupted)
