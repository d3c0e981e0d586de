"""Where every stage writes: the one definition of each output path, read by the stages and the report.

The stages that train run once per seed (dvc.yaml `foreach: ${seeds}`) and write under `*/seed<k>/`.
dvc.yaml names the same paths (DVC cannot import Python); tests/test_dvc_yaml.py checks that every stage's
outs there are exactly `outputs(stage, seed)`, so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")  # the uniform dataset store (data/<name>/...)
METRICS = Path("metrics")  # the headline figures: one small JSON per figure (the summary stage)
RESULTS = Path("results")  # what the report reads: summary.json and the first seed's sample images
SUMMARY = (
    RESULTS / "summary.json"
)  # every figure over seeds: per-seed values, means, intervals, claims, curves
PLOTS = Path("plots")  # CSVs of DVC's plots, over seeds (the summary stage)
REPORTS = Path("reports")
VERDICTS = Path("docs/verdicts.json")  # bench/verdicts.py: each claim's verdict under a perturbation
FEWSHOT_BEFORE = Path(
    "docs/fewshot_before.json"
)  # tools/fewshot_snapshot.py: few-shot results before a protocol change


def clip_dir(seed: int) -> Path:
    """weights.pt + model.json of the CLIP of one training seed."""
    return Path("models/clip") / f"seed{seed}"


def features_dir(seed: int) -> Path:
    """<split>.pt, text.pt, meta.json: the embed stage's cache for one seed's CLIP."""
    return Path("features") / f"seed{seed}"


def run_dir(seed: int) -> Path:
    """Every per-seed result (`experiment.write_result`: figures JSON, curve CSVs, array folders; DVC-cached)."""
    return Path("runs") / f"seed{seed}"


class Run:
    """The per-seed output files of one seed, by name."""

    def __init__(self, seed: int) -> None:
        root = run_dir(seed)
        self.pretrain_curve = root / "clip_pretrain.csv"
        self.probe = root / "probe.json"
        self.probe_hits = root / "probe_hits"  # (N,) bool test hits per readout
        self.probe_c_search = root / "probe_c_search.csv"
        self.fewshot = root / "fewshot.json"
        self.fewshot_hits = root / "fewshot_hits"  # (H, N) bool test hits per shot count and method
        self.fewshot_curves = root / "fewshot_curves.csv"
        self.modes = root / "modes.json"
        self.modes_accuracy = root / "modes_accuracy"  # the modes experiment's (E, H) curves (empty: not run)
        self.counting = root / "counting.json"
        self.counting_hits = root / "counting_hits"
        self.vqvae = root / "vqvae.json"
        self.vqvae_curves = root / "vqvae_curves.csv"
        self.vqvae_samples = root / "vqvae_samples"  # one .npy per row of the reconstruction figure
        self.segment = root / "segment.json"
        self.segment_curves = root / "segment_curves.csv"
        self.segment_overlays = root / "segment_overlays"


PER_SEED_STAGES = ("clip", "embed", "probe", "fewshot", "modes", "counting", "vqvae", "segment")


def outputs(stage: str, seed: int | None = None) -> list[Path]:
    """What `stage` writes (for a per-seed stage, for `seed`)."""
    if seed is None:
        return {"data": [DATA], "summary": [METRICS, RESULTS, PLOTS], "report": [REPORTS]}[stage]
    run = Run(seed)
    return {
        "clip": [clip_dir(seed), run.pretrain_curve],
        "embed": [features_dir(seed)],
        "probe": [run.probe, run.probe_hits, run.probe_c_search],
        "fewshot": [run.fewshot, run.fewshot_hits, run.fewshot_curves],
        "modes": [run.modes, run.modes_accuracy],
        "counting": [run.counting, run.counting_hits],
        "vqvae": [run.vqvae, run.vqvae_curves, run.vqvae_samples],
        "segment": [run.segment, run.segment_curves, run.segment_overlays],
    }[stage]


def downloads_dir(downloads: str | Path) -> Path:
    """`data.downloads` as a folder, `~` expanded. The default, ~/.cache/clipprobe, lies outside the repo, so
    every clone and every queued experiment (`dvc exp run --queue` runs in a temporary copy of the workspace,
    without git-ignored folders) finds the archives and weights one download left there."""
    return Path(downloads).expanduser()


def open_clip_cache(downloads: str | Path) -> Path:
    """Where open_clip keeps downloaded CLIP weights (the paper preset's ViT-B-32 and RN50)."""
    return downloads_dir(downloads) / "open_clip"


def torchvision_cache(downloads: str | Path) -> Path:
    """Where torchvision keeps downloaded ImageNet weights (UNet11's VGG11 encoder)."""
    return downloads_dir(downloads) / "torchvision"
