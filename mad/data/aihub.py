"""AI Hub PD data set reader (layout in docs/formats.md): PNG + CSV + JSON matched by file stem.

Accepts the published layout (`01.원천데이터/VS_*/STEM.png|csv`, `02.라벨링데이터/VL_*/STEM.json`,
any depth) and a flat folder alike: files are found recursively and matched by stem.
Label-leaking JSON fields never leave this module except in `AIHubSample`-free metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from mad.constants import DEFAULT_POWER_FREQ_HZ, IMAGE_SIZE, NUM_CLASSES, ROW_SAMPLES, SAMPLE_RATE_HZ, WINDOW_ROWS
from mad.data.datasets import make_item
from mad.data.prpd import render_prpd_from_series

# Fields that give the class away (docs/aihub-format.md): dropped before metadata is returned.
LEAKING_METADATA = ("discharge_information", "discharge_evaluation_factors")
LEAKING_LABEL_FIELDS = ("image_path", "timeseries_path")


class AIHubFormatError(ValueError):
    """A sample that does not follow the AI Hub format; the message names the file and the problem."""


@dataclass(frozen=True)
class AIHubEntry:
    stem: str
    csv: Path
    json: Path
    png: Path | None


@dataclass
class AIHubManifest:
    root: Path
    entries: list[AIHubEntry]
    skipped: list[str] = field(default_factory=list)  # "file: problem", filled when skip_bad=True

    def __len__(self) -> int:
        return len(self.entries)


def scan_aihub(root: str | Path, skip_bad: bool = False, require_image: bool = True) -> AIHubManifest:
    """Find every sample under root; a stem without its CSV or JSON partner (or PNG, if required) is bad."""
    root = Path(root)
    if not root.is_dir():
        raise AIHubFormatError(f"{root}: not a directory")
    found: dict[str, dict[str, Path]] = {}
    problems: list[str] = []
    for path in sorted(root.rglob("*")):
        suffix = path.suffix.lower()
        if suffix not in (".png", ".csv", ".json") or not path.is_file():
            continue
        files = found.setdefault(path.stem, {})
        if suffix in files:
            problems.append(f"{path}: duplicate stem {path.stem!r} (also {files[suffix]})")
            continue
        files[suffix] = path
    entries = []
    for stem, files in sorted(found.items()):
        needed = (".csv", ".json", ".png") if require_image else (".csv", ".json")
        missing = [s for s in needed if s not in files]
        if missing:
            problems.append(f"{next(iter(files.values()))}: missing partner file(s) {', '.join(missing)} for {stem!r}")
            continue
        entries.append(AIHubEntry(stem, files[".csv"], files[".json"], files.get(".png")))
    if problems and not skip_bad:
        raise AIHubFormatError("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    if not entries and not problems:
        raise AIHubFormatError(f"{root}: no AI Hub samples (STEM.csv + STEM.json) found")
    return AIHubManifest(root, entries, problems)


def read_series_csv(path: Path) -> np.ndarray:
    """20 rows x 7,680 integers, no header."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise AIHubFormatError(f"{path}: unreadable CSV ({exc})") from exc
    rows = [line for line in text.splitlines() if line.strip()]
    if len(rows) != WINDOW_ROWS:
        raise AIHubFormatError(f"{path}: {len(rows)} rows, expected {WINDOW_ROWS}")
    try:
        series = np.array([row.split(",") for row in rows], dtype=np.int64)
    except ValueError as exc:
        if len({len(row.split(",")) for row in rows}) > 1:
            lengths = sorted({len(row.split(",")) for row in rows})
            raise AIHubFormatError(f"{path}: rows of unequal length {lengths}, expected {ROW_SAMPLES}") from exc
        raise AIHubFormatError(f"{path}: non-integer value ({exc})") from exc
    if series.shape != (WINDOW_ROWS, ROW_SAMPLES):
        raise AIHubFormatError(f"{path}: shape {series.shape}, expected ({WINDOW_ROWS}, {ROW_SAMPLES})")
    if series.min() < np.iinfo(np.int32).min or series.max() > np.iinfo(np.int32).max:
        raise AIHubFormatError(f"{path}: values outside int32")
    return series.astype(np.int32)


def read_label_json(path: Path) -> tuple[int, dict[str, Any]]:
    """(PD_type, metadata without the leaking fields)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AIHubFormatError(f"{path}: unreadable JSON ({exc})") from exc
    label_block = doc.get("label") if isinstance(doc, dict) else None
    if not isinstance(label_block, dict) or "PD_type" not in label_block:
        raise AIHubFormatError(f"{path}: no label.PD_type")
    raw = label_block["PD_type"]
    try:
        label = int(raw)
    except (TypeError, ValueError) as exc:
        raise AIHubFormatError(f"{path}: label.PD_type={raw!r} is not an integer") from exc
    if label not in range(NUM_CLASSES) or isinstance(raw, bool) or (isinstance(raw, float) and raw != label):
        raise AIHubFormatError(f"{path}: label.PD_type={raw!r}, expected 0..{NUM_CLASSES - 1}")
    metadata = dict(doc.get("metadata") or {})
    for key in LEAKING_METADATA:
        metadata.pop(key, None)
    return label, metadata


def read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            image = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise AIHubFormatError(f"{path}: unreadable PNG ({exc})") from exc
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise AIHubFormatError(f"{path}: image shape {image.shape}, expected ({IMAGE_SIZE}, {IMAGE_SIZE}, 3)")
    return image


def read_aihub_sample(
    entry: AIHubEntry, *, require_image: bool = True, power_freq_hz: float | None = None
) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    """(image uint8 (256,256,3), series int32 (20,7680), label, metadata).

    Without a PNG (and require_image=False) the image is rendered from the series and
    metadata["image_rendered"] is True. The supply frequency comes from the JSON when not given.
    """
    series = read_series_csv(entry.csv)
    label, metadata = read_label_json(entry.json)
    if power_freq_hz is None:
        power_freq_hz = _supply_frequency(metadata, entry.json)
    if entry.png is not None:
        image, rendered = read_png(entry.png), False
    elif require_image:
        raise AIHubFormatError(f"{entry.csv}: no PNG partner for {entry.stem!r} (pass require_image=False to render)")
    else:
        image, rendered = render_prpd_from_series(series, SAMPLE_RATE_HZ, power_freq_hz), True
    metadata["image_rendered"] = rendered
    return image, series, label, metadata


def _supply_frequency(metadata: dict[str, Any], path: Path) -> float:
    raw = str((metadata.get("environment") or {}).get("power_supply_frequency", "")).strip().lower()
    if not raw:
        return DEFAULT_POWER_FREQ_HZ
    try:
        value = float(raw.removesuffix("hz"))
    except ValueError as exc:
        raise AIHubFormatError(f"{path}: metadata.environment.power_supply_frequency={raw!r} unreadable") from exc
    if not 40.0 <= value <= 70.0:
        raise AIHubFormatError(f"{path}: power_supply_frequency={raw!r} outside 40-70 Hz")
    return value


class AIHubDataset(Dataset):
    """Items {"image", "series" int32, "label", "index", "image_rendered"} from an AI Hub folder."""

    def __init__(self, root_or_manifest: str | Path | AIHubManifest, *, require_image: bool = True,
                 skip_bad: bool = False) -> None:
        if isinstance(root_or_manifest, AIHubManifest):
            self.manifest = root_or_manifest
        else:
            self.manifest = scan_aihub(root_or_manifest, skip_bad=skip_bad, require_image=require_image)
        self.require_image = require_image

    def __len__(self) -> int:
        return len(self.manifest.entries)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, series, label, metadata = read_aihub_sample(self.manifest.entries[index],
                                                           require_image=self.require_image)
        item = make_item(image, series, label, index)
        item["image_rendered"] = torch.tensor(bool(metadata["image_rendered"]))
        return item
