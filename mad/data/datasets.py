"""Torch datasets over synthetic windows; every item is {"image", "series", "label", "index"}."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mad.constants import DEFAULT_POWER_FREQ_HZ
from mad.data.prpd_styles import check_families
from mad.data.synthetic import (
    Preset,
    check_noise_families,
    check_non_negative_int,
    check_preset,
    generate_window,
    pick_family,
)


def make_item(image: np.ndarray, series: np.ndarray, label: int, index: int) -> dict[str, torch.Tensor]:
    """The one item layout: image uint8 (256,256,3), series int16/int32 (20,7680), label int64 scalar."""
    return {
        "image": torch.from_numpy(np.array(image, dtype=np.uint8)),  # copy: PNG arrays are read-only
        "series": torch.from_numpy(np.array(series)),
        "label": torch.tensor(int(label), dtype=torch.int64),
        "index": torch.tensor(int(index), dtype=torch.int64),
    }


class SyntheticDataset(Dataset):
    """Windows generated on the fly (no disk); item i is generate_window(preset, seed, i).

    `prpd_families` (mad.data.prpd_styles): item i's PRPD is drawn by one of these rendering families,
    picked per index from a seeded stream; empty = the native renderer only.
    `noise_families` (mad.data.synthetic.NOISE_FAMILIES): item i draws its interference or channel nuisance
    from one of these families (generate_window's option); empty = the default (legacy) mixture.
    """

    def __init__(self, preset: str | Preset, seed: int, n: int, power_freq_hz: float = DEFAULT_POWER_FREQ_HZ,
                 prpd_families: tuple[str, ...] | list[str] = (),
                 noise_families: tuple[str, ...] | list[str] = ()) -> None:
        check_preset(preset)  # a name, or a variant from preset_variant (a frozen dataclass: workers pickle it)
        self.preset, self.seed, self.n = preset, check_non_negative_int("seed", seed), check_non_negative_int("n", n)
        self.power_freq_hz = float(power_freq_hz)
        self.prpd_families = check_families(tuple(prpd_families))
        self.noise_families = check_noise_families(tuple(noise_families))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} windows")
        family = pick_family(self.preset, self.seed, index, self.prpd_families) if self.prpd_families else None
        window = generate_window(self.preset, self.seed, index, power_freq_hz=self.power_freq_hz, prpd_family=family,
                                 noise_families=self.noise_families)
        return make_item(window.image, window.series, window.label, index)
