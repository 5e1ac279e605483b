"""The agent's model backends side by side: ms per window through `load_classifier(...).predict`.

Run: .venv/bin/python bench/backend_latency.py [--model models/mad_small.safetensors] [--threads N]
     .venv/bin/python bench/backend_latency.py --device cuda   (adds TensorRT fp32/fp16 engines)
Each backend is exported from the same checkpoint into a temporary folder, then timed on the same
synthetic `standard` windows (uint8 images, raw signals, as the agent feeds them; preprocessing
included). On the CPU, "eager, no oneDNN" is the eager model as it runs inside the systemd unit's
MemoryDenyWriteExecute sandbox, where oneDNN's JIT kernels are refused. `max |dp|` is the largest
probability difference from the eager model on those windows.
Backends whose extra is not installed are listed as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agent.inference import ClassifierError, load_classifier
from mad import load_model
from mad.data.synthetic import generate_window

REPO = Path(__file__).resolve().parents[1]


def time_predict(classifier, images: np.ndarray, signals: np.ndarray, warmups: int, repeats: int) -> float:
    times = []
    for i in range(warmups + repeats):
        start = time.perf_counter()
        classifier.predict(images, signals)
        if i >= warmups:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def exported_backends(checkpoint: Path, folder: Path, device: str) -> dict[str, Path | str]:
    """label -> model path, or the reason the backend is skipped."""
    from train.export import export_torchscript
    from train.export_onnx import ExportError, export_onnx

    model = load_model(checkpoint)
    backends: dict[str, Path | str] = {"eager (safetensors)": checkpoint,
                                       "torchscript": export_torchscript(model, folder / "model.torchscript")}
    try:
        onnx_path = export_onnx(model, folder / "model.onnx")
    except ExportError as exc:
        return {**backends, "onnxruntime": str(exc)}
    backends["onnxruntime"] = onnx_path
    if device.startswith("cuda"):
        from train.tensorrt_build import build_engine

        for precision in ("fp32", "fp16"):
            label = f"tensorrt {precision}"
            try:
                backends[label] = build_engine(onnx_path, folder / f"model_{precision}.engine", precision=precision,
                                               max_batch=64, opt_batch=16)
            except ExportError as exc:
                backends[label] = str(exc)
    return backends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "mad_small.safetensors")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="default: 1 8 (CPU), 1 16 64 (GPU)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5 CPU, 30 GPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch/onnxruntime CPU threads (0: their default)")
    args = parser.parse_args()
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    batches = args.batches or ([1, 16, 64] if on_gpu else [1, 8])
    repeats = args.repeats or (30 if on_gpu else 5)
    windows = [generate_window("standard", 11, i) for i in range(max(batches))]
    images = np.stack([w.image for w in windows])
    signals = np.stack([w.series for w in windows]).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        backends = exported_backends(args.model, Path(tmp), args.device)
        reference = load_classifier(args.model, args.device, args.threads)
        expected = reference.predict(images, signals)
        device_name = torch.cuda.get_device_name(args.device) if on_gpu else f"CPU, {torch.get_num_threads()} threads"
        print(f"{args.model.name} on {device_name}, torch {torch.__version__}")
        header = f"{'backend':<20} {'batch':>5} {'ms/batch':>9} {'ms/window':>10} {'windows/s':>10} {'max |dp|':>9}"
        print(header)
        print("-" * len(header))
        if not on_gpu:  # the systemd unit's sandbox turns oneDNN off (agent.inference.fit_torch_to_process)
            backends = {**{label: path for label, path in backends.items() if label.startswith("eager")},
                        "eager, no oneDNN": args.model,
                        **{label: path for label, path in backends.items() if not label.startswith("eager")}}
        for label, path in backends.items():
            torch.backends.mkldnn.enabled = label != "eager, no oneDNN"
            if isinstance(path, str):
                print(f"{label:<20} skipped: {path}")
                continue
            try:
                classifier = load_classifier(path, args.device, args.threads)
            except ClassifierError as exc:
                print(f"{label:<20} skipped: {exc}")
                continue
            error = float(np.abs(classifier.predict(images, signals) - expected).max())
            for batch in batches:
                seconds = time_predict(classifier, images[:batch], signals[:batch], warmups=2, repeats=repeats)
                print(f"{label:<20} {batch:>5} {seconds * 1e3:>9.2f} {seconds / batch * 1e3:>10.2f} "
                      f"{batch / seconds:>10.1f} {error:>9.1e}", flush=True)


if __name__ == "__main__":
    main()
