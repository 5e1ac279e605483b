"""Post-hoc calibration of a trained MAD: temperature scaling and a familiarity score (docs/familiarity.md).

Both are fitted after training, on generated validation windows (`mad-train calibrate`), and run inside
the model's one forward pass so every backend (eager, TorchScript, ONNX Runtime, TensorRT) computes them
the same way:

- calibrated logits = logits / T (one scalar T, fitted by minimising the NLL; Guo et al. 2017). Softmax
  of them is what every backend reports, so T is applied exactly once: in the graph, never by a backend;
- familiarity = -min_c (f - mu_c)^T P (f - mu_c) / D: minus the squared Mahalanobis distance of the pooled
  encoder feature f (the classifier's input, D = 128 for mad_small) to the nearest class mean, with one
  shared precision matrix P (Lee et al. 2018), per feature dimension. Higher is more familiar; a window
  below the fitted threshold is `unfamiliar`. It won the measurement in docs/familiarity.md against the
  flows' NLL and the energy score.

The statistics are non-persistent buffers: they never enter the model's state_dict, so the weights file,
its sha256 and `init_from` stay those of the trained network; they load from the checkpoint's own
checked companion file (mad.runtime.calibration).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SCORE_MAHALANOBIS = "mahalanobis"
SCORE_DEFINITION = ("-min over classes c of (f - mu_c)^T P (f - mu_c) / D; f = masked mean of the encoder "
                    "tokens (the classifier's input), mu_c = class means, P = shared precision, D = feature dim")


class Calibration(nn.Module):
    """(raw logits (B, C), pooled features (B, D)) -> (logits / T (B, C), familiarity (B,))."""

    def __init__(self, temperature: float, class_means: torch.Tensor, precision: torch.Tensor,
                 threshold: float) -> None:
        super().__init__()
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
        dim = class_means.shape[1]
        if precision.shape != (dim, dim):
            raise ValueError(f"precision must be ({dim}, {dim}) for class_means {tuple(class_means.shape)}, "
                             f"got {tuple(precision.shape)}")
        if not (torch.isfinite(class_means).all() and torch.isfinite(precision).all()):
            raise ValueError("class_means and precision must be finite")
        self.temperature, self.threshold = float(temperature), float(threshold)
        # Non-persistent: kept out of state_dict (see the module docstring); traced into exported graphs.
        self.register_buffer("inv_temperature", torch.tensor(1.0 / temperature, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("class_means", class_means.detach().float().clone(), persistent=False)
        self.register_buffer("precision", precision.detach().float().clone(), persistent=False)

    def familiarity(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B,): minus the smallest squared Mahalanobis distance to a class mean, per dimension."""
        diff = pooled.float()[:, None, :] - self.class_means[None]  # (B, C, D)
        distance = ((diff @ self.precision) * diff).sum(dim=-1)  # (B, C)
        return -distance.min(dim=1).values / float(self.class_means.shape[1])

    def forward(self, logits: torch.Tensor, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits.float() * self.inv_temperature, self.familiarity(pooled)


# ---- fitting (numpy, float64) -------------------------------------------------------------------------

def fit_gaussian_statistics(features: np.ndarray, labels: np.ndarray, num_classes: int,
                            shrinkage: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Class means (C, D) and the shared precision (D, D) of features (N, D) with labels (N,).

    The covariance is pooled over classes (within-class scatter / N) and shrunk towards a multiple of the
    identity (weight `shrinkage`, target trace / D): with a few thousand windows and D = 128 the plain
    estimate is noisy in its smallest directions, and inverting it would make those dominate the distance."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels, np.int64)
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features (N, D) and labels (N,) expected, got {features.shape} and {labels.shape}")
    counts = np.bincount(labels, minlength=num_classes)
    if counts.size != num_classes or (counts < 2).any():
        raise ValueError(f"every class needs at least 2 windows to fit its mean, got counts {counts.tolist()}")
    means = np.stack([features[labels == c].mean(axis=0) for c in range(num_classes)])
    centred = features - means[labels]
    covariance = centred.T @ centred / len(features)
    dim = covariance.shape[0]
    target = np.trace(covariance) / dim
    covariance = (1 - shrinkage) * covariance + shrinkage * target * np.eye(dim)
    precision = np.linalg.inv(covariance)
    return means, (precision + precision.T) / 2  # symmetric to the last bit


def mahalanobis_familiarity(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """numpy twin of Calibration.familiarity (float64), for fitting and measurement."""
    features = np.asarray(features, np.float64)
    diff = features[:, None, :] - means[None]
    distance = np.einsum("ncd,de,nce->nc", diff, precision, diff)
    return -distance.min(axis=1) / means.shape[1]


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) (LBFGS on log T, so T stays positive)."""
    logits_t = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(logits_t / log_t.exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature fit diverged (T={temperature})")
    return temperature
