"""Batched training of few-shot heads: every draw of a shot count is one head of a stacked tensor program.

A method holds its heads as tensors with a leading head axis H, e.g. weights (H, C, D). The loss is the sum
over heads of each head's own mean cross-entropy (plus the method's penalty), so the gradient of a head
depends on its own support set only, and Adam / SGD, which act element by element, update every head
exactly as if it were trained alone. One step costs one batched matmul over all draws; on a GPU the whole
shot count runs at the speed of one head.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from clipprobe import syncs
from clipprobe.errors import ClipprobeError
from clipprobe.probes.fewshot.support import Task

DIVERGED = 100.0  # a training loss this many times its starting value has diverged (a sane lr only lowers it)


class Optimizer(Protocol):
    def zero_grad(self) -> None: ...

    def step(self) -> None: ...


class TrainedMethod(Protocol):
    """A few-shot method trained by gradient steps on the support set (all draws at once)."""

    select: str  # "val": the point chosen on few-shot val (`Trace.chosen`); "last": the final epoch
    drivers: str  # the params a divergence of its training names ("fewshot.linear.lr (got 0.001)")
    pre_projection: bool  # trains on the features before CLIP's last projection (Task.support_pre, ...)
    views: int  # augmented views it cycles through, one per epoch (`epoch_support`); 0: the clean features
    batch_size: int | None  # minibatch rows per step (`minibatches`); None: the whole support set

    def init(self, task: Task, generator: torch.Generator) -> dict[str, torch.Tensor]: ...

    def logits(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """(N, D) shared or (H, N, D) per-head L2-normalised features -> (H, N, C) logits."""

    def penalty(self, state: dict[str, torch.Tensor], task: Task) -> torch.Tensor | float: ...

    def optimizer(self, state: dict[str, torch.Tensor], task: Task, epochs: int) -> Optimizer: ...


class HeadSGD:
    """SGD with momentum whose step size is a per-head (H,) tensor, times an optional schedule of the step.

    A group is (parameter with leading head axis, (H,) step size, momentum, every): its buffer gathers
    `momentum * buffer + gradient` at every step, and the parameter moves by it only every `every`-th step.
    Momentum 1 with every 10 is LP++'s update of its blending weights: a gradient that accumulates and is
    never zeroed, applied every 10 epochs.
    """

    def __init__(
        self,
        groups: list[tuple[torch.Tensor, torch.Tensor, float, int]],
        schedule: Callable[[int], float] = lambda step: 1.0,
    ):
        self.groups = groups
        self.buffers = [torch.zeros_like(p) for p, *_ in groups]
        self.schedule, self.n_step = schedule, 0

    def zero_grad(self) -> None:
        for p, *_ in self.groups:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        factor = self.schedule(self.n_step)
        self.n_step += 1
        for (p, lr, momentum, every), buf in zip(self.groups, self.buffers, strict=True):
            buf.mul_(momentum).add_(p.grad)
            if self.n_step % every == 0:
                p.sub_(factor * lr.view(-1, *[1] * (p.ndim - 1)) * buf)


class HeadAdamW:
    """AdamW (torch's defaults: betas 0.9 / 0.999, eps 1e-8, decoupled decay), element-wise so heads stay
    independent, with an optional schedule of the step (a factor of lr, as HeadSGD's). `lr` is one step size
    or an (H,) tensor, one per head (several step sizes trained as one stack). Written out because
    torch.optim's first step imports torch._dynamo (seconds on a CPU)."""

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: float | torch.Tensor,
        weight_decay: float,
        betas=(0.9, 0.999),
        eps=1e-8,
        schedule: Callable[[int], float] = lambda step: 1.0,
    ):
        self.params, self.lr, self.weight_decay, self.betas, self.eps = params, lr, weight_decay, betas, eps
        self.schedule = schedule
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.n_step = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lr = self.lr * self.schedule(self.n_step)
        self.n_step += 1
        beta1, beta2 = self.betas
        correction1, correction2 = 1 - beta1**self.n_step, 1 - beta2**self.n_step
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            p.mul_(_per_head(1 - lr * self.weight_decay, p))
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v / correction2).sqrt_().add_(self.eps)
            p.addcdiv_(m * _per_head(-lr / correction1, p), denom)


def _per_head(factor: float | torch.Tensor, p: torch.Tensor) -> float | torch.Tensor:
    """A float64 factor (a float, or one per head) as `p` multiplies it: rounded to p's dtype once, so a head
    with step size lr in a stack gets exactly the bytes it gets alone."""
    return factor.to(p.dtype).view(-1, *[1] * (p.ndim - 1)) if torch.is_tensor(factor) else factor


def best_latest(hits: torch.Tensor) -> torch.Tensor:
    """(E, H, V) per-image val hits at E evaluation points -> (H,) index of the best point, ties to the later.

    The rule of LP++'s official code (`acc_val >= best_acc`) for every method that keeps a val-chosen epoch:
    with 1-16 val images per class many points tie, and the later one has trained longest.
    """
    correct = hits.sum(dim=-1)  # (E, H)
    return len(correct) - 1 - correct.flip(0).argmax(dim=0)  # argmax returns the first maximum


@dataclass
class Trace:
    """Val and test hits of every head at each evaluation point (epoch 0 = the initialisation, before any step)."""

    epochs: list[int]
    val_hits: torch.Tensor  # (E, H, V) bool, per few-shot val image, on the CPU
    test_hits: torch.Tensor  # (E, H, N) bool, per test image, on the CPU
    state: dict[str, torch.Tensor] | None = None  # the heads' parameters after the last epoch

    @property
    def val(self) -> torch.Tensor:
        """(E, H) few-shot val accuracy."""
        return self.val_hits.double().mean(dim=-1)

    @property
    def test(self) -> torch.Tensor:
        """(E, H) test accuracy, float64."""
        return self.test_hits.double().mean(dim=-1)

    def chosen(self, select: str) -> torch.Tensor:
        """(H,) index of the kept evaluation point: "last", or "val": `best_latest` over epochs."""
        if select == "last":
            return torch.full((self.test_hits.shape[1],), len(self.epochs) - 1)
        return best_latest(self.val_hits)

    def split(self, copies: int) -> list[Trace]:
        """A stacked run (`Task.repeat`) as one trace per copy."""
        state = self.state or {}
        parts = [
            (val, test, {name: t.chunk(copies)[i] for name, t in state.items()})
            for i, (val, test) in enumerate(
                zip(self.val_hits.chunk(copies, dim=1), self.test_hits.chunk(copies, dim=1), strict=True)
            )
        ]
        return [Trace(self.epochs, val, test, own or None) for val, test, own in parts]

    def selected(self, select: str) -> torch.Tensor:
        """(H, N) test hits of the kept evaluation point per head."""
        return self.test_hits[self.chosen(select), torch.arange(self.test_hits.shape[1])]


def best_of_runs(traces: list[Trace]) -> tuple[Trace, torch.Tensor]:
    """Per head, the run (one per step size, in ascending order) whose best few-shot val point is best, ties to
    the earlier run: its (E, H, ...) hits and final state, and the (H,) index of the run kept. Within the kept
    run `Trace.chosen("val")` then picks that best point, ties to the later epoch."""
    best = torch.stack([trace.val_hits.sum(dim=-1).amax(dim=0) for trace in traces])  # (L, H)
    pick = best.argmax(dim=0)  # the first maximum: the smaller step size
    heads = torch.arange(len(pick))

    def gather(hits: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(hits)[pick, :, heads].transpose(0, 1)  # (L, E, H, V) -> (E, H, V)

    state = {
        name: torch.stack([traces[p].state[name][h] for h, p in enumerate(pick.tolist())])
        for name in traces[0].state
    }
    trace = Trace(
        traces[0].epochs, gather([t.val_hits for t in traces]), gather([t.test_hits for t in traces]), state
    )
    return trace, pick


def head_hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(H, N, C) logits, (N,) labels -> (H, N) bool top-1 hits on the CPU. Overwrites `logits`.

    A hit is a true-class logit above every other logit (an exact tie counts as a miss, where argmax would
    take the first class): two max-reductions, 2-3x faster than argmax over a short class axis on a CPU.
    """
    index = labels.expand(*logits.shape[:-1])[..., None]  # (H, N, 1)
    true = logits.gather(-1, index).squeeze(-1)  # (H, N)
    rival = logits.scatter_(-1, index, -math.inf).amax(dim=-1)  # best other class, in place
    return syncs.host(true > rival, what="few-shot: hits")[0]


def minibatches(n_support: int, batch_size: int | None) -> tuple[int, int]:
    """(steps per epoch, rows per step) of Dassl's train loader, which CLAP and CoOp train with: batches of
    `batch_size`, the last incomplete one dropped, or one batch of everything when there are fewer rows."""
    if batch_size is None or n_support < batch_size:
        return 1, n_support
    return n_support // batch_size, batch_size


def epoch_support(task: Task, pre_projection: bool, views: int, epoch: int) -> torch.Tensor:
    """(H, M, D) support features of one epoch: the clean ones, or with `views` (and cached views), augmented
    view `epoch mod min(views, cached)` of every image, L2-normalised like the clean features."""
    bank = task.support_views_pre if pre_projection else task.support_views
    if views == 0 or bank is None:
        return task.support_pre if pre_projection else task.support
    x = bank[epoch % min(views, len(bank))]
    return x if pre_projection else F.normalize(x, dim=-1)


def eval_points(epochs: int, eval_every: int) -> list[int]:
    """Epochs after which the heads are evaluated: 0, eval_every, 2 * eval_every, ..., and always the last."""
    return sorted({*range(0, epochs + 1, eval_every), epochs})


def train_heads(
    method: TrainedMethod,
    task: Task,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    epochs: int,
    eval_every: int,
    generator: torch.Generator,
    test_pre: torch.Tensor | None = None,
) -> Trace:
    """Training of all draws of `task` for `epochs` passes over the support set, in one full batch or in the
    method's minibatches, on the clean features or on the method's augmented views.

    Parameters
    ----------
    test: (N, D) L2-normalised test features on the task's device; test_labels: (N,); test_pre: (N, P) their
    pre-projection features, for methods that train on those.

    Returns the few-shot val and test hits of every head at each of `eval_points(epochs, eval_every)`.
    The steps never read the device on the host: the declared syncs (`syncs.host`) come at the evaluation
    points only (the hits, the divergence check).
    """
    val = task.val_pre if method.pre_projection else task.val
    test = test_pre if method.pre_projection else test
    state = method.init(task, generator)
    opt = method.optimizer(state, task, epochs)
    points = eval_points(epochs, eval_every)
    n_heads, n_support = task.support.shape[:2]
    steps, rows = minibatches(n_support, method.batch_size)
    val_hits, test_hits = [], []
    for epoch in range(epochs + 1):
        if epoch in points:
            with torch.no_grad():
                val_hits.append(head_hits(method.logits(state, val), task.val_labels))
                test_hits.append(head_hits(method.logits(state, test), test_labels))
        if epoch == epochs:
            break
        support = epoch_support(task, method.pre_projection, method.views, epoch)
        # each head its own shuffle of its support set per epoch (only when it is cut into batches)
        # drawn on the host (the same on every device) and moved once per epoch, without waiting
        order = (
            None
            if rows == n_support
            else syncs.to_device(
                torch.rand(n_heads, n_support, generator=generator).argsort(dim=1), support.device
            )
        )
        for step in range(steps):
            if order is None:
                x, targets = support, task.support_labels.repeat(n_heads)  # the same classes for every draw
            else:
                index = order[:, step * rows : (step + 1) * rows]  # (H, B)
                x = support.gather(1, index[..., None].expand(-1, -1, support.shape[-1]))
                targets = task.support_labels[index].flatten()
            logits = method.logits(state, x)  # (H, B, C)
            # sum over heads of each head's mean cross-entropy: heads stay independent
            loss = F.cross_entropy(logits.flatten(0, 1), targets, reduction="sum") / rows
            loss = loss + method.penalty(state, task)
            if epoch == 0 and step == 0:
                start_loss = loss.detach()
            if epoch + 1 in points and step == steps - 1:  # checked at evaluation points only
                ok, now, start = syncs.host(
                    loss.detach() <= DIVERGED * start_loss,
                    loss.detach(),
                    start_loss,
                    what="few-shot: divergence",
                )
                if not ok:  # NaN fails too
                    raise ClipprobeError(
                        f"{method.drivers}: few-shot training diverged (loss {now.item():.3g} by epoch {epoch + 1}, "
                        f"{start.item():.3g} at the start); lower the learning rate"
                    )
            opt.zero_grad()
            loss.backward()
            opt.step()
    final = {name: value.detach() for name, value in state.items()}
    return Trace(points, torch.stack(val_hits), torch.stack(test_hits), final)
