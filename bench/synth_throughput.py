"""Synthetic windows per second on one core: arrays only, and with PNG encoding (AI Hub export)."""

from __future__ import annotations

import io
import time

from PIL import Image

from mad.data.prpd import render_prpd_from_series
from mad.data.synthetic import PRESETS, generate_window

N = 100


def main() -> None:
    for preset in PRESETS:
        start = time.perf_counter()
        windows = [generate_window(preset, 0, i) for i in range(N)]
        arrays = N / (time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(N):
            Image.fromarray(generate_window(preset, 0, i).image).save(io.BytesIO(), format="PNG")
        with_png = N / (time.perf_counter() - start)
        print(f"{preset:9s} arrays: {arrays:6.1f} windows/s/core   with PNG: {with_png:6.1f} windows/s/core")
    start = time.perf_counter()
    for w in windows:
        render_prpd_from_series(w.series)
    print(f"render_prpd_from_series: {(time.perf_counter() - start) / N * 1000:.1f} ms per window")


if __name__ == "__main__":
    main()
