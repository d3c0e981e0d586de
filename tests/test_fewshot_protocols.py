"""Each few-shot method's protocol as its official code runs it: grids, schedules, step counts, views, epoch choice."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipprobe.features.views import CROP_SCALE, augment, crop_boxes
from clipprobe.params import load_params
from clipprobe.probes.fewshot import train as fewshot_train
from clipprobe.probes.fewshot.closed import GaussianDiscriminant, TipAdapter, tip_grid
from clipprobe.probes.fewshot.methods import (
    Clap,
    LinearProbePP,
    Prior,
    RandomHead,
    RandomSwept,
    ZeroshotSwept,
)
from clipprobe.probes.fewshot.support import make_task
from clipprobe.probes.fewshot.sweep import run_method
from clipprobe.probes.fewshot.train import Trace, best_latest, best_of_runs, train_heads
from clipprobe.probes.zeroshot import zeroshot_weights

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = load_params(ROOT / "params.yaml").fewshot
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors
N_CLASSES, DIM, VIEWS = 48, 8, 3


def _features(per_class: int, generator: torch.Generator, views: int = 0) -> dict[str, torch.Tensor]:
    labels = torch.arange(N_CLASSES).repeat_interleave(per_class)
    means = torch.eye(N_CLASSES, DIM).roll(1, dims=1) + 0.5 * torch.randn(N_CLASSES, DIM, generator=generator)
    image = means[labels] + 0.3 * torch.randn(len(labels), DIM, generator=generator)
    out = {"image": image, "labels": labels}
    if views:
        out["views"] = (image + 0.3 * torch.randn(views, *image.shape, generator=generator)).half()
    return out


def _task(shots: int, views: int = 0):
    g = torch.Generator().manual_seed(0)
    train, val = _features(16, g, views), _features(4, g)
    xy = lambda split: (F.normalize(split["image"], dim=-1), split["labels"])  # noqa: E731
    task = make_task(shots, xy(train), xy(val), N_CLASSES, 2, 4, seed=0, views=(train.get("views"), None))
    text = torch.randn(1, N_CLASSES, DIM, generator=g)
    prior = Prior(zeroshot_weights(text), 30.0, torch.ones(N_CLASSES))
    test = _features(2, g)
    return task, prior, xy(test)


def _count_steps(monkeypatch) -> list:
    """Every optimiser step, recorded with the step count and each group's parameter after it."""
    steps, real = [], fewshot_train.HeadSGD.step

    def step(self):
        real(self)
        steps.append([p.detach().clone() for p, *_ in self.groups])

    monkeypatch.setattr(fewshot_train.HeadSGD, "step", step)
    return steps


def test_tip_grid_is_the_official_grid():
    betas, alphas = tip_grid(DEFAULT.tip)
    assert betas == [
        i * (7 - 0.1) / 200 + 0.1 for i in range(200)
    ]  # Tip-Adapter utils.py, search_scale [7, 3]
    assert alphas == [i * (3 - 0.1) / 20 + 0.1 for i in range(20)]  # search_step [200, 20]


def test_tip_cache_keys_are_the_mean_of_the_raw_views_normalised():
    task, prior, _ = _task(2, views=VIEWS)
    keys = TipAdapter(prior, DEFAULT).keys(task)
    expected = F.normalize(task.support_views.mean(dim=0), dim=-1)
    assert torch.equal(keys, expected) and not torch.allclose(keys, task.support)


@pytest.mark.parametrize(("shots", "per_epoch"), [(2, 1), (8, 1), (16, 3)])  # K * 48 rows: 96, 384, 768
def test_clap_takes_floor_kc_over_256_minibatches_per_epoch(monkeypatch, shots, per_epoch):
    steps = _count_steps(monkeypatch)
    task, prior, (test_x, test_y) = _task(shots)
    epochs = 4
    train_heads(
        Clap(prior, DEFAULT), task, test_x, test_y, epochs=epochs, eval_every=2, generator=torch.Generator()
    )
    assert len(steps) == max(1, shots * N_CLASSES // 256) * epochs == per_epoch * epochs


def test_clap_warms_up_for_one_epoch_at_a_constant_step_then_follows_a_cosine():
    clap = Clap(Prior(torch.eye(2), 1.0, torch.ones(2)), DEFAULT)
    assert clap.factor(0, 300) * DEFAULT.clap.lr == pytest.approx(1e-5)
    assert clap.factor(1, 300) == pytest.approx(0.5 * (1 + math.cos(math.pi / 300)))
    assert clap.factor(150, 300) == pytest.approx(0.5)


def test_lpp_blend_weights_change_only_every_10_epochs(monkeypatch):
    steps = _count_steps(monkeypatch)
    task, prior, (test_x, test_y) = _task(2)
    lpp = LinearProbePP(prior, DEFAULT)
    train_heads(lpp, task, test_x, test_y, epochs=25, eval_every=5, generator=torch.Generator())
    alphas = [groups[2] for groups in steps]  # (H, C) after each of the 25 full-batch steps
    moved = [step + 1 for step in range(1, 25) if not torch.equal(alphas[step], alphas[step - 1])]
    assert moved == [10, 20]  # 1-based epochs after which the blend moved
    assert torch.equal(alphas[0], lpp_init_alpha(lpp, task))  # and not at the first epoch either


def lpp_init_alpha(lpp: LinearProbePP, task) -> torch.Tensor:
    return lpp.init(task, torch.Generator())["alpha"].detach()


def test_lpp_validates_on_k_images_per_class():
    assert DEFAULT.lpp.val_per_class >= max(load_params(ROOT / "params.yaml").shots)


def test_gda_with_augmented_views_at_one_shot_is_not_the_zeroshot_classifier():
    task, prior, (test_x, test_y) = _task(1, views=VIEWS)
    gda = GaussianDiscriminant(prior, DEFAULT)
    weight, _ = gda.fit(task)
    assert weight.abs().amax() > 0  # the views give within-class scatter
    clean, _ = gda.fit(
        make_task(
            1, (task.support[0], task.support_labels), (task.val[0], task.val_labels), N_CLASSES, 1, 1, seed=0
        )
    )
    assert torch.equal(clean, torch.zeros_like(clean))  # without views: no scatter, W = 0


def test_val_chosen_epoch_is_the_best_with_ties_to_the_later():
    hits = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=torch.bool)  # (E, V)
    assert best_latest(hits[:, None]).tolist() == [4]
    assert best_latest(hits[:3, None]).tolist() == [2]  # three-way tie at 2 hits: the last


def test_crop_boxes_follow_random_resized_crop_and_are_seeded():
    boxes = crop_boxes(1000, 64, 64, np.random.default_rng(0))
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 64).all() and (left + w <= 64).all()
    area = h * w / 64**2
    assert area.min() > CROP_SCALE[0] - 0.05 and area.max() <= CROP_SCALE[1]
    assert np.array_equal(boxes, crop_boxes(1000, 64, 64, np.random.default_rng(0)))


def test_a_whole_image_box_is_the_image_and_a_flip_mirrors_it():
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    whole = np.array([[0, 0, 16, 16]] * 2)
    assert np.array_equal(augment(images, whole, np.array([False, False])), images)
    assert np.array_equal(augment(images, whole, np.array([True, False]))[0], images[0, :, ::-1])


def test_swept_heads_keep_per_draw_the_step_size_with_the_best_val_point_ties_to_the_smaller():
    def trace(val: list[list[int]]) -> Trace:  # (E, H) val hits out of 2 images -> a Trace
        hits = torch.tensor([[[v >= 1, v >= 2] for v in row] for row in val])  # (E, H, 2)
        return Trace([0, 10], hits, hits.clone(), {"w": torch.zeros(2, 1)})

    small, large = trace([[1, 1], [1, 1]]), trace([[1, 2], [1, 0]])  # head 0: a tie; head 1: large is better
    kept, pick = best_of_runs([small, large])
    assert pick.tolist() == [0, 1]
    assert torch.equal(kept.val_hits[:, 1], large.val_hits[:, 1]) and torch.equal(
        kept.val_hits[:, 0], small.val_hits[:, 0]
    )
    assert kept.chosen("val").tolist() == [1, 0]  # head 0: tie, so the later epoch; head 1: its best, epoch 0


def test_swept_zeroshot_head_starts_at_zeroshot_and_reports_its_step_size():
    task, prior, (test_x, test_y) = _task(2)
    cfg = DEFAULT.model_copy(update={"epochs": 4, "eval_every": 2})
    method = ZeroshotSwept(prior, cfg)
    result = run_method(method, cfg, task, test_x, test_y, torch.Generator())
    zeroshot = (test_x @ prior.weights.T).argmax(dim=-1) == test_y
    assert torch.equal(result.trace.test_hits[0], zeroshot.expand_as(result.trace.test_hits[0]))
    assert set(result.choice["lr"].tolist()) <= set(DEFAULT.linear.lrs)


def test_swept_head_reuses_its_base_run_at_the_base_step_size_and_gets_the_same_result():
    task, prior, (test_x, test_y) = _task(2)
    cfg = DEFAULT.model_copy(update={"epochs": 4, "eval_every": 2})
    base = run_method(RandomHead(prior, cfg), cfg, task, test_x, test_y, torch.Generator().manual_seed(5))
    reused = run_method(
        RandomSwept(prior, cfg), cfg, task, test_x, test_y, torch.Generator().manual_seed(5), base=base
    )
    recomputed = run_method(
        RandomSwept(prior, cfg), cfg, task, test_x, test_y, torch.Generator().manual_seed(5)
    )
    assert cfg.linear.lr in cfg.linear.lrs
    assert torch.equal(reused.hits, recomputed.hits) and torch.equal(
        reused.choice["lr"], recomputed.choice["lr"]
    )
    assert torch.equal(reused.trace.test_hits, recomputed.trace.test_hits)
