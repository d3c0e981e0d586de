"""The few-shot sweep: shot counts x methods x support-set draws on cached features, and its summaries.

For each shot count K the draws are sampled once (`fewshot_support`) and every method runs on the same draws,
so differences between methods are paired: trained methods (`fewshot_methods`, batched over draws by
`fewshot_train`) and training-free ones (`fewshot_closed`).
Summaries are plain floats under string keys (`shots_4.zeroshot.acc`) and wide rows for `plots/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clipprobe.data.store import Split
from clipprobe.experiment import Result, Table, flatten
from clipprobe.params import FewshotParams
from clipprobe.probes.fewshot import modes
from clipprobe.probes.fewshot.methods import MethodResult, Prior
from clipprobe.probes.fewshot.registry import METHODS
from clipprobe.probes.fewshot.support import Task, check_shots, class_means, make_task
from clipprobe.probes.fewshot.train import Trace, best_of_runs, head_hits, train_heads
from clipprobe.probes.zeroshot import zeroshot_logits, zeroshot_weights
from clipprobe.progress import progress as progress_bar
from clipprobe.stats import crossed_interval, t_interval

_INIT_STREAM = 2  # random-stream offset of the methods' own randomness (support sets use 0 and 1)


@dataclass
class Sweep:
    # (N,) bool test hits of the zero-shot classifier, the line every method is compared to
    zeroshot_hits: torch.Tensor
    class_mean_hits: torch.Tensor  # (N,) bool: the nearest class mean of *all* train features (a diagnostic)
    n_classes: int
    results: dict[int, dict[str, MethodResult]]  # shots -> method -> per-draw results

    @property
    def zeroshot_acc(self) -> float:
        return self.zeroshot_hits.double().mean().item()

    @property
    def class_mean_acc(self) -> float:
        return self.class_mean_hits.double().mean().item()


def run_method(
    method,
    cfg: FewshotParams,
    task: Task,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    generator: torch.Generator,
    test_pre: torch.Tensor | None = None,
    base: MethodResult | None = None,
) -> MethodResult:
    """Run `method` (a `registry.METHODS` instance) on every draw of `task`; the test split only scores the
    already chosen model. `base`: for a swept head, its base head's result on the same task, which is its run
    at `fewshot.linear.lr` (same init, same step size), so that run is not repeated."""
    if hasattr(method, "run"):  # training-free
        return method.run(task, test, test_labels)

    def train(task: Task) -> Trace:
        return train_heads(
            method,
            task,
            test,
            test_labels,
            epochs=cfg.epochs,
            eval_every=cfg.eval_every,
            generator=generator,
            test_pre=test_pre,
        )

    if not hasattr(method, "lrs"):
        trace = train(task)
        return MethodResult(trace.selected(method.select), trace=trace)
    runs = {cfg.linear.lr: base.trace} if base is not None else {}
    method.stack = [lr for lr in method.lrs if lr not in runs]  # the other step sizes, as one stacked run
    if method.stack:
        runs |= dict(
            zip(method.stack, train(task.repeat(len(method.stack))).split(len(method.stack)), strict=True)
        )
    trace, pick = best_of_runs([runs[lr] for lr in method.lrs])
    lrs = torch.tensor(method.lrs, dtype=torch.float64)[pick]
    return MethodResult(trace.selected(method.select), trace=trace, choice={"lr": lrs})


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


def make_prior(
    text: torch.Tensor, logit_scale: float, projection: dict[str, torch.Tensor] | None, device: torch.device
) -> Prior:
    """What every method starts from: the zero-shot classifier of the (T, C, D) template texts."""
    return Prior(
        zeroshot_weights(text.float()).to(device),
        logit_scale,
        text_norms=text.float().mean(dim=0).norm(dim=-1).to(device),
        projection=None
        if projection is None
        else (projection["weight"].float().to(device), projection["bias"].float().to(device)),
    )


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
    projection: dict[str, torch.Tensor] | None = None,
) -> Sweep:
    """Run every method of `cfg.inits` on `cfg.draws` support sets per shot count.

    Parameters
    ----------
    train, val, test: cached feature dicts (`features/<split>.pt`): "image" (N, D) raw, "labels" (N,).
    text: (T, C, D) text embeddings of the zero-shot template ensemble; logit_scale: CLIP's (e.g. 100).
    shots: shot counts K; each must fit the smallest train class (else a one-line ClipprobeError).
    seed: the training seed: it draws the support sets and the methods' own randomness.
    projection: CLIP's last visual projection {"weight": (D, P), "bias": (D,)} (embed's text.pt), with the
        splits' "image_pre" (N, P) features: what ProLIP trains.
    """
    device = torch.device(device)
    with_pre = projection is not None and "image_pre" in train
    prior = make_prior(text, logit_scale, projection if with_pre else None, device)
    weights = prior.weights  # (C, D)
    n_classes = len(weights)
    train_xy, val_xy = _split(train), _split(val)
    check_shots(shots, train_xy[1], n_classes)
    test_x, test_y = (t.to(device) for t in _split(test))
    # scored with head_hits like every method, so an exact tie cannot show up as a difference
    zeroshot_hits = head_hits(
        zeroshot_logits(test["image"].float().to(device), weights, logit_scale)[None], test_y
    )[0]
    class_mean = class_mean_hits(train_xy, test_x, test_y, n_classes)
    pre = (train["image_pre"].float(), val["image_pre"].float()) if with_pre else None
    test_pre = test["image_pre"].float().to(device) if with_pre else None
    views = (train.get("views"), train.get("views_pre") if with_pre else None)
    results: dict[int, dict[str, MethodResult]] = {}
    bar = progress_bar(total=len(shots) * len(cfg.inits), desc="few-shot", enabled=progress)
    for k in shots:
        tasks: dict[int, Task] = {}  # by val images per class: the same support sets, val sets nested
        results[k] = {}
        for name in cfg.inits:
            method = METHODS[name](prior, cfg)
            per_class = getattr(method, "val_per_class", cfg.val_per_class)  # LP++ validates on K per class
            if per_class not in tasks:
                tasks[per_class] = make_task(
                    k, train_xy, val_xy, n_classes, cfg.draws, per_class, seed, device, pre=pre, views=views
                )
            own = getattr(method, "base", name)  # a swept head draws its base head's init
            stream = np.random.SeedSequence([seed, k, _INIT_STREAM, list(METHODS).index(own)])
            generator = torch.Generator().manual_seed(int(stream.generate_state(1)[0]))
            base = results[k].get(own) if own != name else None
            results[k][name] = run_method(
                method, cfg, tasks[per_class], test_x, test_y, generator, test_pre, base=base
            )
            bar.set_postfix_str(f"{k}-shot {name}: {100 * results[k][name].acc.mean():.1f}%")
            bar.update()
    bar.close()
    return Sweep(zeroshot_hits, class_mean, n_classes, results)


@dataclass
class Inputs:
    """What the fewshot stage passes: one seed's embed-stage cache and the sweep's settings outside `fewshot`."""

    features: dict[str, dict[str, torch.Tensor]]  # per split: "image", "labels" (and "image_pre")
    text: dict  # text.pt: "text": {template set: (T, C, D)}, "logit_scale", maybe "projection"
    ensemble: str  # params.yaml embed.ensemble: the zero-shot prior's template set
    shots: Sequence[int]  # params.yaml shots
    seed: int  # the training seed: support draws and the methods' own randomness
    device: torch.device
    modes_data: dict[str, Split] | None = (
        None  # the shapes world's train and test splits: the modes experiment
    )
    test: dict[str, torch.Tensor] | None = (
        None  # scored in place of features["test"] (bench/fewshot_heldout.py)
    )
    progress: bool = False


def sweep_inputs(inputs: Inputs, cfg: FewshotParams) -> Sweep:
    """`run_sweep` on one seed's embed-stage features (`contracts.load_features`)."""
    features, text = inputs.features, inputs.text
    return run_sweep(
        features["train"],
        features["val"],
        features["test"] if inputs.test is None else inputs.test,
        text["text"][inputs.ensemble],
        text["logit_scale"],
        inputs.shots,
        cfg,
        inputs.seed,
        device=inputs.device,
        progress=inputs.progress,
        projection=text.get("projection"),
    )


def hit_arrays(sweep: Sweep) -> dict[str, np.ndarray]:
    """Every per-image test hit of the sweep, for the summary over seeds: "zeroshot" and "class_mean" (N,),
    and `shots<K>_<method>` (H, N) for each shot count and method."""
    arrays = {"zeroshot": sweep.zeroshot_hits.numpy(), "class_mean": sweep.class_mean_hits.numpy()}
    for k, methods in sweep.results.items():
        arrays.update({f"shots{k}_{name}": result.hits.numpy() for name, result in methods.items()})
    return arrays


def evaluate(inputs: Inputs, cfg: FewshotParams) -> Result:
    """One seed's few-shot sweep and the modes experiment.

    figures: `summarize` (flat); curves: `curves` (`curve_rows`); arrays: `hits` (`hit_arrays`) and `modes`
    (`modes.run`, empty unless `inputs.modes_data` is given and `cfg.modes.attributes` names some).
    """
    sweep = sweep_inputs(inputs, cfg)
    modes_curves: dict[str, np.ndarray] = {}
    if inputs.modes_data is not None and cfg.modes.attributes:
        device = inputs.device
        prior = make_prior(inputs.text["text"][inputs.ensemble], inputs.text["logit_scale"], None, device)
        train, test = (_split(inputs.features[name]) for name in ("train", "test"))
        modes_curves = modes.run(
            (train[0].to(device), train[1].to(device)),
            (test[0].to(device), test[1].to(device)),
            inputs.modes_data,
            prior,
            cfg,
            inputs.seed,
        )
    return Result(
        flatten(summarize(sweep)),
        curves={"curves": curve_rows(sweep)},
        arrays={"hits": hit_arrays(sweep), "modes": modes_curves},
    )


def summarize(sweep: Sweep) -> dict[str, dict[str, dict[str, float]] | float]:
    """metrics/fewshot.json, per `shots_K.<method>`: acc (mean test accuracy over draws) and ci95 (half-width
    of its 95% interval over draws, the test set held fixed); delta_zeroshot, the paired difference to the
    zero-shot classifier on the same test images, and delta_random, to `random` on the same draws and images,
    each with its `_ci95` over draws and test images (`stats.crossed_interval`); for trained methods acc_init and
    acc_last, the test accuracy before any step and after the last one, and epoch_chosen, the mean over draws
    of the epoch kept. At the top: the zero-shot and
    nearest-class-mean (`class_mean_hits`) accuracies and chance.
    """
    metrics: dict = {
        "zeroshot_acc": sweep.zeroshot_acc,
        "class_mean_acc": sweep.class_mean_acc,
        "chance": 1.0 / sweep.n_classes,
    }
    zeroshot = sweep.zeroshot_hits.numpy().astype(np.float64)
    for k, methods in sweep.results.items():
        block = {}
        for name, result in methods.items():
            hits = result.hits.numpy().astype(np.float64)  # (H, N)
            acc, ci = t_interval(result.acc.numpy())
            entry = {"acc": acc, "ci95": ci}
            entry["delta_zeroshot"], entry["delta_zeroshot_ci95"] = crossed_interval(hits - zeroshot)
            if "random" in methods and name != "random":
                random = methods["random"].hits.numpy().astype(np.float64)
                entry["delta_random"], entry["delta_random_ci95"] = crossed_interval(hits - random)
            if result.trace is not None:
                entry["acc_init"] = result.trace.test[0].mean().item()
                entry["acc_last"] = result.trace.test[-1].mean().item()
                chosen = result.trace.chosen(METHODS[name].select)  # (H,) evaluation points kept
                entry["epoch_chosen"] = float(np.mean([result.trace.epochs[i] for i in chosen.tolist()]))
            block[name] = entry
        metrics[f"shots_{k}"] = block
    return metrics


def _csv(value: float | torch.Tensor) -> float:
    """An accuracy for a CSV cell: 6 decimals (0.2362, not 0.23620000000000002)."""
    return round(float(value), 6)


def curve_rows(sweep: Sweep) -> Table:
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
    return Table(columns, rows)
