"""`mad-train synth`: materialise a synthetic set as a training .h5 or an AI Hub folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mad.constants import CLASS_NAMES, WINDOW_SECONDS
from mad.data.h5dataset import write_training_h5
from mad.data.synthetic import PRESETS, generate_window

# Stem prefix per class, as in the real names ({type}_{insulator}_{equipment}_...); only the file name shows it,
# as in the real data, and readers never pass names to the model.
_TYPE_NAMES = ("정상", "노이즈", "연면", "코로나", "보이드")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="standard")
    parser.add_argument("--n", type=int, required=True, help="number of windows (classes balanced per 5)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (use a different one per split)")
    parser.add_argument("--out", type=Path, required=True, help="output .h5 file or, with --format aihub, a folder")
    parser.add_argument("--format", choices=["h5", "aihub"], default="h5")
    parser.add_argument("--power-freq-hz", type=float, default=60.0)


def _label_json(label: int, stem: str, power_freq_hz: float, sensor: str) -> dict:
    # Metadata like the real files minus the label-leaking blocks (defect_*, max_discharge_value).
    return {
        "label": {"PD_type": label, "image_path": f"./원천데이터/{stem}.png",
                  "timeseries_path": f"./원천데이터/{stem}.csv"},
        "metadata": {
            "equipment_information": {"insulator_type": "고체", "insulator_name": "XLPE", "equipment_name": "SYNTH",
                                      "equipment_manufacturer": "-", "equipment_id": "-",
                                      "equipment_rated_voltage": "22900V", "equipment_rated_current": "-"},
            "environment": {"recording_time": stem.split("_")[2] + "_" + stem.split("_")[3],
                            "recording_time_length": WINDOW_SECONDS, "power_supply_voltage type": "AC",
                            "power_supply_frequency": f"{power_freq_hz:g}Hz", "sensor_type": sensor,
                            "IEC_standard": "IEC-60270"},
        },
    }


def write_aihub_folder(out: Path, preset: str, seed: int, n: int, power_freq_hz: float) -> None:
    source = out / "01.원천데이터"
    labels = out / "02.라벨링데이터"
    for i in tqdm(range(n), desc=f"synth aihub {preset}", unit="win"):
        window = generate_window(preset, seed, i, power_freq_hz=power_freq_hz)
        day, second = 230901 + (i // 86400) % 28, i % 86400
        stamp = f"{day}_{second // 3600:02d}{second // 60 % 60:02d}{second % 60:02d}"
        sensor = "HFCT"
        stem = f"{_TYPE_NAMES[window.label]}_고체_SYNTH_{stamp}_{sensor}_{seed}-{i}"
        folder = f"{_TYPE_NAMES[window.label]}_고체_SYNTH"
        (source / f"VS_{folder}").mkdir(parents=True, exist_ok=True)
        (labels / f"VL_{folder}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(window.image).save(source / f"VS_{folder}" / f"{stem}.png")
        np.savetxt(source / f"VS_{folder}" / f"{stem}.csv", window.series, fmt="%d", delimiter=",")
        doc = _label_json(window.label, stem, power_freq_hz, sensor)
        (labels / f"VL_{folder}" / f"{stem}.json").write_text(json.dumps(doc, ensure_ascii=False, indent=2),
                                                              encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    if args.n < 1 or args.seed < 0:
        raise SystemExit(f"--n must be >= 1 and --seed >= 0 (got n={args.n}, seed={args.seed})")
    if args.format == "h5":
        path = write_training_h5(args.out, args.preset, args.seed, args.n, power_freq_hz=args.power_freq_hz)
    else:
        write_aihub_folder(args.out, args.preset, args.seed, args.n, args.power_freq_hz)
        path = args.out
    print(f"wrote {args.n} windows ({', '.join(CLASS_NAMES)} balanced) of preset {args.preset!r} to {path}")
    return 0
