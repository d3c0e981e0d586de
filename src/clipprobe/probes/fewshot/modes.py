"""The modes experiment: does few-shot training overfit to the mode of the support images?

The seed report explains the 1-shot overfitting by modes: a class has several ("a sleeping dog", "a running
dog"), one labelled image shows one, and training learns that mode's template and loses the others. The
shapes world knows each image's within-class variation (`data.shapes`: its background kind, its object
count, the labelled object's size), so for K shots per class support sets are drawn two ways at equal K:
- concentrated: all K images of a class from one mode (drawn per class and draw);
- spread: over as many modes as K allows (round robin over the class's modes, in random order).
The zero-shot-init and random heads train on both (the few-shot recipe, all evaluation points kept), and
every evaluation point scores the test images of the support's mode(s) and of the other modes apart.
Its own stage (`modes`): it does not read `shots`, so `dvc exp run -S shots=...` leaves it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from clipprobe.data.store import Split
from clipprobe.errors import ClipprobeError
from clipprobe.experiment import Result
from clipprobe.params import FewshotParams
from clipprobe.probes.fewshot.methods import Prior, RandomHead, ZeroshotHead, make_prior, normalised_split
from clipprobe.probes.fewshot.support import Task
from clipprobe.probes.fewshot.train import train_heads

SUPPORTS = ("concentrated", "spread")
INITS = {"zeroshot": ZeroshotHead, "random": RandomHead}
_STREAM = 7  # random-stream purpose of the modes experiment's draws


@dataclass
class Inputs:
    """What the modes stage passes: one seed's embed-stage cache and the shapes world's splits."""

    features: dict[str, dict[str, torch.Tensor]]  # per split: "image", "labels"
    text: dict  # text.pt: "text": {template set: (T, C, D)}, "logit_scale"
    ensemble: str  # params.yaml embed.ensemble: the zero-shot prior's template set
    data: Mapping[str, Split]  # the shapes world's "train" and "test" splits: each image's modes
    seed: int
    device: torch.device


def evaluate(inputs: Inputs, cfg: FewshotParams) -> Result:
    """One seed's modes experiment (`cfg.modes`, and the few-shot recipe it trains with). figures: every
    curve's mean test accuracy at the last evaluation point; arrays: "accuracy" (`run`)."""
    text = inputs.text
    prior = make_prior(text["text"][inputs.ensemble], text["logit_scale"], None, inputs.device)
    train, test = (
        tuple(t.to(inputs.device) for t in normalised_split(inputs.features[name]))
        for name in ("train", "test")
    )
    curves = run(train, test, inputs.data, prior, cfg, inputs.seed)
    figures = {name: float(curve[-1].mean()) for name, curve in curves.items() if name != "epochs"}
    return Result(figures, arrays={"accuracy": curves})


def skipped() -> Result:
    """The stage's outputs where the experiment does not run: no figures, no curves."""
    return Result({}, arrays={"accuracy": {}})


def mode_labels(split: Split, attribute: str, size_threshold: float) -> np.ndarray:
    """(N,) int64 mode of every image: background kind, object count, or labelled object small/large."""
    if attribute == "background":
        return np.array(split.backgrounds, dtype=np.int64)  # a copy: the store is memory-mapped read-only
    if attribute == "count":
        return np.array(split.counts, dtype=np.int64)
    return (np.asarray(split.sizes) >= size_threshold).astype(
        np.int64
    )  # "size": below / above train's median


def draw_supports(
    labels: np.ndarray,
    modes: np.ndarray,
    n_classes: int,
    k: int,
    draws: int,
    kind: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(draws, C * k) train rows, class by class, and (draws, C, n_modes) bool: the modes each class's support
    shows. Concentrated: one mode per class with at least k images; spread: round robin over the class's modes.
    """
    n_modes = int(modes.max()) + 1
    rows = np.empty((draws, n_classes * k), dtype=np.int64)
    shown = np.zeros((draws, n_classes, n_modes), dtype=bool)
    for h in range(draws):
        for c in range(n_classes):
            by_mode = [np.flatnonzero((labels == c) & (modes == m)) for m in range(n_modes)]
            if kind == "concentrated":
                eligible = [m for m in range(n_modes) if len(by_mode[m]) >= k]
                plan = [eligible[rng.integers(len(eligible))]] * k
            else:
                present = [m for m in rng.permutation(n_modes) if len(by_mode[m])]
                plan = [present[j % len(present)] for j in range(k)]
            picks = [rng.permutation(by_mode[m])[: plan.count(m)] for m in sorted(set(plan))]
            rows[h, c * k : (c + 1) * k] = np.concatenate(picks)
            shown[h, c, sorted(set(plan))] = True
    return rows, shown


def _check_modes(labels: np.ndarray, modes: np.ndarray, n_classes: int, k: int, attribute: str) -> None:
    for c in range(n_classes):
        if not any(((labels == c) & (modes == m)).sum() >= k for m in np.unique(modes)):
            raise ClipprobeError(
                f"fewshot.modes.shots: {k} shots of one {attribute} mode are not there for class {c} in train; "
                "use fewer shots"
            )


def run(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    data: Mapping[str, Split],
    prior: Prior,
    cfg: FewshotParams,
    seed: int,
) -> dict:
    """Every attribute x shot count x support kind x init of `cfg.modes`, on L2-normalised features.

    Returns {"<attribute>.shots_<K>.<kind>.<init>.<part>": (E, H) float64 array} for the parts "all",
    "support" and "other": test accuracy per evaluation point and draw, on every test image, on those whose
    mode the class's support shows, and on the others ("other" is left out where the support shows every
    mode); plus "epochs": (E,) the evaluation points. Empty without attributes.
    """
    (train_x, train_y), (test_x, test_y) = train, test
    train_labels, test_labels = train_y.cpu().numpy(), test_y.cpu()  # draws and masks are made on the CPU
    n_classes = len(prior.weights)
    threshold = float(np.median(np.asarray(data["train"].sizes)))
    draws = cfg.modes.draws
    out: dict[str, np.ndarray] = {}
    for k in cfg.modes.shots:
        rows, in_support, blocks = [], [], []  # every attribute x support kind, stacked as heads
        for a, attribute in enumerate(cfg.modes.attributes):
            train_modes = mode_labels(data["train"], attribute, threshold)
            test_modes = torch.from_numpy(mode_labels(data["test"], attribute, threshold))
            _check_modes(train_labels, train_modes, n_classes, k, attribute)
            for s, kind in enumerate(SUPPORTS):
                rng = np.random.default_rng([seed, k, _STREAM, a, s])
                block_rows, shown = draw_supports(train_labels, train_modes, n_classes, k, draws, kind, rng)
                rows.append(block_rows)
                # (draws, N): the test image's mode is one its class's support shows
                in_support.append(torch.from_numpy(shown)[:, test_labels, test_modes])
                blocks.append(f"{attribute}.shots_{k}.{kind}")
        index = torch.from_numpy(np.concatenate(rows))  # (A * S * draws, C * k)
        task = Task(k, train_x[index], train_y[index[0]], train_x[index], train_y[index[0]], index, index)
        mask = torch.cat(in_support)  # (A * S * draws, N)
        for name, method in INITS.items():  # one batched training per init: the heads are independent
            stream = np.random.SeedSequence([seed, k, _STREAM])
            generator = torch.Generator().manual_seed(int(stream.generate_state(1)[0]))
            trace = train_heads(method(prior, cfg), task, test_x, test_y, epochs=cfg.modes.epochs,
                                eval_every=cfg.eval_every, generator=generator)  # fmt: skip
            out["epochs"] = np.array(trace.epochs, dtype=np.int64)
            for b, block in enumerate(blocks):
                heads = slice(b * draws, (b + 1) * draws)
                hits, shown = trace.test_hits[:, heads].double(), mask[heads]  # (E, H, N), (H, N)
                out[f"{block}.{name}.all"] = hits.mean(dim=-1).numpy()
                for part, part_mask in (("support", shown), ("other", ~shown)):
                    if part_mask.any(dim=-1).all():  # e.g. no "other" mode when spread shows them all
                        out[f"{block}.{name}.{part}"] = _masked_mean(hits, part_mask).numpy()
    return out


def _masked_mean(hits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(E, H, N) hits, (H, N) mask -> (E, H) mean over the masked images (each draw masks some)."""
    weights = mask.double()
    return (hits * weights).sum(dim=-1) / weights.sum(dim=-1)
