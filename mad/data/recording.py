"""Recorded sensor streams (`recorded.h5`): input of `mad-agent replay`, output of `mad-agent record`.

Schema (docs/formats.md): root attrs format="mad-recording", version=1; one group per sensor
`/sensors/<id>` with attrs sample_rate_hz, start_time_ns (UTC), power_freq_hz and datasets
`samples` (int16, 1-D, chunked + compressed), `prpd_frames` (N,256,256,3) uint8,
`prpd_start_ns` (N,) int64, and optional `truth_start_ns`, `truth_end_ns`, `truth_label` (int64).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from mad.constants import IMAGE_SIZE, NUM_CLASSES, WINDOW_SAMPLES

FORMAT_NAME = "mad-recording"
FORMAT_VERSION = 1
SAMPLE_CHUNK = WINDOW_SAMPLES // 4  # 5 s per HDF5 chunk: small reads for replay, good gzip ratio
_FRAME_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)


class RecordingFormatError(ValueError):
    """A recording (or one sensor of it) that does not follow the schema."""


def _check_sensor_id(sensor_id: str) -> str:
    if not isinstance(sensor_id, str) or not sensor_id or "/" in sensor_id:
        raise ValueError(f"sensor_id must be a non-empty string without '/', got {sensor_id!r}")
    return sensor_id


class RecordingWriter:
    """Append-only writer: add_sensor once, then append samples / PRPD frames / truth intervals."""

    def __init__(self, path: str | Path, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists (pass overwrite=True to replace it)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        self._file.attrs.update(format=FORMAT_NAME, version=FORMAT_VERSION)
        self._sensors = self._file.create_group("sensors")

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def add_sensor(self, sensor_id: str, *, sample_rate_hz: float, start_time_ns: int, power_freq_hz: float) -> None:
        _check_sensor_id(sensor_id)
        if sensor_id in self._sensors:
            raise ValueError(f"sensor {sensor_id!r} already added")
        if sample_rate_hz <= 0 or not 40 <= power_freq_hz <= 70:
            raise ValueError(f"sensor {sensor_id!r}: sample_rate_hz={sample_rate_hz}, power_freq_hz={power_freq_hz}")
        g = self._sensors.create_group(sensor_id)
        g.attrs.update(sample_rate_hz=float(sample_rate_hz), start_time_ns=np.int64(start_time_ns),
                       power_freq_hz=float(power_freq_hz))
        g.create_dataset("samples", (0,), np.int16, maxshape=(None,), chunks=(SAMPLE_CHUNK,),
                         compression="gzip", compression_opts=1, shuffle=True)
        g.create_dataset("prpd_frames", (0, *_FRAME_SHAPE), np.uint8, maxshape=(None, *_FRAME_SHAPE),
                         chunks=(1, *_FRAME_SHAPE), compression="gzip", compression_opts=1)
        g.create_dataset("prpd_start_ns", (0,), np.int64, maxshape=(None,), chunks=(1024,))
        for name in ("truth_start_ns", "truth_end_ns", "truth_label"):
            g.create_dataset(name, (0,), np.int64, maxshape=(None,), chunks=(256,))

    def _group(self, sensor_id: str) -> h5py.Group:
        if sensor_id not in self._sensors:
            raise KeyError(f"sensor {sensor_id!r} not added")
        return self._sensors[sensor_id]

    @staticmethod
    def _append(dataset: h5py.Dataset, values: np.ndarray) -> None:
        n = dataset.shape[0]
        dataset.resize(n + len(values), axis=0)
        dataset[n:] = values

    def append_samples(self, sensor_id: str, samples: np.ndarray) -> None:
        samples = np.asarray(samples).reshape(-1)
        if not np.issubdtype(samples.dtype, np.integer):
            raise ValueError(f"sensor {sensor_id!r}: samples must be integers, got {samples.dtype}")
        if samples.size and (samples.min() < -32768 or samples.max() > 32767):
            raise ValueError(f"sensor {sensor_id!r}: samples outside int16")
        self._append(self._group(sensor_id)["samples"], samples.astype(np.int16))

    def append_prpd_frame(self, sensor_id: str, window_start_ns: int, image: np.ndarray) -> None:
        image = np.asarray(image)
        if image.shape != _FRAME_SHAPE or image.dtype != np.uint8:
            raise ValueError(f"sensor {sensor_id!r}: PRPD frame must be uint8 {_FRAME_SHAPE}, got {image.dtype} "
                             f"{image.shape}")
        g = self._group(sensor_id)
        starts = g["prpd_start_ns"]
        if starts.shape[0] and window_start_ns <= starts[-1]:
            raise ValueError(f"sensor {sensor_id!r}: frame start {window_start_ns} not after {int(starts[-1])}")
        self._append(g["prpd_frames"], image[None])
        self._append(starts, np.array([window_start_ns], np.int64))

    def add_truth(self, sensor_id: str, start_ns: int, end_ns: int, label: int) -> None:
        if end_ns <= start_ns or label not in range(NUM_CLASSES):
            raise ValueError(f"sensor {sensor_id!r}: truth interval ({start_ns}, {end_ns}, label={label}) invalid")
        g = self._group(sensor_id)
        for name, value in (("truth_start_ns", start_ns), ("truth_end_ns", end_ns), ("truth_label", label)):
            self._append(g[name], np.array([value], np.int64))


@dataclass
class SensorStream:
    """One sensor of an open recording; samples and frames are read on demand."""

    sensor_id: str
    sample_rate_hz: float
    start_time_ns: int
    power_freq_hz: float
    _group: h5py.Group = field(repr=False)
    prpd_start_ns: np.ndarray = field(repr=False)
    truth: np.ndarray = field(repr=False)  # (K, 3) int64: start_ns, end_ns, label

    @property
    def n_samples(self) -> int:
        return int(self._group["samples"].shape[0])

    def sample_time_ns(self, sample_index: int) -> int:
        return self.start_time_ns + round(sample_index * 1e9 / self.sample_rate_hz)

    def read_samples(self, start: int, stop: int) -> np.ndarray:
        return self._group["samples"][start:stop]

    def iter_chunks(self, chunk_samples: int = WINDOW_SAMPLES) -> Iterator[tuple[int, np.ndarray]]:
        """(start time ns, int16 samples) chunks in order, read lazily."""
        if chunk_samples <= 0:
            raise ValueError(f"chunk_samples must be > 0, got {chunk_samples}")
        for start in range(0, self.n_samples, chunk_samples):
            yield self.sample_time_ns(start), self.read_samples(start, start + chunk_samples)

    @property
    def n_frames(self) -> int:
        return int(self.prpd_start_ns.shape[0])

    def read_frame(self, i: int) -> np.ndarray:
        return self._group["prpd_frames"][i]

    def label_at(self, time_ns: int) -> int | None:
        """Ground-truth class at a time, or None where no interval covers it."""
        hit = (self.truth[:, 0] <= time_ns) & (time_ns < self.truth[:, 1])
        return int(self.truth[hit, 2][-1]) if hit.any() else None


class Recording:
    """An open recording: `sensors` holds the valid ones, `errors` says why others were left out."""

    def __init__(self, path: Path, file: h5py.File, sensors: dict[str, SensorStream], errors: dict[str, str]):
        self.path, self._file, self.sensors, self.errors = path, file, sensors, errors

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_sensor(sensor_id: str, g: h5py.Group) -> SensorStream:
    attrs = {}
    for name in ("sample_rate_hz", "start_time_ns", "power_freq_hz"):
        if name not in g.attrs:
            raise RecordingFormatError(f"attr {name!r} missing")
        attrs[name] = g.attrs[name]
    if not float(attrs["sample_rate_hz"]) > 0:
        raise RecordingFormatError(f"sample_rate_hz={attrs['sample_rate_hz']!r} must be > 0")
    if not 40 <= float(attrs["power_freq_hz"]) <= 70:
        raise RecordingFormatError(f"power_freq_hz={attrs['power_freq_hz']!r} outside 40-70 Hz")
    if "samples" not in g:
        raise RecordingFormatError("dataset 'samples' missing")
    samples = g["samples"]
    if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.integer):
        raise RecordingFormatError(f"'samples' must be 1-D integers, got {samples.dtype} {samples.shape}")
    starts = g["prpd_start_ns"][:] if "prpd_start_ns" in g else np.zeros(0, np.int64)
    if "prpd_frames" in g:
        frames = g["prpd_frames"]
        if frames.shape[1:] != _FRAME_SHAPE or frames.dtype != np.uint8:
            raise RecordingFormatError(f"'prpd_frames' must be uint8 (N, 256, 256, 3), got {frames.dtype} "
                                       f"{frames.shape}")
        if frames.shape[0] != starts.shape[0]:
            raise RecordingFormatError(f"{frames.shape[0]} PRPD frames but {starts.shape[0]} prpd_start_ns")
    elif starts.size:
        raise RecordingFormatError("'prpd_start_ns' without 'prpd_frames'")
    if starts.size > 1 and np.any(np.diff(starts) <= 0):
        raise RecordingFormatError("'prpd_start_ns' not strictly increasing")
    parts = [g[n][:] if n in g else np.zeros(0, np.int64) for n in ("truth_start_ns", "truth_end_ns", "truth_label")]
    if len({p.shape for p in parts}) != 1:
        raise RecordingFormatError(f"truth datasets of unequal lengths {[p.shape for p in parts]}")
    truth = np.stack(parts, axis=1).astype(np.int64) if parts[0].size else np.zeros((0, 3), np.int64)
    if truth.size and (np.any(truth[:, 1] <= truth[:, 0]) or truth[:, 2].min() < 0 or truth[:, 2].max() >= NUM_CLASSES):
        raise RecordingFormatError("truth intervals need end > start and labels in 0..4")
    return SensorStream(sensor_id, float(attrs["sample_rate_hz"]), int(attrs["start_time_ns"]),
                        float(attrs["power_freq_hz"]), g, starts.astype(np.int64), truth)


def read_recording(path: str | Path) -> Recording:
    """Open and validate; raises RecordingFormatError for a bad file, lists bad sensors in `errors`."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as exc:
        raise RecordingFormatError(f"{path}: not a readable HDF5 file ({exc})") from exc
    try:
        if f.attrs.get("format") != FORMAT_NAME:
            raise RecordingFormatError(f"{path}: attr format={f.attrs.get('format')!r}, expected {FORMAT_NAME!r}")
        if int(f.attrs.get("version", -1)) != FORMAT_VERSION:
            raise RecordingFormatError(f"{path}: version={f.attrs.get('version')!r}, expected {FORMAT_VERSION}")
        if "sensors" not in f or not isinstance(f["sensors"], h5py.Group):
            raise RecordingFormatError(f"{path}: group '/sensors' missing")
    except RecordingFormatError:
        f.close()
        raise
    sensors, errors = {}, {}
    for sensor_id, g in f["sensors"].items():
        try:
            if not isinstance(g, h5py.Group):
                raise RecordingFormatError("not a group")
            sensors[sensor_id] = _read_sensor(sensor_id, g)
        except RecordingFormatError as exc:
            errors[sensor_id] = f"{path}: /sensors/{sensor_id}: {exc}"
    return Recording(path, f, sensors, errors)
