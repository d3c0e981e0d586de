"""`LinearModel`: the classifier every probe produces, so a zero-shot head, a fitted probe and a
few-shot head are interchangeable (as a warm start, an initialisation or a baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LinearModel:
    """logits = x @ weight.T + bias."""

    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)

    @classmethod
    def from_zeroshot(cls, weights: torch.Tensor, logit_scale: float = 100.0) -> LinearModel:
        """The zero-shot classifier as a head on L2-normalised features: weight = scale * W_zs, bias = 0."""
        return cls(logit_scale * weights, weights.new_zeros(len(weights)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N, C) logits, computed in the model's dtype and on its device."""
        return F.linear(x.to(self.weight), self.weight, self.bias)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N,) class indices."""
        return self.logits(x).argmax(dim=-1)

    def to(self, *args, **kwargs) -> LinearModel:
        return LinearModel(self.weight.to(*args, **kwargs), self.bias.to(*args, **kwargs))
