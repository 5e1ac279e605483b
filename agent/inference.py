"""Classifier backends behind one small interface, chosen by file suffix (like ultralytics' AutoBackend).

`.safetensors` -> `mad.load_model` run eagerly (TorchClassifier); `.pt`/`.ts`/`.torchscript` ->
TorchScript with its embedded `mad_meta.json`; `.onnx` -> ONNX Runtime (agent/onnx_classifier.py, the
onnx extra); `.engine` -> TensorRT on a GPU (agent/tensorrt_classifier.py, the gpu extra).

Every backend's `score(images, signals)` returns `Scores`: the probabilities (calibrated when the model
was calibrated: the temperature is inside the model or graph, never applied here) and the familiarity of
each window, with `familiarity_threshold` below which a window is `unfamiliar` (docs/familiarity.md).
A model without calibration has familiarity None and threshold None: the gate is off, and loading says so.
`predict` (probabilities only) stays for callers that need nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from agent.graph_meta import familiarity_threshold
from mad.constants import CLASS_NAMES, IMAGE_SIZE, ROW_SAMPLES, WINDOW_ROWS
from mad.runtime.loading import parse_json_object

TORCHSCRIPT_META_FILE = "mad_meta.json"  # name of the `_extra_files` entry written at export
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript")
MODEL_SUFFIXES = (".safetensors", *TORCHSCRIPT_SUFFIXES, ".onnx", ".engine")

log = logging.getLogger(__name__)


class ClassifierError(ValueError):
    """A model file or input the classifier cannot use; the message names the file or the array."""


@dataclass(frozen=True, slots=True)
class Scores:
    """What a model says about a batch of windows."""

    probabilities: np.ndarray  # (B, 5) float32, calibrated where the model carries a temperature
    familiarity: np.ndarray | None = None  # (B,) float32, higher = more like the training data; None: no gate


@runtime_checkable
class Classifier(Protocol):
    """The agent's model interface. Backends also have `score(images, signals) -> Scores` and
    `familiarity_threshold: float | None`; `scores_of` falls back to `predict` for a classifier without."""

    name: str
    version: str
    class_names: tuple[str, ...]

    def predict(self, images: np.ndarray | None, signals: np.ndarray) -> np.ndarray:
        """images uint8 (B,256,256,3) or None, signals (B,20,7680) raw counts -> probabilities (B,5) float32."""
        ...


def scores_of(classifier: Classifier, images: np.ndarray | None, signals: np.ndarray) -> Scores:
    """The one call the agent's core makes: the classifier's `score`, or its `predict` with no familiarity."""
    score = getattr(classifier, "score", None)
    if callable(score):
        return score(images, signals)
    return Scores(np.asarray(classifier.predict(images, signals), dtype=np.float32))


def familiarity_threshold_of(classifier: Classifier) -> float | None:
    """The classifier's familiarity threshold; None: it has no familiarity gate."""
    threshold = getattr(classifier, "familiarity_threshold", None)
    return None if threshold is None else float(threshold)


def softmax_scores(logits: torch.Tensor, familiarity: torch.Tensor | None) -> Scores:
    """Graph outputs -> Scores; the logits are already calibrated where the model is (never divided here)."""
    probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)
    if familiarity is None:
        return Scores(probabilities)
    return Scores(probabilities, familiarity.float().reshape(-1).cpu().numpy().astype(np.float32, copy=False))


def check_inputs(images: np.ndarray | None, signals: np.ndarray) -> None:
    if signals.ndim != 3 or signals.shape[1:] != (WINDOW_ROWS, ROW_SAMPLES):
        raise ClassifierError(f"signals must be (B, {WINDOW_ROWS}, {ROW_SAMPLES}), got {signals.shape}")
    if images is not None and (
        images.shape != (signals.shape[0], IMAGE_SIZE, IMAGE_SIZE, 3) or images.dtype != np.uint8
    ):
        raise ClassifierError(
            f"images must be uint8 ({signals.shape[0]}, {IMAGE_SIZE}, {IMAGE_SIZE}, 3), "
            f"got {images.dtype} {images.shape}"
        )


def check_class_names(names: Sequence[str], source: str) -> tuple[str, ...]:
    if tuple(names) != CLASS_NAMES:
        raise ClassifierError(f"{source}: class_names {list(names)} differ from the agent's {list(CLASS_NAMES)}")
    return tuple(names)


class _TorchBackend:
    """Shared scoring for eager modules and TorchScript: tensors in, softmax and familiarity out, no autograd."""

    module: Any
    device: torch.device
    familiarity_threshold: float | None = None

    def _run(self, images: torch.Tensor | None, signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def score(self, images: np.ndarray | None, signals: np.ndarray) -> Scores:
        check_inputs(images, signals)
        with torch.inference_mode():
            image_tensor = None if images is None else torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            signal_tensor = torch.from_numpy(np.ascontiguousarray(signals, dtype=np.float32)).to(self.device)
            return softmax_scores(*self._run(image_tensor, signal_tensor))

    def predict(self, images: np.ndarray | None, signals: np.ndarray) -> np.ndarray:
        return self.score(images, signals).probabilities


def torch_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ClassifierError(f"model.device={device!r} but no CUDA device is available")
    return torch.device(device)


class TorchClassifier(_TorchBackend):
    """A MAD model (its `infer`: calibrated logits and familiarity), or any nn.Module called as
    `module(images uint8 | None, signals) -> logits (B,5)` (no familiarity)."""

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        name: str,
        version: str,
        device: str = "cpu",
        class_names: Sequence[str] = CLASS_NAMES,
    ) -> None:
        self.device = torch_device(device)
        self.module = module.to(self.device).eval()
        self.name, self.version = name, version
        self.class_names = check_class_names(class_names, name)
        calibration = getattr(module, "calibration", None)
        self.familiarity_threshold = None if calibration is None else float(calibration.threshold)

    def _run(self, images: torch.Tensor | None, signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if hasattr(self.module, "infer"):
            return self.module.infer(images, signals)
        return self.module(images, signals), None

    @classmethod
    def from_checkpoint(cls, path: Path, device: str = "cpu") -> TorchClassifier:
        from mad import load_model

        module = load_model(path, device=torch_device(device))
        meta = getattr(module, "mad_meta", {})
        return cls(
            module,
            name=meta.get("name", path.stem),
            version=str(meta.get("version", "unknown")),
            device=device,
            class_names=meta.get("class_names", CLASS_NAMES),
        )


class TorchScriptClassifier(_TorchBackend):
    """A TorchScript file exported with `_extra_files={"mad_meta.json": ...}` (name, version, class_names)."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.device = torch_device(device)
        extra_files = {TORCHSCRIPT_META_FILE: ""}
        try:
            self.module = torch.jit.load(str(path), map_location=self.device, _extra_files=extra_files)
        except (RuntimeError, ValueError) as exc:
            raise ClassifierError(f"{path}: not a loadable TorchScript file ({exc})") from None
        self.module.eval()
        embedded = extra_files[TORCHSCRIPT_META_FILE]
        if not embedded:
            raise ClassifierError(f"{path}: no {TORCHSCRIPT_META_FILE} embedded (export with mad-train export)")
        meta = parse_json_object(embedded, source=path, what=TORCHSCRIPT_META_FILE,
                                 required=("name", "version", "class_names"), error=ClassifierError)
        self.name, self.version = str(meta["name"]), str(meta["version"])
        self.class_names = check_class_names(meta["class_names"], str(path))
        self.meta, self.path = meta, path
        self.familiarity_threshold = familiarity_threshold(meta, path, ClassifierError)

    def _run(self, images: torch.Tensor | None, signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.module(images, signals)
        calibrated = self.familiarity_threshold is not None
        if isinstance(out, tuple) != calibrated:  # metadata and graph disagree: trust neither
            raise ClassifierError(f"{self.path}: the graph returns {'a tuple' if isinstance(out, tuple) else 'logits'} "
                                  f"but its {TORCHSCRIPT_META_FILE} says it is "
                                  f"{'calibrated' if calibrated else 'not calibrated'}")
        return (out[0], out[1]) if isinstance(out, tuple) else (out, None)


class FunctionClassifier:
    """A plain function as a classifier: test doubles and replay of precomputed scores.

    `familiarity` (same call, -> (B,)) and `familiarity_threshold` give it a familiarity gate."""

    def __init__(
        self,
        function: Callable[[np.ndarray | None, np.ndarray], np.ndarray],
        *,
        name: str = "function",
        version: str = "0",
        familiarity: Callable[[np.ndarray | None, np.ndarray], np.ndarray] | None = None,
        familiarity_threshold: float | None = None,
    ) -> None:
        if (familiarity is None) != (familiarity_threshold is None):
            raise ValueError("familiarity and familiarity_threshold come together (both or neither)")
        self.function, self.name, self.version, self.class_names = function, name, version, CLASS_NAMES
        self.familiarity, self.familiarity_threshold = familiarity, familiarity_threshold

    def score(self, images: np.ndarray | None, signals: np.ndarray) -> Scores:
        check_inputs(images, signals)
        probabilities = np.asarray(self.function(images, signals), dtype=np.float32)
        if probabilities.shape != (signals.shape[0], len(CLASS_NAMES)):
            raise ClassifierError(f"{self.name}: returned shape {probabilities.shape}, want ({signals.shape[0]}, 5)")
        if self.familiarity is None:
            return Scores(probabilities)
        familiarity = np.asarray(self.familiarity(images, signals), dtype=np.float32).reshape(-1)
        if familiarity.shape != (signals.shape[0],):
            raise ClassifierError(f"{self.name}: familiarity shape {familiarity.shape}, want ({signals.shape[0]},)")
        return Scores(probabilities, familiarity)

    def predict(self, images: np.ndarray | None, signals: np.ndarray) -> np.ndarray:
        return self.score(images, signals).probabilities


def executable_memory_allowed() -> bool:
    """False where the process may not map writable+executable memory: systemd's
    MemoryDenyWriteExecute=yes (deploy/mad-agent.service), or prctl(PR_SET_MDWE)."""
    import mmap

    try:
        probe = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        return False
    probe.close()
    return True


def fit_torch_to_process(device: str) -> bool:
    """Turn torch's oneDNN off on a CPU where executable memory is refused; True if it did.

    oneDNN JIT-compiles its conv kernels, which MemoryDenyWriteExecute forbids: every conv2d
    then fails with "could not create a primitive". torch's own conv kernels need no JIT."""
    if device != "cpu" or executable_memory_allowed():
        return False
    torch.backends.mkldnn.enabled = False
    return True


def load_classifier(path: Path | str, device: str = "cpu", threads: int = 0) -> Classifier:
    """Pick the backend by suffix; raise ClassifierError naming the file when it cannot be used.

    threads > 0 sets torch's intra-op thread count for CPU inference (process-wide)."""
    path = Path(path)
    if threads > 0:
        torch.set_num_threads(threads)
    fit_torch_to_process(device)
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ClassifierError(f"{path}: unknown model suffix {suffix!r} (want {', '.join(MODEL_SUFFIXES)})")
    if not path.is_file():
        raise ClassifierError(f"{path}: model file not found")
    classifier: Classifier
    if suffix == ".safetensors":
        classifier = TorchClassifier.from_checkpoint(path, device)
    elif suffix in TORCHSCRIPT_SUFFIXES:
        classifier = TorchScriptClassifier(path, device)
    elif suffix == ".onnx":
        from agent.onnx_classifier import OnnxClassifier

        classifier = OnnxClassifier(path, device, threads)
    else:
        from agent.tensorrt_classifier import TensorRTClassifier

        classifier = TensorRTClassifier(path, device)
    if familiarity_threshold_of(classifier) is None:
        log.warning("model %s (%s %s) has no calibration: probabilities are uncalibrated and the familiarity gate "
                    "is off, so no window is judged unfamiliar (run mad-train calibrate, then re-export)", path,
                    classifier.name, classifier.version)
    return classifier
