"""Few-shot tasks: K labelled train images per class (the support set) and a small few-shot val set.

Every draw of a shot count is one task; the draws of one shot count are stacked into a `Task`, and every
method sees the same tasks, so comparisons between methods are paired. Rows are ordered class by class, so
the label vector is the same for every draw. The random streams depend only on (seed, K, purpose), never on
which other shot counts run: `shots: 4` alone reproduces the 4-shot numbers of the full sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from clipprobe.cpu.half import from_half
from clipprobe.errors import ClipprobeError

_SUPPORT_STREAM, _VAL_STREAM = 0, 1  # per-purpose offsets of the random streams


@dataclass
class Task:
    """All draws of one shot count, stacked: H = draws, M = K * C support rows, V few-shot val rows."""

    shots: int
    support: torch.Tensor  # (H, M, D) L2-normalised train features
    support_labels: torch.Tensor  # (M,) shared by every draw
    val: torch.Tensor  # (H, V, D) L2-normalised val features
    val_labels: torch.Tensor  # (V,)
    support_index: torch.Tensor  # (H, M) rows of the train split (for tests and provenance)
    val_index: torch.Tensor  # (H, V) rows of the val split
    support_pre: torch.Tensor | None = None  # (H, M, P) the support's pre-projection features, when cached
    val_pre: torch.Tensor | None = None  # (H, V, P)
    support_views: torch.Tensor | None = None  # (A, H, M, D) raw features of A augmented views, when cached
    support_views_pre: torch.Tensor | None = None  # (A, H, M, P) their pre-projection features (view-major:
    # one view of every draw is one contiguous block, what a training epoch reads)

    @property
    def draws(self) -> int:
        return self.support.shape[0]

    def draw(self, h: int) -> Task:
        """Draw h alone, as a task of one draw."""
        return self.heads(slice(h, h + 1))

    def heads(self, one: slice) -> Task:
        """The draws of `one`, as a task of their own."""
        return self._per_draw(lambda t, axis: t[(slice(None),) * axis + (one,)])

    def repeat(self, copies: int) -> Task:
        """Every draw `copies` times along the head axis (copy-major): one stacked run of several settings."""
        return self._per_draw(lambda t, axis: torch.cat([t] * copies, dim=axis))

    def _per_draw(self, change: Callable[[torch.Tensor, int], torch.Tensor]) -> Task:
        """This task with `change(tensor, its head axis)` applied to every tensor that has one per draw."""
        axes = {name: 0 for name in _HEADS_FIRST} | {name: 1 for name in _VIEWS}
        tensors = {name: getattr(self, name) for name in axes}
        return replace(self, **{n: change(t, axes[n]) for n, t in tensors.items() if t is not None})


_HEADS_FIRST = ("support", "val", "support_index", "val_index", "support_pre", "val_pre")  # (H, ...)
_VIEWS = ("support_views", "support_views_pre")  # (A, H, ...)


def check_shots(shots: Sequence[int], labels: torch.Tensor, n_classes: int) -> None:
    """Every shot count must fit the smallest train class; one line names the limit and the class."""
    counts = torch.bincount(labels, minlength=n_classes)
    smallest = int(counts.argmin())
    bad = [k for k in shots if k < 1 or k > counts[smallest]]
    if bad:
        raise ClipprobeError(
            f"shots: each shot count must be between 1 and {int(counts[smallest])}, the train images of the "
            f"smallest class (class {smallest}) (got {bad[0]})"
        )


def sample_per_class(
    labels: np.ndarray, per_class: int, draws: int, rng: np.random.Generator, n_classes: int
) -> np.ndarray:
    """(draws, n_classes * k) row indices, class by class, k = min(per_class, size of the smallest class).

    Each draw takes k rows of every class uniformly without replacement (Dassl's `generate_fewshot_dataset`).
    """
    by_class = [np.flatnonzero(labels == c) for c in range(n_classes)]
    k = min(per_class, *(len(rows) for rows in by_class))
    if k == 0:
        raise ClipprobeError("val: every class needs at least one val image for the few-shot val set")
    picks = [rows[rng.random((draws, len(rows))).argsort(axis=1)[:, :k]] for rows in by_class]
    return np.concatenate(picks, axis=1)  # (draws, n_classes * k)


def make_task(
    shots: int,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    n_classes: int,
    draws: int,
    val_per_class: int,
    seed: int,
    device: torch.device | str = "cpu",
    pre: tuple[torch.Tensor, torch.Tensor] | None = None,
    views: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
) -> Task:
    """Draw `draws` support sets of `shots` per class from train and few-shot val sets of min(K, val_per_class)
    per class from val (capped by the smallest val class), as one stacked `Task` on `device`.

    train, val: ((N, D) L2-normalised features, (N,) labels) of the train and val splits; pre: their (N, P)
    pre-projection features, gathered for the same rows when given; views: the train split's (A, N, D) and
    (A, N, P) augmented views (any dtype; gathered as float32), when cached.
    """
    (train_x, train_y), (val_x, val_y) = train, val
    check_shots([shots], train_y, n_classes)
    support_rng = np.random.default_rng([seed, shots, _SUPPORT_STREAM])
    val_rng = np.random.default_rng([seed, shots, _VAL_STREAM])
    support_index = sample_per_class(train_y.numpy(), shots, draws, support_rng, n_classes)
    val_index = sample_per_class(val_y.numpy(), min(shots, val_per_class), draws, val_rng, n_classes)
    support_index, val_index = torch.from_numpy(support_index), torch.from_numpy(val_index)
    return Task(
        shots=shots,
        support=train_x[support_index].to(device),
        support_labels=train_y[support_index[0]].to(device),
        val=val_x[val_index].to(device),
        val_labels=val_y[val_index[0]].to(device),
        support_index=support_index,
        val_index=val_index,
        support_pre=None if pre is None else pre[0][support_index].to(device),
        val_pre=None if pre is None else pre[1][val_index].to(device),
        support_views=_gather_views(views[0], support_index, device),
        support_views_pre=_gather_views(views[1], support_index, device),
    )


def _gather_views(views: torch.Tensor | None, index: torch.Tensor, device) -> torch.Tensor | None:
    """(A, N, F) views, (H, M) rows -> (A, H, M, F) float32 on `device`."""
    return None if views is None else from_half(views[:, index]).to(device)


def class_means(values: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(H, M, F) per-row values -> (H, C, F) mean over the rows of each class."""
    onehot = F.one_hot(labels, n_classes).to(values.dtype)  # (M, C)
    return onehot.T @ values / onehot.sum(dim=0)[:, None]
