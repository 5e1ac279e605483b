"""Turn a data spec (`synth:<preset>`, `path/to/train.h5`, `aihub:<folder>`) into disjoint train/val/test sets.

- synth: train and test are generated from different seeds (never the same window); validation
  is carved from train.
- .h5: the file's own `split` column is used when it names train and test windows; otherwise,
  and for AI Hub folders, a seeded stratified split (paper: 1:1 train/test) is made here.
Validation is always a seeded, stratified slice of train.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from mad.constants import CLASS_NAMES
from mad.data.datasets import SyntheticDataset
from mad.data.h5dataset import H5Dataset
from mad.data.synthetic import balanced_label
from train.config import DataConfig


class DataSpecError(ValueError):
    """A data spec that cannot be opened; the message names the spec and the problem."""


class InMemoryDataset(Dataset):
    """Windows materialised once as stacked tensors; batches are sliced, not collated item by item."""

    def __init__(self, images: torch.Tensor, series: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.series, self.labels = images, series, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "series": self.series[index], "label": self.labels[index],
                "index": torch.tensor(index)}

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image": self.images[indices], "series": self.series[indices], "label": self.labels[indices]}

    @classmethod
    def materialise(cls, dataset: Dataset, description: str, num_workers: int = 0,
                    batch_size: int = 32) -> InMemoryDataset:
        n = len(dataset)
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
        images = series = None
        labels = torch.empty(n, dtype=torch.int64)
        start = 0
        for batch in tqdm(loader, desc=f"materialise {description}", unit="batch", leave=False):
            b = len(batch["label"])
            if images is None:  # allocate once, in the item's own dtypes (uint8 image, int16 series)
                images = torch.empty((n, *batch["image"].shape[1:]), dtype=batch["image"].dtype)
                series = torch.empty((n, *batch["series"].shape[1:]), dtype=batch["series"].dtype)
            images[start:start + b] = batch["image"]
            series[start:start + b] = batch["series"]
            labels[start:start + b] = batch["label"]
            start += b
        return cls(images, series, labels)


@dataclass
class DataSplits:
    train: Dataset
    val: Dataset
    test: Dataset
    train_labels: np.ndarray
    val_labels: np.ndarray
    test_labels: np.ndarray
    spec: str
    power_freq_hz: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def balance(labels: np.ndarray) -> dict[str, int]:
            counts = np.bincount(labels, minlength=len(CLASS_NAMES))
            return {name: int(c) for name, c in zip(CLASS_NAMES, counts, strict=True)}

        return {"spec": self.spec, "power_freq_hz": self.power_freq_hz, "notes": self.notes,
                "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
                "class_balance": {"train": balance(self.train_labels), "val": balance(self.val_labels),
                                  "test": balance(self.test_labels)}}


def dataset_labels(dataset: Dataset, description: str = "labels") -> np.ndarray:
    """Labels of every item: from a `labels` attribute when the dataset has one, else by reading items."""
    if isinstance(dataset, InMemoryDataset):
        return dataset.labels.numpy().astype(np.int64)
    if isinstance(dataset, SyntheticDataset):  # labels are a cheap function of the index: no generation
        return np.array([balanced_label(dataset.preset, dataset.seed, i) for i in range(len(dataset))], np.int64)
    if isinstance(dataset, H5Dataset):  # `labels` covers the whole file, `rows` this split
        return np.asarray(dataset.labels, dtype=np.int64)[dataset.rows]
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset, description)[np.asarray(dataset.indices)]
    return np.array([int(dataset[i]["label"]) for i in tqdm(range(len(dataset)), desc=description, leave=False)],
                    dtype=np.int64)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, part) with `fraction` of each class in `part` (at least one where a class has 2+)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    rest, part = [], []
    for cls in np.unique(labels):
        members = order[labels[order] == cls]
        take = round(len(members) * fraction)
        if len(members) >= 2:
            take = min(max(take, 1), len(members) - 1)
        part.append(members[:take])
        rest.append(members[take:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(part))


def _open_synth(preset: str, config: DataConfig) -> tuple[Dataset, Dataset, list[str]]:
    from mad.data.synthetic import PRESETS, preset_variant, resolve_noise_families

    if preset not in PRESETS:
        raise DataSpecError(f"synth:{preset}: unknown synthetic preset; known: {sorted(PRESETS)}")
    train_preset = preset_variant(preset, config.synth_train_overrides) if config.synth_train_overrides else preset
    noise_families = resolve_noise_families(config.synth_noise_families)
    train = SyntheticDataset(train_preset, config.synth_seed, config.synth_train, power_freq_hz=config.power_freq_hz,
                             prpd_families=config.synth_prpd_families, noise_families=noise_families)
    test = SyntheticDataset(preset, config.synth_seed + 1, config.synth_test, power_freq_hz=config.power_freq_hz)
    notes = [f"synthetic {preset}: train seed {config.synth_seed}, test seed {config.synth_seed + 1}"]
    if config.synth_train_overrides:
        notes.append(f"train and validation windows: {train_preset.description}; test: {preset} as it is")
    if config.synth_prpd_families:
        notes.append(f"train and validation PRPDs drawn by the families {list(config.synth_prpd_families)}; "
                     "test: the native renderer")
    if noise_families:
        notes.append(f"train and validation noise families {sorted(set(noise_families))} (one per window); "
                     "test: the default mixture")
    return train, test, notes


def _open_h5(path: Path, config: DataConfig, seed: int) -> tuple[Dataset, Dataset, list[str]]:
    from mad.data.h5dataset import TrainingFileError

    if not path.is_file():
        raise DataSpecError(f"{path}: training .h5 not found")
    try:
        whole = H5Dataset(path)
        if config.h5_use_file_split:
            # the file's train and val rows train here (validation is carved below), its test rows test
            train = H5Dataset(path, split="train")
            val = H5Dataset(path, split="val")
            train_rows = np.sort(np.concatenate([train.rows, val.rows]))
            return (Subset(whole, train_rows.tolist()), H5Dataset(path, split="test"),
                    [f"{path}: the file's own split (train+val rows train, test rows test)"])
    except TrainingFileError as exc:
        raise DataSpecError(str(exc)) from None
    rest, test_idx = stratified_split(dataset_labels(whole, f"labels {path.name}"), config.test_fraction, seed)
    return (Subset(whole, rest.tolist()), Subset(whole, test_idx.tolist()),
            [f"{path.name}: stratified split, test fraction {config.test_fraction}, seed {seed}"])


def _open_aihub(root: Path, config: DataConfig, seed: int) -> tuple[Dataset, Dataset, list[str]]:
    from mad.data.aihub import AIHubDataset

    if not root.is_dir():
        raise DataSpecError(f"aihub:{root}: folder not found")
    whole = AIHubDataset(root)
    rest, test_idx = stratified_split(dataset_labels(whole, "labels aihub"), config.test_fraction, seed)
    return (Subset(whole, rest.tolist()), Subset(whole, test_idx.tolist()),
            [f"AI Hub {root}: stratified split, test fraction {config.test_fraction}, seed {seed}"])


def open_datasets(spec: str, config: DataConfig, seed: int = 42) -> DataSplits:
    """Open `spec` as disjoint train/val/test sets (materialised in memory if config.materialise)."""
    spec = spec.strip()
    if config.synth_train_overrides and not spec.startswith("synth:"):
        raise DataSpecError(f"data spec {spec!r}: data.synth_train_overrides applies to synth: specs only")
    if config.synth_noise_families and not spec.startswith("synth:"):
        raise DataSpecError(f"data spec {spec!r}: data.synth_noise_families applies to synth: specs only")
    if spec.startswith("synth:"):
        train, test, notes = _open_synth(spec.removeprefix("synth:"), config)
    elif spec.startswith("aihub:"):
        train, test, notes = _open_aihub(Path(spec.removeprefix("aihub:")), config, seed)
    elif spec.endswith((".h5", ".hdf5")):
        train, test, notes = _open_h5(Path(spec), config, seed)
    else:
        raise DataSpecError(f"data spec {spec!r}: expected synth:<preset>, a .h5 file or aihub:<folder>")
    if config.materialise:
        train = InMemoryDataset.materialise(train, "train", config.num_workers)
        test = InMemoryDataset.materialise(test, "test", config.num_workers)
    train_all_labels = dataset_labels(train, "train labels")
    train_idx, val_idx = stratified_split(train_all_labels, config.val_fraction, seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DataSpecError(f"data spec {spec!r}: {len(train_all_labels)} training windows are too few to carve a "
                            f"validation split (val_fraction {config.val_fraction})")
    val = _subset(train, val_idx)
    train = _subset(train, train_idx)
    return DataSplits(train=train, val=val, test=test, train_labels=train_all_labels[train_idx],
                      val_labels=train_all_labels[val_idx], test_labels=dataset_labels(test, "test labels"),
                      spec=spec, power_freq_hz=config.power_freq_hz, notes=notes)


def _subset(dataset: Dataset, indices: np.ndarray) -> Dataset:
    if isinstance(dataset, InMemoryDataset):
        index = torch.as_tensor(indices, dtype=torch.long)
        return InMemoryDataset(dataset.images[index], dataset.series[index], dataset.labels[index])
    return Subset(dataset, indices.tolist())


def iterate_batches(dataset: Dataset, indices: list[int] | np.ndarray, batch_size: int, num_workers: int = 0,
                    drop_last: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of `dataset[indices]` in the given order (sliced for in-memory data, DataLoader otherwise)."""
    indices = np.asarray(indices, dtype=np.int64)
    n_batches = len(indices) // batch_size if drop_last else -(-len(indices) // batch_size)
    if isinstance(dataset, InMemoryDataset):
        for b in range(n_batches):
            yield dataset.batch(torch.as_tensor(indices[b * batch_size:(b + 1) * batch_size]))
        return
    batches = [indices[b * batch_size:(b + 1) * batch_size].tolist() for b in range(n_batches)]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, persistent_workers=False)
    for batch in loader:
        yield {key: batch[key] for key in ("image", "series", "label")}
