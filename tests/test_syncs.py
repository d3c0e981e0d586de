"""What the GPU loops promise, checked on the CPU: each loop's declared syncs per epoch (counted through
`syncs.host`), caches fed per batch in float32 without a float32 copy of the whole cache, host-drawn batch
orders, branch-free counts. The same loops under CUDA's sync debug mode: tests/test_cuda.py."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from clipprobe import syncs
from clipprobe.decoders.batches import batch_rows
from clipprobe.decoders.seg_metrics import IGNORE, confusion_matrix, counts
from clipprobe.decoders.segment_train import Recipe, model_inputs
from clipprobe.decoders.segment_train import train as train_segmenter
from clipprobe.decoders.vqvae_models import VQVAE, Decoder, EMAQuantizer, PlainEncoder
from clipprobe.decoders.vqvae_train import Pairs, train_vqvae
from clipprobe.errors import ClipprobeError
from clipprobe.features.stream import Finite
from clipprobe.features.tower import Feed, map_storage, training_state_bytes
from clipprobe.plateau import PlateauRule
from clipprobe.preprocess import preprocess_uint8
from clipprobe.probes.fewshot.train import eval_points
from clipprobe.syncs import Rows

CPU = torch.device("cpu")
TWO_EPOCHS = PlateauRule(tolerance=0.01, max_epochs=2)
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors


@pytest.fixture
def counted(monkeypatch) -> Counter:
    """A fresh count of the declared syncs, for one test."""
    fresh: Counter = Counter()
    monkeypatch.setattr(syncs, "COUNTS", fresh)
    return fresh


class Recorder(nn.Module):
    """A 1x1-conv segmenter that records the dtype and rows of every batch it reads."""

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, n_classes, 1)
        self.seen: list[tuple[torch.dtype, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.dtype, len(x)))
        return self.conv(x)


def _segment_data(n: int, generator: torch.Generator) -> tuple[dict, dict]:
    maps = torch.randn(n, 4, 8, 8, generator=generator).to(torch.bfloat16)
    masks = torch.randint(0, 3, (n, 8, 8), generator=generator, dtype=torch.uint8)
    masks[:, 0, 0] = IGNORE
    return {"train": maps[:12], "val": maps[12:]}, {"train": masks[:12], "val": masks[12:]}


def test_segmentation_reads_a_bf16_cache_per_batch_with_two_syncs_per_epoch(counted):
    inputs, masks = _segment_data(16, torch.Generator().manual_seed(0))
    before = {split: x.clone() for split, x in inputs.items()}
    torch.manual_seed(0)
    model = Recorder(4, 3)
    trained = train_segmenter(model, inputs, masks, ["a", "b", "c"], Recipe(TWO_EPOCHS, 4, 1e-2, 0))
    epochs = len(trained.curves)
    assert epochs == 2
    assert counted == Counter({"segment: train loss": epochs, "segment: evaluation": epochs})
    # every batch float32 and at most batch_size rows; the cache itself untouched, still bf16
    assert {dtype for dtype, _ in model.seen} == {torch.float32}
    assert max(rows for _, rows in model.seen) == 4
    assert all(x.dtype == torch.bfloat16 and torch.equal(x, before[s]) for s, x in inputs.items())


def test_model_inputs_leave_a_gpu_cache_as_stored():
    cache = torch.zeros(3, 4, 2, 2, dtype=torch.bfloat16)
    features = {"train": {"clip": cache, "pooled": cache[:, :, 0, 0]}}
    # nothing is copied for a GPU: the cache object itself goes to the loop (no CUDA call is made)
    assert model_inputs("clip", features, {}, torch.device("cuda"))["train"] is cache
    cpu = model_inputs("clip", features, {}, CPU)["train"]  # the CPU's path: float32, channels_last once
    assert cpu.dtype == torch.float32 and cpu.is_contiguous(memory_format=torch.channels_last)


def test_feed_turns_each_batch_into_float32_and_keeps_integer_caches():
    cache = torch.arange(24, dtype=torch.float32).view(6, 4).to(torch.bfloat16)
    rows = next(batch_rows(6, 3, torch.Generator().manual_seed(0)))
    batch = Feed(cache, CPU)(rows)
    assert batch.dtype == torch.float32 and torch.equal(batch, cache[rows.host].float())
    images = torch.zeros(6, 2, 2, 3, dtype=torch.uint8)
    assert Feed(images, CPU)(rows).dtype == torch.uint8
    assert map_storage(CPU, 10**12, 10**12) == (CPU, torch.float32)


def test_vqvae_declares_two_syncs_per_epoch(counted):
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(12, 3, 16, 16, generator=generator)
    torch.manual_seed(0)
    model = VQVAE(PlainEncoder(8, 4), EMAQuantizer(16, 4, 0.25, 0.9), Decoder(4, 8, 4, 16))
    train, val = Pairs(pixels[:8], pixels[:8]), Pairs(pixels[8:], pixels[8:])
    training = train_vqvae(
        model, train, val, rule=TWO_EPOCHS, batch_size=4, lr=1e-3, seed=0, device=CPU, desc="t"
    )
    epochs = len(training.history)
    assert counted == Counter({"vqvae: train loss terms": epochs, "vqvae: evaluation": epochs})


def test_pretraining_reads_its_losses_every_step_on_the_cpu_and_in_chunks_on_a_gpu(
    counted, tiny_clip, monkeypatch
):
    from clipprobe.models import pretrain

    model, tokenizer = tiny_clip
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    captions = [f"a {c} square" for c in ("red", "blue", "green", "grey")] * 2
    cfg = pretrain.PretrainConfig(steps=5, batch_size=4, warmup_steps=1)
    rows = pretrain.pretrain_clip(model, tokenizer, images, captions, cfg, 0, CPU, False)
    assert [row["step"] for row in rows] == [1, 2, 3, 4, 5]
    assert counted == Counter({"pretrain: inputs": 1, "pretrain: losses": 5})  # every step on the CPU
    counted.clear()
    monkeypatch.setattr(pretrain, "read_every", lambda device: 2)  # a GPU's chunks, shortened
    chunked = pretrain.pretrain_clip(model, tokenizer, images, captions, cfg, 0, CPU, False)
    assert [row["step"] for row in chunked] == [1, 2, 3, 4, 5]
    assert counted == Counter({"pretrain: inputs": 1, "pretrain: losses": 3})  # steps 2, 4 and the last


def test_fewshot_syncs_only_at_evaluation_points(counted):
    from clipprobe.probes.fewshot.methods import Prior, ZeroshotHead
    from clipprobe.probes.fewshot.support import Task
    from clipprobe.probes.fewshot.train import train_heads

    generator = torch.Generator().manual_seed(0)
    n_classes, dim, heads = 3, 8, 2
    weights = nn.functional.normalize(torch.randn(n_classes, dim, generator=generator), dim=-1)
    support = nn.functional.normalize(torch.randn(heads, 6, dim, generator=generator), dim=-1)
    labels = torch.arange(n_classes).repeat(2)
    index = torch.arange(6).expand(heads, 6)
    task = Task(2, support, labels, support.flip(1), labels, index, index)
    cfg = SimpleNamespace(linear=SimpleNamespace(lr=0.01, weight_decay=0.0))
    method = ZeroshotHead(Prior(weights, 10.0, torch.ones(n_classes)), cfg)
    trace = train_heads(method, task, support[1], labels, epochs=6, eval_every=3, generator=generator)
    points = eval_points(6, 3)
    assert trace.epochs == points
    assert counted == Counter({"few-shot: hits": 2 * len(points), "few-shot: divergence": len(points) - 1})


def test_batch_orders_are_the_generators_and_the_same_tensor_on_the_cpu():
    rows = list(batch_rows(10, 4, torch.Generator().manual_seed(3)))
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(3)).split(4)
    assert all(
        torch.equal(r.host, e) and r.on_device.data_ptr() == r.host.data_ptr()
        for r, e in zip(rows, expected, strict=True)
    )
    assert torch.equal(torch.cat([r.host for r in batch_rows(5, 2)]), torch.arange(5))


def test_branch_free_counts_equal_bincount():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (5, 7, 7), generator=generator, dtype=torch.uint8)
    target[0] = IGNORE
    pred = torch.randint(0, 4, (5, 7, 7), generator=generator)
    valid = target != IGNORE
    expected = torch.bincount((4 * target[valid].long() + pred[valid]), minlength=16).view(4, 4)
    assert torch.equal(confusion_matrix(pred, target, 4), expected)
    assert torch.equal(counts(target.long(), valid, 4), torch.bincount(target[valid].long(), minlength=4))


def test_normalisation_constants_are_built_once_and_unchanged():
    images = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    first = preprocess_uint8(images, 8, mean, std)
    with torch.inference_mode():  # cached under inference mode, still usable with autograd after
        preprocess_uint8(images, 8, list(mean), std)
    x = images.permute(0, 3, 1, 2).float()
    m = torch.tensor(mean).view(1, 3, 1, 1) * 255
    s = torch.tensor(std).view(1, 3, 1, 1) * 255
    assert torch.equal(first, (x - m) / s)
    weight = torch.ones((), requires_grad=True)
    (preprocess_uint8(images, 8, mean, std) * weight).sum().backward()


def test_feed_indexes_a_cache_where_it_lives():
    """A cache in host memory by the host indices, one on the loop's device by the device indices, whatever
    the device's spelling (`cuda` vs `cuda:0`); device indices that differ from the host's are never read
    for a host cache."""
    cache = torch.arange(12.0).view(6, 2)
    rows = Rows(torch.tensor([4, 1]), torch.tensor([0, 5]))
    assert torch.equal(Feed(cache, CPU)(rows), cache[[4, 1]])


def test_training_state_counts_gradients_adam_and_the_best_copy():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(10, 4), nn.BatchNorm1d(4))
    model[1].requires_grad_(False)
    trainable = 4 * (10 * 4 + 4)
    state = 4 * (10 * 4 + 4 + 4 + 4 + 4 + 4) + 8  # the weights, BatchNorm's four vectors, its int64 count
    assert training_state_bytes(model) == 3 * trainable + state


def test_the_vqvae_state_bound_builds_on_meta_and_draws_nothing(tiny):
    from clipprobe.decoders.vqvae import MODELS, build, largest_training_state
    from clipprobe.features.tower import FrozenTower

    cfg = SimpleNamespace(hidden=8, code_dim=4, codebook_size=16, commitment=0.25, decay=0.9, image_size=32)
    before = torch.random.get_rng_state()
    bound = largest_training_state(tiny, 64, cfg)
    assert torch.equal(torch.random.get_rng_state(), before)
    frozen = FrozenTower(tiny)
    grid = 64 // frozen.stride
    maps = torch.zeros(1, frozen.out_channels, grid, grid)
    features = {"clip": maps, "random": maps, "pooled": torch.zeros(1, frozen.visual.output_dim)}
    built = [training_state_bytes(build(kind, cfg, features, grid)) for kind in MODELS.values()]
    assert bound == max(built)


def test_finite_folds_batches_and_reads_once(counted):
    finite = Finite(CPU)
    finite.add(torch.ones(3))
    finite.check("maps")
    finite.add(torch.tensor([1.0, float("nan")]))
    finite.add(torch.ones(2))
    with pytest.raises(ClipprobeError, match="maps: the CLIP computes NaN or inf"):
        finite.check("maps")
    assert counted == Counter({"features: finite": 2})
