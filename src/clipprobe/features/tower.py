"""The frozen ResNet tower of a CLIP without its attention pool, and the maps counting and the decoders read.

CLIP's ModifiedResNet ends in an attention pool that turns the layer4 map (B, C, S/32, S/32) into one vector.
The counting probes, the VQ-VAE and the segmentation decoder read the map itself, so the tower here stops
before the pool. It is frozen for good: no parameter takes gradients and BatchNorm stays in eval mode (running
statistics untouched) even when a module holding it is put into training mode. ViT towers pool with a class
token, not an attention pool over a conv map, so they have no such map: asking for one is an error.

The tower runs once per image through the one streamer (`features.stream`), so every decoder trains on
cached maps: the pre-pool map at `tower_size` (CLIP's and, as a control, a random-weight tower's) and the
pooled CLIP embedding at the model's own input size (`frozen_features`); counting reads the pooled embedding
and the pre-pool map average-pooled to a small grid (`tower_features`).

Where a cache lives (`map_storage`): on the CPU, float32 in host memory; on a GPU, bf16 (what the tower's
autocast computes), on the GPU itself when it fits there beside the working set, so a training batch is
gathered on the device with no host copy and no sync; otherwise in ordinary host memory (never pinned as a
whole: `features.staging`). Either way the cache stays as stored: `Feed` turns each batch into float32 on
the device. The paper preset's largest cache, the VQ-VAE's two RN50 maps of 60k CIFAR images
(2048 x 7 x 7), is 22.5 GiB in bf16: on an H100 or H200, on the GPU (docs/performance.md).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from torch import nn

from clipprobe.data.store import Split
from clipprobe.errors import ClipprobeError
from clipprobe.features.staging import PinnedRing
from clipprobe.features.stream import Finite, stream_images
from clipprobe.models.clip import mean_std
from clipprobe.preprocess import autocast, model_input, preprocess_uint8
from clipprobe.progress import progress
from clipprobe.syncs import Rows

LAYERS = (1, 2, 3, 4)  # residual stages whose output map can be read; 4 is the attention pool's input
CALIBRATION_IMAGES = 5_000  # the random tower's BatchNorm statistics: the first train images, every profile


class FrozenTower(nn.Module):
    """(B, 3, S, S) preprocessed images -> (B, C, S / stride, S / stride) output map of residual stage `layer`.

    `layer=4` (default) is the pre-attention-pool map; `pool` applies the model's own attention pool to it,
    which reproduces `encode_image` exactly.
    """

    def __init__(self, clip_or_visual: nn.Module, layer: int = 4) -> None:
        super().__init__()
        visual = getattr(clip_or_visual, "visual", clip_or_visual)
        if not isinstance(visual, ModifiedResNet):
            raise ClipprobeError(
                f"model: a {type(visual).__name__} tower has no attention pool over a feature map; "
                "use a ResNet CLIP (RN50, clipprobe-tiny-rn)"
            )
        if layer not in LAYERS:
            raise ClipprobeError(f"layer: must be one of {LAYERS} (got {layer})")
        self.visual = visual.requires_grad_(False).eval()
        self.layer = layer
        self._stages = [visual.stem, visual.layer1, visual.layer2, visual.layer3, visual.layer4][: layer + 1]

    @property
    def out_channels(self) -> int:
        return getattr(self.visual, f"layer{self.layer}")[-1].conv3.out_channels

    @property
    def stride(self) -> int:
        return 2 ** (self.layer + 1)  # the stem downsamples 4x, each later stage 2x

    @property
    def image_size(self) -> int:
        """The input side the attention pool's positional embedding was built for."""
        return int(self.visual.image_size)

    def train(self, mode: bool = True) -> FrozenTower:
        """Always eval: BatchNorm keeps its running statistics whatever the enclosing module does."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self._stages:
            x = stage(x)
        return x

    @torch.no_grad()
    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, C, S/32, S/32) pre-pool map -> (B, D): the model's attention pool, i.e. `encode_image`."""
        if self.layer != 4:
            raise ClipprobeError(
                f"layer: the attention pool reads layer 4's map (this tower stops at {self.layer})"
            )
        return self.visual.attnpool(fmap)


def random_tower(
    model: open_clip.CLIP, calibration: np.ndarray, *, seed: int, batch_size: int, device: torch.device
) -> FrozenTower:
    """The control tower: `model`'s architecture with fresh random weights, BatchNorm statistics recalibrated.

    Untrained BatchNorm holds mean 0 / variance 1, which would let activations grow stage after stage; the
    running statistics are therefore re-estimated (cumulative average) on the first CALIBRATION_IMAGES uint8
    `calibration` images at the model's own input size, on `device`, as for any network whose BatchNorm must
    be frozen. The weights are drawn on the CPU, so every device gets the same tower.
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    visual = copy.deepcopy(model.visual).cpu()
    for module in visual.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    visual.init_parameters()
    torch.random.set_rng_state(generator_state)
    norms = [m for m in visual.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average over the calibration batches
    mean, std = mean_std(model)
    visual.to(device).train()
    n = min(len(calibration), CALIBRATION_IMAGES)
    with torch.no_grad():
        for batch in stream_images(calibration[:n], batch_size, device):
            visual(preprocess_uint8(batch, int(visual.image_size), mean, std))
    for norm in norms:
        norm.momentum = 0.1
    return FrozenTower(visual)


def run_tower(
    tower: FrozenTower,
    images: np.ndarray,
    heads: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int,
    desc: str = "tower",
    storage: tuple[torch.device, torch.dtype] | None = None,
) -> dict[str, torch.Tensor]:
    """Run uint8 (N, H, W, 3) images through the tower at `input_size` px; each head maps the batch's output map.

    Images are resized as open_clip's eval transform does (`preprocess_uint8`), so `input_size` above the
    model's own size means upsampled inputs and a finer map (as CIFAR's 32 px images upsampled to 224 px give
    RN50 its 7 x 7 map). Through the one streamer, like `embed.embed_images`: channels_last, bf16
    autocast on CUDA. Returns one
    tensor per head, rows in image order, written into one buffer per head (no concatenation copy) of
    `storage`'s (device, dtype): by default float32 on the CPU (`map_storage`). A host buffer filled from a
    GPU stays unpinned: each batch goes back through a pinned slot (`staging`) on a copy stream of its own,
    so its copy overlaps the tower's pass over the next batch, as the images' copies in do. Every value is
    checked finite as it is computed, and the check read once at the end (one declared sync).
    """
    tower = tower.to(device, memory_format=torch.channels_last)
    where, dtype = storage or (torch.device("cpu"), torch.float32)
    staged = where.type == "cpu" and device.type == "cuda"
    if staged:
        copies = torch.cuda.Stream(device)  # the downloads of every head, beside the images' uploads
        rings = {name: PinnedRing(device, stream=copies) for name in heads}
    else:
        rings = {}
    out: dict[str, torch.Tensor] = {}
    finite = Finite(device)
    batches = stream_images(images, batch_size, device)
    start = 0
    for batch in progress(batches, total=math.ceil(len(images) / batch_size), desc=desc):
        with torch.no_grad(), autocast(device):
            fmap = tower(model_input(batch, input_size, mean, std, channels_last=True))
            for name, head in heads.items():
                value = head(fmap)
                finite.add(value)
                if name not in out:
                    out[name] = torch.empty((len(images), *value.shape[1:]), dtype=dtype, device=where)
                rows = out[name][start : start + len(value)]
                if staged:
                    _copy_back(rings[name], value, rows)
                else:
                    rows.copy_(value, non_blocking=True)
        start += len(batch)
    for ring in rings.values():
        ring.drain()
    finite.check(f"{desc} maps")
    return out


def _copy_back(ring: PinnedRing, value: torch.Tensor, rows: torch.Tensor) -> None:
    """GPU `value` into host `rows` through a pinned slot: queued now, landed when the slot comes round. It
    crosses in the narrower of its dtype and the cache's: bf16 values bound for a float32 cache are widened
    on the host (half the bytes over the bus, the same values)."""
    if value.dtype.itemsize > rows.dtype.itemsize:
        value = value.to(rows.dtype)
    ring.from_device(value, then=rows.copy_)


GPU_BUDGET = 0.8  # the share of the GPU's available memory a cache and the working set beside it may fill
# A decoder's training step, per output pixel of a batch row (an upper bound the CUDA tests check): what
# backward keeps (measured on the CPU at 64 px: UNet11 2.3 KiB, the feature decoder 1.4 KiB) plus the
# gradients of the activations and cuDNN's workspace during backward.
TRAIN_BYTES_PER_PIXEL = 4096


def training_state_bytes(model: nn.Module) -> int:
    """What training `model` holds on the device beside its weights and a step's activations, whatever the
    batch: a gradient and Adam's two moments per trainable parameter, and the plateau rule's copy of the
    best epoch's state (`plateau.Plateau`: a deep copy of the state dict), so about four times its
    trainable parameter bytes. Works on models built on the meta device."""
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return 3 * trainable + state


def available_memory(device: torch.device) -> int:
    """Bytes the GPU can still hand out: free memory plus the blocks PyTorch's allocator holds but no tensor
    uses (torch.cuda.mem_get_info counts those as taken)."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def peak_bytes(run: Callable[[], object], device: torch.device) -> int:
    """Device bytes `run` holds at its peak beyond what was allocated before it (the allocator's counts).
    Resets the allocator's peak statistics of `device`, process-wide."""
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    return torch.cuda.max_memory_allocated(device) - before


def map_storage(
    device: torch.device, cache_bytes: int, working_bytes: int
) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) of a cache of `cache_bytes` in bf16 beside `working_bytes` of other work (the tower's
    pass; a training step with its float32 batch, one-hot codes and activations): on the GPU when both fit
    in GPU_BUDGET of `available_memory`, else in host memory (see the module docstring)."""
    if device.type != "cuda":
        return torch.device("cpu"), torch.float32
    fits = cache_bytes + working_bytes <= GPU_BUDGET * available_memory(device)
    return (device if fits else torch.device("cpu")), torch.bfloat16


class Feed:
    """Batches of a cache as float32 on `device`, the cache left as it is stored (bf16 on a GPU, float32 on
    the CPU, or bf16 in host memory): no float32 copy of a whole cache exists anywhere. A cache on the
    device is indexed there by the rows' device indices, with no sync; one in host memory is gathered by
    their host indices into pinned slots and copied on a side stream, overlapping the steps (`staging`).
    Integer caches (uint8 images) keep their dtype."""

    def __init__(self, values: torch.Tensor, device: torch.device) -> None:
        self.values, self.device = values, device
        self.ring = PinnedRing(device) if values.device.type == "cpu" and device.type == "cuda" else None

    def __call__(self, rows: Rows) -> torch.Tensor:
        if self.ring is None:  # indexed where the cache lives
            batch = self.values[rows.host if self.values.device.type == "cpu" else rows.on_device]
        else:
            slot = self.ring.take((len(rows.host), *self.values.shape[1:]), self.values.dtype)
            torch.index_select(self.values, 0, rows.host, out=slot)
            batch = self.ring.to_device()
        return batch.float() if batch.is_floating_point() else batch


def frozen_features(
    clip: open_clip.CLIP,
    splits: Mapping[str, Split],
    *,
    tower_size: int,
    towers: tuple[str, ...],
    seed: int,
    device: torch.device,
    batch_size: int,
    train_bytes: int = 0,
    other_cache_bytes: int = 0,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per split, the cached decoder inputs: `features[split][kind]`, stored as `map_storage` says, beside
    the larger of the tower's pass over one batch (measured on the GPU) and a training step: its batch of
    every kind in float32 plus `train_bytes`, the rest of what the caller's training holds on the device
    (`TRAIN_BYTES_PER_PIXEL`, `training_state_bytes`). `other_cache_bytes`: what the caller puts on the
    device beside the cache once it is built (the VQ-VAE's targets), counted with the cache.

    kinds: "clip" (N, C, g, g) pre-pool map of the CLIP tower at `tower_size` px (g = tower_size / 32);
    "random" (N, C, g, g) the same from a random-weight tower (BatchNorm recalibrated on train images), when
    "random" is in `towers`; "pooled" (N, D) the CLIP embedding (`encode_image`) at the model's own size.
    """
    mean, std = mean_std(clip)
    clip_tower = FrozenTower(clip)
    if tower_size % clip_tower.stride:
        raise ClipprobeError(f"tower_size: must be a multiple of {clip_tower.stride} (got {tower_size})")
    built = {"clip": clip_tower}
    if "random" in towers:
        built["random"] = random_tower(
            clip, splits["train"].images, seed=seed, batch_size=batch_size, device=device
        )
    grid = tower_size // clip_tower.stride
    n_images = sum(len(data.images) for data in splits.values())
    row_values = len(built) * clip_tower.out_channels * grid * grid + clip.visual.output_dim
    settings = {
        "input_size": tower_size,
        "mean": mean,
        "std": std,
        "device": device,
        "batch_size": batch_size,
    }
    working = train_bytes + 4 * batch_size * row_values  # a training batch of every kind in float32
    if device.type == "cuda":
        working = max(working, _tower_bytes(clip_tower, splits["train"].images, settings))
    storage = map_storage(device, 2 * n_images * row_values + other_cache_bytes, working)  # bf16
    out: dict[str, dict[str, torch.Tensor]] = {}
    for split, data in splits.items():
        run = {**settings, "storage": storage}
        out[split] = {}
        for kind, tower in built.items():
            heads = {kind: lambda fmap: fmap}
            if kind == "clip" and tower_size == tower.image_size:
                heads["pooled"] = tower.pool  # one pass gives both
            out[split].update(run_tower(tower, data.images, heads, desc=f"{kind} tower, {split}", **run))
        if "pooled" not in out[split]:
            run["input_size"] = clip_tower.image_size
            pooled = run_tower(
                clip_tower, data.images, {"pooled": clip_tower.pool}, desc=f"pooled, {split}", **run
            )
            out[split].update(pooled)
    return out


def _tower_bytes(tower: FrozenTower, images: np.ndarray, run: dict) -> int:
    """Peak device bytes of the tower's pass over the first batch of `images` (CUDA), its inputs included;
    `run` holds run_tower's settings. Measured with cuDNN's autotuning off, even inside
    `runtime.fast_cuda_math`: the workspaces of the algorithms it times on a first pass would inflate it."""
    device, mean, std = run["device"], run["mean"], run["std"]
    tower = tower.to(device, memory_format=torch.channels_last)

    def one_batch() -> None:
        batch = torch.from_numpy(np.array(images[: run["batch_size"]])).to(device)
        with torch.no_grad(), autocast(device):
            tower(model_input(batch, run["input_size"], mean, std, channels_last=True))

    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        return peak_bytes(one_batch, device)
    finally:
        torch.backends.cudnn.benchmark = benchmark


def tower_features(
    tower: FrozenTower,
    images: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int,
    grid: int,
) -> dict[str, torch.Tensor]:
    """Pooled and pre-pool features of a uint8 (N, H, W, 3) array from one pass through the frozen tower.

    Returns float32 CPU tensors: "pooled" (N, D), the tower's attention pool output (= `encode_image`), and
    "prepool" (N, C * grid * grid), its input map average-pooled to grid x grid cells, flattened channel-major.
    """
    side = tower.image_size // tower.stride
    if not 1 <= grid <= side:
        raise ClipprobeError(f"counting.prepool_grid: must be between 1 and the map side {side} (got {grid})")
    if batch_size < 1:
        raise ClipprobeError(f"counting.batch_size: must be >= 1 (got {batch_size})")
    heads = {"pooled": tower.pool, "prepool": lambda fmap: F.adaptive_avg_pool2d(fmap, grid).flatten(1)}
    return run_tower(
        tower,
        images,
        heads,
        input_size=tower.image_size,
        mean=mean,
        std=std,
        device=device,
        batch_size=batch_size,
        desc="tower features",
    )
