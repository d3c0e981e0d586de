"""The one training length every decoder gets: a whole cosine schedule, to its validation plateau.

The rule, the same for every model of a comparison and on the same validation images: the learning rate
warms up linearly over the first epoch and then follows a cosine from its peak towards zero over
`max_epochs` epochs (one value per epoch), as fast trainers do, and every run trains all of them: no early
stop, because a curve that pauses at a large step size can still be rising (UNet11 did, stopped at a third
of its peak step size). The weights kept are the best val epoch's. The run is then checked: it is *flat*
when the best score of its last ⌈E/5⌉ epochs improves on the best of the E epochs before by less than
`tolerance` (relative). A run that is not flat says so (`rising`): the report shows it as a model that did
not reach its plateau within the schedule, never as one that did.
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
    tolerance: float  # a relative improvement below this is no improvement (0.01: 1%)
    max_epochs: int  # the cosine schedule's length: every run trains all of it


def window(epochs: int) -> int:
    """How many of the last epochs must show no improvement: a fifth of the run."""
    return math.ceil(epochs / 5)


def is_flat(scores: list[float], rule: PlateauRule, higher_is_better: bool) -> bool:
    """Whether the last `window` epochs improved on the best before them by less than `rule.tolerance`."""
    last = window(len(scores))
    if len(scores) <= last:
        return False
    pick = max if higher_is_better else min
    before, recent = pick(scores[:-last]), pick(scores[-last:])
    gain = (recent - before) if higher_is_better else (before - recent)
    return gain <= rule.tolerance * abs(before)


@dataclass
class Plateau:
    """Tracks one run: the step size of each step, the best epoch and its weights, and whether it ended flat."""

    rule: PlateauRule
    higher_is_better: bool
    lr: float  # the peak learning rate
    steps_per_epoch: int
    scores: list[float] = field(default_factory=list)
    rising: bool = False  # its last fifth still improved by `tolerance` or more: short of its plateau
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

    def end_epoch(self, score: float, model: torch.nn.Module) -> None:
        """Record an epoch's val score, keeping `model`'s weights if it is the best so far; after the
        schedule's last epoch, `rising` says whether the run ended short of its plateau."""
        self.scores.append(score)
        if self.best_epoch == len(self.scores):
            self.best_state = copy.deepcopy(model.state_dict())
        if len(self.scores) == self.rule.max_epochs:
            self.rising = not is_flat(self.scores, self.rule, self.higher_is_better)

    def restore_best(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.best_state)

    @property
    def best_epoch(self) -> int:
        """The 1-based epoch with the best val score (ties: the earlier)."""
        pick = max if self.higher_is_better else min
        return self.scores.index(pick(self.scores)) + 1
