"""Training-free few-shot methods: the zero-shot logits plus a closed-form term from the support set, mixed
with a weight chosen on the few-shot val set (batched over draws, like the trained methods).

- `tip` (Tip-Adapter, Zhang et al., ECCV'22; gaopengcuhk/Tip-Adapter): a cache of the support features,
  logits = s * (x W_zs^T + alpha * exp(-beta (1 - x S^T)) Y), (alpha, beta) from a grid.
- `gda` (Gaussian discriminant analysis, Wang et al., ICLR'24; mrflogs/ICLR24): class means mu_c and a shared
  covariance from the support set (the KS shrinkage estimator of the official code) give a linear classifier
  x W^T + b, logits = s * x W_zs^T + alpha * (x W^T + b). At 1 shot there is no within-class scatter, the
  covariance is zero, W = 0 and GDA is the zero-shot classifier (the official code gets scatter from
  augmented views, which cached features do not have).
Both pick the grid point with the best few-shot val accuracy, ties to the one closest to zero-shot (the
first), as their official code does on its validation split.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clipprobe.params import FewshotParams
from clipprobe.probes.fewshot.methods import MethodResult, Prior
from clipprobe.probes.fewshot.support import Task, class_means
from clipprobe.probes.fewshot.train import head_hits


def _best_on_val(hits: torch.Tensor) -> torch.Tensor:
    """(G, H, V) val hits of G grid points -> (H,) index of the first point with the most hits."""
    return hits.sum(dim=-1).argmax(dim=0)


class TipAdapter:
    """Training-free cache model; (alpha, beta) per draw from a grid, by few-shot val accuracy."""

    def __init__(self, prior: Prior, cfg: FewshotParams):
        self.prior = prior
        self.grid = [
            (a, b) for a in sorted(cfg.tip.alphas) for b in sorted(cfg.tip.betas)
        ]  # alpha = 0 (zero-shot) first

    def logits(self, task: Task, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """(N, D) or (H, N, D) features, (H,) alpha and beta -> (H, N, C) logits."""
        zeroshot = x @ self.prior.weights.T  # cosine to the class weights
        onehot = F.one_hot(task.support_labels, len(self.prior.weights)).to(x.dtype)  # (M, C)
        affinity = torch.matmul(x, task.support.mT)  # (H, N, M)
        cache = torch.exp(-beta[:, None, None] * (1 - affinity)) @ onehot  # (H, N, C)
        return self.prior.logit_scale * (zeroshot + alpha[:, None, None] * cache)

    def run(self, task: Task, test: torch.Tensor, test_labels: torch.Tensor) -> MethodResult:
        ones = task.val.new_ones(task.draws)
        hits = torch.stack(
            [
                head_hits(self.logits(task, task.val, a * ones, b * ones), task.val_labels)
                for a, b in self.grid
            ]
        )  # (G, H, V)
        pairs = torch.tensor(self.grid, dtype=task.val.dtype)[_best_on_val(hits)].to(ones)  # (H, 2)
        alpha, beta = pairs[:, 0], pairs[:, 1]
        # one draw at a time: the (N, M) test-to-cache affinity of every draw at once can be large
        hits = torch.cat(
            [
                head_hits(self.logits(task.draw(h), test, alpha[h : h + 1], beta[h : h + 1]), test_labels)
                for h in range(task.draws)
            ]
        )
        return MethodResult(hits, choice={"alpha": alpha.cpu(), "beta": beta.cpu()})


class GaussianDiscriminant:
    """GDA: a shared-covariance Gaussian per class from the support set, added to the zero-shot logits."""

    def __init__(self, prior: Prior, cfg: FewshotParams):
        self.prior, self.alphas = prior, sorted(cfg.gda.alphas)

    def fit(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, C, D) weights and (H, C) biases of the Gaussian discriminant, in float64."""
        support, labels = task.support.double(), task.support_labels
        n_classes, (n_support, dim) = len(self.prior.weights), support.shape[1:]
        means = class_means(support, labels, n_classes)  # (H, C, D)
        centered = support - means[:, labels]  # (H, M, D) within-class scatter
        cov = centered.mT @ centered / (n_support - 1)  # (H, D, D)
        trace = cov.diagonal(dim1=1, dim2=2).sum(dim=-1)[:, None, None]
        eye = torch.eye(dim, dtype=cov.dtype, device=cov.device)
        precision = dim * torch.linalg.pinv((n_support - 1) * cov + trace * eye)  # the KS estimator
        weight = means @ precision  # (H, C, D), precision is symmetric
        bias = -0.5 * (weight * means).sum(dim=-1) - math.log(n_classes)  # equal class priors
        return weight, bias

    def logits(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, alpha: torch.Tensor
    ) -> torch.Tensor:
        zeroshot = self.prior.logit_scale * (x @ self.prior.weights.T)
        gaussian = torch.matmul(x, weight.mT) + bias[:, None]  # (H, N, C)
        return zeroshot + alpha[:, None, None] * gaussian

    def run(self, task: Task, test: torch.Tensor, test_labels: torch.Tensor) -> MethodResult:
        weight, bias = (t.to(task.val.dtype) for t in self.fit(task))
        ones = task.val.new_ones(task.draws)
        hits = torch.stack(
            [head_hits(self.logits(task.val, weight, bias, a * ones), task.val_labels) for a in self.alphas]
        )
        alpha = torch.tensor(self.alphas, dtype=task.val.dtype)[_best_on_val(hits)].to(ones)  # (H,)
        hits = head_hits(self.logits(test, weight, bias, alpha), test_labels)
        return MethodResult(hits, choice={"alpha": alpha.cpu()})
