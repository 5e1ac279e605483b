"""Training HDF5: a materialised synthetic set (schema in docs/formats.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from mad.constants import CLASS_NAMES, DEFAULT_POWER_FREQ_HZ, IMAGE_SIZE, WINDOW_ROWS, WINDOW_SAMPLES
from mad.data.datasets import make_item
from mad.data.synthetic import GENERATOR_VERSION, check_non_negative_int, check_preset, generate_window

FORMAT_NAME = "mad-training"
FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
# Blocks of 5 windows (one per class) go to train/val/test in this pattern: classes stay balanced per split.
SPLIT_BLOCK_PATTERN = (0,) * 8 + (1, 2)


class TrainingFileError(ValueError):
    """A training .h5 that does not follow the schema."""


def split_of(index: int) -> int:
    return SPLIT_BLOCK_PATTERN[(index // len(CLASS_NAMES)) % len(SPLIT_BLOCK_PATTERN)]


def write_training_h5(
    path: str | Path,
    preset: str,
    seed: int,
    n: int,
    *,
    power_freq_hz: float = DEFAULT_POWER_FREQ_HZ,
    progress: bool = True,
) -> Path:
    """Write n windows (preset, seed, 0..n-1), classes balanced, 80/10/10 split by blocks of 5."""
    check_preset(preset)
    seed, n = check_non_negative_int("seed", seed), check_non_negative_int("n", n)
    if n == 0:
        raise ValueError("n must be >= 1")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".partial")  # a crash never leaves a half-written file under the real name
    with h5py.File(tmp, "w") as f:
        f.attrs.update(format=FORMAT_NAME, format_version=FORMAT_VERSION, preset=preset, seed=seed,
                       generator_version=GENERATOR_VERSION, power_freq_hz=power_freq_hz)
        f.attrs["class_names"] = json.dumps(list(CLASS_NAMES))
        f.attrs["split_names"] = json.dumps(list(SPLIT_NAMES))
        images = f.create_dataset("images", (n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8,
                                  chunks=(1, IMAGE_SIZE, IMAGE_SIZE, 3), compression="gzip", compression_opts=1)
        series = f.create_dataset("series", (n, WINDOW_ROWS, WINDOW_SAMPLES // WINDOW_ROWS), np.int16,
                                  chunks=(1, WINDOW_ROWS, WINDOW_SAMPLES // WINDOW_ROWS), compression="gzip",
                                  compression_opts=1, shuffle=True)
        labels = np.zeros(n, np.int64)
        params = []
        for i in tqdm(range(n), desc=f"synth {preset}", disable=not progress, unit="win"):
            window = generate_window(preset, seed, i, power_freq_hz=power_freq_hz)
            images[i], series[i], labels[i] = window.image, window.series, window.label
            params.append(json.dumps(window.params))
        f.create_dataset("labels", data=labels)
        f.create_dataset("split", data=np.array([split_of(i) for i in range(n)], np.uint8))
        f.create_dataset("params", data=np.array(params, dtype=object), dtype=h5py.string_dtype())
    os.replace(tmp, path)
    return path


def _validate(f: h5py.File, path: Path) -> int:
    if f.attrs.get("format") != FORMAT_NAME:
        raise TrainingFileError(f"{path}: attr format={f.attrs.get('format')!r}, expected {FORMAT_NAME!r}")
    if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
        raise TrainingFileError(f"{path}: format_version={f.attrs.get('format_version')!r}, expected {FORMAT_VERSION}")
    for name in ("images", "series", "labels", "split"):
        if name not in f:
            raise TrainingFileError(f"{path}: dataset {name!r} is missing")
    n = f["labels"].shape[0]
    expected = {"images": (n, IMAGE_SIZE, IMAGE_SIZE, 3), "series": (n, WINDOW_ROWS, WINDOW_SAMPLES // WINDOW_ROWS),
                "split": (n,)}
    for name, shape in expected.items():
        if f[name].shape != shape:
            raise TrainingFileError(f"{path}: dataset {name!r} has shape {f[name].shape}, expected {shape}")
    labels = f["labels"][:]
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise TrainingFileError(f"{path}: labels outside 0..{len(CLASS_NAMES) - 1}")
    return n


class H5Dataset(Dataset):
    """Lazy reader: the file is opened on first access in each process (safe with num_workers > 0)."""

    def __init__(self, path: str | Path, split: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"training file not found: {self.path}")
        if split is not None and split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {SPLIT_NAMES} or None, got {split!r}")
        with h5py.File(self.path, "r") as f:
            n = _validate(f, self.path)
            split_codes = f["split"][:]
            self.labels = f["labels"][:]
            self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        rows = np.arange(n) if split is None else np.flatnonzero(split_codes == SPLIT_NAMES.index(split))
        self.rows = rows
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():  # a forked worker must not share the parent's handle
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = int(self.rows[i])
        f = self._handle()
        return make_item(f["images"][row], f["series"][row], int(self.labels[row]), row)

    def params(self, i: int) -> dict:
        return json.loads(self._handle()["params"][int(self.rows[i])])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None
        return state
