"""The plateau rule every decoder trains by: flat means no gain over the last quarter of the run."""

from __future__ import annotations

import pytest

from clipprobe.plateau import Plateau, PlateauRule, is_flat, window
from clipprobe.report.claims import stability_words

RULE = PlateauRule(patience=3, tolerance=0.01, lr_decay=0.1, max_epochs=100)


def _run(scores: list[float], higher_is_better: bool = True, rule: PlateauRule = RULE) -> Plateau:
    plateau = Plateau(rule, higher_is_better, lr=1e-3, steps_per_epoch=10)
    for score in scores:
        if plateau.end_epoch(score):
            break
    return plateau


def test_window_is_a_quarter_of_the_run_and_at_least_patience():
    assert [window(e, 3) for e in (1, 8, 12, 13, 40)] == [3, 3, 3, 4, 10]


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


def test_learning_rate_warms_up_over_the_first_epoch_then_decays_at_the_first_plateau():
    plateau = Plateau(RULE, True, lr=1e-3, steps_per_epoch=10)
    assert plateau.lr_at(0) == pytest.approx(1e-4) and plateau.lr_at(9) == pytest.approx(1e-3)
    for score in (0.1, 0.5, 0.5, 0.5, 0.5):
        assert not plateau.end_epoch(score)
    assert plateau.decayed_at == 5 and plateau.lr_at(100) == pytest.approx(1e-4)


def test_training_stops_when_flat_again_after_a_full_window_at_the_smaller_step():
    plateau = _run([0.1, 0.5] + [0.5] * 20)
    assert plateau.decayed_at == 5 and len(plateau.scores) == 8 and not plateau.capped
    assert plateau.best_epoch == 2  # ties keep the earlier epoch
    # every run that stops on its own is flat over its last quarter
    assert is_flat(plateau.scores, RULE, higher_is_better=True)


def test_a_run_still_improving_at_the_cap_says_so():
    plateau = _run([0.01 * e for e in range(1, 200)], rule=PlateauRule(3, 0.01, 0.1, max_epochs=12))
    assert plateau.capped and len(plateau.scores) == 12 and plateau.best_epoch == 12


def test_claims_are_marked_by_their_verdict_under_the_perturbation():
    record = {"perturbation": "seeds [3, 4, 5]", "claims": {"segment/clip-pooled": {"committed": "supported", "perturbed": "not distinguishable"},
                                                              "vqvae/plain-clip": {"committed": "supported", "perturbed": "supported"}}}  # fmt: skip
    assert stability_words(record, "segment/clip-pooled", "supported") == (
        "**fragile**: not distinguishable under seeds [3, 4, 5]"
    )
    assert stability_words(record, "vqvae/plain-clip", "supported") == "stable under seeds [3, 4, 5]"
    assert stability_words(record, "vqvae/plain-clip", "not distinguishable") == ""  # another run's record
    assert stability_words({}, "vqvae/plain-clip", "supported") == ""
