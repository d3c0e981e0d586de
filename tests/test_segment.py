"""Segmentation: metrics by hand, UNet11's widths, mask sizes from real towers, the frozen tower, Pets, the stage."""

import copy
import json
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fakes import PETS_BREEDS, pets_pixel, write_fake_pets
from helpers import one_line
from torchvision.datasets import OxfordIIITPet
from torchvision.models import VGG11_Weights

from clipprobe.contracts import Runs, load_arrays, load_meta, load_split
from clipprobe.data.captions import DEFAULT_CAPTION_MIX
from clipprobe.data.pets import prepare_pets
from clipprobe.data.shapes import generate_shapes_dataset
from clipprobe.data.store import IGNORE, Split
from clipprobe.decoders.seg_metrics import confusion_matrix, majority_scores, scores
from clipprobe.decoders.segment_models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    UNet11,
    build_model,
    build_models,
    check_widths,
    load_imagenet_encoder,
    model_names,
    upsampling_blocks,
)
from clipprobe.decoders.segment_train import Recipe, model_inputs, train
from clipprobe.errors import ClipprobeError
from clipprobe.experiment import flatten
from clipprobe.features.tower import frozen_features
from clipprobe.io import save_arrays, write_csv, write_json
from clipprobe.models.clip import create_clip, save_clip
from clipprobe.params import load_params, parse_params
from clipprobe.plateau import PlateauRule
from clipprobe.profiles import composed_params
from clipprobe.summary import segment as summary_segment

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

ONE_EPOCH = PlateauRule(tolerance=0.01, max_epochs=1)


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- metrics


def test_miou_by_hand_with_ignored_and_absent_classes():
    # ground truth / prediction over 6 pixels; the last is ignored (its prediction must not count)
    target = torch.tensor([[0, 0, 1], [1, 2, IGNORE]])
    pred = torch.tensor([[0, 1, 1], [1, 1, 0]])
    cm = confusion_matrix(pred, target, n_classes=4)  # class 3 is in neither
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    result = scores(cm, ["bg", "a", "b", "c"])
    # IoU bg = 1 / (2 + 1 - 1) = 0.5; a = 2 / (2 + 4 - 2) = 0.5; b = 0 / 1 = 0; c absent: not averaged
    assert result["iou"] == {"bg": 0.5, "a": 0.5, "b": 0.0}
    assert result["miou"] == pytest.approx(1 / 3)
    assert result["pixel_acc"] == pytest.approx(3 / 5)


def test_majority_baseline_predicts_trains_most_frequent_class():
    train_masks = torch.tensor([[[0, 1, 1], [1, IGNORE, IGNORE]]], dtype=torch.uint8)  # 1 wins, 255 skipped
    test_masks = torch.tensor([[[0, 1], [1, 1]]], dtype=torch.uint8)
    result = majority_scores(train_masks, test_masks, ["bg", "fg"])
    assert result["class_index"] == 1.0
    assert result["pixel_acc"] == pytest.approx(0.75)
    assert result["iou"] == {"bg": 0.0, "fg": 0.75} and result["miou"] == pytest.approx(0.375)


# ---------------------------------------------------------------------------------------------- models


def _decoder_widths(decoder) -> list[tuple[int, ...]]:
    blocks = [(b[0][0].in_channels, b[0][0].out_channels, b[1].out_channels) for b in decoder.blocks]
    return [*blocks, (decoder.last[0].in_channels, decoder.last[0].out_channels), decoder.final.in_channels]


def test_unet11_widths_at_div_1_equal_ternausnet():
    unet = UNet11(n_classes=1, width_div=1)
    convs = [m.out_channels for m in unet.encoder if isinstance(m, torch.nn.Conv2d)]
    assert convs == [64, 128, 256, 256, 512, 512, 512, 512]  # torchvision's vgg11().features
    # TernausNet UNet11(num_filters=32): center, dec5, dec4, dec3, dec2 (in, middle, out); dec1; final
    ternausnet = [(512, 512, 256), (768, 512, 256), (768, 512, 128), (384, 256, 64), (192, 128, 32)]
    assert _decoder_widths(unet.decoder) == [*ternausnet, (96, 32), 32]
    assert unet.decoder.final.out_channels == 1
    quarter = UNet11(n_classes=7, width_div=4)
    assert _decoder_widths(quarter.decoder)[0] == (128, 128, 64)
    assert quarter(torch.randn(2, 3, 64, 64)).shape == (2, 7, 64, 64)


def _models(clip_model, names, tower_size: int, image_size: int, width_div: int) -> dict:
    return build_models(
        names,
        clip_model,
        tower_size=tower_size,
        image_size=image_size,
        n_classes=3,
        width_div=width_div,
        weights_dir="unused",
        seed=0,
        device=CPU,
    )


def _decoder_outputs(clip_model, image_size: int, tower_size: int, width_div: int) -> dict[str, torch.Size]:
    images = _images(2, image_size)
    split = {"train": Split(images=images)}
    features = frozen_features(
        clip_model, split, tower_size=tower_size, towers=("clip",), seed=0, device=CPU, batch_size=2
    )
    models = _models(clip_model, model_names(["scratch"]), tower_size, image_size, width_div)
    out = {}
    with torch.no_grad():
        for name, model in models.items():
            x = model_inputs(name, features, {"train": torch.from_numpy(images)}, CPU)["train"]
            out[name] = model(x).shape
    return out


def test_mask_size_equals_image_size_on_the_tiny_tower(tiny):
    # 64 px images, tower at 128 px: a 4x4 map, 4 upsampling blocks
    shapes = _decoder_outputs(tiny, image_size=64, tower_size=128, width_div=8)
    assert shapes == dict.fromkeys(["clip", "pooled", "unet11_scratch"], torch.Size([2, 3, 64, 64]))


def test_mask_size_equals_image_size_on_an_rn50_shaped_tower():
    torch.manual_seed(0)
    rn50, _ = create_clip("RN50", "scratch")
    # 64 px: a 2x2 map of 2048 channels, 5 blocks as UNet11; 96 px: a 3x3 map
    for size in (64, 96):
        shapes = _decoder_outputs(rn50, image_size=size, tower_size=size, width_div=16)
        assert set(shapes.values()) == {torch.Size([2, 3, size, size])}
    with pytest.raises(
        ClipprobeError, match=r"segment.tower_size: .* 3x3 pre-pool map .* 64 px masks"
    ) as exc:
        upsampling_blocks(64, 3)
    one_line(exc)


def test_training_never_touches_the_frozen_tower(tiny):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}  # weights and BatchNorm statistics
    images = _images(24, 64)
    splits = {"train": Split(images=images[:16]), "val": Split(images=images[16:])}
    features = frozen_features(
        tiny, splits, tower_size=128, towers=("clip",), seed=0, device=CPU, batch_size=8
    )
    masks = {
        "train": torch.randint(0, 3, (16, 64, 64), dtype=torch.uint8),
        "val": torch.randint(0, 3, (8, 64, 64), dtype=torch.uint8),
    }
    decoder = _models(tiny, ["clip"], 128, 64, width_div=8)["clip"]
    start = [p.clone() for p in decoder.parameters()]
    feeds = model_inputs("clip", features, {}, CPU)
    trained = train(decoder, feeds, masks, ["a", "b", "c"], Recipe(ONE_EPOCH, 8, 1e-3, 0))
    assert any(not torch.equal(a, b) for a, b in zip(start, trained.model.parameters(), strict=True))
    after = tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m.training for m in tiny.visual.modules())
    again = frozen_features(tiny, splits, tower_size=128, towers=("clip",), seed=0, device=CPU, batch_size=8)
    assert torch.equal(again["train"]["clip"], features["train"]["clip"])
    # same seed, same data: the same curves, bit for bit
    decoder = _models(tiny, ["clip"], 128, 64, width_div=8)["clip"]
    repeat = train(decoder, feeds, masks, ["a", "b", "c"], Recipe(ONE_EPOCH, 8, 1e-3, 0))
    assert repeat.curves == trained.curves and trained.best_epoch == 1


# ---------------------------------------------------------------------------------------------- ImageNet VGG11


def test_imagenet_encoder_from_a_placed_file_or_one_line(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:9/{Path(VGG11_Weights.IMAGENET1K_V1.url).name}"
    monkeypatch.setattr(VGG11_Weights.IMAGENET1K_V1.value, "url", url)  # a closed port: fails fast offline
    cache = tmp_path / "downloads" / "torchvision"
    with pytest.raises(
        ClipprobeError, match=r"put vgg11-8a719046.pth from http.* into .*torchvision/"
    ) as exc:
        load_imagenet_encoder(UNet11(2), cache)
    one_line(exc)

    torch.manual_seed(1)
    donor = UNet11(2)  # stands in for ImageNet's VGG11: its encoder saved under torchvision's key names
    state = {f"features.{k}": v for k, v in donor.encoder.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    cache.mkdir(parents=True)
    torch.save(state, cache / "vgg11-8a719046.pth")
    torch.manual_seed(2)
    unet = UNet11(2)
    load_imagenet_encoder(unet, cache)
    assert all(
        torch.equal(a, b) for a, b in zip(unet.encoder.parameters(), donor.encoder.parameters(), strict=True)
    )

    (cache / "vgg11-8a719046.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ClipprobeError, match=r"vgg11-8a719046.pth: not a loadable torchvision VGG11") as exc:
        load_imagenet_encoder(unet, cache)
    one_line(exc)


def test_imagenet_encoder_reads_imagenet_normalised_images_and_scratch_clips(tmp_path):
    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in UNet11(2).encoder.state_dict().items()}
    (tmp_path / "torchvision").mkdir()
    torch.save(state, tmp_path / "torchvision/vgg11-8a719046.pth")
    clip_mean, clip_std = (0.45,) * 3, (0.27,) * 3
    built = {
        name: build_model(
            name,
            map_channels=8,
            pooled_dim=8,
            grid=2,
            image_size=64,
            n_classes=2,
            width_div=1,
            mean=clip_mean,
            std=clip_std,
            weights_dir=tmp_path / "torchvision",
        )  # fmt: skip
        for name in ("unet11_imagenet", "unet11_scratch")
    }
    assert torch.allclose(built["unet11_imagenet"].mean.flatten(), 255 * torch.tensor(IMAGENET_MEAN))
    assert torch.allclose(built["unet11_imagenet"].std.flatten(), 255 * torch.tensor(IMAGENET_STD))
    assert torch.allclose(built["unet11_scratch"].mean.flatten(), 255 * torch.tensor(clip_mean))


# ---------------------------------------------------------------------------------------------- bad params


def test_bad_params_are_one_line(default_raw):
    for div, encoders, match in (
        (3, ["scratch"], r"segment.unet_width_div: must divide UNet11's 32 filters"),
        (4, ["imagenet"], r"segment.unet_width_div: the imagenet encoder .* needs 1 \(got 4\)"),
    ):
        with pytest.raises(ClipprobeError, match=match) as exc:
            check_widths(div, encoders)
        one_line(exc)
    raw = default_raw
    for group, key, value, match in (
        (
            "segment",
            "unet_encoders",
            ["vgg16"],
            r"segment.unet_encoders.0: must be 'scratch' or 'imagenet'",
        ),
        ("segment", "overlays", 0, r"segment.overlays: must be >= 1"),
        ("data", "segment", "voc", r"data.segment: must be 'shapes' or 'pets'"),
    ):
        bad = yaml.safe_load(yaml.safe_dump(raw))
        bad[group][key] = value
        with pytest.raises(ClipprobeError, match=match) as exc:
            parse_params(bad)
        one_line(exc)


# ---------------------------------------------------------------------------------------------- Pets


@pytest.fixture
def pets_archives(tmp_path, monkeypatch):
    downloads = tmp_path / "downloads"
    resources = write_fake_pets(downloads, n_trainval=12, n_test=5)
    monkeypatch.setattr(OxfordIIITPet, "_RESOURCES", resources)
    return downloads


def test_pets_offline_without_archives_is_one_line(tmp_path):
    with pytest.raises(
        ClipprobeError,
        match=r"Oxford-IIIT Pet not found in .*oxford-iiit-pet/ and downloading is off; put images.tar.gz",
    ) as exc:
        prepare_pets(tmp_path / "downloads", tmp_path / "data", 32, "foreground", download=False)
    one_line(exc)
    with pytest.raises(
        ClipprobeError, match=r"data.pets.border: one of foreground, background, ignore"
    ) as exc:
        prepare_pets(tmp_path / "downloads", tmp_path / "data", 32, "merge", download=False)


@pytest.mark.parametrize(("border", "value"), [("foreground", 1), ("background", 0), ("ignore", IGNORE)])
def test_pets_from_fake_archives_with_each_border_policy(tmp_path, pets_archives, border, value):
    root = tmp_path / "data"
    prepare_pets(pets_archives, root, image_size=32, border=border, download=False)
    meta = load_meta(root, "pets")
    assert meta.mask_class_names == ["background", "pet"] and meta.image_size == (32, 32)
    assert meta.class_names == ["Abyssinian", "American Bulldog"] and len(PETS_BREEDS) == 2
    uids = {"train": [1, 2, 3, 4, 5, 6, 7, 8, 9, 11], "val": [0, 10], "test": [12, 13, 14, 15, 16]}
    for name, expected in uids.items():
        split = load_split(root, "pets", name)
        assert split.images.shape == (len(expected), 32, 32, 3)
        assert split.masks.shape == (len(expected), 32, 32)
        labels = [uid % 2 for uid in expected]
        assert split.labels.tolist() == labels
        pixels = np.array(
            [pets_pixel(uid, label, name == "test") for uid, label in zip(expected, labels, strict=True)]
        )
        assert np.abs(split.images[:, 16, 16].astype(int) - pixels).max() <= 3  # JPEG keeps flat colours
        # trimap columns: pet | border | background, resized with nearest neighbour only
        assert (split.masks[:, :, 0] == 1).all() and (split.masks[:, :, 16] == value).all()
        assert (split.masks[:, :, 31] == 0).all()
        assert set(np.unique(split.masks).tolist()) == {0, 1, value}


# ---------------------------------------------------------------------------------------------- stage + report


def test_stage_and_report_end_to_end(tmp_path, monkeypatch, tiny, default_raw):
    raw = copy.deepcopy(default_raw)
    raw["device"] = "cpu"
    raw["segment"].update(
        {
            "n_train": 48,
            "n_val": 16,
            "n_test": 16,
            "max_epochs": 2,
            "batch_size": 16,
            "unet_width_div": 8,
            "overlays": 3,
        }
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    sizes = {"pretrain": 1, "train": 48, "val": 16, "test": 16}
    generate_shapes_dataset(tmp_path / "data", 64, sizes, seed=0, caption_mix=DEFAULT_CAPTION_MIX, workers=1)
    save_clip(tiny, "clipprobe-tiny-rn", "scratch", tmp_path / "models/clip/seed0")
    monkeypatch.chdir(tmp_path)
    try:
        runpy.run_path(str(ROOT / "stages/segment.py"))["main"](0)
    finally:
        torch.set_flush_denormal(
            False
        )  # the stage sets it for its own process; leave other tests as they were

    metrics = json.loads((tmp_path / "runs/seed0/segment.json").read_text())
    assert {key.split(".")[0] for key in metrics} == {"clip", "pooled", "unet11_scratch", "majority"}
    classes = set(load_meta("data", "shapes").mask_class_names)
    for name in ("clip", "pooled", "unet11_scratch"):
        assert 0 <= metrics[f"{name}.miou"] <= 1 and 0 <= metrics[f"{name}.pixel_acc"] <= 1
        assert metrics[f"{name}.best_epoch"] in (1.0, 2.0) and metrics[f"{name}.trainable_params"] > 0
        assert {key.split(".")[2] for key in metrics if key.startswith(f"{name}.iou.")} <= classes
    assert metrics["majority.class_index"] == 0.0  # background covers most pixels
    curves = pd.read_csv(tmp_path / "runs/seed0/segment_curves.csv")
    measures = ("train_loss", "val_loss", "val_miou")  # one column per model and measure: one series each
    assert list(curves.columns) == [
        "epoch",
        *(f"{m}.{x}" for m in ("clip", "pooled", "unet11_scratch") for x in measures),
    ]
    assert curves["epoch"].tolist() == list(range(1, len(curves) + 1)) and len(curves) <= 2
    overlays = load_arrays(tmp_path / "runs/seed0/segment_overlays", "segment")
    assert overlays["images"].shape == (3, 64, 64, 3) and overlays["pred_clip"].shape == (3, 64, 64)
    assert overlays["map_shape"].tolist() == [512, 4, 4] and overlays["class_names"][0] == "background"

    from clipprobe.report.segment import render

    params = load_params()
    write_json(tmp_path / "results/summary.json", {"seeds": [0], "segment": summary_segment(Runs([0]))})
    save_arrays(tmp_path / "results/segment_overlays", overlays)
    section = render(params.model_copy(update={"seeds": (0,)}), tmp_path / "reports")
    for figure in ("segment_curves", "segment_iou", "segment_overlays"):
        assert (tmp_path / f"reports/figures/{figure}.png").stat().st_size > 0
    assert f"| decoder on the CLIP pre-pool map | **{100 * metrics['clip.miou']:.2f}** |" in section
    assert "Reference, not measured here" not in section
    # the Pets reference only under the paper preset, as a labelled line of its own
    paper = composed_params(["profile=paper"], ROOT / "conf")
    paper = render(paper.model_copy(update={"seeds": (0,), "segment": params.segment}), tmp_path / "reports")
    assert (
        "Reference, not measured here: FPN-ResNet34, ImageNet encoder, 256 px, 10 epochs (smp example)"
        in paper
    )


@pytest.mark.parametrize(
    ("clip", "pooled", "majority", "unet", "verdict"),
    [
        ((0.25, 0.26, 0.24), (0.12, 0.12, 0.12), (0.12, 0.12, 0.12), (0.17, 0.18, 0.16),
         "**The pre-pool map holds what the attention pool discards**: the decoder on the pre-pool map is ahead of "
         "the same decoder fed the pooled embedding by 13.00 ± "),
        ((0.25, 0.20, 0.30), (0.30, 0.22, 0.20), (0.12, 0.12, 0.12), (0.40, 0.41, 0.39),
         "**No loss in the pool is shown**: the decoder on the pre-pool map and the same decoder fed the pooled "
         "embedding are not distinguishable"),
        ((0.11, 0.12, 0.13), (0.10, 0.10, 0.10), (0.12, 0.12, 0.12), (0.40, 0.40, 0.40), "**Inconclusive**"),
    ],
)  # fmt: skip
def test_verdict_follows_the_claims_over_seeds(clip, pooled, majority, unet, verdict, tmp_path, monkeypatch):
    from clipprobe.report.markdown import Summary
    from clipprobe.report.segment import _label, _verdict

    monkeypatch.chdir(tmp_path)
    for seed in range(3):
        scores = {"clip": clip, "pooled": pooled, "unet11_scratch": unet, "majority": majority}
        metrics = {name: {"miou": v[seed], "pixel_acc": 0.8, "iou": {}, "best_epoch": 1.0, "epochs": 1.0,
                          "rising": 0.0, "trainable_params": 1.0}
                   for name, v in scores.items()}  # fmt: skip
        write_json(tmp_path / f"runs/seed{seed}/segment.json", flatten(metrics))
        row = {"epoch": 1} | {f"{name}.{x}": 0.5 for name in scores if name != "majority"
                              for x in ("train_loss", "val_loss", "val_miou")}  # fmt: skip
        write_csv(tmp_path / f"runs/seed{seed}/segment_curves.csv", [row], list(row))
    write_json(
        tmp_path / "results/summary.json", {"seeds": [0, 1, 2], "segment": summary_segment(Runs([0, 1, 2]))}
    )
    text = _verdict(Summary(), ["clip", "pooled", "unet11_scratch"])
    assert verdict in text
    assert "UNet11, VGG11 from scratch" in text and "seeds), trained with the same recipe." in text
    if pooled == majority:  # a model at the majority level is stated as a finding
        assert text.endswith(
            f"**Not above the majority class** beyond noise, at its plateau: {_label('pooled')}."
        )
