"""Intervals by hand: t over seeds, the crossed runs x images design, and how a claim is worded."""

import numpy as np
import pytest

from clipprobe.report.claims import Claim
from clipprobe.stats import claim_from_seeds, claim_from_table, crossed_interval, t_interval


def test_crossed_interval_counts_runs_and_test_images():
    reference = np.array([0, 1, 0, 0])
    hits = np.array([[1, 1, 0, 0], [1, 0, 1, 0]])
    # differences [[1, 0, 0, 0], [1, -1, 1, 0]]: equal row means, so no run variance; column means
    # [1, -0.5, 0.5, 0] (variance 5/12, over 4 images 5/48): dof 3
    mean, half = crossed_interval(hits - reference)
    assert mean == pytest.approx(0.25) and half == pytest.approx(3.182446305284263 * np.sqrt(5 / 48))
    # differences [[1, 0], [0, 0]]: row variance 1/8 is all interaction (residual mean square 1/4, over 2
    # images 1/8), so var(run) = 0; column means' variance 1/8 over 2 images: 1/16, dof 1
    mean, half = crossed_interval(np.array([[1, 0], [0, 0]]))
    assert mean == pytest.approx(0.25) and half == pytest.approx(12.706204736174705 * 0.25)
    # runs that disagree widen the interval beyond what their average shows over the images alone
    disagree = np.array([[1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 0]])
    assert crossed_interval(disagree)[1] > crossed_interval(disagree.mean(axis=0, keepdims=True))[1]
    assert crossed_interval(hits - hits) == (0.0, 0.0)
    assert (
        crossed_interval(hits[:, :2] - reference[:2])[1]
        > crossed_interval(np.tile(hits[:, :2] - reference[:2], 8))[1]
    )


def test_one_run_is_the_interval_over_images_alone():
    mean, half = crossed_interval(np.array([[1, 0, 1, 1]]))
    assert mean == 0.75 and half == pytest.approx(3.182446305284263 * 0.5 / 2)  # t(3) * sd / sqrt(4)


def test_t_interval_over_seeds():
    mean, half = t_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0 and half == pytest.approx(4.302652729911275 / np.sqrt(3))
    assert t_interval(np.array([5.0])) == (5.0, None)


def _worded(paired) -> Claim:
    return Claim(paired.delta, paired.half, paired.holds, paired.seeds)


def test_claims_say_a_winner_only_beyond_noise():
    ahead = _worded(claim_from_seeds(np.array([0.30, 0.31, 0.32]), np.array([0.20, 0.20, 0.21])))
    assert ahead.distinguishable and ahead.holds == 3
    assert ahead.words("A", "B").startswith("A is ahead of B by 10.67 ± ")
    assert ahead.words("A", "B").endswith(" points (3 of 3 seeds)")
    mixed = _worded(claim_from_seeds(np.array([0.30, 0.10, 0.22]), np.array([0.20, 0.20, 0.21])))
    assert not mixed.distinguishable and mixed.holds == 2  # differences +0.10, -0.10, +0.01
    assert mixed.words("A", "B").startswith("A and B are not distinguishable (+0.33 ± ")
    single = Claim(0.1, None, 1, 1)
    assert not single.distinguishable and "no interval: one seed" in single.words("A", "B")


def test_table_claims_pair_by_image_and_count_seeds():
    a = np.array([[1, 1, 1, 0], [1, 1, 0, 1]])
    b = np.array([[0, 1, 0, 0], [1, 0, 0, 0]])
    claim = claim_from_table(a, b)
    assert claim.delta == pytest.approx(0.5) and claim.holds == 2 and claim.seeds == 2
