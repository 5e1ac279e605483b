"""`.engine` models on TensorRT 10 (the `gpu` extra): an engine built on this GPU by
`mad-train export --format engine`, with its `<name>.engine.json` sidecar.

An engine is specific to the TensorRT version and the GPU it was built on, so the sidecar records
both and a mismatch is refused with the command that rebuilds it. The engine's sha256 is checked
before TensorRT sees the bytes: only the file the build wrote is deserialised.
The signal normalisation before the graph runs in torch on the same GPU (`mad.runtime.graph_io`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.graph_meta import expected_inputs, expected_outputs, familiarity_threshold, parse_graph_meta
from agent.inference import ClassifierError, Scores, check_class_names, check_inputs, softmax_scores, torch_device
from mad.constants import CLASS_NAMES
from mad.runtime.graph_io import (
    ENGINE_FORMAT,
    FAMILIARITY,
    GRAPH_META_KEY,
    LOGITS,
    prepare_graph_inputs,
    signal_preprocess_from_meta,
)
from mad.runtime.loading import check_json_object, parse_json_object, sha256_file

REBUILD_HINT = "rebuild it on this machine: mad-train export --checkpoint <model>.safetensors --format engine"


def engine_sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")  # mad_small.engine -> mad_small.engine.json


def read_engine_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar, checked, with the engine file's sha256 verified (no TensorRT needed)."""
    sidecar = engine_sidecar_path(path)
    if not sidecar.is_file():
        raise ClassifierError(f"{path}: engine sidecar {sidecar} not found; {REBUILD_HINT}")
    payload = parse_json_object(sidecar.read_bytes(), source=sidecar, what="engine sidecar",
                                required=("format", "engine", GRAPH_META_KEY), error=ClassifierError)
    if payload["format"] != ENGINE_FORMAT:
        raise ClassifierError(f"{sidecar}: format must be {ENGINE_FORMAT!r}, got {payload['format']!r}")
    engine = check_json_object(payload["engine"], source=sidecar, what="engine", error=ClassifierError,
                               required=("sha256", "tensorrt_version", "compute_capability", "max_batch"))
    parse_graph_meta(payload[GRAPH_META_KEY], sidecar, ClassifierError)
    actual = sha256_file(path)
    if actual != engine["sha256"]:
        raise ClassifierError(f"{path}: sha256 {actual[:12]}... does not match its sidecar's "
                              f"{str(engine['sha256'])[:12]}...; the engine changed after it was built")
    return payload


class TensorRTClassifier:
    def __init__(self, path: Path, device: str = "cuda") -> None:
        payload = read_engine_sidecar(path)
        meta, build = payload[GRAPH_META_KEY], payload["engine"]
        try:
            import tensorrt as trt
        except ImportError:
            raise ClassifierError(
                f"{path}: TensorRT backend needs the gpu extra and a CUDA device (pip install 'mad-pd[gpu]')"
            ) from None
        if not device.startswith("cuda"):
            raise ClassifierError(f"{path}: TensorRT engines run on a GPU; set model.device to cuda (got {device!r})")
        self.device = torch_device(device)
        if build["tensorrt_version"] != trt.__version__:
            raise ClassifierError(f"{path}: built with TensorRT {build['tensorrt_version']}, this machine has "
                                  f"{trt.__version__}; {REBUILD_HINT}")
        capability = "{}.{}".format(*torch.cuda.get_device_capability(self.device))
        if build["compute_capability"] != capability:
            raise ClassifierError(f"{path}: built for compute capability {build['compute_capability']}, "
                                  f"{device} is {capability}; {REBUILD_HINT}")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)  # engine and context must not outlive the runtime
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise ClassifierError(f"{path}: TensorRT could not deserialise the engine; {REBUILD_HINT}")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = tuple(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_names = expected_outputs(meta)  # (logits,) or (logits, familiarity): calibrated engines
        outputs = [n for n in names if n not in self.input_names]
        if set(self.input_names) != set(expected_inputs(meta)) or set(outputs) != set(self.output_names):
            raise ClassifierError(f"{path}: engine tensors {names} do not match its metadata "
                                  f"(want inputs {list(expected_inputs(meta))} and outputs {list(self.output_names)})")
        for output in self.output_names:
            if self.engine.get_tensor_dtype(output) != trt.float32:
                raise ClassifierError(f"{path}: output {output!r} is {self.engine.get_tensor_dtype(output)}, "
                                      "want float32")
        self.familiarity_threshold = familiarity_threshold(meta, path, ClassifierError)
        # Profile 0's (min, opt, max) shapes: the largest batch one execution may take.
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.input_names[0], 0)[2][0])
        self.name, self.version = str(meta["name"]), str(meta["version"])
        self.class_names = check_class_names(meta["class_names"], str(path))
        self.signal_preprocess = signal_preprocess_from_meta(meta)
        if self.signal_preprocess is not None:
            self.signal_preprocess.to(self.device)
        self.meta, self.build, self.path = meta, build, path

    def predict(self, images: np.ndarray | None, signals: np.ndarray) -> np.ndarray:
        return self.score(images, signals).probabilities

    def score(self, images: np.ndarray | None, signals: np.ndarray) -> Scores:
        check_inputs(images, signals)
        chunks, familiarity_chunks = [], []
        with torch.inference_mode(), torch.cuda.device(self.device):
            stream = torch.cuda.current_stream(self.device)  # torch's preprocessing and the engine share it
            for start in range(0, signals.shape[0], self.max_batch):
                stop = min(start + self.max_batch, signals.shape[0])
                try:
                    feeds = prepare_graph_inputs(None if images is None else images[start:stop], signals[start:stop],
                                                 self.input_names, self.signal_preprocess, self.device)
                except ValueError as exc:
                    raise ClassifierError(f"{self.path}: {exc}") from None
                logits = torch.empty((stop - start, len(CLASS_NAMES)), dtype=torch.float32, device=self.device)
                for name, tensor in feeds.items():
                    self.context.set_input_shape(name, tuple(tensor.shape))
                    self.context.set_tensor_address(name, tensor.data_ptr())
                self.context.set_tensor_address(LOGITS, logits.data_ptr())
                if FAMILIARITY in self.output_names:
                    familiarity = torch.empty((stop - start,), dtype=torch.float32, device=self.device)
                    self.context.set_tensor_address(FAMILIARITY, familiarity.data_ptr())
                    familiarity_chunks.append(familiarity)
                if not self.context.execute_async_v3(stream.cuda_stream):
                    raise ClassifierError(f"{self.path}: TensorRT execution failed (batch of {stop - start})")
                chunks.append(logits)
            # softmax_scores' .cpu() waits for the stream; the logits are calibrated in the engine already
            return softmax_scores(torch.cat(chunks), torch.cat(familiarity_chunks) if familiarity_chunks else None)
