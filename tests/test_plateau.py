"""The plateau rule every decoder trains by: a whole cosine schedule, then a check that its last fifth is flat."""

from __future__ import annotations

import math

import pytest
import torch

from clipprobe.plateau import Plateau, PlateauRule, is_flat, window
from clipprobe.report.claims import stability_words

RULE = PlateauRule(tolerance=0.01, max_epochs=100)


def _run(scores: list[float], higher_is_better: bool = True) -> Plateau:
    """Train len(scores) epochs, the whole schedule, each epoch's weights carrying its score."""
    rule = PlateauRule(tolerance=0.01, max_epochs=len(scores))
    plateau, model = Plateau(rule, higher_is_better, lr=1e-3, steps_per_epoch=10), torch.nn.Linear(1, 1)
    for score in scores:
        with torch.no_grad():
            model.bias.fill_(score)
        plateau.end_epoch(score, model)
    plateau.restore_best(model)
    assert model.bias.item() == pytest.approx(scores[plateau.best_epoch - 1])
    return plateau


def test_window_is_a_fifth_of_the_run():
    assert [window(e) for e in (1, 5, 8, 16, 50, 100)] == [1, 1, 2, 4, 10, 20]


@pytest.mark.parametrize(
    ("scores", "flat"),
    [
        ([0.1, 0.2, 0.3, 0.4, 0.5], False),  # still rising
        ([0.1, 0.5, 0.5, 0.5, 0.502], True),  # +0.4% over the best before the window
        ([0.1, 0.5, 0.5, 0.5, 0.52], False),  # +4%
        ([0.5], False),  # nothing before the window to compare with
    ],
)
def test_flat_means_the_last_fifth_beats_the_best_before_by_less_than_the_tolerance(scores, flat):
    assert is_flat(scores, RULE, higher_is_better=True) is flat


def test_a_falling_loss_is_not_flat_and_a_stalled_one_is():
    assert not is_flat([1.0, 0.8, 0.6, 0.5, 0.4], RULE, higher_is_better=False)
    assert is_flat([1.0, 0.5, 0.499, 0.498, 0.4999], RULE, higher_is_better=False)


def test_learning_rate_warms_up_over_the_first_epoch_then_follows_a_cosine_over_the_budget():
    plateau = Plateau(PlateauRule(0.01, max_epochs=10), True, lr=1e-3, steps_per_epoch=10)
    assert plateau.lr_at(0) == pytest.approx(1e-4) and plateau.lr_at(9) == pytest.approx(1e-3)
    assert plateau.lr_at(50) == pytest.approx(0.5e-3)  # half way: half the peak
    assert plateau.lr_at(99) == pytest.approx(
        1e-3 * 0.5 * (1 + math.cos(0.9 * math.pi))
    )  # last epoch: near 0


def test_a_pause_early_in_the_schedule_does_not_end_the_run_and_the_best_epoch_is_kept():
    pause = [0.1, 0.3, 0.3, 0.3, 0.3, 0.3]  # flat for five epochs at a large step size, then rising again
    plateau = _run(pause + [0.3 + 0.05 * e for e in range(1, 30)] + [1.75] * 15)
    assert len(plateau.scores) == 50 and not plateau.rising
    assert plateau.best_epoch == len(pause) + 29  # the first 1.75: ties keep the earlier epoch


def test_a_run_still_improving_at_the_end_of_its_schedule_says_so():
    plateau = _run([0.01 * e for e in range(1, 13)])
    assert plateau.rising and len(plateau.scores) == 12 and plateau.best_epoch == 12


def test_a_run_flat_over_its_last_fifth_is_not_rising():
    plateau = _run([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 0.9, 0.9, 0.9])
    assert not plateau.rising  # its last two epochs gain nothing on the 0.9 before them


def test_claims_are_marked_by_their_verdict_under_the_perturbation():
    record = {"perturbation": "seeds [3, 4, 5]", "claims": {"segment/clip-pooled": {"committed": "supported", "perturbed": "not distinguishable"},
                                                              "vqvae/plain-clip": {"committed": "supported", "perturbed": "supported"}}}  # fmt: skip
    assert stability_words(record, "segment/clip-pooled", "supported") == (
        "**fragile**: not distinguishable under seeds [3, 4, 5]"
    )
    assert stability_words(record, "vqvae/plain-clip", "supported") == "stable under seeds [3, 4, 5]"
    assert stability_words(record, "vqvae/plain-clip", "not distinguishable") == ""  # another run's record
    assert stability_words({}, "vqvae/plain-clip", "supported") == ""
