"""The plateau rule every decoder trains by: a cosine over the budget, stop when the last fifth gains nothing."""

from __future__ import annotations

import math

import pytest
import torch

from clipprobe.plateau import Plateau, PlateauRule, is_flat, window
from clipprobe.report.claims import stability_words

RULE = PlateauRule(patience=3, tolerance=0.01, max_epochs=100)


def _run(scores: list[float], higher_is_better: bool = True, rule: PlateauRule = RULE) -> Plateau:
    plateau, model = Plateau(rule, higher_is_better, lr=1e-3, steps_per_epoch=10), torch.nn.Linear(1, 1)
    for score in scores:
        with torch.no_grad():
            model.bias.fill_(score)  # the weights of each epoch carry its score
        if plateau.end_epoch(score, model):
            break
    plateau.restore_best(model)
    assert model.bias.item() == pytest.approx(scores[plateau.best_epoch - 1])
    return plateau


def test_window_is_a_fifth_of_the_run_and_at_least_patience():
    assert [window(e, 3) for e in (1, 8, 15, 16, 40)] == [3, 3, 3, 4, 8]


@pytest.mark.parametrize(
    ("scores", "flat"),
    [
        ([0.1, 0.2, 0.3, 0.4], False),  # still rising
        ([0.1, 0.5, 0.5, 0.502, 0.501], True),  # +0.4% over the best before the window
        ([0.1, 0.5, 0.5, 0.5, 0.52], False),  # +4%
        ([0.5, 0.5, 0.5], False),  # nothing before the window to compare with
    ],
)
def test_flat_means_the_last_window_beats_the_best_before_by_less_than_the_tolerance(scores, flat):
    assert is_flat(scores, RULE, higher_is_better=True) is flat


def test_a_falling_loss_is_not_flat_and_a_stalled_one_is():
    assert not is_flat([1.0, 0.8, 0.6, 0.5, 0.4], RULE, higher_is_better=False)
    assert is_flat([1.0, 0.5, 0.499, 0.498, 0.4999], RULE, higher_is_better=False)


def test_learning_rate_warms_up_over_the_first_epoch_then_follows_a_cosine_over_the_budget():
    plateau = Plateau(PlateauRule(3, 0.01, max_epochs=10), True, lr=1e-3, steps_per_epoch=10)
    assert plateau.lr_at(0) == pytest.approx(1e-4) and plateau.lr_at(9) == pytest.approx(1e-3)
    assert plateau.lr_at(50) == pytest.approx(0.5e-3)  # half way: half the peak
    assert plateau.lr_at(99) == pytest.approx(
        1e-3 * 0.5 * (1 + math.cos(0.9 * math.pi))
    )  # last epoch: near 0


def test_training_stops_at_the_first_flat_stretch_of_the_schedules_second_half_and_keeps_the_best_epoch():
    plateau = _run([0.1, 0.5] + [0.5] * 20, rule=PlateauRule(3, 0.01, max_epochs=10))
    assert len(plateau.scores) == 5 and not plateau.capped  # flat from epoch 5, the half of 10
    assert plateau.best_epoch == 2  # ties keep the earlier epoch
    assert is_flat(plateau.scores, RULE, higher_is_better=True)  # every run that stops on its own ends flat


def test_a_long_run_needs_a_longer_flat_stretch():
    rising = [0.1 * e for e in range(1, 21)]  # 20 epochs of gains, then a plateau
    plateau = _run(rising + [2.0] * 20, rule=PlateauRule(3, 0.01, max_epochs=40))
    assert len(plateau.scores) == 25  # the window grew to 5 (a fifth of 25) before it was flat
    assert plateau.best_epoch == 20


def test_a_flat_stretch_in_the_first_half_of_the_schedule_does_not_stop_the_run():
    pause = [0.1, 0.3, 0.3, 0.3, 0.3, 0.3]  # flat at epoch 5 of 40, then rising again
    plateau = _run(
        pause + [0.3 + 0.05 * e for e in range(1, 30)] + [1.8] * 20, rule=PlateauRule(3, 0.01, max_epochs=40)
    )
    assert len(plateau.scores) > len(pause) and plateau.best_epoch == len(pause) + 30  # the first 1.8


def test_a_run_still_improving_at_the_cap_says_so():
    plateau = _run([0.01 * e for e in range(1, 200)], rule=PlateauRule(3, 0.01, max_epochs=12))
    assert plateau.capped and len(plateau.scores) == 12 and plateau.best_epoch == 12


def test_a_run_flat_at_the_cap_is_not_capped():
    plateau = _run(
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 0.9, 0.9, 0.9], rule=PlateauRule(3, 0.01, max_epochs=10)
    )
    assert len(plateau.scores) == 10 and not plateau.capped  # flat exactly at its last epoch


def test_claims_are_marked_by_their_verdict_under_the_perturbation():
    record = {"perturbation": "seeds [3, 4, 5]", "claims": {"segment/clip-pooled": {"committed": "supported", "perturbed": "not distinguishable"},
                                                              "vqvae/plain-clip": {"committed": "supported", "perturbed": "supported"}}}  # fmt: skip
    assert stability_words(record, "segment/clip-pooled", "supported") == (
        "**fragile**: not distinguishable under seeds [3, 4, 5]"
    )
    assert stability_words(record, "vqvae/plain-clip", "supported") == "stable under seeds [3, 4, 5]"
    assert stability_words(record, "vqvae/plain-clip", "not distinguishable") == ""  # another run's record
    assert stability_words({}, "vqvae/plain-clip", "supported") == ""
