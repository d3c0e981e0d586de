"""Where every stage writes: the one definition of each output path, read by the stages and the report.

dvc.yaml names the same paths (DVC cannot import Python); tests/test_dvc_yaml.py checks that every stage's
outs there are exactly `OUTPUTS[stage]`, so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")  # the uniform dataset store (data/<name>/...)
CLIP = Path("models/clip")  # weights.pt + model.json of the CLIP every probe reads
PRETRAIN_CURVE = Path("plots/clip_pretrain.csv")
FEATURES = Path("features")  # <split>.pt, text.pt, meta.json
PROBE = Path("metrics/probe.json")
PROBE_C_SEARCH = Path("plots/probe_c_search.csv")
FEWSHOT = Path("metrics/fewshot.json")
FEWSHOT_ACC = Path("plots/fewshot_acc.csv")
FEWSHOT_CURVES = Path("plots/fewshot_curves.csv")
COUNTING = Path("metrics/counting.json")
VQVAE = Path("metrics/vqvae.json")
VQVAE_CURVES = Path("plots/vqvae_curves.csv")
VQVAE_SAMPLES = Path("vqvae/samples")  # one .npy per row of the reconstruction figure
SEGMENT = Path("metrics/segment.json")
SEGMENT_CURVES = Path("plots/segment_curves.csv")
SEGMENT_OVERLAYS = Path("segment/overlays")
REPORTS = Path("reports")

OUTPUTS: dict[str, list[Path]] = {
    "data": [DATA],
    "clip": [CLIP, PRETRAIN_CURVE],
    "embed": [FEATURES],
    "probe": [PROBE, PROBE_C_SEARCH],
    "fewshot": [FEWSHOT, FEWSHOT_ACC, FEWSHOT_CURVES],
    "counting": [COUNTING],
    "vqvae": [VQVAE, VQVAE_CURVES, VQVAE_SAMPLES],
    "segment": [SEGMENT, SEGMENT_CURVES, SEGMENT_OVERLAYS],
    "report": [REPORTS],
}


def open_clip_cache(downloads: str | Path) -> Path:
    """Where open_clip keeps downloaded CLIP weights (the paper preset's ViT-B-32 and RN50)."""
    return Path(downloads) / "open_clip"


def torchvision_cache(downloads: str | Path) -> Path:
    """Where torchvision keeps downloaded ImageNet weights (UNet11's VGG11 encoder)."""
    return Path(downloads) / "torchvision"
