"""Model latency on this CPU: ms per window at batch 1, windows/s at batch 16, achieved GFLOP/s vs a matmul peak.

Run: .venv/bin/python bench/model_latency.py [--models mad_small mad_base] [--repeats 10] [--threads N]
Eager fp32 under torch.inference_mode, random weights (latency does not depend on them), raw
int16 windows and uint8 images as the agent feeds them. GFLOP/s = 2 * MACs / time (MACs from
mad.flops, i.e. Linear/Conv + attention matmuls), so it is comparable to the matmul peak.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mad.constants import IMAGE_SIZE, ROW_SAMPLES, WINDOW_ROWS
from mad.flops import model_cost
from mad.model import build_model

# (batch, warm-ups, repeats) per model; MAD_base is ~230 GMACs per window, so its batch 16 runs once.
PLAN = {
    "mad_small": ((1, 3, None), (16, 1, None)),
    "mad_base": ((1, 1, 2), (16, 0, 1)),
}


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times) / 1e9


def time_forward(model: torch.nn.Module, batch: int, warmups: int, repeats: int) -> float:
    """Median seconds per forward pass of `batch` windows."""
    images = torch.randint(0, 256, (batch, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8)
    signals = torch.randint(-2000, 2000, (batch, WINDOW_ROWS, ROW_SAMPLES), dtype=torch.int16)
    times = []
    with torch.inference_mode():
        for i in range(warmups + repeats):
            start = time.perf_counter()
            model(images, signals)
            if i >= warmups:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PLAN), choices=list(PLAN))
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats where the plan does not fix them")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    peak = matmul_peak_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul peak {peak:.1f} GFLOP/s")
    header = f"{'model':<10} {'GMACs':>7} {'batch':>5} {'ms/window':>10} {'windows/s':>10} {'GFLOP/s':>8} {'% peak':>7}"
    print(header)
    print("-" * len(header))
    for name in args.models:
        gmacs = model_cost(name).gmacs
        model = build_model(name, seed=0).eval()
        for batch, warmups, repeats in PLAN[name]:
            seconds = time_forward(model, batch, warmups, repeats or args.repeats)
            per_window = seconds / batch
            gflops = 2 * gmacs * batch / seconds
            print(f"{name:<10} {gmacs:>7.2f} {batch:>5} {per_window * 1e3:>10.1f} {1 / per_window:>10.2f} "
                  f"{gflops:>8.1f} {100 * gflops / peak:>6.0f}%", flush=True)


if __name__ == "__main__":
    main()
