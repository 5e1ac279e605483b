"""Classifier backends behind one small interface, chosen by file suffix (like ultralytics' AutoBackend).

`.safetensors` -> `mad.load_model` run eagerly (TorchClassifier); `.pt`/`.ts`/`.torchscript` ->
TorchScript with its embedded `mad_meta.json`; `.onnx` -> ONNX Runtime (agent/onnx_classifier.py, the
onnx extra); `.engine` -> TensorRT on a GPU (agent/tensorrt_classifier.py, the gpu extra).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from mad.constants import CLASS_NAMES, IMAGE_SIZE, ROW_SAMPLES, WINDOW_ROWS
from mad.runtime.loading import parse_json_object

TORCHSCRIPT_META_FILE = "mad_meta.json"  # name of the `_extra_files` entry written at export
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".torchscript")
MODEL_SUFFIXES = (".safetensors", *TORCHSCRIPT_SUFFIXES, ".onnx", ".engine")


class ClassifierError(ValueError):
    """A model file or input the classifier cannot use; the message names the file or the array."""


@runtime_checkable
class Classifier(Protocol):
    name: str
    version: str
    class_names: tuple[str, ...]

    def predict(self, images: np.ndarray | None, signals: np.ndarray) -> np.ndarray:
        """images uint8 (B,256,256,3) or None, signals (B,20,7680) raw counts -> probabilities (B,5) float32."""
        ...


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
    """Shared predict for eager modules and TorchScript: tensors in, softmax out, no autograd."""

    module: Any
    device: torch.device

    def predict(self, images: np.ndarray | None, signals: np.ndarray) -> np.ndarray:
        check_inputs(images, signals)
        with torch.inference_mode():
            image_tensor = None if images is None else torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            signal_tensor = torch.from_numpy(np.ascontiguousarray(signals, dtype=np.float32)).to(self.device)
            logits = self.module(image_tensor, signal_tensor)
            return torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)


def torch_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ClassifierError(f"model.device={device!r} but no CUDA device is available")
    return torch.device(device)


class TorchClassifier(_TorchBackend):
    """Any nn.Module called as `module(images uint8 | None, signals) -> logits (B,5)`."""

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
        self.meta = meta


class FunctionClassifier:
    """A plain function as a classifier: test doubles and replay of precomputed scores."""

    def __init__(
        self,
        function: Callable[[np.ndarray | None, np.ndarray], np.ndarray],
        *,
        name: str = "function",
        version: str = "0",
    ) -> None:
        self.function, self.name, self.version, self.class_names = function, name, version, CLASS_NAMES

    def predict(self, images: np.ndarray | None, signals: np.ndarray) -> np.ndarray:
        check_inputs(images, signals)
        probabilities = np.asarray(self.function(images, signals), dtype=np.float32)
        if probabilities.shape != (signals.shape[0], len(CLASS_NAMES)):
            raise ClassifierError(f"{self.name}: returned shape {probabilities.shape}, want ({signals.shape[0]}, 5)")
        return probabilities


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
    if suffix == ".safetensors":
        return TorchClassifier.from_checkpoint(path, device)
    if suffix in TORCHSCRIPT_SUFFIXES:
        return TorchScriptClassifier(path, device)
    if suffix == ".onnx":
        from agent.onnx_classifier import OnnxClassifier

        return OnnxClassifier(path, device, threads)
    from agent.tensorrt_classifier import TensorRTClassifier

    return TensorRTClassifier(path, device)
