"""The CUDA paths, skipped without a GPU (bench/gpu_check.sh runs them): every training loop's epochs under
`torch.cuda.set_sync_debug_mode("error")` but for the syncs it declares (`syncs.host`), the tower and the
embedding against the CPU at real sizes, the host fallback's pinned memory, the storage rule's peak memory
and the few-shot heads' zero-shot start. Their CPU halves: tests/test_syncs.py."""

from __future__ import annotations

import contextlib
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipprobe import syncs
from clipprobe.decoders import vqvae
from clipprobe.decoders.segment_models import FeatureDecoder, ImageInput, UNet11
from clipprobe.decoders.segment_train import Recipe
from clipprobe.decoders.segment_train import train as train_segmenter
from clipprobe.decoders.vqvae_models import VQVAE, Decoder, EMAQuantizer, FeatureEncoder
from clipprobe.decoders.vqvae_train import Pairs, train_vqvae
from clipprobe.features import staging, tower
from clipprobe.features.embed import embed_images, embed_texts, last_projection
from clipprobe.models.clip import create_clip, mean_std
from clipprobe.plateau import PlateauRule

pytestmark = pytest.mark.gpu
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
TWO_EPOCHS = PlateauRule(tolerance=0.01, max_epochs=2)
ONE_EPOCH = PlateauRule(tolerance=0.01, max_epochs=1)


@pytest.fixture
def counted(monkeypatch) -> Counter:
    fresh: Counter = Counter()
    monkeypatch.setattr(syncs, "COUNTS", fresh)
    return fresh


@contextlib.contextmanager
def sync_errors():
    """Any sync not declared through `syncs.host` raises."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def _fields(n: int, side: int, seed: int) -> np.ndarray:
    """uint8 (n, side, side, 3) smooth random colour fields: images whose features differ (a spread)."""
    coarse = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    fine = F.interpolate(coarse, size=side, mode="bilinear", align_corners=False)
    return (fine * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _matches(gpu: torch.Tensor, cpu: torch.Tensor) -> None:
    """bf16 on the GPU against float32 on the CPU: close per row, and far closer than the rows are apart."""
    assert gpu.dtype == cpu.dtype == torch.float32 and gpu.shape == cpu.shape
    gpu, cpu = gpu.flatten(1), cpu.flatten(1)
    spread = (cpu - cpu.mean(dim=0)).norm(dim=1).median()
    assert spread > 0
    assert F.cosine_similarity(gpu, cpu).min() >= 0.99
    assert (gpu - cpu).norm(dim=1).max() < 0.5 * spread


# ---- every training loop's epochs: only the declared syncs


def test_segmentation_epochs_sync_only_where_declared(counted):
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(48, 64, 4, 4, generator=generator).to(CUDA, torch.bfloat16)
    masks = torch.randint(0, 3, (48, 32, 32), generator=generator, dtype=torch.uint8).to(CUDA)
    torch.manual_seed(0)
    model = FeatureDecoder(64, 4, 32, 3, 8).to(CUDA)
    inputs, targets = {"train": maps[:32], "val": maps[32:]}, {"train": masks[:32], "val": masks[32:]}
    with sync_errors():
        trained = train_segmenter(model, inputs, targets, ["a", "b", "c"], Recipe(TWO_EPOCHS, 8, 1e-3, 0))
    assert counted == Counter({"segment: train loss": 2, "segment: evaluation": 2})
    assert trained.curves[-1]["val_loss"] > 0


@pytest.mark.parametrize("where", [CUDA, CPU], ids=["cache on the GPU", "cache in host memory"])
def test_vqvae_epochs_sync_only_where_declared(counted, where):
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(48, 64, 4, 4, generator=generator).to(where, torch.bfloat16)
    pixels = torch.rand(48, 3, 16, 16, generator=generator).to(CUDA)
    torch.manual_seed(0)
    encoder = FeatureEncoder(64, 8, 4, pooled=False)
    model = VQVAE(encoder, EMAQuantizer(32, 8, 0.25, 0.9), Decoder(8, 16, 4, 16))
    model.to(CUDA, memory_format=torch.channels_last)
    train, val = Pairs(maps[:32], pixels[:32]), Pairs(maps[32:], pixels[32:])
    with sync_errors():
        training = train_vqvae(
            model, train, val, rule=TWO_EPOCHS, batch_size=8, lr=1e-3, seed=0, device=CUDA, desc="t"
        )
    assert counted == Counter({"vqvae: train loss terms": 2, "vqvae: evaluation": 2})
    assert len(training.history) == 2 and bool(model.quantizer.initialised)


def test_pretraining_steps_sync_only_where_declared(counted, tiny_clip):
    from clipprobe.models.pretrain import READ_EVERY, PretrainConfig, pretrain_clip

    model, tokenizer = tiny_clip
    model.to(CUDA)
    images = _fields(64, 32, seed=1)
    captions = [f"a {c} field" for c in ("red", "blue", "green", "grey")] * 16
    cfg = PretrainConfig(steps=READ_EVERY + 2, batch_size=16, lr=1e-3, warmup_steps=1)
    with sync_errors():
        rows = pretrain_clip(model, tokenizer, images, captions, cfg, 0, CUDA, False)
    model.to(CPU)
    assert len(rows) == cfg.steps and counted == Counter({"pretrain: inputs": 1, "pretrain: losses": 2})


@pytest.mark.parametrize("name", ["zeroshot", "random", "prolip"])
def test_fewshot_epochs_sync_only_where_declared(counted, name):
    from clipprobe.probes.fewshot.methods import Prior
    from clipprobe.probes.fewshot.registry import METHODS
    from clipprobe.probes.fewshot.support import Task
    from clipprobe.probes.fewshot.train import eval_points, train_heads

    generator = torch.Generator().manual_seed(0)
    n_classes, dim, pre_dim, heads = 3, 8, 12, 2
    weights = F.normalize(torch.randn(n_classes, dim, generator=generator), dim=-1).to(CUDA)
    projection = (torch.randn(dim, pre_dim, generator=generator).to(CUDA), torch.zeros(dim, device=CUDA))
    pre = torch.randn(heads, 6, pre_dim, generator=generator).to(CUDA)
    support = F.normalize(pre @ projection[0].T, dim=-1)
    labels = torch.arange(n_classes, device=CUDA).repeat(2)
    index = torch.arange(6, device=CUDA).expand(heads, 6)
    task = Task(2, support, labels, support, labels, index, index, support_pre=pre, val_pre=pre)
    cfg = SimpleNamespace(
        linear=SimpleNamespace(lr=0.01, weight_decay=0.0), prolip=SimpleNamespace(lr=0.01, views=0)
    )
    method = METHODS[name](Prior(weights, 10.0, torch.ones(n_classes, device=CUDA), projection), cfg)
    with sync_errors():
        trace = train_heads(
            method, task, support[0], labels, epochs=6, eval_every=3, generator=generator, test_pre=pre[0]
        )
    points = eval_points(6, 3)
    assert trace.epochs == points
    assert counted == Counter({"few-shot: hits": 2 * len(points), "few-shot: divergence": len(points) - 1})


# ---- the frozen tower and the embedding against the CPU, at real sizes


def test_run_tower_matches_the_cpu_at_224_px():
    torch.manual_seed(0)
    rn50, _ = create_clip("RN50", "scratch")
    frozen = tower.FrozenTower(rn50)
    mean, std = mean_std(rn50)
    images = _fields(48, 224, seed=2)
    run = {"mean": mean, "std": std, "batch_size": 16, "grid": 3}
    cpu = tower.tower_features(frozen, images, device=CPU, **run)
    gpu = tower.tower_features(frozen, images, device=CUDA, **run)
    for key in ("pooled", "prepool"):
        assert gpu[key].device == CPU and not gpu[key].is_pinned()  # unpinned: staged per batch
        _matches(gpu[key], cpu[key])


def test_embedding_matches_the_cpu_at_224_px():
    torch.manual_seed(0)
    vit, _ = create_clip("ViT-B-32", "scratch")
    images = _fields(48, 224, seed=3)
    cpu = embed_images(vit, images, device=CPU, batch_size=16, pre_projection=True)
    gpu = embed_images(vit, images, device=CUDA, batch_size=16, pre_projection=True)
    for key in ("image", "image_pre"):
        _matches(gpu[key], cpu[key])
    weight, bias = last_projection(vit.visual).values()
    # the projection ran in float32 from the stored pre-projection features
    assert torch.allclose(gpu["image"], gpu["image_pre"] @ weight.T + bias, atol=1e-5, rtol=1e-5)


# ---- the host fallback and the storage rule


def _pinned_bytes() -> tuple[int, int]:
    """(current, peak) bytes of PyTorch's pinned host allocator."""
    stats = torch.cuda.host_memory_stats()
    current = max(v for k, v in stats.items() if "bytes" in k and k.endswith("current"))
    peak = max(v for k, v in stats.items() if "bytes" in k and k.endswith("peak"))
    return current, peak


def test_forced_host_fallback_stays_unpinned_and_equals_the_gpu_cache(tiny, monkeypatch):
    images = _fields(2048, 64, seed=4)
    splits = {"train": SimpleNamespace(images=images)}
    run = {"tower_size": 128, "towers": ("clip",), "seed": 0, "device": CUDA, "batch_size": 64}
    on_gpu = tower.frozen_features(tiny, splits, **run)["train"]["clip"]
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.bfloat16
    monkeypatch.setattr(tower, "map_storage", lambda *args: (CPU, torch.bfloat16))
    # the sync debug mode flags neither an event's wait nor a non-blocking copy from pageable memory (a
    # blocking one): so every staging slot handed out is checked pinned
    slots: list[bool] = []
    take = staging.PinnedRing.take

    def recorded(ring, shape, dtype):
        slot = take(ring, shape, dtype)
        slots.append(slot.is_pinned())
        return slot

    monkeypatch.setattr(staging.PinnedRing, "take", recorded)
    if hasattr(torch.cuda, "reset_peak_host_memory_stats"):
        torch.cuda.reset_peak_host_memory_stats()
    before, _ = _pinned_bytes()
    on_host = tower.frozen_features(tiny, splits, **run)["train"]["clip"]
    _, peak = _pinned_bytes()
    tiny.to(CPU)
    assert len(slots) >= 2 * len(images) // run["batch_size"] and all(slots)  # images in, maps out
    assert on_host.device == CPU and on_host.dtype == torch.bfloat16 and not on_host.is_pinned()
    assert torch.equal(on_host, on_gpu.cpu())
    cache = on_host.numel() * on_host.element_size()
    assert peak - before < cache / 4, f"pinned {peak - before} bytes for a {cache}-byte cache"


def test_training_peak_holds_the_storage_rule():
    """A bf16 cache on the GPU: a training epoch's peak stays within the working set the rule reserves (a
    step's activations, the float32 batch, the model's gradients, Adam state and best copy), which is less
    than a float32 copy of the cache would take; UNet11 on uint8 images within it too."""
    rows, channels, grid, side, batch = 4096, 2048, 4, 64, 16
    generator = torch.Generator().manual_seed(0)
    cache = torch.randn(rows, channels, grid, grid, generator=generator).to(CUDA, torch.bfloat16)
    masks = torch.randint(0, 3, (rows, side, side), generator=generator, dtype=torch.uint8).to(CUDA)
    torch.manual_seed(0)
    model = FeatureDecoder(channels, grid, side, 3, 1).to(CUDA, memory_format=torch.channels_last)
    step = batch * tower.TRAIN_BYTES_PER_PIXEL * side * side
    working = step + 4 * batch * channels * grid * grid + tower.training_state_bytes(model)
    assert working < 4 * cache.numel()  # so a float32 copy of the cache could not hide in the peak
    inputs, targets = {"train": cache, "val": cache[:256]}, {"train": masks, "val": masks[:256]}
    recipe = Recipe(ONE_EPOCH, batch, 1e-3, 0)
    peak = tower.peak_bytes(lambda: train_segmenter(model, inputs, targets, ["a", "b", "c"], recipe), CUDA)
    assert peak <= working, f"segmentation: {peak} bytes at the peak, the rule reserves {working}"

    images = torch.randint(0, 256, (256, side, side, 3), generator=generator, dtype=torch.uint8).to(CUDA)
    torch.manual_seed(0)
    unet = ImageInput(UNet11(3), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    unet = unet.to(CUDA, memory_format=torch.channels_last)
    working = step + tower.training_state_bytes(unet)
    inputs, targets = {"train": images, "val": images[:64]}, {"train": masks[:256], "val": masks[:64]}
    peak = tower.peak_bytes(lambda: train_segmenter(unet, inputs, targets, ["a", "b", "c"], recipe), CUDA)
    assert peak <= working, f"UNet11: {peak} bytes at the peak, the rule reserves {working}"

    cfg = SimpleNamespace(image_size=32, codebook_size=512, batch_size=128)
    maps = torch.randn(4096, channels, 1, 1, generator=generator).to(CUDA, torch.bfloat16)
    pixels = torch.rand(4096, 3, 32, 32, generator=generator).to(CUDA)
    encoder = FeatureEncoder(channels, 64, 1, pooled=False)
    model = VQVAE(encoder, EMAQuantizer(512, 64, 0.25, 0.99), Decoder(64, 128, 1, 32)).to(CUDA)
    working = vqvae.train_bytes(cfg, tower.training_state_bytes(model)) + 4 * cfg.batch_size * channels
    train, val = Pairs(maps, pixels), Pairs(maps[:256], pixels[:256])
    run = {"rule": ONE_EPOCH, "batch_size": cfg.batch_size, "lr": 1e-3, "seed": 0, "device": CUDA}
    peak = tower.peak_bytes(lambda: train_vqvae(model, train, val, desc="peak", **run), CUDA)
    assert peak <= working, f"vq-vae: {peak} bytes at the peak, the rule reserves {working}"


# ---- the few-shot heads start at zero-shot on a GPU too


def test_zeroshot_and_prolip_start_at_zeroshot_on_cuda(tiny_clip):
    from test_fewshot import CFG

    from clipprobe.probes.fewshot.sweep import run_sweep

    model, tokenizer = tiny_clip
    names = ["red", "green", "blue"]
    features = {}
    for split, (per_class, seed) in {"train": (10, 5), "val": (6, 6), "test": (20, 7)}.items():
        images = _fields(per_class * len(names), 64, seed)
        features[split] = embed_images(model, images, device=CUDA, batch_size=16, pre_projection=True)
        features[split]["labels"] = torch.arange(len(names)).repeat(per_class)
    text = embed_texts(model, tokenizer, names, ["a {} field.", "a photo of {}."], device=CUDA)
    cfg = CFG.model_copy(update={"inits": ["zeroshot", "prolip"], "epochs": 2, "eval_every": 1})
    sweep = run_sweep(
        features["train"], features["val"], features["test"], text, 30.0, (1,), cfg, seed=0,
        device=CUDA, projection=last_projection(model.visual),
    )  # fmt: skip
    model.to(CPU)
    for name in ("zeroshot", "prolip"):
        hits = sweep.results[1][name].trace.test_hits[0]
        assert torch.equal(hits, sweep.zeroshot_hits.expand_as(hits)), name
