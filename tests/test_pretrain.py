"""Contrastive pretraining from scratch: the loss falls, runs repeat exactly, the recipe's details hold."""

import math

import numpy as np
import pytest
import torch

from clipprobe.errors import ClipprobeError
from clipprobe.models.clip import create_clip
from clipprobe.models.pretrain import MAX_LOGIT_SCALE, PretrainConfig, _adamw, encode_captions, pretrain_clip

CPU = torch.device("cpu")
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
RGB = np.array(
    [
        [220, 30, 30],
        [30, 200, 30],
        [30, 30, 220],
        [230, 230, 30],
        [150, 30, 170],
        [250, 140, 20],
        [245] * 3,
        [10] * 3,
    ]
)


def colour_pairs(n: int, size: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Left and right halves in two of 8 colours, the caption names both: 64 learnable (image, text) kinds."""
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, 8, n), rng.integers(0, 8, n)
    images = np.empty((n, size, size, 3), np.uint8)
    images[:, :, : size // 2] = RGB[left][:, None, None]
    images[:, :, size // 2 :] = RGB[right][:, None, None]
    noise = rng.integers(-20, 21, images.shape)
    images = np.clip(images + noise, 0, 255).astype(np.uint8)
    return images, [
        f"{COLOURS[a]} on the left and {COLOURS[b]} on the right" for a, b in zip(left, right, strict=True)
    ]


def _model(arch: str = "clipprobe-tiny-rn"):
    torch.manual_seed(0)
    return create_clip(arch, "scratch")


@pytest.fixture(scope="module")
def trained():
    """20 steps at batch 16 on 32 px images (the model takes 64 px: the resize path runs too)."""
    model, tokenizer = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, captions = colour_pairs(256, 32, seed=0)
    cfg = PretrainConfig(steps=20, batch_size=16, lr=2e-3, weight_decay=0.05, warmup_steps=4)
    rows = pretrain_clip(model, tokenizer, images, captions, cfg, seed=0, device=CPU, progress=False)
    return model, before, rows, cfg


def test_loss_falls(trained):
    _, _, rows, _ = trained
    losses = [row["loss"] for row in rows]
    assert losses[0] > 2.0  # about log(16) at init
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_rows_and_lr_schedule(trained):
    _, _, rows, cfg = trained
    assert [row["step"] for row in rows] == list(range(1, cfg.steps + 1))
    assert set(rows[0]) == {"step", "loss", "logit_scale", "lr"}
    lrs = [row["lr"] for row in rows]
    assert lrs[0] == pytest.approx(cfg.lr / cfg.warmup_steps)
    assert lrs[cfg.warmup_steps - 1] == pytest.approx(cfg.lr) == max(lrs)
    decay = lrs[cfg.warmup_steps :]
    assert all(a > b for a, b in zip(decay[:-1], decay[1:], strict=True))  # cosine decay
    assert lrs[-1] < 0.01 * cfg.lr


def test_weights_and_batchnorm_stats_change_and_model_ends_in_eval(trained):
    model, before, rows, _ = trained
    after = model.state_dict()
    for key in (
        "visual.conv1.weight",
        "visual.bn1.running_mean",
        "visual.layer4.0.bn3.running_var",
        "visual.attnpool.c_proj.weight",
        "token_embedding.weight",
        "text_projection",
    ):
        assert not torch.equal(before[key], after[key]), key
    assert after["visual.bn1.num_batches_tracked"] == before["visual.bn1.num_batches_tracked"] + len(rows)
    assert not model.training
    assert all(0 < row["logit_scale"] <= MAX_LOGIT_SCALE for row in rows)


def test_logit_scale_is_clamped_at_100():
    model, tokenizer = _model()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    images, captions = colour_pairs(8, 64, seed=1)
    cfg = PretrainConfig(steps=1, batch_size=4, lr=1e-4, weight_decay=0.0, warmup_steps=0)
    rows = pretrain_clip(model, tokenizer, images, captions, cfg, seed=0, device=CPU, progress=False)
    assert rows[0]["logit_scale"] == pytest.approx(MAX_LOGIT_SCALE)


@pytest.mark.parametrize("arch", ["clipprobe-tiny-rn", "clipprobe-tiny-vit"])
def test_same_seed_same_run_other_seed_other_batches(arch):
    images, captions = colour_pairs(32, 64, seed=2)
    cfg = PretrainConfig(steps=2, batch_size=8, lr=1e-3, weight_decay=0.05, warmup_steps=1)

    def run(seed: int) -> tuple[list[dict], torch.Tensor]:
        model, tokenizer = _model(arch)
        rows = pretrain_clip(model, tokenizer, images, captions, cfg, seed=seed, device=CPU, progress=False)
        return rows, model.text_projection.detach()

    (rows_a, proj_a), (rows_b, proj_b), (rows_c, _) = run(0), run(0), run(1)
    assert rows_a == rows_b and torch.equal(proj_a, proj_b)
    assert [r["loss"] for r in rows_a] != [r["loss"] for r in rows_c]


def test_no_weight_decay_on_gains_biases_embeddings_or_logit_scale():
    model, _ = _model()
    decay, no_decay = _adamw(model, PretrainConfig()).param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert {"logit_scale", "token_embedding.weight", "positional_embedding", "visual.bn1.weight"} <= skipped
    assert {"visual.attnpool.positional_embedding", "ln_final.bias"} <= skipped
    assert {"visual.conv1.weight", "text_projection", "transformer.resblocks.0.mlp.c_fc.weight"} <= decayed
    assert len(skipped) + len(decayed) == len(names)


@pytest.mark.parametrize("arch", ["clipprobe-tiny-rn", "clipprobe-tiny-vit"])
def test_captions_cut_to_the_longest_give_encode_texts_features_and_gradients(arch):
    torch.manual_seed(0)
    model, tokenizer = create_clip(arch, "scratch")
    tokens = tokenizer(["a red circle", "two small blue squares next to a large green star", "a star"])
    assert int(tokens.argmax(dim=-1).max()) + 1 < tokens.shape[1]  # there is padding to drop
    full = model.encode_text(tokens, normalize=True)
    grads_full = torch.autograd.grad(full.square().sum(), list(model.transformer.parameters()))
    cut = encode_captions(model, tokens)
    grads_cut = torch.autograd.grad(cut.square().sum(), list(model.transformer.parameters()))
    assert torch.allclose(cut, full, atol=1e-6)  # the same math; summation order may differ in the last bit
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads_cut, grads_full, strict=True))


def test_bad_inputs():
    model, tokenizer = _model()
    images, captions = colour_pairs(8, 64, seed=3)
    with pytest.raises(ClipprobeError, match=r"clip\.pretrain\.batch_size: must be in \[2, 8"):
        pretrain_clip(model, tokenizer, images, captions, PretrainConfig(batch_size=16), 0, CPU, False)
    with pytest.raises(ClipprobeError, match="one per image"):
        pretrain_clip(model, tokenizer, images, captions[:7], PretrainConfig(batch_size=4), 0, CPU, False)
    with pytest.raises(ClipprobeError, match=r"must be uint8 \(N, H, W, 3\)"):
        pretrain_clip(model, tokenizer, images.astype(np.float32), captions, PretrainConfig(), 0, CPU, False)


@pytest.mark.gpu
def test_cuda_bf16_run():
    model, tokenizer = _model()
    images, captions = colour_pairs(64, 64, seed=4)
    cfg = PretrainConfig(steps=3, batch_size=32, lr=1e-3, weight_decay=0.05, warmup_steps=1)
    rows = pretrain_clip(model, tokenizer, images, captions, cfg, 0, torch.device("cuda"), False)
    assert all(math.isfinite(row["loss"]) for row in rows)
    assert model.logit_scale.device.type == "cuda" and model.logit_scale.dtype == torch.float32
