"""The few-shot sweep: shot counts x methods x support-set draws on cached features, and its summaries.

For each shot count K the draws are sampled once (`fewshot_support`) and every method runs on the same draws,
so differences between methods are paired: trained methods (`fewshot_methods`, batched over draws by
`fewshot_train`) and training-free ones (`fewshot_closed`).
Summaries are plain floats under string keys (`shots_4.zeroshot.acc`) and wide rows for `plots/`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import stdtrit  # Student t quantile; scipy.stats takes seconds to import
from tqdm import tqdm

from clipprobe.params import FewshotParams, Params
from clipprobe.probes.fewshot_methods import MethodResult, Prior
from clipprobe.probes.fewshot_registry import METHODS, method_class
from clipprobe.probes.fewshot_support import Task, check_shots, class_means, make_task
from clipprobe.probes.fewshot_train import head_hits, train_heads
from clipprobe.probes.zeroshot import zeroshot_logits, zeroshot_weights

_INIT_STREAM = 2  # random-stream offset of the methods' own randomness (support sets use 0 and 1)


@dataclass
class Sweep:
    # (N,) bool test hits of the zero-shot classifier, the line every method is compared to
    zeroshot_hits: torch.Tensor
    class_mean_acc: float  # test accuracy of the nearest class mean of *all* train features (a diagnostic)
    n_classes: int
    results: dict[int, dict[str, MethodResult]]  # shots -> method -> per-draw results

    @property
    def zeroshot_acc(self) -> float:
        return self.zeroshot_hits.double().mean().item()


def run_method(
    name: str,
    cfg: FewshotParams,
    prior: Prior,
    task: Task,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    generator: torch.Generator,
) -> MethodResult:
    """Run method `name` on every draw of `task`; the test split only scores the already chosen model."""
    method = method_class(name)(prior, cfg)
    if hasattr(method, "run"):  # training-free
        return method.run(task, test, test_labels)
    trace = train_heads(
        method, task, test, test_labels, epochs=cfg.epochs, eval_every=cfg.eval_every, generator=generator
    )
    return MethodResult(trace.selected(method.select), trace=trace)


def class_mean_hits(
    train: tuple[torch.Tensor, torch.Tensor], test: torch.Tensor, test_labels: torch.Tensor, n_classes: int
) -> torch.Tensor:
    """(N,) test hits of the nearest-class-mean classifier (cosine to the normalised mean of every train
    feature of a class). With ~100 labelled images per class it shows how good a *prototype* the labels give,
    next to the zero-shot classifier's text prototypes (a diagnostic: methods that mix the two can beat both)."""
    x, y = train
    means = F.normalize(class_means(x[None].to(test), y.to(test.device), n_classes)[0], dim=-1)  # (C, D)
    return head_hits((test @ means.T)[None], test_labels)[0]


def _split(features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    # normalised here exactly as zeroshot_logits normalises, so the zeroshot head's logits match bit for bit
    return F.normalize(features["image"].float(), dim=-1), features["labels"]


def run_sweep(
    train: dict[str, torch.Tensor],
    val: dict[str, torch.Tensor],
    test: dict[str, torch.Tensor],
    text: torch.Tensor,
    logit_scale: float,
    shots: Sequence[int],
    cfg: FewshotParams,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
    cpu_threads: int | None = 1,
) -> Sweep:
    """Run every method of `cfg.inits` on `cfg.draws` support sets per shot count.

    Parameters
    ----------
    train, val, test: cached feature dicts (`features/<split>.pt`): "image" (N, D) raw, "labels" (N,).
    text: (T, C, D) text embeddings of the zero-shot template ensemble; logit_scale: CLIP's (e.g. 100).
    shots: shot counts K; each must fit the smallest train class (else a one-line ClipprobeError).
    cpu_threads: torch threads while the sweep runs on a CPU (None: leave torch's setting). Its tensors are
        small, and a second intra-op thread only adds synchronisation: the embedded default took 36 s on one
        thread and 429 s on two on a busy 2-core machine (OpenMP threads spin while they wait).
    """
    device = torch.device(device)
    with _cpu_threads(cpu_threads if device.type == "cpu" else None):
        weights = zeroshot_weights(text.float()).to(device)  # (C, D)
        n_classes = len(weights)
        train_xy, val_xy = _split(train), _split(val)
        check_shots(shots, train_xy[1], n_classes)
        test_x, test_y = (t.to(device) for t in _split(test))
        # scored with head_hits like every method, so an exact tie cannot show up as a difference
        zeroshot_hits = head_hits(
            zeroshot_logits(test["image"].float().to(device), weights, logit_scale)[None], test_y
        )[0]
        class_mean_acc = class_mean_hits(train_xy, test_x, test_y, n_classes).double().mean().item()
        prior = Prior(weights, logit_scale, text_norms=text.float().mean(dim=0).norm(dim=-1).to(device))
        results: dict[int, dict[str, MethodResult]] = {}
        bar = tqdm(total=len(shots) * len(cfg.inits), desc="few-shot", disable=not progress)
        for k in shots:
            task = make_task(k, train_xy, val_xy, n_classes, cfg.draws, cfg.val_per_class, seed, device)
            results[k] = {}
            for name in cfg.inits:
                stream = np.random.SeedSequence([seed, k, _INIT_STREAM, list(METHODS).index(name)])
                generator = torch.Generator().manual_seed(int(stream.generate_state(1)[0]))
                results[k][name] = run_method(name, cfg, prior, task, test_x, test_y, generator)
                bar.set_postfix_str(f"{k}-shot {name}: {100 * results[k][name].acc.mean():.1f}%")
                bar.update()
        bar.close()
        return Sweep(zeroshot_hits, class_mean_acc, n_classes, results)


def sweep_features(
    params: Params,
    splits: dict[str, dict[str, torch.Tensor]],
    text: dict,
    device: torch.device,
    test: dict[str, torch.Tensor] | None = None,
    shots: Sequence[int] | None = None,
    progress: bool = False,
) -> Sweep:
    """`run_sweep` with params' recipe on the embed stage's features (`features.load_features`).

    test: a feature dict scored in place of the test split (bench/fewshot_heldout.py); shots: default params'.
    """
    return run_sweep(
        splits["train"],
        splits["val"],
        splits["test"] if test is None else test,
        text["text"][params.embed.ensemble],
        text["logit_scale"],
        params.shots if shots is None else shots,
        params.fewshot,
        params.seed,
        device=device,
        progress=progress,
    )


def evaluate(
    params: Params,
    splits: dict[str, dict[str, torch.Tensor]],
    text: dict,
    device: torch.device,
    progress: bool,
) -> dict:
    """The few-shot stage's outputs: {"metrics": `summarize`, "acc": `accuracy_rows`, "curves": `curve_rows`}
    (the last two as (rows, columns))."""
    sweep = sweep_features(params, splits, text, device, progress=progress)
    return {"metrics": summarize(sweep), "acc": accuracy_rows(sweep), "curves": curve_rows(sweep)}


@contextmanager
def _cpu_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to n inside the block (unchanged for None), restored after."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def interval(values: torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval of the mean over draws."""
    n = len(values)
    half = stdtrit(n - 1, 0.975) * values.std(unbiased=True).item() / math.sqrt(n)
    return values.mean().item(), float(half)


def paired_interval(hits: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """Mean accuracy difference of (H, N) test hits to a reference's (N,) or (H, N) hits on the same images,
    and the half-width of its 95% interval over *both* sources of noise: the support-set draws and the test
    images (a finite sample too: on 2000 images a paired difference of 0.5 points is within its noise).

    The table is a crossed draws x images design, d = mean + draw + image + interaction: the variance of its
    mean, var(draw) / H + var(image) / N + var(interaction) / (H N), is estimated without bias as
    var(row means) / H + var(column means) / N - residual mean square / (H N) (each of the first two terms
    holds the interaction once); the t quantile takes Satterthwaite's degrees of freedom.
    """
    diff = hits.double() - reference.double()  # (H, N)
    n_draws, n_images = diff.shape
    rows, columns = diff.mean(dim=1), diff.mean(dim=0)
    across_draws, across_images = rows.var() / n_draws, columns.var() / n_images
    residual = diff - rows[:, None] - columns[None, :] + diff.mean()
    interaction = residual.square().sum() / ((n_draws - 1) * (n_images - 1))
    variance = (across_draws + across_images - interaction / (n_draws * n_images)).clamp_min(0)
    if across_draws + across_images == 0:
        return diff.mean().item(), 0.0
    dof = (across_draws + across_images) ** 2 / (
        across_draws**2 / (n_draws - 1) + across_images**2 / (n_images - 1)
    )
    return diff.mean().item(), float(stdtrit(dof.item(), 0.975) * variance.sqrt())


def summarize(sweep: Sweep) -> dict[str, dict[str, dict[str, float]] | float]:
    """metrics/fewshot.json, per `shots_K.<method>`: acc (mean test accuracy over draws) and ci95 (half-width
    of its 95% interval over draws, the test set held fixed); delta_zeroshot, the paired difference to the
    zero-shot classifier on the same test images, and delta_random, to `random` on the same draws and images,
    each with its `_ci95` over draws and test images (`paired_interval`); for trained methods acc_init and
    acc_last, the test accuracy before any step and after the last one. At the top: the zero-shot and
    nearest-class-mean (`class_mean_hits`) accuracies and chance.
    """
    metrics: dict = {
        "zeroshot_acc": sweep.zeroshot_acc,
        "class_mean_acc": sweep.class_mean_acc,
        "chance": 1.0 / sweep.n_classes,
    }
    for k, methods in sweep.results.items():
        block = {}
        for name, result in methods.items():
            acc, ci = interval(result.acc)
            entry = {"acc": acc, "ci95": ci}
            entry["delta_zeroshot"], entry["delta_zeroshot_ci95"] = paired_interval(
                result.hits, sweep.zeroshot_hits
            )
            if "random" in methods and name != "random":
                entry["delta_random"], entry["delta_random_ci95"] = paired_interval(
                    result.hits, methods["random"].hits
                )
            if result.trace is not None:
                entry["acc_init"] = result.trace.test[0].mean().item()
                entry["acc_last"] = result.trace.test[-1].mean().item()
            block[name] = entry
        metrics[f"shots_{k}"] = block
    return metrics


def _csv(value: float | torch.Tensor) -> float:
    """An accuracy for a CSV cell: 6 decimals (0.2362, not 0.23620000000000002)."""
    return round(float(value), 6)


def accuracy_rows(sweep: Sweep) -> tuple[list[dict[str, float]], list[str]]:
    """plots/fewshot_acc.csv: one row per shot count, one column per method (mean test accuracy)."""
    names = list(next(iter(sweep.results.values())))
    rows = [
        {
            "shots": k,
            "zeroshot_classifier": _csv(sweep.zeroshot_acc),
            **{n: _csv(r[n].acc.mean()) for n in names},
        }
        for k, r in sweep.results.items()
    ]
    return rows, ["shots", "zeroshot_classifier", *names]


def curve_rows(sweep: Sweep) -> tuple[list[dict[str, float]], list[str]]:
    """plots/fewshot_curves.csv: per shot count and evaluation epoch, mean test and few-shot val accuracy of
    every trained method (columns `<method>_test`, `<method>_val`)."""
    trained = [n for n, r in next(iter(sweep.results.values())).items() if r.trace is not None]
    columns = ["shots", "epoch", *(f"{n}_{split}" for n in trained for split in ("test", "val"))]
    rows = []
    for k, methods in sweep.results.items():
        epochs = methods[trained[0]].trace.epochs if trained else []
        test = {n: methods[n].trace.test.mean(dim=1) for n in trained}  # (E,) each, built once
        val = {n: methods[n].trace.val.mean(dim=1) for n in trained}
        for i, epoch in enumerate(epochs):
            row = {"shots": k, "epoch": epoch}
            for n in trained:
                row[f"{n}_test"], row[f"{n}_val"] = _csv(test[n][i]), _csv(val[n][i])
            rows.append(row)
    return rows, columns
