"""Forward latency on this CPU (ms per window), the CPU's name and a matmul peak to read them against.

bench/model_latency.py measures the same way (median of timed eager forwards under inference_mode,
raw int16 windows and uint8 images as the agent feeds them), but bench/ is not a package and is not
on the path of the installed `mad-train`, so the few lines are repeated here; this version also feeds
a single-modality model (InceptionTime) only the input it reads.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from mad.constants import IMAGE_SIZE, ROW_SAMPLES, WINDOW_ROWS


def cpu_name() -> str:
    """`model name` from /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_summary() -> dict[str, object]:
    """What a latency figure depends on: CPU, cores torch uses, and how busy the machine was."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1min": None if load is None else round(load[0], 2), "torch": torch.__version__}


def matmul_peak_gflops(size: int = 1024, repeats: int = 5) -> float:
    """fp32 GFLOP/s of a square matmul, best of `repeats`: the ceiling a model's GMACs run against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


@torch.inference_mode()
def ms_per_window(model: nn.Module, batch: int, warmups: int, repeats: int) -> float:
    """Median over `repeats` timed forwards of `batch` windows on the CPU, divided by the batch, in ms."""
    model = model.to("cpu").eval()
    images = torch.randint(0, 256, (batch, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8)
    signals = torch.randint(-2000, 2000, (batch, WINDOW_ROWS, ROW_SAMPLES), dtype=torch.int16)
    images_in = images if model.config.use_image else None
    signals_in = signals if model.config.use_signal else None
    times = []
    for i in range(warmups + repeats):
        start = time.perf_counter()
        model(images_in, signals_in)
        if i >= warmups:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / batch
