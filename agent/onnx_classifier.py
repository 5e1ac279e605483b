"""`.onnx` models on ONNX Runtime: the exported graph (`mad-train export --format onnx`) on the CPU,
or on ONNX Runtime's CUDA provider when `model.device` is cuda and that provider is installed.

The signal normalisation before the graph runs in torch (see `mad.runtime.graph_io`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from agent.graph_meta import expected_inputs, expected_outputs, familiarity_threshold, parse_graph_meta
from agent.inference import ClassifierError, Scores, check_class_names, check_inputs, softmax_scores
from mad.runtime.graph_io import GRAPH_META_KEY, prepare_graph_inputs, signal_preprocess_from_meta


class OnnxClassifier:
    def __init__(self, path: Path, device: str = "cpu", threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ClassifierError(f"{path}: the ONNX backend needs onnxruntime (pip install 'mad-pd[onnx]')") from None
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ClassifierError(f"{path}: model.device={device!r} but this onnxruntime has no CUDA provider "
                                      "(install onnxruntime-gpu, or use a .engine or .safetensors model)")
            index = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind error types for a bad file
            raise ClassifierError(f"{path}: not a loadable ONNX model ({exc})") from None
        meta = parse_graph_meta(self.session.get_modelmeta().custom_metadata_map.get(GRAPH_META_KEY), path,
                                ClassifierError)
        self.input_names = tuple(tensor.name for tensor in self.session.get_inputs())
        if set(self.input_names) != set(expected_inputs(meta)):
            raise ClassifierError(f"{path}: graph inputs {list(self.input_names)} do not match its model_config "
                                  f"(want {list(expected_inputs(meta))})")
        self.output_names = expected_outputs(meta)  # (logits,) or (logits, familiarity): calibrated graphs
        outputs = tuple(tensor.name for tensor in self.session.get_outputs())
        if set(outputs) != set(self.output_names):
            raise ClassifierError(f"{path}: graph outputs {list(outputs)} do not match its metadata, which wants "
                                  f"{list(self.output_names)} (a calibrated graph has familiarity too)")
        self.familiarity_threshold = familiarity_threshold(meta, path, ClassifierError)
        self.name, self.version = str(meta["name"]), str(meta["version"])
        self.class_names = check_class_names(meta["class_names"], str(path))
        self.signal_preprocess = signal_preprocess_from_meta(meta)
        self.meta = meta
        self.path = path

    def score(self, images: np.ndarray | None, signals: np.ndarray) -> Scores:
        check_inputs(images, signals)
        with torch.inference_mode():
            try:
                feeds = prepare_graph_inputs(images, signals, self.input_names, self.signal_preprocess,
                                             torch.device("cpu"))
            except ValueError as exc:
                raise ClassifierError(f"{self.path}: {exc}") from None
            outputs = self.session.run(list(self.output_names), {name: t.numpy() for name, t in feeds.items()})
            familiarity = torch.from_numpy(outputs[1]) if len(outputs) > 1 else None
            return softmax_scores(torch.from_numpy(outputs[0]), familiarity)

    def predict(self, images: np.ndarray | None, signals: np.ndarray) -> np.ndarray:
        return self.score(images, signals).probabilities
