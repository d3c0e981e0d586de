"""Training-free few-shot methods: the zero-shot logits plus a closed-form term from the support set, mixed
with a weight chosen on the few-shot val set (batched over draws, like the trained methods).

- `tip` (Tip-Adapter, Zhang et al., ECCV'22; gaopengcuhk/Tip-Adapter): a cache whose keys are the support
  features averaged over augmented views, logits = s x W_zs^T + alpha exp(-beta (1 - x K^T)) Y, (beta, alpha)
  searched on the official grid (`tip_grid`).
- `gda` (Gaussian discriminant analysis, Wang et al., ICLR'24; mrflogs/ICLR24): class means mu_c and a shared
  covariance (the KS shrinkage estimator of the official code) from every augmented view of the support set
  give a linear classifier x W^T + b, logits = s * x W_zs^T + alpha * (x W^T + b). Without views, at 1 shot
  there is no within-class scatter, the covariance is zero, W = 0 and GDA is the zero-shot classifier.
Both keep the first grid point with the best few-shot val accuracy, as their official code does (`acc > best`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clipprobe.params import FewshotParams, TipRecipe
from clipprobe.probes.fewshot.methods import MethodResult, Prior
from clipprobe.probes.fewshot.support import Task, class_means
from clipprobe.probes.fewshot.train import head_hits


def _best_on_val(hits: torch.Tensor) -> torch.Tensor:
    """(G, H, V) val hits of G grid points -> (H,) index of the first point with the most hits."""
    return hits.sum(dim=-1).argmax(dim=0)


def tip_grid(cfg: TipRecipe) -> tuple[list[float], list[float]]:
    """(betas, alphas) of Tip-Adapter's search (utils.py `search_hp`): `steps` points from 0.1 up to (not
    including) `scale`, each list `[i * (scale - 0.1) / steps + 0.1 for i in range(steps)]`."""
    grid = lambda scale, steps: [i * (scale - 0.1) / steps + 0.1 for i in range(steps)]  # noqa: E731
    return grid(cfg.beta_scale, cfg.beta_steps), grid(cfg.alpha_scale, cfg.alpha_steps)


def _views(task: Task, views: int) -> torch.Tensor | None:
    """(A, H, M, D) the first min(views, cached) augmented views of the support set, L2-normalised, or None."""
    if not views or task.support_views is None:
        return None
    return F.normalize(task.support_views[:views], dim=-1)


class TipAdapter:
    """Training-free cache model; (beta, alpha) per draw from the official grid, by few-shot val accuracy."""

    def __init__(self, prior: Prior, cfg: FewshotParams):
        self.prior, self.views = prior, cfg.tip.views
        self.betas, self.alphas = tip_grid(cfg.tip)

    def keys(self, task: Task) -> torch.Tensor:
        """(H, M, D) cache keys: the mean raw feature over the views, normalised (`build_cache_model`)."""
        if not self.views or task.support_views is None:
            return task.support
        return F.normalize(task.support_views[: self.views].mean(dim=0), dim=-1)

    def cache(
        self, keys: torch.Tensor, labels: torch.Tensor, x: torch.Tensor, beta: torch.Tensor
    ) -> torch.Tensor:
        """(H, N, C) cache logits exp(-beta (1 - x K^T)) Y of (N, D) or (H, N, D) features, (H,) beta."""
        onehot = F.one_hot(labels, len(self.prior.weights)).to(x.dtype)  # (M, C)
        affinity = torch.matmul(x, keys.mT)  # (H, N, M)
        return torch.exp(-beta[:, None, None] * (1 - affinity)) @ onehot

    def run(self, task: Task, test: torch.Tensor, test_labels: torch.Tensor) -> MethodResult:
        keys, ones = self.keys(task), task.val.new_ones(task.draws)
        zeroshot = self.prior.logit_scale * (task.val @ self.prior.weights.T)  # (H, V, C)
        alphas = torch.tensor(self.alphas, dtype=task.val.dtype, device=task.val.device)[:, None, None, None]
        hits = torch.cat(
            [
                head_hits(
                    zeroshot + alphas * self.cache(keys, task.support_labels, task.val, beta * ones),
                    task.val_labels,
                )
                for beta in self.betas
            ]
        )  # (B * A, H, V), beta-major as the official loops
        best = _best_on_val(hits)  # (H,)
        beta = torch.tensor(self.betas, dtype=ones.dtype)[best // len(self.alphas)].to(ones)
        alpha = torch.tensor(self.alphas, dtype=ones.dtype)[best % len(self.alphas)].to(ones)
        # one draw at a time: the (N, M) test-to-cache affinity of every draw at once can be large
        zs_test = self.prior.logit_scale * (test @ self.prior.weights.T)  # (N, C)
        hits = torch.cat(
            [
                head_hits(
                    zs_test
                    + alpha[h] * self.cache(keys[h : h + 1], task.support_labels, test, beta[h : h + 1]),
                    test_labels,
                )
                for h in range(task.draws)
            ]
        )
        return MethodResult(hits, choice={"alpha": alpha.cpu(), "beta": beta.cpu()})


class GaussianDiscriminant:
    """GDA: a shared-covariance Gaussian per class from the support set, added to the zero-shot logits."""

    def __init__(self, prior: Prior, cfg: FewshotParams):
        self.prior, self.alphas, self.views = prior, sorted(cfg.gda.alphas), cfg.gda.views

    def fit(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, C, D) weights and (H, C) biases of the Gaussian discriminant, in float64, from every view of the
        support set (or the clean support set without views)."""
        views = _views(task, self.views)
        if views is None:
            support, labels = task.support.double(), task.support_labels
        else:  # (H, A * M, D): each view a sample, as the official code stacks its augment epochs
            support = views.transpose(0, 1).flatten(1, 2).double()
            labels = task.support_labels.repeat(len(views))
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
