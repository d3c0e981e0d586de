"""Few-shot sweep: exact zero-shot start, paired support sets, scalar/list shots, clear errors, outputs."""

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import one_line

from clipprobe.contracts import load_arrays
from clipprobe.errors import ClipprobeError
from clipprobe.params import FewshotParams, parse_params
from clipprobe.probes.fewshot import sweep as fewshot
from clipprobe.probes.fewshot.closed import GaussianDiscriminant, TipAdapter
from clipprobe.probes.fewshot.methods import Prior, ZeroshotHead
from clipprobe.probes.fewshot.registry import METHODS
from clipprobe.probes.fewshot.support import make_task
from clipprobe.probes.fewshot.train import Trace, head_hits, train_heads
from clipprobe.probes.zeroshot import accuracy, zeroshot_logits, zeroshot_weights
from clipprobe.readouts import FEWSHOT_METHODS

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors
N_CLASSES, DIM, PRE_DIM, SCALE = 6, 16, 24, 30.0
FEWSHOT_INITS = list(METHODS)
CFG = FewshotParams(
    inits=FEWSHOT_INITS,
    draws=3,
    epochs=20,
    eval_every=5,
    val_per_class=4,
    linear={"lr": 0.01, "weight_decay": 0.0, "lrs": [0.001, 0.01]},
    clap={"lr": 0.1, "warmup_lr": 1e-5, "batch_size": 256, "views": 20},
    lpp={"views": 1, "alpha_every": 10, "val_per_class": 16},
    prolip={"lr": 0.01, "views": 300},
    modes={"attributes": [], "shots": [2], "draws": 2, "epochs": 10},
    tip={"beta_scale": 7, "beta_steps": 20, "alpha_scale": 3, "alpha_steps": 5, "views": 10},
    gda={"alphas": [0.0, 0.1, 1.0], "views": 10},
)


def _cfg(**recipes) -> FewshotParams:
    return CFG.model_copy(update={k: getattr(CFG, k).model_copy(update=v) for k, v in recipes.items()})


def _split(n_per_class: int, generator: torch.Generator, means: torch.Tensor, projection: dict) -> dict:
    """Pre-projection features around class means, projected by `projection` as CLIP's last layer would."""
    labels = torch.arange(N_CLASSES).repeat_interleave(n_per_class)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    pre = 2.0 + means[labels] + 1.5 * torch.randn(len(labels), PRE_DIM, generator=generator)
    image = pre @ projection["weight"].T + projection["bias"]
    return {"image": image, "image_norm": F.normalize(image, dim=-1), "image_pre": pre, "labels": labels}


@pytest.fixture(scope="module")
def features() -> dict:
    """Synthetic CLIP-like features: noisy class means, text embeddings near (not at) the image means."""
    g = torch.Generator().manual_seed(0)
    means = 3 * torch.randn(N_CLASSES, PRE_DIM, generator=g)
    projection = {
        "weight": torch.randn(DIM, PRE_DIM, generator=g) / PRE_DIM**0.5,
        "bias": 0.1 * torch.randn(DIM, generator=g),
    }
    image_means = means @ projection["weight"].T + projection["bias"]
    text = (image_means + 0.7 * torch.randn(2, N_CLASSES, DIM, generator=g)) * 5  # (T, C, D), raw scale 5
    return {
        "train": _split(12, g, means, projection),
        "val": _split(5, g, means, projection),
        "test": _split(30, g, means, projection),
        "text": text,
        "projection": projection,
    }


def _sweep(features, shots, cfg=CFG):
    return fewshot.run_sweep(
        features["train"],
        features["val"],
        features["test"],
        features["text"],
        SCALE,
        shots,
        cfg,
        seed=0,
        projection=features["projection"],
    )


@pytest.fixture(scope="module")
def sweep(features):
    return _sweep(features, (1, 4))


def _zeroshot_acc(features) -> float:
    weights = zeroshot_weights(features["text"])
    return accuracy(zeroshot_logits(features["test"]["image"], weights, SCALE), features["test"]["labels"])


def test_zeroshot_init_reproduces_zeroshot_accuracy_exactly_at_step_0(features, sweep):
    zs = _zeroshot_acc(features)
    assert sweep.zeroshot_acc == zs
    for k in (1, 4):
        for name in ("zeroshot", "prolip"):  # ProLIP starts at the pretrained projection: zero-shot exactly
            trace = sweep.results[k][name].trace
            assert trace.epochs[0] == 0
            assert torch.equal(trace.test[0], torch.full((CFG.draws,), zs, dtype=torch.float64)), name
            assert torch.equal(trace.test_hits[0], sweep.zeroshot_hits.expand_as(trace.test_hits[0])), name
    assert fewshot.summarize(sweep)["shots_1"]["zeroshot"]["acc_init"] == zs
    assert fewshot.summarize(sweep)["shots_1"]["prolip"]["acc_init"] == zs


def test_zeroshot_head_logits_equal_zeroshot_logits_bit_for_bit(features):
    x = F.normalize(features["test"]["image"], dim=-1)
    weights = zeroshot_weights(features["text"])
    task = make_task(2, _xy(features, "train"), _xy(features, "val"), N_CLASSES, 2, 4, seed=0)
    head = ZeroshotHead(
        Prior(weights, SCALE, torch.ones(N_CLASSES)), _cfg(linear={"lr": 0.01, "weight_decay": 0.0})
    )
    state = head.init(task, torch.Generator())
    logits = head.logits(state, x)  # (H, N, C)
    assert torch.equal(logits[1], zeroshot_logits(features["test"]["image"], weights, SCALE))


def _xy(features, split):
    return F.normalize(features[split]["image"], dim=-1), features[split]["labels"]


def test_support_sets_have_k_per_class_from_train_only(features):
    train_y = features["train"]["labels"]
    task = make_task(3, _xy(features, "train"), _xy(features, "val"), N_CLASSES, 4, 2, seed=7)
    assert task.support.shape == (4, 3 * N_CLASSES, DIM)
    for d in range(4):
        rows = task.support_index[d]
        assert len(set(rows.tolist())) == len(rows)  # without replacement
        assert torch.equal(torch.bincount(train_y[rows], minlength=N_CLASSES), torch.full((N_CLASSES,), 3))
        assert torch.equal(train_y[rows], task.support_labels)  # class-major: one label vector for all draws
        assert torch.equal(task.support[d], _xy(features, "train")[0][rows])
    # few-shot val: min(K, val_per_class) per class, from the val split
    assert task.val.shape == (4, 2 * N_CLASSES, DIM)

    # continuous random features never repeat: a row equal to a row of a split comes from that split
    def rows_of(split, x):
        distance = torch.cdist(
            x.flatten(0, 1), _xy(features, split)[0], compute_mode="donot_use_mm_for_euclid_dist"
        )
        return (distance == 0).any(dim=1)

    assert rows_of("train", task.support).all() and not rows_of("val", task.support).any()
    assert not rows_of("test", task.support).any()
    assert (
        rows_of("val", task.val).all()
        and not rows_of("train", task.val).any()
        and not rows_of("test", task.val).any()
    )
    assert len({tuple(r.tolist()) for r in task.support_index}) == 4  # draws differ


def test_every_method_sees_the_same_support_sets_and_nested_val_sets(features, monkeypatch):
    seen = {}
    real = fewshot.run_method

    def spy(method, cfg, task, *args, **kwargs):
        seen[type(method).__name__] = (task.support_index.clone(), task.val_index.clone())
        return real(method, cfg, task, *args, **kwargs)

    monkeypatch.setattr(fewshot, "run_method", spy)
    _sweep(features, (2,))
    support, val = seen["RandomHead"]
    assert len(seen) == len(FEWSHOT_INITS)
    for name, (other_support, other_val) in seen.items():
        assert torch.equal(other_support, support), name
        if name == "LinearProbePP":  # K = 2 val images per class, the others' min(K, 4) = 2 too
            assert torch.equal(other_val, val)
        else:
            assert torch.equal(other_val, val), name


def test_lpp_validates_on_k_images_per_class_a_superset_of_the_shared_val_set(features):
    train, val = _xy(features, "train"), _xy(features, "val")
    small = make_task(8, train, val, N_CLASSES, 2, 2, seed=0)
    large = make_task(8, train, val, N_CLASSES, 2, 4, seed=0)
    assert torch.equal(small.support_index, large.support_index)
    assert large.val_index.shape[1] == 2 * small.val_index.shape[1]
    for h in range(2):
        assert set(small.val_index[h].tolist()) <= set(large.val_index[h].tolist())


def test_scalar_shots_reproduce_that_shot_count_of_the_list_sweep(features, sweep):
    alone = _sweep(features, (4,))
    for name in FEWSHOT_INITS:
        assert torch.equal(alone.results[4][name].acc, sweep.results[4][name].acc), name


@pytest.mark.parametrize(
    ("value", "expected"), [(4, (4,)), ([16, 1, 4, 2, 8], (1, 2, 4, 8, 16)), ([2, 2], (2,))]
)
def test_shots_accepts_a_scalar_or_a_list(default_raw, value, expected):
    raw = copy.deepcopy(default_raw)
    raw["shots"] = value
    assert parse_params(raw).shots == expected


@pytest.mark.parametrize("value", [0, -3, [1, 0], [], True, "four", 2.5])
def test_bad_shots_is_one_line_naming_shots(default_raw, value):
    raw = copy.deepcopy(default_raw)
    raw["shots"] = value
    with pytest.raises(ClipprobeError) as info:
        parse_params(raw)
    message = one_line(info)
    assert message.startswith("params.yaml: shots") and "positive integer" in message


def test_more_shots_than_the_smallest_class_is_one_line(features):
    with pytest.raises(ClipprobeError) as info:
        _sweep(features, (1, 13))  # 12 train images per class
    assert one_line(info) == (
        "shots: each shot count must be between 1 and 12, the train images of the smallest class (class 0) (got 13)"
    )


def test_batched_heads_train_exactly_like_single_heads(features):
    """The sum-of-means loss keeps draws independent: a head trained in the batch equals it trained alone."""
    weights = zeroshot_weights(features["text"])
    prior = Prior(weights, SCALE, torch.ones(N_CLASSES))
    task = make_task(2, _xy(features, "train"), _xy(features, "val"), N_CLASSES, 3, 2, seed=1)
    test_x, test_y = _xy(features, "test")
    method = ZeroshotHead(prior, _cfg(linear={"lr": 0.05, "weight_decay": 0.0}))
    batched = train_heads(method, task, test_x, test_y, epochs=10, eval_every=5, generator=torch.Generator())
    for h in range(3):
        alone = train_heads(
            method, task.draw(h), test_x, test_y, epochs=10, eval_every=5, generator=torch.Generator()
        )
        assert torch.allclose(alone.test[:, 0], batched.test[:, h]) and torch.allclose(
            alone.val[:, 0], batched.val[:, h]
        )


def test_tip_logits_are_the_official_formula(features):
    """logits = s x W_zs^T + alpha exp(-beta (1 - x K^T)) Y (Tip-Adapter's tip_logits, its 100 as s)."""
    weights = zeroshot_weights(features["text"])
    task = make_task(2, _xy(features, "train"), _xy(features, "val"), N_CLASSES, 2, 2, seed=0)
    one = {"beta_scale": 2.0, "beta_steps": 1, "alpha_scale": 3.0, "alpha_steps": 1, "views": 0}  # (0.1, 0.1)
    result = TipAdapter(Prior(weights, SCALE, torch.ones(N_CLASSES)), _cfg(tip=one)).run(
        task, *_xy(features, "test")
    )
    x, y = _xy(features, "test")
    for h in range(2):
        cache = (
            torch.exp(-0.1 * (1 - x @ task.support[h].T)) @ F.one_hot(task.support_labels, N_CLASSES).float()
        )
        expected = head_hits((SCALE * x @ weights.T + 0.1 * cache)[None], y)[0]
        assert torch.equal(result.hits[h], expected)


def test_gda_at_one_shot_is_the_zeroshot_classifier(features):
    """One image per class has no within-class scatter: the covariance is 0, W = 0, only zero-shot remains."""
    weights = zeroshot_weights(features["text"])
    task = make_task(1, _xy(features, "train"), _xy(features, "val"), N_CLASSES, 2, 2, seed=0)
    gda = GaussianDiscriminant(Prior(weights, SCALE, torch.ones(N_CLASSES)), _cfg(gda={"alphas": [1.0]}))
    weight, _ = gda.fit(task)
    assert torch.equal(weight, torch.zeros_like(weight))
    result = gda.run(task, *_xy(features, "test"))
    assert torch.equal(result.acc, torch.full((2,), _zeroshot_acc(features), dtype=torch.float64))


def test_gda_is_linear_discriminant_analysis(features):
    """With a large weight GDA is LDA: its weights solve Sigma W^T = mu^T with the KS-shrunk covariance."""
    weights = zeroshot_weights(features["text"])
    task = make_task(4, _xy(features, "train"), _xy(features, "val"), N_CLASSES, 1, 2, seed=0)
    weight, bias = GaussianDiscriminant(
        Prior(weights, SCALE, torch.ones(N_CLASSES)), _cfg(gda={"alphas": [1.0]})
    ).fit(task)
    x, y = task.support[0].double(), task.support_labels
    means = torch.stack([x[y == c].mean(dim=0) for c in range(N_CLASSES)])
    scatter = sum((x[y == c] - means[c]).T @ (x[y == c] - means[c]) for c in range(N_CLASSES))
    shrunk = (scatter + torch.trace(scatter) / (len(x) - 1) * torch.eye(DIM)) / DIM
    assert torch.allclose(shrunk @ weight[0].T, means.T, atol=1e-8)
    assert torch.allclose(bias[0], -0.5 * (weight[0] * means).sum(dim=1) - math.log(N_CLASSES))


def test_methods_learn_from_the_support_set(sweep):
    """On these well-separated features more shots help every method, and random init starts at chance."""
    for name in FEWSHOT_INITS:
        assert sweep.results[4][name].acc.mean() > sweep.results[1][name].acc.mean() - 0.02, name
    assert sweep.results[4]["random"].acc.mean() > 0.5
    assert sweep.results[1]["random"].trace.test[0].mean() < 0.5


def test_summary_is_plain_floats_under_string_keys(sweep):
    metrics = fewshot.summarize(sweep)
    assert set(metrics) == {"zeroshot_acc", "class_mean_acc", "chance", "shots_1", "shots_4"}
    entry = metrics["shots_4"]["clap"]
    acc = sweep.results[4]["clap"].acc
    half = 4.302652729911275 * acc.std().item() / math.sqrt(CFG.draws)  # t quantile 0.975, 2 dof
    assert entry["acc"] == pytest.approx(acc.mean().item()) and entry["ci95"] == pytest.approx(half)
    assert entry["delta_zeroshot"] == pytest.approx(entry["acc"] - metrics["zeroshot_acc"])
    paired = acc - sweep.results[4]["random"].acc
    assert entry["delta_random"] == pytest.approx(paired.mean().item())
    assert "delta_random" not in metrics["shots_4"]["random"] and "acc_init" not in metrics["shots_4"]["tip"]
    assert set(metrics["shots_4"]["lpp"]) == {
        "acc",
        "ci95",
        "delta_zeroshot",
        "delta_zeroshot_ci95",
        "delta_random",
        "delta_random_ci95",
        "acc_init",
        "acc_last",
        "epoch_chosen",
    }

    def leaves(node):
        for value in node.values():
            yield from leaves(value) if isinstance(value, dict) else [value]

    assert all(type(v) is float and math.isfinite(v) for v in leaves(metrics))
    json.dumps(metrics)


def test_selected_hits_are_each_draws_chosen_evaluation_point():
    g = torch.Generator().manual_seed(0)
    trace = Trace([0, 5, 10], torch.rand(3, 4, 6, generator=g) > 0.5, torch.rand(3, 4, 9, generator=g) > 0.5)
    for select in ("val", "last"):
        chosen = trace.chosen(select)
        assert torch.equal(
            trace.selected(select), torch.stack([trace.test_hits[chosen[h], h] for h in range(4)])
        )
    assert torch.equal(trace.chosen("last"), torch.full((4,), 2))


def test_class_mean_classifier_is_nearest_normalised_train_mean(features):
    train_x, train_y = _xy(features, "train")
    test_x, test_y = _xy(features, "test")
    means = torch.stack([F.normalize(train_x[train_y == c].mean(dim=0), dim=0) for c in range(N_CLASSES)])
    hits = fewshot.class_mean_hits((train_x, train_y), test_x, test_y, N_CLASSES)
    assert torch.equal(hits, (test_x @ means.T).argmax(dim=-1) == test_y) and hits.float().mean() > 0.5


def test_stage_writes_metrics_hits_and_curves_per_seed(tmp_path, features, default_raw):
    raw = copy.deepcopy(default_raw)
    raw.update(shots=2, device="cpu", fewshot=CFG.model_dump())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    folder = tmp_path / "features/seed3"
    folder.mkdir(parents=True)
    for split in ("train", "val", "test"):
        torch.save(features[split], folder / f"{split}.pt")
    ensemble = raw["embed"]["ensemble"]
    text = {
        "class_names": [f"c{i}" for i in range(N_CLASSES)],
        "logit_scale": SCALE,
        "text": {"single": features["text"][:1], ensemble: features["text"]},
        "projection": features["projection"],
    }
    torch.save(text, folder / "text.pt")
    run = subprocess.run(
        [sys.executable, str(ROOT / "stages/fewshot.py"), "3"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].startswith(
        "fewshot@3: wrote runs/seed3/fewshot_curves.csv, runs/seed3/fewshot_hits, runs/seed3/fewshot_modes, "
        "runs/seed3/fewshot.json in "
    )
    metrics = json.loads((tmp_path / "runs/seed3/fewshot.json").read_text())
    assert {key.split(".")[1] for key in metrics if key.startswith("shots_2.")} == set(FEWSHOT_INITS)
    hits = load_arrays(tmp_path / "runs/seed3/fewshot_hits", "fewshot")
    assert hits["shots2_random"].shape == (CFG.draws, len(features["test"]["labels"]))
    assert hits["shots2_gda"].mean() == pytest.approx(metrics["shots_2.gda.acc"])
    curves = (tmp_path / "runs/seed3/fewshot_curves.csv").read_text().splitlines()
    assert curves[0].startswith("shots,epoch,random_test,random_val,zeroshot_test,zeroshot_val")
    assert len(curves) == 1 + CFG.epochs // CFG.eval_every + 1


def test_the_registry_names_every_method_in_the_order_of_their_random_streams():
    assert list(METHODS) == list(FEWSHOT_METHODS)


def test_every_registered_method_is_implemented_with_the_shared_constructor():
    weights = zeroshot_weights(torch.randn(1, N_CLASSES, DIM))
    projection = (torch.randn(DIM, PRE_DIM), torch.zeros(DIM))
    for name in METHODS:
        method = METHODS[name](Prior(weights, SCALE, torch.ones(N_CLASSES), projection), CFG)
        trained = all(hasattr(method, attr) for attr in ("init", "logits", "penalty", "optimizer", "select"))
        assert trained != hasattr(method, "run"), name


def test_head_hits_match_argmax_and_count_ties_as_misses():
    logits = torch.randn(3, 50, 7, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(head_hits(logits.clone(), labels), logits.argmax(dim=-1) == labels)
    assert not head_hits(torch.zeros(1, 4, 3), torch.zeros(4, dtype=torch.long)).any()
