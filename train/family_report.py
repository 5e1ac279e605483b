"""Shared pieces of the per-family evaluations (`mad-train prpd-families`, `mad-train noise-families`):
checkpoint opening with the fresh-test-seed guard, the command line written into the report, means,
markdown tables and the grouped bar chart."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def open_checkpoint(checkpoint: str, device_name: str, test_seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """(model, device, its training config) of a checkpoint; ValueError if `test_seed` is its training seed
    (the test windows would be training windows). Raises CheckpointError / FileNotFoundError as load_model."""
    from mad.runtime import load_model
    from train.distributed import resolve_device

    device = resolve_device(device_name)
    model = load_model(checkpoint, device=device)
    training = model.mad_meta["sidecar"].get("training_config") or {}
    if test_seed == (training.get("data") or {}).get("synth_seed"):
        raise ValueError(f"--test-seed {test_seed} is the checkpoint's training seed")
    return model, device, training


def command_line(command: str, args: argparse.Namespace) -> str:
    """The command as it could be typed again (every option, defaults included; the dispatcher's own
    attributes, such as `_run`, left out)."""
    return f"mad-train {command} " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if k not in ("command", "func") and not k.startswith("_") and not callable(v))


def mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def grouped_bars(labels: list[str], series: dict[str, list[float]], shaded: list[bool], path: Path, *,
                 title: str, ylabel: str, ylim: tuple[float, float] = (0.0, 1.0),
                 hline: float | None = None) -> None:
    """One group of bars per label (one bar per series), shaded groups marked; written as a PNG (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(labels))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(labels)), 4))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + i * width, values, width, label=name)
    for k, shade in enumerate(shaded):
        if shade:
            ax.axvspan(k - 0.45, k + 0.45 + width * (len(series) - 1), color="0.9", zorder=0)
    if hline is not None:
        ax.axhline(hline, color="k", lw=0.8, ls="--")
    ax.set_xticks(x + width * (len(series) - 1) / 2, labels, rotation=45, ha="right")
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
