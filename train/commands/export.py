"""`mad-train export`: a checkpoint as TorchScript, ONNX, or a TensorRT engine built on this GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

FORMATS = {"torchscript": ".torchscript", "onnx": ".onnx", "engine": ".engine"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="<name>.safetensors (with its <name>.json sidecar)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="torchscript",
                        help="torchscript (CPU/GPU, torch), onnx (ONNX Runtime, TensorRT's input), "
                             "engine (TensorRT: build it on the GPU that will run it; writes the .onnx beside it)")
    parser.add_argument("--out", default=None, help="output file (default: the checkpoint with the format's suffix)")
    engine = parser.add_argument_group("engine build (--format engine)")
    engine.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                        help="fp16 is faster; check it with a replay before relying on it (default fp32)")
    engine.add_argument("--max-batch", type=_positive_int, default=32,
                        help="largest batch the engine takes; keep model.batch_max <= this (default 32)")
    engine.add_argument("--opt-batch", type=_positive_int, default=8, help="batch the kernels are tuned for (8)")
    engine.add_argument("--workspace-gib", type=float, default=4.0, help="builder scratch memory (default 4)")


def run(args: argparse.Namespace) -> int:
    from mad.runtime import CheckpointError, load_model
    from train.export_onnx import ExportError

    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(FORMATS[args.format])
    try:
        if args.format == "engine":  # settings first: a typo should not cost an ONNX export
            from train.tensorrt_build import check_build_settings

            check_build_settings(args.precision, args.max_batch, args.opt_batch, args.workspace_gib)
        model = load_model(args.checkpoint)
        name = f"{model.mad_meta['name']} {model.mad_meta['version']}"
        if args.format == "torchscript":
            from train.export import export_torchscript

            export_torchscript(model, out)
        else:
            from train.export_onnx import export_onnx

            onnx_path = export_onnx(model, out.with_suffix(".onnx"))
            if args.format == "engine":
                from train.tensorrt_build import build_engine

                print(f"wrote {onnx_path}; building the TensorRT engine (minutes)...")
                build_engine(onnx_path, out, precision=args.precision, max_batch=args.max_batch,
                             opt_batch=args.opt_batch, workspace_gib=args.workspace_gib)
    except (CheckpointError, ExportError) as exc:
        print(f"mad-train export: {exc}")
        return 2
    print(f"wrote {out} ({name})")
    return 0
