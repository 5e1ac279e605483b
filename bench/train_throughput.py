"""Training throughput (samples/s) per stage for mad_tiny and mad_small on this machine.

One "sample" is one window; a SupCon step with 2 views runs the model on 2x the windows. Each step is
the real training step (augmentation, modality masking, forward, loss, backward, clip, AdamW) on
synthetic `standard` windows held in memory. Prints a table; figures go into docs/training.md.

Run: .venv/bin/python bench/train_throughput.py [--device cuda] [--batch-size 64] [--models mad_small]
On CUDA the step runs under bf16 autocast, as `mad-train fit` does there, and the clock stops after a
device synchronise, so the figure is the GPU's, not the launch queue's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mad.data.datasets import SyntheticDataset
from train.config import parse_config
from train.data_spec import InMemoryDataset
from train.distributed import DistContext, resolve_device
from train.fit import StageObjective, Trainer, make_optimizer, set_trainable_heads
from train.predict import autocast_for


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model_name: str, stage: str, batch_size: int, steps: int, data: InMemoryDataset,
            device: torch.device) -> float:
    config = parse_config({"name": "bench", "model": model_name, stage: {"batch_size": batch_size}})
    splits = type("Splits", (), {"power_freq_hz": 60.0, "train": data})()
    trainer = Trainer(config, splits, out_dir=None, ctx=DistContext(device=device), show_progress=False)
    sc = trainer._stage_config(stage)
    set_trainable_heads(trainer.model, stage)
    optimizer = make_optimizer(trainer.model, sc, config)
    objective = StageObjective(trainer.model, stage, sc, config)
    generator = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps + 1):  # the first step warms up allocators and is not counted
        batch = data.batch(torch.arange(step * batch_size, (step + 1) * batch_size) % len(data))
        synchronize(device)
        started = time.perf_counter()
        images, series, labels, mask = trainer._views(batch, stage, sc, generator)
        with autocast_for(device):
            loss, _ = objective(images, series, labels, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), 1.0)
        optimizer.step()
        synchronize(device)
        if step:
            times.append(time.perf_counter() - started)
    return batch_size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (bf16 autocast there)")
    parser.add_argument("--models", nargs="+", default=["mad_tiny", "mad_small"])
    args = parser.parse_args()
    device = resolve_device(args.device)
    n = args.batch_size * (args.steps + 1)
    data = InMemoryDataset.materialise(SyntheticDataset("standard", 0, n), "bench windows")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch {args.batch_size}, median of {args.steps} steps")
    print(f"{'model':<10} {'stage':<16} {'samples/s':>10}")
    for model_name in args.models:
        for stage, label in (("supcon", "supcon (2 views)"), ("ce", "ce")):
            rate = measure(model_name, stage, args.batch_size, args.steps, data, device)
            print(f"{model_name:<10} {label:<16} {rate:>10.1f}")


if __name__ == "__main__":
    main()
