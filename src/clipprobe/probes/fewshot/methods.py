"""Trained few-shot methods on cached features, each batched over the draws of one shot count (heads, axis H).

Every method starts from the same prior, the zero-shot classifier: unit-norm class weights W_zs (C, D) from
the template ensemble and CLIP's logit scale s. Features are L2-normalised.

- `random` / `zeroshot` (the report's comparison): logits = s * x W^T + b, W from N(0, 0.01^2) or W = W_zs
  (b = 0), trained with the same plain AdamW recipe. At step 0 the zeroshot head *is* the zero-shot classifier.
- `clap` (Silva-Rodriguez et al., CVPR'24; jusiro/CLAP): the zero-shot-initialised cosine classifier
  s * x normalise(P)^T plus CLAP's class-wise pull mean_c lambda_c ||P_c - t_c||^2, lambda_c = the zero-shot
  softmax probability of class c on its own support images. Validation-free: SGD (momentum 0.9) in minibatches
  of 256, one warm-up epoch then a cosine, on augmented views; the last epoch is kept.
- `lpp` (LP++, Huang et al., CVPR'24; FereshteShakeri/FewShot-CLIP-Strong-Baseline): logits =
  x W^T + b + alpha_c * x W_zs,c^T, W starting at the class sums of the support features, alpha at 250 times the
  mean text logit of each class on its own support images; step sizes from the Lipschitz bounds (W, b:
  4 M / lambda_max(S^T S), SGD momentum 0.9; alpha: M / (4 max_c sum_i (x_i . W_zs,c)^2), a step every 10
  epochs by the gradient accumulated since the start), on one augmented view.
`random`, `zeroshot` and `lpp` keep the evaluation point with the best few-shot val accuracy, ties to the
later (`Trace.chosen`).
The training-free methods (Tip-Adapter, GDA) are in `fewshot_closed`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipprobe import syncs
from clipprobe.errors import ClipprobeError
from clipprobe.params import FewshotParams
from clipprobe.probes.fewshot.support import Task, class_means
from clipprobe.probes.fewshot.train import HeadAdamW, HeadSGD, Trace, minibatches
from clipprobe.probes.zeroshot import zeroshot_weights

RANDOM_INIT_STD = 0.01  # std of the random head's weights (on the unit-norm scale of W_zs)
LPP_ALPHA_INIT = 250.0  # LP++: alpha_0 = 250 * mean text logit of a class on its own support images
MOMENTUM = 0.9  # SGD momentum of clap and lpp (both papers' recipes)


@dataclass
class Prior:
    """What every method knows before seeing a support set: the zero-shot classifier."""

    weights: torch.Tensor  # (C, D) unit-norm zero-shot class weights
    logit_scale: float  # CLIP's learnt logit scale (100 for OpenAI CLIP)
    text_norms: torch.Tensor  # (C,) norms of the template-mean raw text embeddings (CLAP's prototype scale)
    # CLIP's last visual projection, image = x_pre W^T + b: W (D, P), b (D,); None without pre-projection features
    projection: tuple[torch.Tensor, torch.Tensor] | None = None


def normalised_split(features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    # normalised here exactly as zeroshot_logits normalises, so the zeroshot head's logits match bit for bit
    return F.normalize(features["image"].float(), dim=-1), features["labels"]


def make_prior(
    text: torch.Tensor, logit_scale: float, projection: dict[str, torch.Tensor] | None, device: torch.device
) -> Prior:
    """What every method starts from: the zero-shot classifier of the (T, C, D) template texts."""
    return Prior(
        zeroshot_weights(text.float()).to(device),
        logit_scale,
        text_norms=text.float().mean(dim=0).norm(dim=-1).to(device),
        projection=None
        if projection is None
        else (projection["weight"].float().to(device), projection["bias"].float().to(device)),
    )


@dataclass
class MethodResult:
    """One method at one shot count: the selected model's test hits per draw and, when trained, its curves."""

    hits: torch.Tensor  # (H, N) bool: test image n classified right by the selected model of draw h
    trace: Trace | None = None  # per-epoch val and test hits (trained methods)
    choice: dict[str, torch.Tensor] | None = None  # hyper-parameters chosen per draw on val (tip, gda)

    @property
    def acc(self) -> torch.Tensor:
        """(H,) test accuracy of the selected model, float64."""
        return self.hits.double().mean(dim=-1)


def _heads(task: Task, tensor: torch.Tensor) -> torch.Tensor:
    """A (C, D) tensor repeated for every draw, as a fresh trainable (H, C, D) leaf."""
    return tensor.expand(task.draws, *tensor.shape).clone().requires_grad_(True)


class LinearHead:
    """logits = s * x W^T + b, plain AdamW, the epoch chosen on few-shot val; subclasses choose W's init.
    The report's recipe: the clean features, full batch."""

    select = "val"
    pre_projection = False
    views = 0
    batch_size = None

    def __init__(self, prior: Prior, cfg: FewshotParams):
        self.prior, self.lr, self.weight_decay = prior, cfg.linear.lr, cfg.linear.weight_decay
        self.drivers = f"fewshot.linear.lr (got {self.lr:g})"

    def init_weight(self, task: Task, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def init(self, task: Task, generator: torch.Generator) -> dict[str, torch.Tensor]:
        bias = self.prior.weights.new_zeros(task.draws, len(self.prior.weights)).requires_grad_(True)
        return {"weight": self.init_weight(task, generator), "bias": bias}

    def logits(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        # (s * W) first, exactly as LinearModel.from_zeroshot, so the zeroshot head reproduces zero-shot logits
        return torch.matmul(x, (self.prior.logit_scale * state["weight"]).mT) + state["bias"][:, None]

    def penalty(self, state: dict[str, torch.Tensor], task: Task) -> float:
        return 0.0

    def optimizer(self, state: dict[str, torch.Tensor], task: Task, epochs: int) -> HeadAdamW:
        return HeadAdamW(list(state.values()), lr=self.lr, weight_decay=self.weight_decay)


class RandomHead(LinearHead):
    """`random` (the report's baseline): W from N(0, RANDOM_INIT_STD^2)."""

    def init_weight(self, task: Task, generator: torch.Generator) -> torch.Tensor:
        w_zs = self.prior.weights
        noise = torch.randn(task.draws, *w_zs.shape, generator=generator, dtype=w_zs.dtype)
        return syncs.to_device(RANDOM_INIT_STD * noise, w_zs.device).requires_grad_(True)


class ZeroshotHead(LinearHead):
    """`zeroshot` (the report's proposal): W = W_zs, so at step 0 the head is the zero-shot classifier."""

    def init_weight(self, task: Task, generator: torch.Generator) -> torch.Tensor:
        return _heads(task, self.prior.weights)


class SweptStep:
    """The same head at every step size of `fewshot.linear.lrs` (ascending), from the same init; per draw the
    step size and epoch with the best few-shot val accuracy are kept (ties: the smaller step, the later epoch):
    the report's heads judged at a step size that does not destroy a good init (`sweep.run_method`). It starts
    from its `base` head's init (the same random stream), so at the base's step size it is the base's run,
    which the sweep reuses."""

    base: str  # the registry name of the head it sweeps

    def __init__(self, prior: Prior, cfg: FewshotParams):
        super().__init__(prior, cfg)
        self.lrs = sorted(cfg.linear.lrs)
        self.stack = self.lrs  # the step sizes one run trains, as copies of the draws (`Task.repeat`)
        self.drivers = f"fewshot.linear.lrs (got {self.lrs})"

    def init(self, task: Task, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The base head's init of the draws, once per step size of the stack."""
        draws = task.draws // len(self.stack)
        state = super().init(task.heads(slice(0, draws)), generator)
        return {
            name: torch.cat([t.detach()] * len(self.stack)).requires_grad_(True) for name, t in state.items()
        }

    def optimizer(self, state: dict[str, torch.Tensor], task: Task, epochs: int) -> HeadAdamW:
        lr = torch.tensor(self.stack, dtype=torch.float64).repeat_interleave(task.draws // len(self.stack))
        return HeadAdamW(list(state.values()), lr=lr.to(task.support.device), weight_decay=self.weight_decay)


class RandomSwept(SweptStep, RandomHead):
    """`random_swept`: the random init at the step size chosen on few-shot val."""

    base = "random"


class ZeroshotSwept(SweptStep, ZeroshotHead):
    """`zeroshot_swept`: the zero-shot init at the step size chosen on few-shot val."""

    base = "zeroshot"


class Clap:
    """ZS-LP (cosine classifier from W_zs) with CLAP's class-wise L2 pull; validation-free, last epoch.

    Its official schedule (jusiro/CLAP configs/trainers/SGD_lr1e-1_B256_ep300.yaml, Dassl's loader): minibatches
    of `batch_size` (the last incomplete one dropped), one epoch of warm-up at a constant `warmup_lr`, then a
    cosine over the epochs, on augmented views (one per epoch). As in CLAP's code the prototypes live at the scale of the raw text embeddings (t_c = |mean raw text_c| *
    W_zs,c): the logits only see their direction, but the balance between the cross-entropy (whose gradient
    shrinks as 1 / |P|) and the pull (which does not) depends on it.
    """

    select = "last"
    pre_projection = False

    def __init__(self, prior: Prior, cfg: FewshotParams):
        self.prior, self.lr, self.warmup_lr = prior, cfg.clap.lr, cfg.clap.warmup_lr
        self.views, self.batch_size = cfg.clap.views, cfg.clap.batch_size
        self.drivers = f"fewshot.clap.lr (got {self.lr:g})"

    def init(self, task: Task, generator: torch.Generator) -> dict[str, torch.Tensor]:
        w_zs, scale = self.prior.weights, self.prior.logit_scale
        with torch.no_grad():
            probs = torch.softmax(scale * task.support @ w_zs.T, dim=-1)  # (H, M, C) zero-shot softmax
            per_class = class_means(probs, task.support_labels, len(w_zs))  # (H, C, C)
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
        steps = minibatches(task.support.shape[1], self.batch_size)[0]
        return HeadSGD(
            [(state["prototypes"], lr, MOMENTUM, 1)], schedule=lambda step: self.factor(step // steps, epochs)
        )

    def factor(self, epoch: int, epochs: int) -> float:
        """The step size of `epoch` as a factor of lr: Dassl's constant warm-up for the first epoch, then the
        cosine of the epoch."""
        if epoch == 0:
            return self.warmup_lr / self.lr
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))


class LinearProbePP:
    """LP++: visual prototypes plus a class-wise blend of the text weights, step sizes from its bounds.

    Its official protocol (FereshteShakeri/FewShot-CLIP-Strong-Baseline methods/linear_probe_p2.py): one
    augmented view of the support set, full batch; the blend moves only every `alpha_every` epochs, by a
    gradient that accumulates from the start and is never zeroed; the best epoch on a val set of K images per
    class (ties to the later).
    """

    select = "val"
    pre_projection = False
    batch_size = None

    def __init__(self, prior: Prior, cfg: FewshotParams):
        self.prior, self.views, self.alpha_every = prior, cfg.lpp.views, cfg.lpp.alpha_every
        self.val_per_class = cfg.lpp.val_per_class
        self.drivers = f"fewshot.epochs (got {cfg.epochs}; LP++ sets its own step sizes)"

    def init(self, task: Task, generator: torch.Generator) -> dict[str, torch.Tensor]:
        w_zs, support = self.prior.weights, task.support
        n_support = support.shape[1]
        if self.views and task.support_views is not None:  # what it trains on: its one augmented view
            support = F.normalize(task.support_views[0], dim=-1)
        with torch.no_grad():
            text = support @ w_zs.T  # (H, M, C) unscaled text logits
            own = class_means(text, task.support_labels, len(w_zs)).diagonal(dim1=1, dim2=2)  # (H, C)
            alpha0 = LPP_ALPHA_INIT * own.mean(dim=1)  # 250 x mean text logit of a class on its own images
            self.lr_w = 4 * n_support / torch.linalg.matrix_norm(support, ord=2).square()  # (H,)
            self.lr_alpha = n_support / (4 * text.square().sum(dim=1).amax(dim=1))  # (H,)
            sums = class_means(support, task.support_labels, len(w_zs)) * task.shots  # (H, C, D) class sums
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
                (state["weight"], self.lr_w, MOMENTUM, 1),
                (state["bias"], self.lr_w, MOMENTUM, 1),
                (state["alpha"], self.lr_alpha, 1.0, self.alpha_every),  # momentum 1: the running sum
            ]
        )


class ProLIP:
    """ProLIP (Fahes et al. 2024; astra-vision/ProLIP): fine-tune CLIP's last visual projection W on the
    pre-projection features, logits = s * normalise(x_pre W^T + b) W_zs^T, with the Frobenius pull
    lambda ||W - W0||^2 to the pretrained projection, lambda = 1 / K for K shots: validation-free. Its
    official recipe: Adam (eps 1e-4) with a cosine schedule, full batch, the bias frozen, the last epoch kept,
    on augmented views (one per epoch). At step 0 W = W0, so the head is the zero-shot classifier.
    """

    select = "last"
    pre_projection = True
    batch_size = None

    def __init__(self, prior: Prior, cfg: FewshotParams):
        if prior.projection is None:
            raise ClipprobeError(
                "fewshot.inits: prolip trains CLIP's last projection and needs the pre-projection features; "
                "set embed.pre_projection to true"
            )
        self.prior, self.lr, self.views = prior, cfg.prolip.lr, cfg.prolip.views
        self.weight0, self.bias = prior.projection
        self.drivers = f"fewshot.prolip.lr (got {self.lr:g})"

    def init(self, task: Task, generator: torch.Generator) -> dict[str, torch.Tensor]:
        self.pull = 1.0 / task.shots
        return {"weight": _heads(task, self.weight0)}

    def logits(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        image = F.normalize(torch.matmul(x, state["weight"].mT) + self.bias, dim=-1)  # (H, N, D)
        return torch.matmul(image, (self.prior.logit_scale * self.prior.weights).T)

    def penalty(self, state: dict[str, torch.Tensor], task: Task) -> torch.Tensor:
        return self.pull * (state["weight"] - self.weight0).square().sum()  # each head's own pull, summed

    def optimizer(self, state: dict[str, torch.Tensor], task: Task, epochs: int) -> HeadAdamW:
        cosine = lambda step: 0.5 * (1 + math.cos(math.pi * step / epochs))  # noqa: E731
        return HeadAdamW([state["weight"]], lr=self.lr, weight_decay=0.0, eps=1e-4, schedule=cosine)
