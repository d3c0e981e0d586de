"""Counting and position probes: labels on hand-placed scenes, the frozen pre-pool tower, the stage end to end."""

import copy
import hashlib
import json
import logging
import os
import re
import runpy
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fakes import write_fake_clevr
from helpers import clear_proxies, one_line, serve_files
from open_clip.modified_resnet import ModifiedResNet
from torchvision.datasets import CLEVRClassification

from clipprobe.contracts import Runs, load_arrays, load_meta, load_split
from clipprobe.data import fetch
from clipprobe.data.captions import DEFAULT_CAPTION_MIX
from clipprobe.data.clevr import prepare_clevr
from clipprobe.data.shapes import (
    SHAPES,
    ShapeObject,
    generate_shapes,
    generate_shapes_dataset,
    render_objects,
)
from clipprobe.errors import ClipprobeError
from clipprobe.experiment import flatten
from clipprobe.features.embed import embed_images
from clipprobe.features.tower import FrozenTower, tower_features
from clipprobe.io import save_arrays, write_json
from clipprobe.models.clip import create_clip, mean_std, save_clip, tower_clip
from clipprobe.models.registry import has_attnpool_map
from clipprobe.params import load_params
from clipprobe.preprocess import preprocess_uint8
from clipprobe.probes.counting import (
    QUADRANTS,
    count_phrase,
    count_task,
    majority_hits,
    position_task,
    quadrant_labels,
)
from clipprobe.probes.counting import READOUTS as counting_readouts
from clipprobe.summary import counting as summary_counting

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- labels

# (objects in painter's order, expected count, expected quadrant of the largest visible object)
HAND_PLACED = [
    ([ShapeObject(0, 0, 0.5, 0.3, 0.3)], 1, "top left"),
    ([ShapeObject(1, 2, 0.45, 0.7, 0.3), ShapeObject(0, 3, 0.2, 0.25, 0.75)], 2, "top right"),
    (
        [
            ShapeObject(3, 1, 0.2, 0.8, 0.2),
            ShapeObject(3, 4, 0.55, 0.3, 0.7),
            ShapeObject(5, 6, 0.2, 0.8, 0.8),
        ],
        3,
        "bottom left",
    ),
    # the big hexagon is half covered by a later, smaller square: still the largest visible object
    ([ShapeObject(4, 5, 0.5, 0.7, 0.7), ShapeObject(1, 0, 0.3, 0.55, 0.55)], 2, "bottom right"),
    # a big circle almost hidden by a later square: the hexagon, not the circle, is the largest visible object
    (
        [
            ShapeObject(0, 2, 0.4, 0.3, 0.75),
            ShapeObject(4, 7, 0.45, 0.7, 0.3),
            ShapeObject(1, 1, 0.38, 0.3, 0.7),
        ],
        3,
        "top right",
    ),
]


def test_count_and_quadrant_labels_of_hand_placed_scenes():
    scenes = [render_objects(objects, 64) for objects, _, _ in HAND_PLACED]
    counts = np.array([len(objects) for objects, _, _ in HAND_PLACED])
    positions = np.array([scene.position for scene in scenes], dtype=np.float32)
    splits = ("train", "val", "test")
    count = count_task(dict.fromkeys(splits, counts), ["a photo of {}."], ("shape", "shapes"), True)
    position = position_task(dict.fromkeys(splits, positions), ["a shape in the {}."])
    assert count.class_names == ["one shape", "two shapes", "three shapes"]
    assert count.labels["test"].tolist() == [c - 1 for _, c, _ in HAND_PLACED]
    assert [position.class_names[i] for i in position.labels["test"]] == [q for _, _, q in HAND_PLACED]


def test_quadrant_boundaries_and_bad_shape():
    # y points down; a centre on a boundary belongs to the right / bottom half
    positions = np.array([[0.1, 0.1], [0.5, 0.1], [0.49, 0.5], [0.9, 0.99]])
    assert [QUADRANTS[i] for i in quadrant_labels(positions)] == list(QUADRANTS)
    with pytest.raises(ClipprobeError, match="positions"):
        quadrant_labels(np.zeros(4))


def test_generated_positions_lie_on_the_labelled_object():
    split = generate_shapes(48, 64, seed=3, caption_mix=DEFAULT_CAPTION_MIX, workers=1)
    px = np.minimum((split.positions * 64).astype(int), 63)  # (N, 2) pixel (x, y)
    under = split.masks[np.arange(len(split)), px[:, 1], px[:, 0]]
    assert (under == split.labels % len(SHAPES) + 1).all()  # mask value = shape + 1 of the labelled object
    assert set(split.counts.tolist()) == {1, 2, 3}


def test_count_phrases_and_unseen_counts():
    assert count_phrase(1, ("shape", "shapes"), True) == "one shape"
    assert count_phrase(10, ("object", "objects"), False) == "10 objects"
    counts = {"train": np.array([3, 4, 4]), "val": np.array([4]), "test": np.array([5])}
    with pytest.raises(ClipprobeError, match="test split holds counts \\[5\\]"):
        count_task(counts, ["{}"], ("object", "objects"), False)
    assert majority_hits(torch.tensor([0, 1, 1]), torch.tensor([1, 1, 0, 1]), 2).tolist() == [
        True,
        True,
        False,
        True,
    ]


# ---------------------------------------------------------------------------------------------- the tower


def test_attnpool_on_the_prepool_map_reproduces_encode_image(tiny_clip):
    model, _ = tiny_clip
    tower = FrozenTower(model)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    fmap = tower(x)
    assert fmap.shape == (3, tower.out_channels, 2, 2) and tower.out_channels == 512
    with torch.no_grad():
        assert torch.equal(tower.pool(fmap), model.encode_image(x))


def test_tower_features_match_the_embedding_stage(tiny_clip):
    model, _ = tiny_clip
    images = generate_shapes(20, 64, seed=1, caption_mix=DEFAULT_CAPTION_MIX, workers=1).images
    mean, std = mean_std(model)
    feats = tower_features(
        FrozenTower(model), images, mean=mean, std=std, device=torch.device("cpu"), batch_size=8, grid=2
    )
    embedded = embed_images(model, images, device=torch.device("cpu"), batch_size=20)["image"]
    torch.testing.assert_close(feats["pooled"], embedded, rtol=1e-5, atol=1e-5)
    x = preprocess_uint8(torch.from_numpy(images[:4]), 64, mean, std)
    assert torch.equal(feats["prepool"][:4], FrozenTower(model)(x).flatten(1))  # 2x2 grid = the whole map
    with pytest.raises(ClipprobeError, match="counting.prepool_grid: must be between 1 and the map side 2"):
        tower_features(
            FrozenTower(model), images, mean=mean, std=std, device=torch.device("cpu"), batch_size=8, grid=3
        )


def test_tower_stays_frozen_inside_a_training_module(tiny_clip):
    model, _ = tiny_clip
    tower = FrozenTower(model)
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    head = torch.nn.Conv2d(tower.out_channels, 4, 1)
    net = torch.nn.Sequential(tower, head).train()  # as a decoder's training loop would
    loss = net(torch.randn(4, 3, 64, 64)).square().mean()
    loss.backward()
    assert head.weight.grad is not None
    assert all(not p.requires_grad and p.grad is None for p in tower.parameters())
    assert not any(m.training for m in tower.modules())  # BatchNorm uses running stats, never updates them
    after = tower.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_rn50_shaped_tower_at_a_small_input():
    torch.manual_seed(0)
    visual = ModifiedResNet(layers=[3, 4, 6, 3], output_dim=1024, heads=32, image_size=64, width=64).eval()
    x = torch.randn(1, 3, 64, 64)
    tower = FrozenTower(visual)
    fmap = tower(x)
    assert fmap.shape == (1, 2048, 2, 2) and (tower.out_channels, tower.stride) == (2048, 32)
    with torch.no_grad():
        assert torch.equal(tower.pool(fmap), visual(x))
    layer3 = FrozenTower(visual, layer=3)
    assert layer3(x).shape == (1, layer3.out_channels, 4, 4) == (1, 1024, 4, 4) and layer3.stride == 16


def test_vit_towers_have_no_prepool_map():
    assert has_attnpool_map("RN50") and not has_attnpool_map("ViT-B-32")
    model, _ = create_clip("clipprobe-tiny-vit", "scratch")
    with pytest.raises(ClipprobeError, match="VisionTransformer tower has no attention pool"):
        FrozenTower(model)


def test_null_tower_arch_over_a_vit_clip_is_one_line_naming_the_key(tmp_path):
    model, _ = create_clip("clipprobe-tiny-vit", "scratch")
    save_clip(model, "clipprobe-tiny-vit", "scratch", tmp_path / "clip")
    with pytest.raises(ClipprobeError) as info:
        choice = load_params(ROOT / "params.yaml").tower  # arch null
        tower_clip(choice, clip_dir=tmp_path / "clip", downloads=tmp_path, device=torch.device("cpu"))
    assert one_line(info).startswith("tower.arch: null reads the clip stage's clipprobe-tiny-vit")


# ---------------------------------------------------------------------------------------------- the stage


def test_stage_writes_every_readout(tmp_path, monkeypatch, tiny_clip, default_raw):
    model, _ = tiny_clip
    raw = copy.deepcopy(default_raw)
    raw["device"] = "cpu"
    raw["counting"].update({"Cs": [0.1, 10.0], "max_iter": 10, "batch_size": 64})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    sizes = {"pretrain": 1, "train": 96, "val": 48, "test": 48}
    generate_shapes_dataset(tmp_path / "data", 64, sizes, seed=0, caption_mix=DEFAULT_CAPTION_MIX, workers=1)
    save_clip(model, "clipprobe-tiny-rn", "scratch", tmp_path / "models/clip/seed0")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "stages/counting.py"))["main"](0)

    metrics = json.loads((tmp_path / "runs/seed0/counting.json").read_text())
    hits = load_arrays(tmp_path / "runs/seed0/counting_hits", "counting")
    assert sorted(hits) == sorted(f"{t}_{r}" for t in ("count", "position") for r in counting_readouts)
    assert all(h.shape == (48,) and h.dtype == bool for h in hits.values())
    assert hits["count_majority"].mean() == pytest.approx(metrics["count.majority.acc"])
    assert {key.split(".")[0] for key in metrics} == {"count", "position"}
    for task, n_classes in (("count", 3), ("position", 4)):
        assert metrics[f"{task}.chance"] == pytest.approx(1 / n_classes)
        for readout in ("zeroshot", "pooled_probe", "prepool_probe", "majority"):
            assert 0.0 <= metrics[f"{task}.{readout}.acc"] <= 1.0
        assert metrics[f"{task}.pooled_probe.C"] in (0.1, 10.0) and f"{task}.prepool_probe.val_acc" in metrics
        assert metrics[f"{task}.prepool_probe.dim"] == 512 * 2 * 2
    assert load_params().counting.prepool_grid == 2


# ---------------------------------------------------------------------------------------------- CLEVR


def test_clevr_from_a_fake_archive_offline(tmp_path, monkeypatch):
    downloads, root = tmp_path / "downloads", tmp_path / "data"
    with pytest.raises(
        ClipprobeError, match=r"CLEVR not found in .*clevr/ and downloading is off; put CLEVR_v1.0.zip"
    ):
        prepare_clevr(downloads, root, {"train": 4, "val": 2, "test": 3}, 16, seed=0, download=False)
    md5 = write_fake_clevr(downloads, {"train": 12, "val": 6, "test": 2})
    monkeypatch.setattr(CLEVRClassification, "_MD5", md5)
    prepare_clevr(downloads, root, {"train": 4, "val": 2, "test": 3}, 16, seed=0, download=False)

    meta = load_meta(root, "clevr")
    assert meta.class_names == ["3", "4", "5", "6", "7", "8", "9", "10"] and meta.image_size == (16, 24)
    splits = {name: load_split(root, "clevr", name) for name in ("train", "val", "test")}
    ids = {}
    for name, split in splits.items():
        assert split.images.shape == (len(split), 16, 24, 3)
        r, g, b = (split.images[:, 8, 12, c].astype(int) for c in range(3))
        assert (g == 20 * split.counts).all() and (split.labels == split.counts - 3).all()
        assert (b == (100 if name == "test" else 0)).all()  # test comes from CLEVR's val split
        ids[name] = set(r.tolist())
        assert (split.counts == 3 + r % 2).all()
    assert not ids["train"] & ids["val"] and len(ids["train"]) == 4 and len(ids["test"]) == 3


SIZES = {"train": 4, "val": 2, "test": 3}  # draws from 12 train and 6 val scenes


@pytest.fixture
def fake_zip(tmp_path, monkeypatch) -> Path:
    """downloads/ holding the fake CLEVR_v1.0.zip, its md5 the one torchvision expects."""
    downloads = tmp_path / "downloads"
    monkeypatch.setattr(
        CLEVRClassification, "_MD5", write_fake_clevr(downloads, {"train": 12, "val": 6, "test": 2})
    )
    return downloads


@pytest.fixture
def hashes(monkeypatch) -> list[Path]:
    """Every file the archive checks hash (data/fetch.py's one hashing function), in order."""
    seen: list[Path] = []
    real = fetch.file_md5
    monkeypatch.setattr(fetch, "file_md5", lambda path: seen.append(Path(path)) or real(path))
    return seen


def _drawn(root: Path) -> dict[str, set[str]]:
    """The CLEVR file names of the images the store holds, per source split (R = the image's index)."""
    names: dict[str, set[str]] = {"train": set(), "val": set()}
    for split in ("train", "val", "test"):
        source = "val" if split == "test" else "train"
        for i in load_split(root, "clevr", split).images[:, 8, 12, 0].tolist():
            names[source].add(f"images/{source}/CLEVR_{source}_{i:06d}.png")
    return names


def _store(root: Path) -> dict[str, np.ndarray]:
    return {split: load_split(root, "clevr", split).images for split in ("train", "val", "test")}


def test_clevr_reads_only_the_drawn_images_from_the_zip_and_hashes_it_once(
    tmp_path, fake_zip, hashes, monkeypatch
):
    read: list[str] = []
    real_open = zipfile.ZipFile.open

    def recording_open(self, name, *args, **kwargs):
        read.append(name if isinstance(name, str) else name.filename)
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", recording_open)
    prepare_clevr(fake_zip, tmp_path / "a", SIZES, 16, seed=0, download=False)
    drawn = _drawn(tmp_path / "a")
    assert sum(map(len, drawn.values())) == 9  # 4 + 2 train draws, 3 val draws, all distinct
    assert sorted(read) == sorted(
        ["CLEVR_v1.0/scenes/CLEVR_train_scenes.json", "CLEVR_v1.0/scenes/CLEVR_val_scenes.json"]
        + [f"CLEVR_v1.0/{name}" for names in drawn.values() for name in names]
    )  # nothing else: not the other 9 renders, not the test split
    assert hashes == [fake_zip / "clevr" / "CLEVR_v1.0.zip"]  # once, then stamped
    assert not (fake_zip / "clevr" / "CLEVR_v1.0").exists()  # nothing extracted

    monkeypatch.setattr(fetch, "_hashed", {})  # a later run (a new process): only the stamp remembers
    prepare_clevr(fake_zip, tmp_path / "b", SIZES, 16, seed=0, download=False)
    assert len(hashes) == 1
    for split, images in _store(tmp_path / "a").items():
        np.testing.assert_array_equal(images, _store(tmp_path / "b")[split])
    archive = fake_zip / "clevr" / "CLEVR_v1.0.zip"
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))  # a changed file
    prepare_clevr(fake_zip, tmp_path / "c", SIZES, 16, seed=0, download=False)
    assert len(hashes) == 2  # its stamp no longer vouches for it


def test_clevr_complete_extraction_is_read_without_touching_the_archive(tmp_path, fake_zip, hashes):
    prepare_clevr(fake_zip, tmp_path / "from_zip", SIZES, 16, seed=0, download=False)
    with zipfile.ZipFile(fake_zip / "clevr" / "CLEVR_v1.0.zip") as zf:
        zf.extractall(fake_zip / "clevr")  # as torchvision extracted it
    (fake_zip / "clevr" / "CLEVR_v1.0.zip").write_bytes(b"not even a zip")  # never looked at
    hashes.clear()
    prepare_clevr(fake_zip, tmp_path / "from_folder", SIZES, 16, seed=0, download=False)
    assert hashes == []
    for split, images in _store(tmp_path / "from_zip").items():  # the same seeded draws from either source
        np.testing.assert_array_equal(images, _store(tmp_path / "from_folder")[split])


def test_clevr_partial_extraction_is_one_line_naming_what_is_missing(tmp_path, fake_zip, hashes, caplog):
    folder = fake_zip / "clevr" / "CLEVR_v1.0"
    with zipfile.ZipFile(fake_zip / "clevr" / "CLEVR_v1.0.zip") as zf:
        zf.extractall(fake_zip / "clevr")
    (folder / "images" / "val" / "CLEVR_val_000004.png").unlink()  # an extraction stopped short
    lacks = "images/val/ lacks 1 of the 6 images its scenes list: CLEVR_val_000004.png"

    with caplog.at_level(logging.WARNING, logger="clipprobe"):  # the zip is there: read it instead
        prepare_clevr(fake_zip, tmp_path / "data", SIZES, 16, seed=0, download=False)
    assert [r.getMessage() for r in caplog.records] == [
        f"{folder}/ is incomplete ({lacks}); reading CLEVR_v1.0.zip instead"
    ]
    assert len(hashes) == 1

    (fake_zip / "clevr" / "CLEVR_v1.0.zip").unlink()
    with pytest.raises(ClipprobeError) as excinfo:
        prepare_clevr(fake_zip, tmp_path / "data", SIZES, 16, seed=0, download=False)
    assert one_line(excinfo).startswith(
        f"data: CLEVR in {folder}/ is incomplete ({lacks}) and downloading is off; put CLEVR_v1.0.zip (md5 "
    )
    scenes = folder / "scenes" / "CLEVR_train_scenes.json"
    scenes.write_text(scenes.read_text()[:100])  # cut off mid-write
    with pytest.raises(
        ClipprobeError, match=r"is incomplete \(scenes/CLEVR_train_scenes.json does not parse"
    ):
        prepare_clevr(fake_zip, tmp_path / "data", SIZES, 16, seed=0, download=False)


def test_clevr_corrupt_archive_is_hashed_once_and_named(tmp_path, fake_zip, hashes):
    archive = fake_zip / "clevr" / "CLEVR_v1.0.zip"
    archive.write_bytes(archive.read_bytes()[:-100])  # a truncated download
    with pytest.raises(ClipprobeError) as excinfo:
        prepare_clevr(fake_zip, tmp_path / "data", SIZES, 16, seed=0, download=False)
    actual = hashlib.md5(archive.read_bytes()).hexdigest()
    assert f"data: {archive} is corrupt (md5 {actual}, expected " in one_line(excinfo)
    assert len(hashes) == 1  # the check's hash; the message reuses it


def test_clevr_download_resumes_a_partial_archive(tmp_path, fake_zip, hashes, monkeypatch):
    clear_proxies(monkeypatch)
    archive = fake_zip / "clevr" / "CLEVR_v1.0.zip"
    data = archive.read_bytes()
    archive.unlink()
    archive.with_name("CLEVR_v1.0.zip.part").write_bytes(data[: len(data) // 2])  # an interrupted download
    with serve_files({"/clevr/CLEVR_v1.0.zip": data}) as (base, requests):
        monkeypatch.setattr(CLEVRClassification, "_URL", f"{base}/clevr/CLEVR_v1.0.zip")
        prepare_clevr(fake_zip, tmp_path / "data", SIZES, 16, seed=0)
    assert [r.get("Range") for r in requests] == [f"bytes={len(data) // 2}-"]
    assert archive.read_bytes() == data and not archive.with_name("CLEVR_v1.0.zip.part").exists()
    assert hashes == []  # the download's own md5, computed as the bytes arrived, verified and stamped it


# ---------------------------------------------------------------------------------------------- report


def _write_counting_runs(
    root: Path, accuracies: dict[str, tuple[float, ...]], seeds=(0, 1, 2), n=2000
) -> None:
    """runs/seed<k>/counting.json and counting_hits as the counting stage writes them, each readout's hits
    independent Bernoulli(acc) draws per test image and seed."""
    rng = np.random.default_rng(0)
    readouts = ("zeroshot", "pooled_probe", "prepool_probe", "majority")
    for seed in seeds:
        metrics, hits = {}, {}
        for task, (zeroshot, pooled, prepool, majority, chance) in accuracies.items():
            metrics[task] = {"chance": chance, "n_test": float(n)}
            for name, acc in zip(readouts, (zeroshot, pooled, prepool, majority), strict=True):
                hit = rng.random(n) < acc
                hits[f"{task}_{name}"] = hit
                metrics[task][name] = {"acc": float(hit.mean()), "val_acc": 0.5, "C": 1.0, "dim": 2048.0}
        write_json(root / f"runs/seed{seed}/counting.json", flatten(metrics))
        save_arrays(root / f"runs/seed{seed}/counting_hits", hits)


@pytest.mark.parametrize(
    ("count", "position", "verdict"),
    [
        ((0.35, 0.80, 0.81), (0.26, 0.60, 0.61), "do not support the hypothesis"),
        ((0.35, 0.60, 0.85), (0.26, 0.40, 0.70), "support the hypothesis**: on every task"),
        ((0.35, 0.80, 0.81), (0.26, 0.40, 0.70), "support the hypothesis in part"),
        ((0.34, 0.35, 0.36), (0.25, 0.26, 0.26), "Inconclusive"),
    ],
)
def test_report_verdict_follows_the_claims_over_seeds(tmp_path, monkeypatch, count, position, verdict):
    from clipprobe.report.counting import render

    monkeypatch.chdir(tmp_path)
    _write_counting_runs(tmp_path, {"count": (*count, 0.35, 1 / 3), "position": (*position, 0.26, 0.25)})
    summary = {"seeds": [0, 1, 2], "counting": summary_counting(Runs([0, 1, 2]))}
    write_json(tmp_path / "results/summary.json", summary)
    section = render(load_params(ROOT / "params.yaml"), tmp_path / "reports")

    assert (tmp_path / "reports/figures/counting.png").stat().st_size > 0
    assert "![Counting and position readouts](figures/counting.png)" in section
    assert re.search(r"\| probe: pre-pool map \| \*\*\d+\.\d\d ± \d+\.\d\d\*\* \|", section)
    assert verdict in section
    if count[0] == 0.35:  # zero-shot at the majority level is reported with a reason
        assert "zero-shot (prompt ensemble) on the object count (likely the pretraining captions" in section
