"""Model latency on this CPU: ms per window at batch 1, windows/s at batch 16, achieved GFLOP/s vs a matmul peak.

Run: .venv/bin/python bench/model_latency.py [--models mad_small mad_base] [--repeats 10] [--threads N]
     .venv/bin/python bench/model_latency.py --device cuda   (fp32 and bf16 autocast, batches 1/16/64)
Eager fp32 under torch.inference_mode, random weights (latency does not depend on them), raw
int16 windows and uint8 images as the agent feeds them. GFLOP/s = 2 * MACs / time (MACs from
mad.flops, i.e. Linear/Conv + attention matmuls), so it is comparable to the matmul peak.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from mad.constants import IMAGE_SIZE, ROW_SAMPLES, WINDOW_ROWS
from mad.flops import model_cost
from mad.model import build_model
from train.distributed import resolve_device

CPU = torch.device("cpu")

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


# On CUDA: more repeats (a forward is milliseconds) and the batch the agent's batcher can reach.
CUDA_PLAN = ((1, 10, 50), (16, 5, 30), (64, 5, 20))


def time_forward(model: torch.nn.Module, batch: int, warmups: int, repeats: int,
                 device: torch.device = CPU, precision: str = "fp32") -> float:
    """Median seconds per forward pass of `batch` windows (inputs already on `device`)."""
    images = torch.randint(0, 256, (batch, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8).to(device)
    signals = torch.randint(-2000, 2000, (batch, WINDOW_ROWS, ROW_SAMPLES), dtype=torch.int16).to(device)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    times = []
    with torch.inference_mode(), autocast:
        for i in range(warmups + repeats):
            start = time.perf_counter()
            model(images, signals)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmups:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(PLAN), choices=list(PLAN))
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats where the plan does not fix them")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)  # the check mad-train fit makes
    except ValueError as exc:
        parser.error(str(exc))
    if device.type == "cuda":
        cuda_main(args.models, device)
        return

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


def cuda_main(models: list[str], device: torch.device) -> None:
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}")
    header = (f"{'model':<10} {'GMACs':>7} {'precision':>9} {'batch':>5} {'ms/batch':>9} {'windows/s':>10} "
              f"{'TFLOP/s':>8}")
    print(header)
    print("-" * len(header))
    for name in models:
        gmacs = model_cost(name).gmacs
        model = build_model(name, seed=0).eval().to(device)
        for precision in ("fp32", "bf16"):
            for batch, warmups, repeats in CUDA_PLAN:
                seconds = time_forward(model, batch, warmups, repeats, device, precision)
                print(f"{name:<10} {gmacs:>7.2f} {precision:>9} {batch:>5} {seconds * 1e3:>9.2f} "
                      f"{batch / seconds:>10.1f} {2 * gmacs * batch / seconds / 1e3:>8.1f}", flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
