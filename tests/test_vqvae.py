"""VQ-VAE: the quantiser, shapes for the tiny and an RN50-shaped tower, frozen towers, scores, the stage."""

import copy
import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from open_clip.modified_resnet import ModifiedResNet

from clipprobe.contracts import load_first
from clipprobe.data.captions import DEFAULT_CAPTION_MIX
from clipprobe.data.shapes import generate_shapes_dataset
from clipprobe.decoders import vqvae_train
from clipprobe.decoders.vqvae_models import VQVAE, Decoder, EMAQuantizer, FeatureEncoder, PlainEncoder
from clipprobe.errors import ClipprobeError
from clipprobe.features.tower import FrozenTower, frozen_features, random_tower
from clipprobe.models.clip import mean_std, save_clip
from clipprobe.plateau import PlateauRule
from clipprobe.preprocess import preprocess_uint8

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def _vqvae(encoder, in_grid: int, out_size: int = 32, size: int = 16, dim: int = 8) -> VQVAE:
    return VQVAE(encoder, EMAQuantizer(size, dim, 0.25, 0.9), Decoder(dim, 16, in_grid, out_size))


# ---------------------------------------------------------------------------------------------- quantiser


def test_quantiser_picks_the_nearest_code_and_passes_gradients_straight_through():
    quantizer = EMAQuantizer(3, 2, commitment=0.25, decay=0.9).eval()
    quantizer.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]))
    z = torch.tensor([[0.9, 1.2], [-1.5, 0.1]]).T.reshape(1, 2, 1, 2).requires_grad_(True)  # 2 positions
    out = quantizer(z)
    assert out.indices.tolist() == [[[1, 2]]]
    assert torch.equal(out.codes.detach(), torch.tensor([[1.0, -2.0], [1.0, 0.0]]).reshape(1, 2, 1, 2))
    out.codes.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # straight-through: d codes / d z = identity
    assert not any(p.requires_grad for p in quantizer.parameters())  # the codebook moves only by EMA


def test_codebook_starts_on_encodings_and_dead_codes_restart():
    quantizer = EMAQuantizer(4, 2, commitment=0.25, decay=0.5, restart_below=0.3).train()
    z = torch.tensor([[[[5.0, 5.0]], [[5.0, 5.0]]]])  # (1, 2, 1, 2): two identical positions at (5, 5)
    generator = torch.Generator().manual_seed(0)
    quantizer(z, generator)
    assert torch.allclose(quantizer.embedding, torch.full((4, 2), 5.0))  # every code starts on an encoding
    assert quantizer.ema_count.tolist() == [1.5, 0.5, 0.5, 0.5]  # ties go to code 0: both hits
    moved = torch.tensor([[[[-3.0, -3.0]], [[-3.0, -3.0]]]])
    for _ in range(3):  # the unused codes decay 0.5 -> 0.25 < 0.3 and restart at (-3, -3)
        quantizer(moved, generator)
    assert (quantizer.embedding < 0).all()  # without restarts codes 1-3 would stay at (5, 5) for ever


def test_usage_and_scores_by_hand():
    usage = vqvae_train.codebook_usage(torch.tensor([0, 0, 1, 1]), codebook_size=4)
    assert usage["perplexity"] == pytest.approx(2.0) and usage["codes_used"] == 0.5
    target = torch.full((2, 3, 8, 8), 0.5)
    scores = vqvae_train.image_scores(target + 0.1, target, data_variance=0.02)
    assert scores["mse"] == pytest.approx(0.01) and scores["psnr"] == pytest.approx(20.0, abs=1e-4)
    assert scores["mse_over_variance"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="differ"):
        vqvae_train.image_scores(
            torch.zeros(2, 3, 4, 4), target, 0.02
        )  # never scored at different resolutions
    image = torch.rand(1, 3, 8, 8)
    assert torch.allclose(
        vqvae_train.mean_colour(image), image.mean(dim=(2, 3), keepdim=True).expand_as(image)
    )
    flat = torch.full((1, 3, 8, 8), 0.25)
    assert torch.allclose(vqvae_train.thumbnail_floor(flat, 2), flat)


# ---------------------------------------------------------------------------------------------- shapes


def test_tiny_tower_map_decodes_to_the_scoring_resolution(tiny):
    tower = FrozenTower(tiny)
    fmap = tower(torch.randn(2, 3, 128, 128))  # 64 px images upsampled x2, as the embedded default
    assert fmap.shape == (2, 512, 4, 4)
    vq = _vqvae(FeatureEncoder(512, 8, 4, pooled=False), in_grid=4)
    assert vq(fmap).reconstruction.shape == (2, 3, 32, 32)
    pooled = _vqvae(FeatureEncoder(128, 8, 4, pooled=True), in_grid=4)
    out = pooled(tower.pool(fmap[:, :, :2, :2]))
    assert out.reconstruction.shape == (2, 3, 32, 32) and out.quantized.indices.shape == (2, 4, 4)
    plain = _vqvae(PlainEncoder(16, 8), in_grid=8)
    assert plain(torch.rand(2, 3, 32, 32)).quantized.indices.shape == (2, 8, 8)


def test_rn50_shaped_tower_decodes_like_the_report():
    torch.manual_seed(0)
    visual = ModifiedResNet(layers=[3, 4, 6, 3], output_dim=1024, heads=32, image_size=64, width=64).eval()
    fmap = FrozenTower(visual)(torch.randn(1, 3, 64, 64))
    assert fmap.shape == (1, 2048, 2, 2)
    vq = _vqvae(FeatureEncoder(2048, 8, 2, pooled=False), in_grid=2)
    assert vq(fmap).reconstruction.shape == (1, 3, 32, 32)
    seven = Decoder(8, 16, grid=7, out_size=32)  # RN50 at 224 px: 7x7 -> 28x28 (x4), then resized to 32
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in seven.modules()) == 2
    assert seven(torch.randn(1, 8, 7, 7)).shape == (1, 3, 32, 32)
    with pytest.raises(ClipprobeError, match="cannot decode"):
        Decoder(8, 16, grid=64, out_size=32)


# ---------------------------------------------------------------------------------------------- frozen


def test_training_through_the_tower_changes_no_clip_weight_or_batchnorm_statistic(tiny):
    tower = FrozenTower(tiny)
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    vq = _vqvae(torch.nn.Sequential(tower, FeatureEncoder(512, 8, 2, pooled=False)), in_grid=2)
    images = torch.randn(8, 3, 64, 64)
    head_before = vq.encoder[1].proj.weight.clone()
    vqvae_train.train_vqvae(
        vq, vqvae_train.Pairs(images, torch.rand(8, 3, 32, 32)), vqvae_train.Pairs(images[:4], torch.rand(4, 3, 32, 32)),
        rule=PlateauRule(0.01, max_epochs=2), batch_size=4, lr=1e-2, seed=0, device=CPU, desc="test",
    )  # fmt: skip
    assert not torch.equal(vq.encoder[1].proj.weight, head_before)  # the 1x1 conv did train
    after = tower.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and running stats untouched
    assert not any(m.training for m in tower.modules())


def test_random_tower_is_recalibrated_and_leaves_the_model_alone(tiny):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    images = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    control = random_tower(tiny, images, seed=1, batch_size=8, device=torch.device("cpu"))
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    assert not torch.equal(control.visual.conv1.weight, tiny.visual.conv1.weight)
    norm = control.visual.bn1
    assert norm.momentum == 0.1 and not torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
    again = random_tower(tiny, images, seed=1, batch_size=8, device=torch.device("cpu"))
    pairs = zip(control.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


# ---------------------------------------------------------------------------------------------- stage


def test_stage_scores_every_model_at_one_resolution(tmp_path, monkeypatch, tiny, default_raw):
    raw = copy.deepcopy(default_raw)
    raw["device"] = "cpu"
    raw["vqvae"].update({"n_train": 48, "n_val": 16, "n_test": 16, "max_epochs": 2, "batch_size": 16,
                         "codebook_size": 32, "hidden": 16, "code_dim": 8, "samples": 4})  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    generate_shapes_dataset(tmp_path / "data", 64, {"pretrain": 1, "train": 48, "val": 16, "test": 16},
                            seed=0, caption_mix=DEFAULT_CAPTION_MIX, workers=1)  # fmt: skip
    save_clip(tiny, "clipprobe-tiny-rn", "scratch", tmp_path / "models/clip/seed0")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "stages/vqvae.py"))["main"](0)

    metrics = json.loads((tmp_path / "runs/seed0/vqvae.json").read_text())
    for name in ("plain", "clip", "random_tower", "pooled", "thumbnail", "mean_colour"):
        assert 0 < metrics[f"{name}.mse"] < 1 and np.isfinite(metrics[f"{name}.psnr"])
    assert metrics["clip.code_grid"] == 4 and metrics["plain.code_grid"] == 8
    samples = {p.stem: np.load(p) for p in (tmp_path / "runs/seed0/vqvae_samples").glob("*.npy")}
    assert {a.shape for a in samples.values()} == {(4, 32, 32, 3)}  # every row at the scoring resolution
    header = (tmp_path / "runs/seed0/vqvae_curves.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "epoch" and {"plain.train_recon", "plain.val_recon", "pooled.val_recon"} <= set(
        header
    )
    assert {column.split(".")[0] for column in header[1:]} == {"plain", "clip", "random_tower", "pooled"}
    assert metrics["plain.epochs"] <= 2 and 1 <= metrics["plain.best_epoch"] <= metrics["plain.epochs"]

    raw["vqvae"]["n_test"] = 17
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ClipprobeError, match="vqvae.n_test: asks for 17 images; shapes test holds 16"):
        runpy.run_path(str(ROOT / "stages/vqvae.py"))["main"](0)


def test_load_first_and_frozen_features(tmp_path, tiny):
    generate_shapes_dataset(tmp_path, 64, {"pretrain": 1, "train": 8, "val": 4, "test": 4},
                            seed=0, caption_mix=DEFAULT_CAPTION_MIX, workers=1)  # fmt: skip
    splits = load_first(tmp_path, "shapes", {"train": 6, "val": 4}, "segment")
    assert len(splits["train"]) == 6 and splits["train"].masks.shape == (6, 64, 64)
    feats = frozen_features(tiny, splits, tower_size=96, towers=("clip", "random"), seed=0, device=CPU,
                            batch_size=4)  # fmt: skip
    assert feats["val"]["clip"].shape == (4, 512, 3, 3) == feats["val"]["random"].shape
    assert feats["val"]["pooled"].shape == (4, 128)
    mean, std = mean_std(tiny)
    x = preprocess_uint8(torch.from_numpy(splits["val"].images), 64, mean, std)
    with torch.no_grad():  # pooled = encode_image at the model's own size, whatever tower_size is
        torch.testing.assert_close(feats["val"]["pooled"], tiny.encode_image(x))
    with pytest.raises(ClipprobeError, match="tower_size: must be a multiple of 32"):
        frozen_features(tiny, splits, tower_size=100, towers=("clip",), seed=0, device=CPU, batch_size=4)
