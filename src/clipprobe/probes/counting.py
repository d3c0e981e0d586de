"""Counting and position probes: does CLIP's attention pool discard how many objects there are, and where?

Per task (the object count; the quadrant holding the labelled object), four readouts on the same
train/val/test splits:
- zero-shot: the prompt-template ensemble on the pooled embedding (`encode_image`);
- pooled probe: logistic regression on the pooled embedding;
- pre-pool probe: logistic regression on the map the attention pool reads, average-pooled to a small grid
  that keeps the layout (at 64 px the tiny tower's 2x2 map is kept whole);
- majority: the most frequent train class.
Both probe inputs come from one forward pass through the same frozen tower (`FrozenTower`, then its own
attention pool), so the only difference between them is the pool. Each feature dimension is standardised
with train statistics, and C is chosen on val from a small grid; nothing is selected on test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clipprobe import readouts
from clipprobe.data.store import Split
from clipprobe.errors import ClipprobeError
from clipprobe.experiment import Result, flatten
from clipprobe.features.embed import embed_texts
from clipprobe.features.tower import FrozenTower, tower_features
from clipprobe.models.clip import mean_std
from clipprobe.params import CountingParams
from clipprobe.probes.logreg import fit_logreg
from clipprobe.probes.zeroshot import accuracy, zeroshot_logits, zeroshot_weights

SPLITS = ("train", "val", "test")
READOUTS = readouts.COUNTING
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")  # index = 2 * (y >= 0.5) + (x >= 0.5)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass
class Task:
    """One attribute to read out: its class phrases (what the prompts say) and labels per split."""

    name: str
    class_names: list[str]  # C phrases, put into the templates' `{}`
    templates: list[str]
    labels: dict[str, torch.Tensor]  # split -> (N,) int64 in [0, C)


# ---------------------------------------------------------------------------------------------- labels


def quadrant_labels(positions: np.ndarray) -> np.ndarray:
    """(N, 2) centres (x, y) in [0, 1], y pointing down -> (N,) int64 index into QUADRANTS."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ClipprobeError(f"positions: an (N, 2) array of (x, y) is needed (got shape {positions.shape})")
    x, y = positions[:, 0], positions[:, 1]
    return (2 * (y >= 0.5) + (x >= 0.5)).astype(np.int64)


def count_phrase(count: int, nouns: Sequence[str], number_words: bool) -> str:
    """'one shape', 'two shapes' (number_words) or '1 shape', '3 objects'; nouns = (singular, plural)."""
    if number_words and not 0 <= count < len(NUMBER_WORDS):
        raise ClipprobeError(f"counting.number_words: counts 0-10 have words (got {count}); use digits")
    number = NUMBER_WORDS[count] if number_words else str(count)
    return f"{number} {nouns[0] if count == 1 else nouns[1]}"


def count_task(
    counts: Mapping[str, np.ndarray], templates: list[str], nouns: Sequence[str], number_words: bool
) -> Task:
    """Classes are the counts seen in train; a val/test count train never shows is an error."""
    missing = [split for split in SPLITS if counts.get(split) is None]
    if missing:
        raise ClipprobeError(
            f"counts: the {', '.join(missing)} split(s) have no counts.npy (not a counting dataset)"
        )
    classes = np.unique(np.asarray(counts["train"]))
    labels = {}
    for split in SPLITS:
        values = np.asarray(counts[split])
        unseen = sorted(set(np.unique(values).tolist()) - set(classes.tolist()))
        if unseen:
            raise ClipprobeError(f"counts: the {split} split holds counts {unseen} that train never shows")
        labels[split] = torch.from_numpy(np.searchsorted(classes, values).astype(np.int64))
    names = [count_phrase(int(c), nouns, number_words) for c in classes]
    return Task("count", names, list(templates), labels)


def position_task(positions: Mapping[str, np.ndarray], templates: list[str]) -> Task:
    labels = {split: torch.from_numpy(quadrant_labels(positions[split])) for split in SPLITS}
    return Task("position", list(QUADRANTS), list(templates), labels)


# ---------------------------------------------------------------------------------------------- readouts


def _hits(pred: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return (pred.cpu() == labels.cpu()).numpy()


def zeroshot_hits(
    model: torch.nn.Module, tokenizer, task: Task, pooled: torch.Tensor, device: torch.device
) -> np.ndarray:
    """(N,) test hits of the task's template ensemble on the test split's pooled features."""
    text = embed_texts(model, tokenizer, task.class_names, task.templates, device=device)  # (T, C, D)
    return _hits(zeroshot_logits(pooled, zeroshot_weights(text)).argmax(dim=-1), task.labels["test"])


def standardise(features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every split scaled with train's per-dimension mean and std (constant dimensions are only centred)."""
    train = features["train"].double()
    mean, std = train.mean(dim=0), train.std(dim=0)
    std = torch.where(std > 1e-6 * std.max().clamp_min(1e-12), std, torch.ones_like(std))
    return {split: ((x.double() - mean) / std).float() for split, x in features.items()}


def probe(
    features: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
    n_classes: int,
    Cs: Sequence[float],
    max_iter: int,
    device: torch.device,
) -> dict[str, float]:
    """Logistic regression on features standardised with train statistics: one fit on train per C, in
    ascending order, each warm-started from the last (a regularisation path); the C best on val is kept
    (ties: the smaller C) and scored on test. Returns test acc, val acc, C and "hits" (N,) on test.

    A small grid rather than the CLIP paper's 15-fit search, and no refit on train + val: on 2 CPU cores the
    pre-pool probe's (N, 2048) fits dominate the stage's time budget.
    """
    x = {split: value.to(device) for split, value in standardise(features).items()}
    best, model = None, None
    for C in sorted(Cs):
        model = fit_logreg(
            x["train"], labels["train"], C, n_classes=n_classes, max_iter=max_iter, device=device, init=model
        )
        val_acc = accuracy(model.predict(x["val"]), labels["val"])
        if best is None or val_acc > best[0]:
            best = (val_acc, C, model)
    val_acc, C, model = best
    hits = _hits(model.predict(x["test"]), labels["test"])
    return {"acc": float(hits.mean()), "val_acc": val_acc, "C": float(C), "hits": hits}


def majority_hits(train: torch.Tensor, test: torch.Tensor, n_classes: int) -> np.ndarray:
    """(N,) test hits of always predicting train's most frequent class (ties: the lowest index)."""
    majority = int(torch.bincount(train, minlength=n_classes).argmax())
    return _hits(torch.full_like(test, majority), test)


def evaluate_task(
    task: Task,
    features: Mapping[str, Mapping[str, torch.Tensor]],
    model: torch.nn.Module,
    tokenizer,
    *,
    Cs: Sequence[float],
    max_iter: int,
    device: torch.device,
) -> dict:
    """The four readouts of one task; `features[split]` holds "pooled" and "prepool" (from tower_features).

    Returns {readout: {"acc", "hits": (N,) bool test hits, ...}} for READOUTS, plus chance and n_test.
    """
    n_classes = len(task.class_names)
    by_source = {src: {split: features[split][src] for split in SPLITS} for src in ("pooled", "prepool")}
    test = task.labels["test"]
    zeroshot = zeroshot_hits(model, tokenizer, task, by_source["pooled"]["test"], device)
    majority = majority_hits(task.labels["train"], test, n_classes)
    return {
        "zeroshot": {"acc": float(zeroshot.mean()), "hits": zeroshot},
        "pooled_probe": probe(by_source["pooled"], task.labels, n_classes, Cs, max_iter, device),
        "prepool_probe": {
            **probe(by_source["prepool"], task.labels, n_classes, Cs, max_iter, device),
            "dim": float(by_source["prepool"]["test"].shape[1]),
        },
        "majority": {"acc": float(majority.mean()), "hits": majority},
        "chance": 1.0 / n_classes,
        "n_test": float(len(test)),
    }


@dataclass
class Inputs:
    """What the counting stage passes: the CLIP whose tower is read, its tokenizer and the splits."""

    clip: torch.nn.Module
    tokenizer: Any
    splits: Mapping[str, Split]  # train, val, test with counts (and positions, when the data has them)
    device: torch.device


def evaluate(inputs: Inputs, cfg: CountingParams) -> Result:
    """Every task the splits support (count; position when they hold positions), each with its four readouts
    (`evaluate_task`), from one pass of the frozen tower per split.

    figures: `<task>.<readout>.acc` (and `.val_acc`, `.C`, `.dim` for the probes), `<task>.chance`,
    `<task>.n_test`; arrays: `hits` {"<task>_<readout>": (N,) bool test hits}.
    """
    splits, device = inputs.splits, inputs.device
    tower = FrozenTower(
        inputs.clip
    )  # the tower stops before the pool; its own pool gives the pooled embedding
    mean, std = mean_std(inputs.clip)
    features = {
        split: tower_features(
            tower,
            data.images,
            mean=mean,
            std=std,
            device=device,
            batch_size=cfg.batch_size,
            grid=cfg.prepool_grid,
        )
        for split, data in splits.items()
    }
    tasks = [
        count_task(
            {s: d.counts for s, d in splits.items()}, cfg.count_templates, cfg.count_nouns, cfg.number_words
        )
    ]
    if all(data.positions is not None for data in splits.values()):
        tasks.append(position_task({s: d.positions for s, d in splits.items()}, cfg.position_templates))
    results = {
        task.name: evaluate_task(
            task, features, inputs.clip, inputs.tokenizer, Cs=cfg.Cs, max_iter=cfg.max_iter, device=device
        )
        for task in tasks
    }
    metrics = {task: {k: _without_hits(v) for k, v in readouts.items()} for task, readouts in results.items()}
    hits = {
        f"{task}_{name}": readouts[name]["hits"] for task, readouts in results.items() for name in READOUTS
    }
    return Result(flatten(metrics), arrays={"hits": hits})


def _without_hits(value: object) -> object:
    return {k: v for k, v in value.items() if k != "hits"} if isinstance(value, dict) else value
