"""Figures for people: one place that picks the headless backend and writes a figure to disk."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # services and CI have no display

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["plt", "save_figure"]


Rect = tuple[float, float, float, float]


def save_figure(fig: Figure, path: Path, *, dpi: int = 120, rect: Rect | None = None) -> Path:
    """Lay out, write (creating the folder) and close `fig`; returns the path written."""
    path = Path(path)
    if rect is None:
        fig.tight_layout()
    else:
        fig.tight_layout(rect=rect)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
