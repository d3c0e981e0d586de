"""The paper preset end to end through `dvc repro`, everything real except size and weights.

Real-format CIFAR-100/10, Oxford-IIIT Pet and CLEVR archives (tests/fakes.py) go through torchvision's own
loaders; ViT-B-32, RN50 (open_clip, `openai` tags) and VGG11 (torchvision) with random weights sit where
open_clip and torchvision look, and load through the real `pretrained=` path. Only the data sizes, epochs and
the template ensemble are cut down, so the run fits the slow tier on 2 cores.
"""

import json
import os
from pathlib import Path

import open_clip
import pytest
import torch
from fakes import put_in_hf_cache, write_fake_cifar, write_fake_clevr, write_fake_pets
from pipeline_repo import make_repo
from torchvision.models import VGG11_Weights

from clipprobe import paths
from clipprobe.decoders.segment_models import UNet11

TESTS = Path(__file__).resolve().parent
SMALL = {  # the paper profile's shapes, at sizes a CPU runs in seconds
    "seeds": [0],
    "device": "cpu",
    "data.downloads": "downloads",  # the fakes, in the test's repo (the default is the user's ~/.cache/clipprobe)
    "data.cifar.val_per_class": 1,
    "data.clevr": {"n_train": 8, "n_val": 4, "n_test": 4, "image_size": 224},
    "embed.batch_size": 64,
    "embed.ensemble": "shapes",  # 8 templates: the 18 CIFAR templates x 100 classes would dominate the run
    "embed.views": 1,  # one augmented view of the 400 train images through ViT-B-32 (10 would take minutes)
    "probe.max_iter": 30,
    "shots": [1],
    "fewshot.draws": 2,
    "fewshot.epochs": 10,
    "fewshot.eval_every": 5,
    "fewshot.val_per_class": 1,
    "counting.Cs": [1.0],
    "counting.max_iter": 10,
    "counting.batch_size": 8,
    "vqvae": {"n_train": 16, "n_val": 8, "n_test": 8, "max_epochs": 1, "batch_size": 8, "samples": 4},
    "vqvae.hidden": 16,
    "vqvae.code_dim": 16,
    "vqvae.codebook_size": 32,
    "segment": {"n_train": 6, "n_val": 3, "n_test": 3, "max_epochs": 1, "batch_size": 3, "overlays": 2},
}
STAGES = ("data", "clip@0", "embed@0", "probe@0", "fewshot@0", "counting@0", "vqvae@0", "segment@0")


def _fake_downloads(downloads: Path) -> dict:
    """Every archive and checkpoint the paper preset fetches; returns torchvision's checksum attributes
    for the fakes (tests/checksums/sitecustomize.py applies them in the stages' processes)."""
    checksums = {
        "torchvision.datasets.cifar:CIFAR100": write_fake_cifar("cifar100", downloads, per_class=1),
        "torchvision.datasets.cifar:CIFAR10": write_fake_cifar("cifar10", downloads, per_class=4),
    }
    checksums["torchvision.datasets.oxford_iiit_pet:OxfordIIITPet"] = {
        "_RESOURCES": write_fake_pets(downloads, n_trainval=30, n_test=4)  # val: every 10th
    }
    checksums["torchvision.datasets.clevr:CLEVRClassification"] = {
        "_MD5": write_fake_clevr(downloads, {"train": 14, "val": 6, "test": 2})  # train + val from train
    }
    for arch, repo in (
        ("ViT-B-32", "timm/vit_base_patch32_clip_224.openai"),
        ("RN50", "timm/resnet50_clip.openai"),
    ):
        torch.manual_seed(0)
        model = open_clip.create_model(arch, force_quick_gelu=True)
        put_in_hf_cache(paths.open_clip_cache(downloads), repo, model.state_dict())
    vgg = {f"features.{k}": v for k, v in UNet11(2).encoder.state_dict().items()}  # torchvision's key names
    weights = paths.torchvision_cache(downloads) / Path(VGG11_Weights.IMAGENET1K_V1.url).name
    weights.parent.mkdir(parents=True)
    torch.save(vgg, weights)
    return checksums


@pytest.mark.slow
def test_paper_preset_runs_every_stage_through_dvc_repro(tmp_path):
    checksums = _fake_downloads(tmp_path / "downloads")
    env = {
        "PYTHONPATH": os.pathsep.join([str(TESTS / "checksums"), os.environ.get("PYTHONPATH", "")]),
        "CLIPPROBE_FAKE_CHECKSUMS": json.dumps(checksums),
        "CLIPPROBE_OFFLINE": "1",  # nothing is fetched: every file is in place
    }
    repo = make_repo(tmp_path, SMALL, base="paper", env=env)

    lock = (repo / "dvc.lock").read_text()
    assert all(f"  {stage}:\n" in lock for stage in (*STAGES, "summary", "report")), lock[:500]
    model = json.loads((repo / "models/clip/seed0/model.json").read_text())
    assert (model["arch"], model["pretrained"]) == ("ViT-B-32", "openai")
    report = (repo / "reports/report.md").read_text()
    assert "Profile: **paper preset (CIFAR-100, ViT-B-32 openai)**" in report
    assert "61.68, seed report (its prompt exactly)" in report  # beside the report's own prompt
    assert "The modes experiment is off in this profile" in report
    segment = json.loads((repo / "runs/seed0/segment.json").read_text())
    assert {"clip", "pooled", "unet11_imagenet", "unet11_scratch"} <= {key.split(".")[0] for key in segment}
    counting = json.loads((repo / "runs/seed0/counting.json").read_text())
    assert {key.split(".")[0] for key in counting} == {"count"}  # CLEVR: counts only
