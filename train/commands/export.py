"""`mad-train export`: a checkpoint as TorchScript (metadata embedded as mad_meta.json)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="<name>.safetensors (with its <name>.json sidecar)")
    parser.add_argument("--format", choices=["torchscript"], default="torchscript",
                        help="torchscript (ONNX is not built yet)")
    parser.add_argument("--out", default=None, help="output file (default: <checkpoint>.torchscript)")


def run(args: argparse.Namespace) -> int:
    from mad.runtime import CheckpointError, load_model
    from train.export import export_torchscript

    try:
        model = load_model(args.checkpoint)
    except CheckpointError as exc:
        print(f"mad-train export: {exc}")
        return 2
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".torchscript")
    export_torchscript(model, out)
    print(f"wrote {out} ({model.mad_meta['name']} {model.mad_meta['version']})")
    return 0
