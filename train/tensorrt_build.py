"""TensorRT 10 engine build from the exported ONNX graph, on the GPU that will run it.

Engines are not portable: one is tied to the TensorRT version and the GPU (compute capability) it
was built on, so it is built on the plant box itself and its sidecar records both
(agent/tensorrt_classifier.py refuses a mismatch). The batch axis gets one optimisation profile
(1 .. max_batch, tuned for opt_batch): the agent's model.batch_max should not exceed max_batch,
and a larger batch is split. fp16 is opt-in (TensorRT 10's FP16 builder flag; TensorRT 11 removed
it and builds fp32 here): check it with a replay before a plant relies on it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from mad.runtime.graph_io import ENGINE_FORMAT, GRAPH_META_KEY
from mad.runtime.loading import sha256_file
from train.export_onnx import ExportError

PRECISIONS = ("fp32", "fp16")


def check_build_settings(precision: str, max_batch: int, opt_batch: int, workspace_gib: float) -> None:
    if precision not in PRECISIONS:
        raise ExportError(f"precision={precision!r}: must be one of {PRECISIONS}")
    if not 1 <= max_batch <= 1024:
        raise ExportError(f"max_batch={max_batch}: must be in 1..1024")
    if not 1 <= opt_batch <= max_batch:
        raise ExportError(f"opt_batch={opt_batch}: must be in 1..max_batch ({max_batch})")
    if not 0 < workspace_gib <= 64:
        raise ExportError(f"workspace_gib={workspace_gib}: must be in (0, 64]")


def onnx_metadata(onnx_path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    entries = {prop.key: prop.value for prop in model.metadata_props}
    if GRAPH_META_KEY not in entries:
        raise ExportError(f"{onnx_path}: no {GRAPH_META_KEY} metadata; export it with mad-train export --format onnx")
    return json.loads(entries[GRAPH_META_KEY])


def build_engine(onnx_path: str | Path, out: str | Path, *, precision: str = "fp32", max_batch: int = 32,
                 opt_batch: int = 8, workspace_gib: float = 4.0, device: int = 0) -> Path:
    """Parse the ONNX graph, build and write `out` (.engine) and its `<out>.json` sidecar."""
    check_build_settings(precision, max_batch, opt_batch, workspace_gib)
    onnx_path, out = Path(onnx_path), Path(out)
    try:
        import tensorrt as trt
    except ImportError:
        raise ExportError("an engine build needs TensorRT: pip install 'mad-pd[gpu]' on the GPU machine") from None
    if not torch.cuda.is_available():
        raise ExportError("an engine build needs the CUDA GPU that will run it; none is visible")
    meta = onnx_metadata(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    started = time.perf_counter()
    with torch.cuda.device(device):
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"{onnx_path}: TensorRT's ONNX parser refused the graph: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        if precision == "fp16":
            if not hasattr(trt.BuilderFlag, "FP16"):  # TensorRT 11 builds strongly typed networks only
                raise ExportError(f"precision='fp16': TensorRT {trt.__version__} has no FP16 builder flag (it takes "
                                  "precision from the graph's types, and an fp16 graph export is not built); "
                                  "use --precision fp32")
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        for index in range(network.num_inputs):
            tensor = network.get_input(index)
            rest = tuple(tensor.shape)[1:]  # every input is (batch, ...) with a static tail
            profile.set_shape(tensor.name, (1, *rest), (opt_batch, *rest), (max_batch, *rest))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ExportError(f"{onnx_path}: TensorRT could not build an engine (its log above says why)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(serialized))
    sidecar = {
        "format": ENGINE_FORMAT,
        "version": 1,
        GRAPH_META_KEY: meta,
        "engine": {
            "sha256": sha256_file(out),
            "onnx_sha256": sha256_file(onnx_path),
            "tensorrt_version": trt.__version__,
            "torch_version": torch.__version__,
            "device_name": torch.cuda.get_device_name(device),
            "compute_capability": "{}.{}".format(*torch.cuda.get_device_capability(device)),
            "precision": precision,
            "min_batch": 1,
            "opt_batch": opt_batch,
            "max_batch": max_batch,
            "workspace_gib": workspace_gib,
            "build_seconds": round(time.perf_counter() - started, 1),
        },
    }
    out.with_name(out.name + ".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return out
