"""The one training length every decoder gets: until its validation score stops improving.

The rule, the same for every model of a comparison and on the same validation images: after each epoch the
val score is recorded; a run is *flat* when the best score of its last ⌈E/4⌉ epochs (E epochs so far, and at
least `patience` of them) improves on the best of the epochs before by less than `tolerance` (relative).
The learning rate warms up linearly over the first epoch and then holds; the first time the run is flat
it drops by `lr_decay` (a model that has stopped improving at one step size settles at a smaller one), and
the first time it is flat again after a full window at the smaller step, training stops. The weights kept are the best val epoch's. So every curve ends flat over at
least its last quarter. A run that reaches `max_epochs` first stops there and says so (`capped`): the
report shows it as a model that did not reach its plateau, never as one that did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # params.py reads PlateauRule without importing torch
    import torch


@dataclass(frozen=True)
class PlateauRule:
    patience: int  # the fewest epochs a flat stretch spans
    tolerance: float  # a relative improvement below this is no improvement (0.01: 1%)
    lr_decay: float  # the factor on the learning rate at the first plateau
    max_epochs: int  # the cap


def window(epochs: int, patience: int) -> int:
    """How many of the last epochs must show no improvement: a quarter of the run, at least `patience`."""
    return max(patience, math.ceil(epochs / 4))


def is_flat(scores: list[float], rule: PlateauRule, higher_is_better: bool) -> bool:
    """Whether the last `window` epochs improved on the best before them by less than `rule.tolerance`."""
    last = window(len(scores), rule.patience)
    if len(scores) <= last:
        return False
    pick = max if higher_is_better else min
    before, recent = pick(scores[:-last]), pick(scores[-last:])
    gain = (recent - before) if higher_is_better else (before - recent)
    return gain <= rule.tolerance * abs(before)


@dataclass
class Plateau:
    """Tracks one run: the step size of each step, the epoch to stop after, the best epoch so far."""

    rule: PlateauRule
    higher_is_better: bool
    lr: float  # the peak learning rate
    steps_per_epoch: int
    scores: list[float] = field(default_factory=list)
    decayed_at: int | None = None  # the epoch after which the learning rate dropped
    capped: bool = False  # stopped by max_epochs before its plateau

    def set_lr(self, optimiser: torch.optim.Optimizer, step: int) -> None:
        for group in optimiser.param_groups:
            group["lr"] = self.lr_at(step)

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step `step` (0-based): warm-up over the first epoch, then held,
        times `lr_decay` after the first plateau."""
        warm = min(1.0, (step + 1) / self.steps_per_epoch)
        return self.lr * warm * (self.rule.lr_decay if self.decayed_at is not None else 1.0)

    def end_epoch(self, score: float) -> bool:
        """Record an epoch's val score; True when training should stop after it."""
        self.scores.append(score)
        epochs = len(self.scores)
        if is_flat(self.scores, self.rule, self.higher_is_better):
            if self.decayed_at is None:
                self.decayed_at = epochs
            elif epochs - self.decayed_at >= window(
                epochs, self.rule.patience
            ):  # the smaller step had its turn
                return True
        if epochs >= self.rule.max_epochs:
            self.capped = True
            return True
        return False

    @property
    def is_best(self) -> bool:
        """Whether the epoch just recorded is the best so far (ties: the earlier stays best)."""
        return self.best_epoch == len(self.scores)

    @property
    def best_epoch(self) -> int:
        """The 1-based epoch with the best val score (ties: the earlier)."""
        pick = max if self.higher_is_better else min
        return self.scores.index(pick(self.scores)) + 1
