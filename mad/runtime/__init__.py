"""Loading trained MAD checkpoints (safetensors + JSON sidecar) for inference."""

from mad.runtime.loading import CheckpointError, load_model, read_sidecar, sidecar_path

__all__ = ["CheckpointError", "load_model", "read_sidecar", "sidecar_path"]
