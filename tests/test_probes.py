"""Zero-shot classifier and the L-BFGS logistic-regression probe (checked against scikit-learn)."""

import inspect
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from clipprobe.errors import ClipprobeError
from clipprobe.probes.linear import LinearModel
from clipprobe.probes.logreg import fit_logreg, linear_probe, objective, search_C
from clipprobe.probes.zeroshot import accuracy, evaluate, top_k_accuracy, zeroshot_logits, zeroshot_weights


def blobs(n: int, d: int = 64, k: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping Gaussian classes around a shared offset: a linear probe gets ~70% (not separable)."""
    g = torch.Generator().manual_seed(0)  # the same distribution for every seed
    means = torch.randn(k, d, generator=g) * 0.26
    offset = torch.randn(d, generator=g) * 3
    gs = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=gs)
    return means[y] + torch.randn(n, d, generator=gs) + offset, y


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {"train": blobs(2000, seed=1), "val": blobs(500, seed=2), "test": blobs(2000, seed=3)}


# ---------------------------------------------------------------- zero-shot


def test_single_template_weights_are_the_normalised_prompt():
    text = torch.randn(1, 5, 8)
    torch.testing.assert_close(zeroshot_weights(text), F.normalize(text[0], dim=-1))


def test_ensemble_weights_are_unit_norm():
    weights = zeroshot_weights(torch.randn(18, 7, 16) * 5)
    assert weights.shape == (7, 16)
    torch.testing.assert_close(weights.norm(dim=-1), torch.ones(7))


def test_ensemble_is_renormalised_mean_of_normalised_templates():
    # (T=2, C=2, D=2): class 0 prompts (3, 4) and (0, 2); class 1 prompts (1, 0) and (0, -1)
    text = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[0.0, 2.0], [0.0, -1.0]]])
    # class 0: mean of (0.6, 0.8) and (0, 1) = (0.3, 0.9), renormalised; class 1: (0.5, -0.5) renormalised
    expected = torch.tensor([[0.3, 0.9], [0.5, -0.5]])
    expected = expected / expected.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(zeroshot_weights(text), expected)


def test_zeroshot_logits_hand_computed():
    weights = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    image = torch.tensor([[1.0, 0.0], [0.0, 5.0], [-3.0, -4.0]])  # normalised: (1,0), (0,1), (-0.6,-0.8)
    logits = zeroshot_logits(image, weights, logit_scale=100.0)
    expected = torch.tensor([[60.0, 100.0], [80.0, 0.0], [-100.0, -60.0]])
    torch.testing.assert_close(logits, expected)
    assert logits.argmax(dim=-1).tolist() == [1, 0, 1]


def test_linear_head_from_zeroshot_reproduces_logits_exactly():
    image, text, labels = torch.randn(300, 32), torch.randn(4, 10, 32), torch.randint(0, 10, (300,))
    weights = zeroshot_weights(text)
    head = LinearModel.from_zeroshot(weights, 100.0)
    assert torch.equal(head.logits(F.normalize(image, dim=-1)), zeroshot_logits(image, weights, 100.0))
    assert accuracy(head.predict(F.normalize(image, dim=-1)), labels) == evaluate(image, text, labels)["acc1"]


def test_accuracy_from_logits_and_predictions():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0]])
    labels = torch.tensor([0, 2, 2, 1])
    assert accuracy(logits, labels) == 0.5
    assert accuracy(logits.argmax(dim=-1), labels) == 0.5
    assert top_k_accuracy(logits, labels, k=2) == 0.75
    assert top_k_accuracy(logits, labels, k=5) == 1.0  # k capped at the number of classes


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(ClipprobeError, match="labels"):
        accuracy(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ClipprobeError, match="text"):
        zeroshot_weights(torch.zeros(5, 8))
    with pytest.raises(ClipprobeError, match="image/weights"):
        zeroshot_logits(torch.zeros(3, 8), torch.zeros(2, 7))


# ---------------------------------------------------------------- logistic regression


def _sklearn_fit(X: torch.Tensor, y: torch.Tensor, C: float) -> LinearModel:
    with threadpool_limits(limits=1):  # tiny problem: threads only add contention
        clf = LogisticRegression(C=C, max_iter=1000).fit(X.double().numpy(), y.numpy())
    return LinearModel(torch.from_numpy(clf.coef_), torch.from_numpy(clf.intercept_))


@pytest.mark.parametrize("C", [0.316, 10.0])
def test_matches_sklearn_accuracy_and_objective(data, C):
    (X, y), (Xt, yt) = data["train"], data["test"]
    ours, ref = fit_logreg(X, y, C), _sklearn_fit(X, y, C)
    acc, ref_acc = accuracy(ours.predict(Xt), yt), accuracy(ref.predict(Xt), yt)
    assert 0.6 < ref_acc < 0.8  # the blobs overlap: the check below is not trivial
    assert abs(acc - ref_acc) <= 0.005
    assert objective(ours, X, y, C) <= objective(ref, X, y, C) * (1 + 1e-4)


def test_offset_of_features_does_not_change_the_fit(data):
    # the intercept is unpenalised, so shifting every feature by a constant is absorbed exactly
    X, y = data["train"]
    plain, shifted = fit_logreg(X, y, 1.0), fit_logreg(X + 50.0, y, 1.0)
    assert math.isclose(objective(plain, X, y, 1.0), objective(shifted, X + 50.0, y, 1.0), rel_tol=1e-4)
    assert (plain.predict(X) == shifted.predict(X + 50.0)).double().mean() > 0.99


def test_warm_start_from_the_optimum_stops_at_once(data, caplog):
    X, y = data["train"]
    model = fit_logreg(X, y, 1.0)
    with caplog.at_level(logging.DEBUG, logger="clipprobe.probes.logreg"):
        again = fit_logreg(X, y, 1.0, init=model)
    n_iter = caplog.records[-1].args[1]
    assert n_iter <= 3
    assert math.isclose(objective(again, X, y, 1.0), objective(model, X, y, 1.0), rel_tol=1e-5)


def test_fit_is_deterministic(data):
    X, y = data["train"]
    a, b = fit_logreg(X, y, 0.316), fit_logreg(X, y, 0.316)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_bad_inputs_are_one_line_errors(data):
    with pytest.raises(ClipprobeError, match="C: a positive"):
        fit_logreg(*data["train"], C=0.0)
    with pytest.raises(ClipprobeError, match="C: a positive number or 'auto'"):
        linear_probe(data["train"], data["val"], data["test"], C="best")
    with pytest.raises(ClipprobeError, match="needs a validation split"):
        linear_probe(data["train"], None, data["test"], C="auto")
    with pytest.raises(ClipprobeError, match="X/y"):
        fit_logreg(torch.zeros(5, 3), torch.zeros(4, dtype=torch.long), C=1.0)
    with pytest.raises(ClipprobeError, match=r"y: labels in \[0, 2\)"):
        fit_logreg(torch.zeros(4, 3), torch.tensor([0, 1, 2, 1]), C=1.0, n_classes=2)
    with pytest.raises(ClipprobeError, match="X: features must be finite"):
        fit_logreg(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), torch.tensor([0, 1]), C=1.0)


def test_search_C_follows_the_clip_protocol(data):
    X, y = blobs(600, d=32, seed=4)
    Xv, yv = blobs(300, d=32, seed=5)
    best, curve = search_C(X, y, Xv, yv, max_iter=200)
    assert 7 + 4 <= len(curve) <= 7 + 8  # 7 starting points, then 2 new per halving (1 at the ends)
    cs = [c for c, _ in curve]
    assert cs == sorted(cs) and cs[0] >= 1e-6 * 0.999 and cs[-1] <= 1e6 * 1.001
    steps = [round(-8 * math.log10(c)) for c in cs]  # lambda = 1/C on 8 steps per decade
    assert all(math.isclose(-8 * math.log10(c), s, abs_tol=1e-6) for c, s in zip(cs, steps, strict=True))
    top = max(acc for _, acc in curve)
    assert best == min(c for c, acc in curve if acc == top)  # ties go to the most regularised
    assert (best, curve) == search_C(X, y, Xv, yv, max_iter=200)  # deterministic
    assert "test" not in " ".join(inspect.signature(search_C).parameters)


def test_linear_probe_returns_the_model_and_plain_floats(data):
    model, fixed = linear_probe(data["train"], data["val"], data["test"], C=0.316)
    assert set(fixed) == {"acc1", "C"} and fixed["C"] == 0.316 and 0.6 < fixed["acc1"] < 0.8
    assert accuracy(model.predict(data["test"][0]), data["test"][1]) == fixed["acc1"]
    _, auto = linear_probe(data["train"], data["val"], data["test"], C="auto", max_iter=200)
    assert set(auto) == {"acc1", "C", "val_acc", "search"}
    assert all(type(v) is float for v in [auto["acc1"], auto["C"], auto["val_acc"], *auto["search"].values()])
    assert auto["val_acc"] == max(auto["search"].values())


@pytest.mark.gpu
def test_gpu_fit_matches_cpu(data):
    (X, y), (Xt, yt) = data["train"], data["test"]
    cpu, gpu = fit_logreg(X, y, 0.316), fit_logreg(X, y, 0.316, device="cuda")
    assert gpu.weight.is_cuda
    assert abs(accuracy(cpu.predict(Xt), yt) - accuracy(gpu.predict(Xt), yt)) <= 0.005
