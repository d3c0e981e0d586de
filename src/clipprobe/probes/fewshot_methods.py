"""Few-shot methods on cached features, each batched over the draws of one shot count (heads, axis H).

Every method starts from the same prior, the zero-shot classifier: unit-norm class weights W_zs (C, D) from
the template ensemble and CLIP's logit scale s. Features are L2-normalised.

- `random` / `zeroshot` (the report's comparison): logits = s * x W^T + b, W from N(0, 0.01^2) or W = W_zs
  (b = 0), trained with the same plain Adam recipe. At step 0 the zeroshot head *is* the zero-shot classifier.
- `clap` (Silva-Rodriguez et al., CVPR'24; jusiro/CLAP): the zero-shot-initialised cosine classifier
  s * x normalise(P)^T plus CLAP's class-wise pull mean_c lambda_c ||P_c - W_zs,c||^2, lambda_c = the zero-shot
  softmax probability of class c on its own support images. Validation-free: SGD (momentum 0.9), cosine
  schedule, the last epoch is kept.
- `lpp` (LP++, Huang et al., CVPR'24; FereshteShakeri/FewShot-CLIP-Strong-Baseline): logits =
  x W^T + b + alpha_c * x W_zs,c^T, W starting at the class sums of the support features, alpha at 250 times the
  mean text logit; step sizes from the Lipschitz bounds (W, b: 4 M / lambda_max(S^T S), SGD momentum 0.9;
  alpha: M / (4 max_c sum_i (x_i . W_zs,c)^2), one gradient step per epoch).
- `tip` (Tip-Adapter, Zhang et al., ECCV'22): training-free cache, logits = s * (x W_zs^T +
  alpha * exp(-beta (1 - x S^T)) Y), with alpha and beta chosen on the few-shot val set.
Methods that keep an epoch choose it on the few-shot val set (`select = "val"`); none ever sees test labels
before its final number is fixed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipprobe.params import FewshotParams
from clipprobe.probes.fewshot_support import Task
from clipprobe.probes.fewshot_train import (
    HeadAdamW,
    HeadSGD,
    Trace,
    earliest_within_noise,
    head_accuracy,
    head_hits,
    train_heads,
)

RANDOM_INIT_STD = 0.01  # std of the random head's weights (on the unit-norm scale of W_zs)
LPP_ALPHA_INIT = 250.0  # LP++'s alpha_0 = 250 * mean text logit of the class centroids
MOMENTUM = 0.9  # SGD momentum of clap and lpp (both papers' recipes)


@dataclass
class Prior:
    """What every method knows before seeing a support set: the zero-shot classifier."""

    weights: torch.Tensor  # (C, D) unit-norm zero-shot class weights
    logit_scale: float  # CLIP's learnt logit scale (100 for OpenAI CLIP)
    text_norms: torch.Tensor  # (C,) norms of the template-mean raw text embeddings (CLAP's prototype scale)


@dataclass
class MethodResult:
    """One method at one shot count: the final test accuracy per draw and, when trained, its curves."""

    acc: torch.Tensor  # (H,) test accuracy of the selected model, float64
    trace: Trace | None = None  # per-epoch accuracies (trained methods)
    choice: dict[str, torch.Tensor] | None = None  # hyper-parameters chosen per draw on few-shot val (tip)


def _heads(task: Task, tensor: torch.Tensor) -> torch.Tensor:
    """A (C, D) tensor repeated for every draw, as a fresh trainable (H, C, D) leaf."""
    return tensor.expand(task.draws, *tensor.shape).clone().requires_grad_(True)


def _class_means(values: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(H, M, F) per-row values -> (H, C, F) mean over the rows of each class."""
    onehot = F.one_hot(labels, n_classes).to(values.dtype)  # (M, C)
    return onehot.T @ values / onehot.sum(dim=0)[:, None]


class LinearHead:
    """`random` and `zeroshot`: logits = s * x W^T + b, plain Adam(W), the epoch chosen on few-shot val."""

    select = "val"

    def __init__(self, prior: Prior, init: str, lr: float, weight_decay: float):
        self.prior, self.init_name, self.lr, self.weight_decay = prior, init, lr, weight_decay

    def init(self, task: Task, generator: torch.Generator) -> dict[str, torch.Tensor]:
        w_zs = self.prior.weights
        if self.init_name == "zeroshot":
            weight = _heads(task, w_zs)
        else:
            noise = torch.randn(task.draws, *w_zs.shape, generator=generator, dtype=w_zs.dtype)
            weight = (RANDOM_INIT_STD * noise).to(w_zs.device).requires_grad_(True)
        bias = w_zs.new_zeros(task.draws, len(w_zs)).requires_grad_(True)
        return {"weight": weight, "bias": bias}

    def logits(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        # (s * W) first, exactly as LinearModel.from_zeroshot, so the zeroshot head reproduces zero-shot logits
        return torch.matmul(x, (self.prior.logit_scale * state["weight"]).mT) + state["bias"][:, None]

    def penalty(self, state: dict[str, torch.Tensor], task: Task) -> float:
        return 0.0

    def optimizer(self, state: dict[str, torch.Tensor], task: Task, epochs: int) -> HeadAdamW:
        return HeadAdamW(list(state.values()), lr=self.lr, weight_decay=self.weight_decay)


class Clap:
    """ZS-LP (cosine classifier from W_zs) with CLAP's class-wise L2 pull; validation-free, last epoch.

    As in CLAP's code the prototypes live at the scale of the raw text embeddings (t_c = |mean raw text_c| *
    W_zs,c): the logits only see their direction, but the balance between the cross-entropy (whose gradient
    shrinks as 1 / |P|) and the pull (which does not) depends on it.
    """

    select = "last"

    def __init__(self, prior: Prior, lr: float):
        self.prior, self.lr = prior, lr

    def init(self, task: Task, generator: torch.Generator) -> dict[str, torch.Tensor]:
        w_zs, scale = self.prior.weights, self.prior.logit_scale
        with torch.no_grad():
            probs = torch.softmax(scale * task.support @ w_zs.T, dim=-1)  # (H, M, C) zero-shot softmax
            per_class = _class_means(probs, task.support_labels, len(w_zs))  # (H, C, C)
            self.pull = per_class.diagonal(dim1=1, dim2=2)  # (H, C) lambda_c: zero-shot confidence in class c
        self.anchor = self.prior.text_norms[:, None] * w_zs  # (C, D) t_c
        return {"prototypes": _heads(task, self.anchor)}

    def logits(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        prototypes = F.normalize(state["prototypes"], dim=-1)
        return torch.matmul(x, (self.prior.logit_scale * prototypes).mT)

    def penalty(self, state: dict[str, torch.Tensor], task: Task) -> torch.Tensor:
        distance = (state["prototypes"] - self.anchor).square().sum(dim=-1)  # (H, C)
        return (self.pull * distance).mean(dim=1).sum()

    def optimizer(self, state: dict[str, torch.Tensor], task: Task, epochs: int) -> HeadSGD:
        lr = torch.full((task.draws,), self.lr, device=task.support.device)
        cosine = lambda step: 0.5 * (1 + math.cos(math.pi * step / epochs))  # noqa: E731
        return HeadSGD([(state["prototypes"], lr, MOMENTUM)], schedule=cosine)


class LinearProbePP:
    """LP++: visual prototypes plus a class-wise blend of the text weights, step sizes from its bounds."""

    select = "val"

    def __init__(self, prior: Prior):
        self.prior = prior

    def init(self, task: Task, generator: torch.Generator) -> dict[str, torch.Tensor]:
        w_zs, support = self.prior.weights, task.support
        n_support = support.shape[1]
        with torch.no_grad():
            text = support @ w_zs.T  # (H, M, C) unscaled text logits
            alpha0 = LPP_ALPHA_INIT * _class_means(text, task.support_labels, len(w_zs)).mean(dim=(1, 2))
            self.lr_w = 4 * n_support / torch.linalg.matrix_norm(support, ord=2).square()  # (H,)
            self.lr_alpha = n_support / (4 * text.square().sum(dim=1).amax(dim=1))  # (H,)
            sums = _class_means(support, task.support_labels, len(w_zs)) * task.shots  # (H, C, D) class sums
        return {
            "weight": sums.requires_grad_(True),
            "bias": w_zs.new_zeros(task.draws, len(w_zs)).requires_grad_(True),
            "alpha": alpha0[:, None].repeat(1, len(w_zs)).requires_grad_(True),  # (H, C)
        }

    def logits(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        visual = torch.matmul(x, state["weight"].mT) + state["bias"][:, None]
        return visual + state["alpha"][:, None] * (x @ self.prior.weights.T)

    def penalty(self, state: dict[str, torch.Tensor], task: Task) -> float:
        return 0.0

    def optimizer(self, state: dict[str, torch.Tensor], task: Task, epochs: int) -> HeadSGD:
        return HeadSGD(
            [
                (state["weight"], self.lr_w, MOMENTUM),
                (state["bias"], self.lr_w, MOMENTUM),
                (state["alpha"], self.lr_alpha, 0.0),
            ]
        )


class TipAdapter:
    """Training-free cache model; (alpha, beta) per draw from a grid, by few-shot val accuracy."""

    def __init__(self, prior: Prior, alphas: list[float], betas: list[float]):
        self.prior = prior
        self.alphas, self.betas = sorted(alphas), sorted(betas)

    def logits(self, task: Task, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """(N, D) or (H, N, D) features, (H,) alpha and beta -> (H, N, C) logits."""
        zeroshot = x @ self.prior.weights.T  # cosine to the class weights
        onehot = F.one_hot(task.support_labels, len(self.prior.weights)).to(x.dtype)  # (M, C)
        affinity = torch.matmul(x, task.support.mT)  # (H, N, M)
        cache = torch.exp(-beta[:, None, None] * (1 - affinity)) @ onehot  # (H, N, C)
        return self.prior.logit_scale * (zeroshot + alpha[:, None, None] * cache)

    def choose(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-draw (alpha, beta) from the grid by few-shot val, candidates ordered from the zero-shot
        classifier outwards (alpha, then beta, ascending), kept by `earliest_within_noise`."""
        grid = [(a, b) for a in self.alphas for b in self.betas]
        ones = task.val.new_ones(task.draws)
        hits = torch.stack(
            [head_hits(self.logits(task, task.val, a * ones, b * ones), task.val_labels) for a, b in grid]
        )  # (G, H, V)
        pairs = torch.tensor(grid, dtype=task.val.dtype)[earliest_within_noise(hits)]  # (H, 2)
        return pairs[:, 0].to(ones), pairs[:, 1].to(ones)

    def run(self, task: Task, test: torch.Tensor, test_labels: torch.Tensor) -> MethodResult:
        alpha, beta = self.choose(task)
        # one draw at a time: the (N, M) test-to-cache affinity of every draw at once can be large
        acc = torch.cat(
            [
                head_accuracy(
                    self.logits(_one_draw(task, h), test, alpha[h : h + 1], beta[h : h + 1]), test_labels
                )
                for h in range(task.draws)
            ]
        )
        return MethodResult(acc, choice={"alpha": alpha.cpu(), "beta": beta.cpu()})


def _one_draw(task: Task, h: int) -> Task:
    return Task(
        task.shots,
        task.support[h : h + 1],
        task.support_labels,
        task.val[h : h + 1],
        task.val_labels,
        task.support_index[h : h + 1],
        task.val_index[h : h + 1],
    )


def run_method(
    name: str,
    cfg: FewshotParams,
    prior: Prior,
    task: Task,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    generator: torch.Generator,
) -> MethodResult:
    """Run method `name` on every draw of `task`; the test split only scores the already chosen model."""
    if name == "tip":
        return TipAdapter(prior, cfg.tip.alphas, cfg.tip.betas).run(task, test, test_labels)
    method = TRAINED[name](prior, cfg)
    trace = train_heads(
        method, task, test, test_labels, epochs=cfg.epochs, eval_every=cfg.eval_every, generator=generator
    )
    return MethodResult(trace.selected(method.select), trace=trace)


TRAINED: dict[str, Callable[[Prior, FewshotParams], object]] = {
    "random": lambda prior, cfg: LinearHead(prior, "random", cfg.linear.lr, cfg.linear.weight_decay),
    "zeroshot": lambda prior, cfg: LinearHead(prior, "zeroshot", cfg.linear.lr, cfg.linear.weight_decay),
    "clap": lambda prior, cfg: Clap(prior, cfg.clap.lr),
    "lpp": lambda prior, cfg: LinearProbePP(prior),
}
METHODS = (*TRAINED, "tip")
