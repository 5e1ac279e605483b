"""RealNVP normalising flows over token sequences (paper section 3B).

Each affine coupling keeps half of the channels (x_a) and transforms the other half:
    y_b = x_b * exp(s) + t,  (s_raw, t) = conditioner(x_a),  s = gamma * tanh(s_raw)
so log|det J| = sum(s) and the inverse is x_b = (y_b - t) * exp(-s). A fixed random channel
permutation between couplings lets every channel be transformed. The conditioner's last layer
is zero-initialised: each flow starts as the identity.

"Channel permutations between couplings": each coupling draws its own fixed random split of
the channels into the kept and the transformed half (permute, couple, permute back). Undoing
the permutation keeps the zero-initialised flow an exact identity and the Jacobian's sign +1.

Image flow: a per-token MLP conditioner. Signal flow ("causal"): the conditioner's first layer
is a left-padded convolution along time, so the (s, t) of token i depend on tokens <= i only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)


class CausalConv1d(nn.Module):
    """(B, T, C_in) -> (B, T, C_out); output t sees inputs t-k+1 .. t (left zero padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))  # (B, C_in, k - 1 + T)
        return self.conv(x).transpose(1, 2)


class Conditioner(nn.Module):
    """x_a (B, T, C/2) -> (s_raw, t), each (B, T, C/2). Three layers; the first may be causal."""

    def __init__(self, half: int, hidden: int, causal_kernel: int | None) -> None:
        super().__init__()
        self.inp = CausalConv1d(half, hidden, causal_kernel) if causal_kernel else nn.Linear(half, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 2 * half)
        self.out.is_flow_output = True  # model init leaves it at zero (identity flow)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.gelu(self.mid(F.gelu(self.inp(x_a))))
        s_raw, t = self.out(h).chunk(2, dim=-1)
        return s_raw, t


class AffineCoupling(nn.Module):
    """One affine coupling on (B, T, C): a fixed random half of the channels conditions the other half."""

    def __init__(self, dim: int, hidden: int, scale_bound: float, causal_kernel: int | None, seed: int) -> None:
        super().__init__()
        self.half = dim // 2
        self.scale_bound = scale_bound
        self.conditioner = Conditioner(self.half, hidden, causal_kernel)
        # A fixed permutation (seeded by position, not by the model seed) stored in the checkpoint.
        perm = torch.randperm(dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def _scale_shift(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s_raw, t = self.conditioner(x_a)
        return self.scale_bound * torch.tanh(s_raw), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> (y (B, T, C), log|det J| (B,))."""
        x = x[..., self.perm]
        x_a, x_b = x[..., : self.half], x[..., self.half :]
        s, t = self._scale_shift(x_a)
        y = torch.cat([x_a, x_b * torch.exp(s) + t], dim=-1)
        return y[..., self.inv_perm], s.sum(dim=(1, 2))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y = y[..., self.perm]
        y_a, y_b = y[..., : self.half], y[..., self.half :]
        s, t = self._scale_shift(y_a)  # y_a == x_a: one parallel pass, no recursion over time
        x = torch.cat([y_a, (y_b - t) * torch.exp(-s)], dim=-1)
        return x[..., self.inv_perm]


class RealNVP(nn.Module):
    """A stack of affine couplings over (B, T, C) tokens, with log-det and Gaussian NLL."""

    def __init__(self, dim: int, couplings: int, hidden: int, scale_bound: float,
                 causal_kernel: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.couplings = nn.ModuleList(
            AffineCoupling(dim, hidden, scale_bound, causal_kernel, seed=seed + i) for i in range(couplings)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> (z (B, T, C), log|det dz/dx| (B,))."""
        log_det = x.new_zeros(x.shape[0])
        for coupling in self.couplings:
            x, coupling_log_det = coupling(x)
            log_det = log_det + coupling_log_det
        return x, log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for coupling in reversed(self.couplings):
            z = coupling.inverse(z)
        return z


def flow_nll_per_dim(z: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
    """(B,) negative log-likelihood of x under the flow with a N(0, I) base, per dimension (nats)."""
    dims = z.shape[1] * z.shape[2]
    log_pz = -0.5 * (z.float().pow(2).sum(dim=(1, 2)) + dims * LOG_2PI)
    return -(log_pz + log_det.float()) / dims


class ImageFlow(RealNVP):
    """RealNVPImageFlow: per-token MLP conditioners."""

    def __init__(self, dim: int, couplings: int, hidden: int, scale_bound: float) -> None:
        super().__init__(dim, couplings, hidden, scale_bound, causal_kernel=None, seed=1000)


class SignalFlow(RealNVP):
    """RealNVPSignalFlow: causal conditioners (token i sees tokens <= i)."""

    def __init__(self, dim: int, couplings: int, hidden: int, scale_bound: float, kernel: int) -> None:
        super().__init__(dim, couplings, hidden, scale_bound, causal_kernel=kernel, seed=2000)
