"""Means with 95% intervals, and paired differences, over the noise sources of a measurement (numpy only).

Every headline figure is a mean over training seeds. A seed's figure is itself noisy: the test split is a
finite sample of images and, for few-shot, the support sets are a sample of draws. Intervals count the
sources each figure has:
- `t_interval`: Student-t over independent values (decoder scores: one number per seed; draws of a seed).
- `crossed_interval`: a (runs, images) table of per-image scores, runs crossed with the same test images;
  runs are seeds (each averaged over its draws) or, within one seed, draws.
A comparison of two methods is the same estimate on the table of their per-image differences (paired), and
`claim` says how it reads: which is ahead beyond noise, or "not distinguishable", and in how many seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit  # Student t quantile; scipy.stats takes seconds to import

LEVEL = 0.975  # two-sided 95%


def t_interval(values: np.ndarray) -> tuple[float, float | None]:
    """Mean of independent values (one per seed, or per draw) and the half-width of its 95% t-interval
    (None for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None
    return mean, float(stdtrit(len(values) - 1, LEVEL) * values.std(ddof=1) / math.sqrt(len(values)))


def crossed_interval(table: np.ndarray) -> tuple[float, float]:
    """Mean of a (R, N) table of per-image scores (R runs x N test images) and the half-width of its 95%
    interval over *both* the runs and the images.

    The table is a crossed design, d = mean + run + image + interaction: the variance of its mean is
    var(run) / R + var(image) / N + var(interaction) / (R N). The column means' variance over N estimates the
    last two terms together; the row means' variance holds var(run) plus var(interaction) / N, and the
    residual mean square (with (R - 1)(N - 1) degrees of freedom, so it is sharp) estimates var(interaction),
    so var(run) is estimated as their difference, floored at 0. (Subtracting the interaction from the sum
    instead is unbiased too, but with 3 runs it can collapse the whole interval below the images' own
    noise.) The t quantile takes Satterthwaite's degrees of freedom. With one run only the images vary.
    """
    table = np.atleast_2d(np.asarray(table, dtype=np.float64))
    n_runs, n_images = table.shape
    rows, columns = table.mean(axis=1), table.mean(axis=0)
    mean = float(table.mean())
    images = columns.var(ddof=1) / n_images
    runs = 0.0
    if n_runs > 1:
        residual = table - rows[:, None] - columns[None, :] + mean
        interaction = np.square(residual).sum() / ((n_runs - 1) * (n_images - 1))
        runs = max(rows.var(ddof=1) - interaction / n_images, 0.0) / n_runs
    if runs + images == 0:
        return mean, 0.0
    dof = (runs + images) ** 2 / (
        (runs**2 / (n_runs - 1) if n_runs > 1 else 0.0) + images**2 / (n_images - 1)
    )
    return mean, float(stdtrit(dof, LEVEL) * math.sqrt(runs + images))


@dataclass(frozen=True)
class Paired:
    """A paired difference a - b, its 95% interval and how many seeds agree with its sign (the report words it:
    report/claims.py)."""

    delta: float
    half: float | None  # None: one value per seed and a single seed, so no interval
    holds: int  # seeds whose own difference has the sign of `delta`
    seeds: int


def claim_from_seeds(a: np.ndarray, b: np.ndarray) -> Paired:
    """a - b from one value per seed each (paired by seed), t-interval over seeds."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    delta, half = t_interval(diff)
    return Paired(delta, half, int((np.sign(diff) == np.sign(delta)).sum()), len(diff))


def claim_from_table(a: np.ndarray, b: np.ndarray) -> Paired:
    """a - b from (R, N) per-image scores on the same test images (R = seeds), crossed interval (with one
    seed, over the test images alone)."""
    diff = np.atleast_2d(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    delta, half = crossed_interval(diff)
    per_seed = diff.mean(axis=1)
    return Paired(delta, half, int((np.sign(per_seed) == np.sign(delta)).sum()), len(diff))
