"""The one training length every decoder gets: until its validation score stops improving.

The rule, the same for every model of a comparison and on the same validation images: the learning rate
warms up linearly over the first epoch and then follows a cosine from its peak towards zero over
`max_epochs` epochs (one value per epoch), so that every run settles within its budget, as fast trainers
do. After each epoch the val score is recorded; a run is *flat* when the best score of its last ⌈E/5⌉
epochs (E epochs so far, and at least `patience` of them) improves on the best of the epochs before by
less than `tolerance` (relative). Training stops at the first flat stretch in the second half of the
schedule (earlier, at a large step size, a noisy curve can pause while it is still rising), so every curve
ends flat over at least its last fifth. The weights kept are the best val epoch's. A run that reaches `max_epochs`
without a flat end stops there and says so (`capped`): the report shows it as a model that did not reach
its plateau, never as one that did.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # params.py reads PlateauRule without importing torch
    import torch


@dataclass(frozen=True)
class PlateauRule:
    patience: int  # the fewest epochs a flat stretch spans
    tolerance: float  # a relative improvement below this is no improvement (0.01: 1%)
    max_epochs: int  # the cosine schedule's length, and the cap


def window(epochs: int, patience: int) -> int:
    """How many of the last epochs must show no improvement: a fifth of the run, at least `patience`."""
    return max(patience, math.ceil(epochs / 5))


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
    """Tracks one run: the step size of each step, the epoch to stop after, the best epoch and its weights."""

    rule: PlateauRule
    higher_is_better: bool
    lr: float  # the peak learning rate
    steps_per_epoch: int
    scores: list[float] = field(default_factory=list)
    capped: bool = False  # stopped by max_epochs before its plateau
    best_state: dict | None = None  # a copy of the weights of the best val epoch so far

    def set_lr(self, optimiser: torch.optim.Optimizer, step: int) -> None:
        for group in optimiser.param_groups:
            group["lr"] = self.lr_at(step)

    def lr_at(self, step: int) -> float:
        """The learning rate of optimiser step `step` (0-based): linear warm-up over the first epoch, times
        the cosine factor of the step's epoch."""
        warm = min(1.0, (step + 1) / self.steps_per_epoch)
        epoch = step // self.steps_per_epoch
        return self.lr * warm * 0.5 * (1 + math.cos(math.pi * epoch / self.rule.max_epochs))

    def end_epoch(self, score: float, model: torch.nn.Module) -> bool:
        """Record an epoch's val score (keeping `model`'s weights if it is the best so far); True when
        training should stop after it."""
        self.scores.append(score)
        if self.best_epoch == len(self.scores):
            self.best_state = copy.deepcopy(model.state_dict())
        past_half = 2 * len(self.scores) >= self.rule.max_epochs
        if past_half and is_flat(self.scores, self.rule, self.higher_is_better):
            return True
        self.capped = len(self.scores) >= self.rule.max_epochs
        return self.capped

    def restore_best(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.best_state)

    @property
    def best_epoch(self) -> int:
        """The 1-based epoch with the best val score (ties: the earlier)."""
        pick = max if self.higher_is_better else min
        return self.scores.index(pick(self.scores)) + 1
