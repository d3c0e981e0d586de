"""The summary over training seeds: every figure as a mean with its 95% interval, every comparison as a
paired claim, the headline metrics DVC shows, and the plots' CSVs (numpy only: no torch).

Accuracies keep their per-image test hits, so their intervals count the test images as well as the seeds
(`stats.crossed_interval`; few-shot hits are first averaged over a seed's support-set draws). Decoder
scores (PSNR, mIoU) are one number per seed and get a t-interval over seeds. A claim "A is ahead of B"
stands only when the paired interval excludes zero; it also says in how many seeds it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from clipprobe.contracts import Runs
from clipprobe.data.modes import BACKGROUNDS
from clipprobe.io import replace_folder
from clipprobe.readouts import COUNTING as COUNTING_READOUTS
from clipprobe.readouts import PROBE as PROBE_READOUTS
from clipprobe.readouts import VQVAE_FLOORS, VQVAE_MODELS
from clipprobe.stats import Paired, claim_from_seeds, claim_from_table, crossed_interval, t_interval

HEADLINE_FEWSHOT_FEWEST = ("random", "zeroshot", "prolip")  # at the fewest shots of the sweep
HEADLINE_FEWSHOT_MOST = ("prolip",)  # at the most


def _figure(mean: float, half: float | None, per_seed: Sequence[float]) -> dict:
    return {"mean": mean, "ci95": half, "per_seed": [float(v) for v in per_seed]}


def _seed_rows(hits: Sequence[np.ndarray]) -> np.ndarray:
    """(S, N) per-seed test hits, each seed's (N,) or (H, N) over draws averaged over its draws first."""
    return np.stack([np.atleast_2d(h).mean(axis=0) for h in hits]).astype(np.float64)


def accuracy(hits: Sequence[np.ndarray]) -> dict:
    """One figure from per-seed test hits, each (N,) or (H, N) over draws: mean over seeds, crossed interval."""
    table = _seed_rows(hits)
    mean, half = crossed_interval(table)
    return _figure(mean, half, table.mean(axis=1))


def per_seed(values: Sequence[float]) -> dict:
    """One figure from one value per seed: t-interval over seeds (none with one seed)."""
    mean, half = t_interval(np.asarray(values, dtype=np.float64))
    return _figure(mean, half, values)


def _claim(claim: Paired) -> dict:
    return asdict(claim)


def _table_claim(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> dict:
    return _claim(claim_from_table(_seed_rows(a), _seed_rows(b)))


def _columns(frame: pd.DataFrame) -> dict[str, list]:
    """A table as {column: values}, for summary.json (JSON keeps every float exactly)."""
    return {column: frame[column].tolist() for column in frame.columns}


# ---------------------------------------------------------------------------------------------- experiments


def pretrain(runs: Runs) -> dict:
    """The CLIP pretraining curves, one per seed (empty tables when the CLIP was not trained here)."""
    curves = runs.csv("pretrain_curve", ["step", "loss", "logit_scale"])
    return {"curves": {str(seed): _columns(frame) for seed, frame in zip(runs.seeds, curves, strict=True)}}


def probe(runs: Runs) -> dict:
    keys = [f"{name}.{key}" for name in PROBE_READOUTS for key in ("acc5", "mean_per_class_recall")]
    metrics, hits = runs.json("probe", keys), runs.hits("probe_hits", PROBE_READOUTS)
    figures = {name: accuracy([h[name] for h in hits]) for name in PROBE_READOUTS}
    figures.update({key: per_seed([m[key] for m in metrics]) for key in keys})
    claims = {
        "linear_probe-zeroshot_ensemble": _table_claim(
            [h["linear_probe"] for h in hits], [h["zeroshot_ensemble"] for h in hits]
        ),
        "zeroshot_ensemble-zeroshot_single": _table_claim(
            [h["zeroshot_ensemble"] for h in hits], [h["zeroshot_single"] for h in hits]
        ),
    }
    context = {"C": [m["linear_probe.C"] for m in metrics], "chance": metrics[0]["chance"]}
    searches = runs.csv("probe_c_search", ["C", "val_acc"])
    return {
        "figures": figures,
        "claims": claims,
        "context": {**context, "n_classes": metrics[0]["n_classes"]},
        "curves": {
            "c_search": {str(seed): _columns(frame) for seed, frame in zip(runs.seeds, searches, strict=True)}
        },
    }


def fewshot(runs: Runs, shots: Sequence[int], methods: Sequence[str]) -> dict:
    names = ["zeroshot", "class_mean", *(f"shots{k}_{name}" for k in shots for name in methods)]
    metrics = runs.json("fewshot", [f"shots_{k}.{name}.acc" for k in shots for name in methods])
    hits = runs.hits("fewshot_hits", names)
    figures = {
        "zeroshot": accuracy([h["zeroshot"] for h in hits]),
        "class_mean": accuracy([h["class_mean"] for h in hits]),
    }
    claims = {
        "class_mean-zeroshot": _table_claim([h["class_mean"] for h in hits], [h["zeroshot"] for h in hits])
    }
    for k in shots:
        for name in methods:
            table = [h[f"shots{k}_{name}"] for h in hits]
            figures[f"{k}shot_{name}"] = accuracy(table)
            claims[f"{k}shot_{name}-zeroshot"] = _table_claim(table, [h["zeroshot"] for h in hits])
            if name != "random" and "random" in methods:
                claims[f"{k}shot_{name}-random"] = _table_claim(table, [h[f"shots{k}_random"] for h in hits])
            if name == "zeroshot_swept" and "random_swept" in methods:  # the report's pair at swept steps
                other = [h[f"shots{k}_random_swept"] for h in hits]
                claims[f"{k}shot_{name}-random_swept"] = _table_claim(table, other)
            if f"shots_{k}.{name}.acc_init" in metrics[0]:  # a trained method
                for point in ("acc_init", "acc_last", "epoch_chosen"):
                    figures[f"{k}shot_{name}.{point}"] = per_seed(
                        [m[f"shots_{k}.{name}.{point}"] for m in metrics]
                    )
    curves = fewshot_curve_means(runs, min(shots))
    return {
        "figures": figures,
        "claims": claims,
        "context": {"chance": metrics[0]["chance"]},
        "curves": {"epochs": _columns(curves)},
    }


def _runs_claim(values: Sequence[np.ndarray]) -> dict:
    """A claim from per-seed (H,) values (one per draw): t-interval over all seed x draw runs; `holds` counts
    the seeds whose own mean has the sign of the overall mean."""
    flat = np.concatenate([np.asarray(v, dtype=np.float64) for v in values])
    delta, half = t_interval(flat)
    holds = sum(np.sign(np.mean(v)) == np.sign(delta) for v in values)
    return _claim(Paired(delta, half, int(holds), len(values)))


def _last(curve: np.ndarray) -> np.ndarray:
    """(E, H) accuracies -> (H,) at the last evaluation point."""
    return curve[-1]


def _depth(curve: np.ndarray) -> np.ndarray:
    """How far below its start a curve sinks at its lowest point (overfits deeper: larger)."""
    return curve[0] - curve.min(axis=0)


def _early_drop(curve: np.ndarray) -> np.ndarray:
    """The fall from the start to the first evaluation point after it (overfits sooner: larger)."""
    return curve[0] - curve[1]


def _rise(curve: np.ndarray) -> np.ndarray:
    """The change from the start to the end of training."""
    return curve[-1] - curve[0]


class ModeRuns:
    """One attribute of the modes experiment over seeds: (E, H) curves by shot count, support kind, init and
    test part (`probes.fewshot.modes.run`'s arrays)."""

    def __init__(self, results: Sequence[dict[str, np.ndarray]], attribute: str) -> None:
        self.results, self.attribute = results, attribute

    def _key(self, k: int, kind: str, part: str, init: str) -> str:
        return f"{self.attribute}.shots_{k}.{kind}.{init}.{part}"

    def curves(self, k: int, kind: str, part: str = "all", init: str = "zeroshot") -> list[np.ndarray]:
        return [r[self._key(k, kind, part, init)] for r in self.results]

    def has(self, k: int, kind: str, part: str) -> bool:
        return self._key(k, kind, part, "zeroshot") in self.results[0]

    def paired(self, measure, a: list[np.ndarray], b: list[np.ndarray]) -> dict:
        """The claim measure(a) - measure(b) > 0, paired by seed and draw."""
        return _runs_claim([measure(x) - measure(y) for x, y in zip(a, b, strict=True)])

    def gap(self, k: int) -> list[np.ndarray]:
        """Per seed, (H,) final accuracy of spread minus concentrated support."""
        spread, conc = self.curves(k, "spread"), self.curves(k, "concentrated")
        return [_last(s) - _last(c) for s, c in zip(spread, conc, strict=True)]


def modes(runs: Runs, attributes: Sequence[str], cfg_shots: Sequence[int]) -> dict:
    """The modes experiment over seeds: mean curves, and the claims behind the report's three predictions
    (zero-shot init unless named; test split; runs = seeds x draws):
    1. concentrated support overfits sooner (`early`) and deeper (`depth`) than spread, and ends lower;
    2. after concentrated training, the support's mode rises (`support_rise`) and the others fall
       (`other_rise` < 0), leaving a gap between them (`support-other`, for both inits);
    3. the spread-minus-concentrated gap shrinks from the fewest shots to the most (`gap_shrink`)."""
    results = runs.arrays("modes_accuracy")
    if not results[0]:
        return {}
    figures, claims = {}, {}
    first, last = min(cfg_shots), max(cfg_shots)
    for attribute in attributes:
        mode = ModeRuns(results, attribute)
        for k in cfg_shots:
            conc, spread = mode.curves(k, "concentrated"), mode.curves(k, "spread")
            at = f"{attribute}.{k}"
            claims[f"{at}.concentrated-spread.early"] = mode.paired(_early_drop, conc, spread)
            claims[f"{at}.concentrated-spread.depth"] = mode.paired(_depth, conc, spread)
            claims[f"{at}.spread-concentrated.last"] = mode.paired(_last, spread, conc)
            support, other = (
                mode.curves(k, "concentrated", "support"),
                mode.curves(k, "concentrated", "other"),
            )
            claims[f"{at}.support_rise"] = _runs_claim([_rise(c) for c in support])
            claims[f"{at}.other_rise"] = _runs_claim([_rise(c) for c in other])
            for init in ("zeroshot", "random"):
                claims[f"{at}.{init}.support-other.last"] = mode.paired(
                    _last,
                    mode.curves(k, "concentrated", "support", init),
                    mode.curves(k, "concentrated", "other", init),
                )
            for kind in ("concentrated", "spread"):
                for part in ("all", "support", "other"):
                    if mode.has(k, kind, part):
                        curve = np.mean([c.mean(axis=1) for c in mode.curves(k, kind, part)], axis=0)
                        figures[f"{at}.{kind}.{part}"] = [float(v) for v in curve]
        gap_first, gap_last = mode.gap(first), mode.gap(last)
        claims[f"{attribute}.gap_shrink"] = _runs_claim(
            [a - b for a, b in zip(gap_first, gap_last, strict=True)]
        )
    context = {
        "attributes": list(attributes),
        "shots": list(cfg_shots),
        "epochs": results[0]["epochs"].tolist(),
    }
    context["backgrounds"] = list(BACKGROUNDS)  # what the background modes are
    return {"figures": figures, "claims": claims, "context": context}


def counting(runs: Runs) -> dict:
    metrics = runs.json("counting")
    tasks = sorted({key.split(".")[0] for key in metrics[0]})
    hits = runs.hits("counting_hits", [f"{task}_{name}" for task in tasks for name in COUNTING_READOUTS])
    figures, claims = {}, {}
    for task in tasks:
        by = {name: [h[f"{task}_{name}"] for h in hits] for name in COUNTING_READOUTS}
        figures.update({f"{task}_{name}": accuracy(by[name]) for name in COUNTING_READOUTS})
        claims[f"{task}_prepool-pooled"] = _table_claim(by["prepool_probe"], by["pooled_probe"])
        claims[f"{task}_pooled-zeroshot"] = _table_claim(by["pooled_probe"], by["zeroshot"])
        for name in ("zeroshot", "pooled_probe", "prepool_probe"):
            claims[f"{task}_{name}-majority"] = _table_claim(by[name], by["majority"])
    context = {
        task: {
            "chance": metrics[0][f"{task}.chance"],
            "n_test": metrics[0][f"{task}.n_test"],
            "prepool_dim": metrics[0][f"{task}.prepool_probe.dim"],
            "C": {
                name: [m[f"{task}.{name}.C"] for m in metrics] for name in ("pooled_probe", "prepool_probe")
            },
        }
        for task in tasks
    }
    return {"figures": figures, "claims": claims, "context": context}


def vqvae(runs: Runs) -> dict:
    metrics = runs.json("vqvae", [f"{name}.psnr" for name in (*VQVAE_MODELS, *VQVAE_FLOORS)])
    figures = {}
    for name in (*VQVAE_MODELS, *VQVAE_FLOORS):
        for key in ("psnr", "ssim", "mse", "mse_over_variance", "perplexity", "codes_used"):
            if f"{name}.{key}" in metrics[0]:
                figures[f"{name}.{key}"] = per_seed([m[f"{name}.{key}"] for m in metrics])
    psnr = {name: [m[f"{name}.psnr"] for m in metrics] for name in (*VQVAE_MODELS, *VQVAE_FLOORS)}
    pairs = [("plain", "clip"), ("clip", "random_tower"), ("clip", "pooled"), ("clip", "thumbnail")]
    pairs += [(name, "mean_colour") for name in VQVAE_MODELS]
    claims = {f"{a}-{b}": _claim(claim_from_seeds(psnr[a], psnr[b])) for a, b in pairs}
    first = metrics[0]
    context = {
        "clip_grid": first["clip_grid"],
        "image_size": first["image_size"],
        "models": {
            name: {k: first[f"{name}.{k}"] for k in ("code_grid", "trainable_params")}
            for name in VQVAE_MODELS
        },
        "report_total_loss": {
            name: [m[f"{name}.report_total_loss"] for m in metrics] for name in VQVAE_MODELS
        },
    }
    context.update(_plateau_context(metrics, VQVAE_MODELS))
    curves = seed_curves(runs, "vqvae_curves", VQVAE_MODELS, ["train_recon", "val_recon"])
    return {"figures": figures, "claims": claims, "context": context, "curves": {"runs": _columns(curves)}}


def segment(runs: Runs) -> dict:
    metrics = runs.json("segment", ["majority.miou"])
    models = list(dict.fromkeys(key.split(".")[0] for key in metrics[0] if not key.startswith("majority.")))
    figures = {}
    for name in [*models, "majority"]:
        figures[f"{name}.miou"] = per_seed([m[f"{name}.miou"] for m in metrics])
        figures[f"{name}.pixel_acc"] = per_seed([m[f"{name}.pixel_acc"] for m in metrics])
        for key in (key for key in metrics[0] if key.startswith(f"{name}.iou.")):
            figures[key] = per_seed([m.get(key, 0.0) for m in metrics])
    miou = {name: [m[f"{name}.miou"] for m in metrics] for name in [*models, "majority"]}
    claims = {
        f"clip-{other}": _claim(claim_from_seeds(miou["clip"], miou[other]))
        for other in models
        if other != "clip"
    }
    claims.update(
        {f"{name}-majority": _claim(claim_from_seeds(miou[name], miou["majority"])) for name in models}
    )
    context = {
        "models": models,
        "trainable_params": {name: metrics[0][f"{name}.trainable_params"] for name in models},
        **_plateau_context(metrics, models),
    }
    curves = seed_curves(runs, "segment_curves", models, ["train_loss", "val_loss", "val_miou"])
    return {"figures": figures, "claims": claims, "context": context, "curves": {"runs": _columns(curves)}}


def _plateau_context(metrics: Sequence[dict], models: Sequence[str]) -> dict:
    """Per model, one value per seed: epochs trained, the epoch kept, whether the cap stopped it."""
    return {
        key: {name: [m[f"{name}.{key}"] for m in metrics] for name in models}
        for key in ("epochs", "best_epoch", "rising")
    }


def seed_curves(runs: Runs, name: str, models: Sequence[str], measures: Sequence[str]) -> pd.DataFrame:
    """Every seed's per-model curves in one long table: seed, model, epoch, `measures` (the per-seed CSV has
    a row per epoch and a column per model and measure, "<model>.<measure>": decoders.curves.per_epoch)."""
    frames = runs.csv(name, ["epoch", *(f"{model}.{measure}" for model in models for measure in measures)])
    return pd.concat(
        [
            pd.DataFrame(
                {"seed": seed, "model": model, "epoch": frame["epoch"]}
                | {measure: frame[f"{model}.{measure}"] for measure in measures}
            )
            for seed, frame in zip(runs.seeds, frames, strict=True)
            for model in models
        ]
    ).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- outputs


def summarize(
    seeds: Sequence[int],
    shots: Sequence[int],
    methods: Sequence[str],
    modes_attributes: Sequence[str],
    modes_shots: Sequence[int],
) -> dict:
    """results/summary.json: per experiment its figures, claims, the context and the mean curves the report
    draws (the report reads nothing else but `report_arrays`)."""
    runs = Runs(seeds)
    return {
        "seeds": list(seeds),
        "pretrain": pretrain(runs),
        "probe": probe(runs),
        "fewshot": fewshot(runs, shots, methods),
        "modes": modes(runs, modes_attributes, modes_shots),
        "counting": counting(runs),
        "vqvae": vqvae(runs),
        "segment": segment(runs),
    }


def headline(summary: dict, shots: Sequence[int], methods: Sequence[str]) -> dict[str, dict]:
    """The few figures `dvc metrics` shows, by names that do not depend on the params (so an experiment can
    never leave a metrics file its baseline lacks): {name: {"measure": acc1 | psnr | miou, "mean", "ci95",
    "per_seed", and "shots" for the few-shot ones}}. The few-shot figures are at the fewest shots (the
    report's 1-shot comparison) and, for ProLIP, also at the most."""
    probe_, fewshot_, counting_ = (
        summary["probe"]["figures"],
        summary["fewshot"]["figures"],
        summary["counting"],
    )
    out = {name: {"measure": "acc1", **probe_[name]} for name in PROBE_READOUTS}
    at = [("fewest", name, min(shots)) for name in HEADLINE_FEWSHOT_FEWEST]
    at += [("most", name, max(shots)) for name in HEADLINE_FEWSHOT_MOST]
    for where, name, k in at:
        if name in methods:
            out[f"fewshot_{where}_{name}"] = {"measure": "acc1", "shots": k, **fewshot_[f"{k}shot_{name}"]}
    for task in counting_["context"]:
        for readout in ("pooled_probe", "prepool_probe"):
            figure = counting_["figures"][f"{task}_{readout}"]
            out[f"{task}_{readout.removesuffix('_probe')}"] = {"measure": "acc1", **figure}
    for name in ("plain", "clip"):
        out[f"vqvae_{name}"] = {"measure": "psnr", **summary["vqvae"]["figures"][f"{name}.psnr"]}
    models = summary["segment"]["context"]["models"]
    unet = next(name for name in models if name.startswith("unet11_"))  # the first of segment.unet_encoders
    for name, model in (("segment_clip", "clip"), ("segment_unet11", unet)):
        out[name] = {"measure": "miou", **summary["segment"]["figures"][f"{model}.miou"]}
    return out


def metrics_files(headlines: dict[str, dict]) -> dict[str, dict]:
    """metrics/<name>.json of every headline figure: its measure (CLIP_benchmark's name), its 95% interval
    (`<measure>_ci95`, when there is one) and, for the few-shot ones, the shot count it is at."""
    out = {}
    for name, figure in headlines.items():
        measure = figure["measure"]
        out[name] = {measure: figure["mean"]}
        if figure["ci95"] is not None:
            out[name][f"{measure}_ci95"] = figure["ci95"]
        if "shots" in figure:
            out[name]["shots"] = figure["shots"]
    return out


def mean_frame(frames: Sequence[pd.DataFrame], key: str, columns: Sequence[str]) -> pd.DataFrame:
    """Row-aligned mean over seeds of `columns`, keyed by `key`, values rounded for a readable CSV."""
    stacked = pd.concat([frame[[key, *columns]] for frame in frames])
    return stacked.groupby(key, sort=True).mean().round(6).reset_index()


def fewshot_curve_means(runs: Runs, k: int) -> pd.DataFrame:
    """Mean over seeds of the k-shot accuracy-vs-epoch curves: epoch, <method>_test, <method>_val."""
    curves = [frame[frame["shots"] == k] for frame in runs.csv("fewshot_curves", ["shots", "epoch"])]
    return mean_frame(curves, "epoch", [c for c in curves[0].columns if c.endswith(("_test", "_val"))])


def report_arrays(seeds: Sequence[int]) -> dict[str, dict[str, np.ndarray]]:
    """The first seed's sample images the report shows (VQ-VAE reconstructions, segmentation overlays), for
    results/<name>/."""
    runs = Runs(seeds[:1])
    return {name: runs.arrays(name)[0] for name in ("vqvae_samples", "segment_overlays")}


def _long(wide: pd.DataFrame, x: str, value: str, suffix: str = "") -> pd.DataFrame:
    """One row per x and series (the `series` column DVC's plot template colours by)."""
    series = {column: column.removesuffix(suffix) for column in wide.columns if column != x}
    frame = wide.rename(columns=series).melt(id_vars=[x], var_name="series", value_name=value)
    return frame.sort_values(["series", x], kind="stable").reset_index(drop=True)


def plot_tables(summary: dict, shots: Sequence[int], methods: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The CSVs under plots/ that dvc.yaml declares, long: x, series, value; from the summary's means over
    seeds, but for the pretraining loss and the decoders' curves: one series per seed."""
    fewshot_ = summary["fewshot"]["figures"]
    acc = pd.DataFrame(
        [
            {"shots": k, "zeroshot_classifier": round(fewshot_["zeroshot"]["mean"], 6)}
            | {name: round(fewshot_[f"{k}shot_{name}"]["mean"], 6) for name in methods}
            for k in shots
        ]
    )
    pretrain = {seed: pd.DataFrame(curves) for seed, curves in summary["pretrain"]["curves"].items()}
    first = next(iter(pretrain.values()))
    losses = [first[["step"]]] + [frame["loss"].round(6).rename(f"seed {s}") for s, frame in pretrain.items()]
    return {
        "clip_pretrain.csv": _long(pd.concat(losses, axis=1), "step", "loss"),
        "fewshot_acc.csv": _long(acc, "shots", "acc1"),
        "fewshot_curves.csv": _long(pd.DataFrame(summary["fewshot"]["curves"]["epochs"]), "epoch", "acc1"),
        "vqvae_curves.csv": _per_seed_series(summary["vqvae"]["curves"]["runs"], "val_recon"),
        "segment_curves.csv": _per_seed_series(summary["segment"]["curves"]["runs"], "val_miou"),
    }


def _per_seed_series(curves: dict, value: str) -> pd.DataFrame:
    """epoch, series ("<model> seed <s>"), `value`: one line per model and seed."""
    frame = pd.DataFrame(curves)
    series = frame["model"] + " seed " + frame["seed"].astype(str)
    long = pd.DataFrame({"epoch": frame["epoch"], "series": series, value: frame[value].round(6)})
    return long.sort_values(["series", "epoch"], kind="stable").reset_index(drop=True)


def write_plot_tables(tables: dict[str, pd.DataFrame], folder: Path) -> None:
    """Replace `folder` by the tables as CSVs (so a table of an earlier run cannot linger)."""

    def write(tmp: Path) -> None:
        for name, frame in tables.items():
            frame.to_csv(tmp / name, index=False, lineterminator="\n")

    replace_folder(folder, write)
