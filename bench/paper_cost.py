"""Benchmark: what the paper preset costs per stage, in time and host memory, extrapolated to one H100.

Builds each stage's real models at the paper preset's shapes with random weights (ViT-B-32 and RN50 from
open_clip, UNet11 at VGG11's widths, the VQ-VAEs and decoders of params) and times one unit of each stage's
work on this device: a batch through a frozen tower, one training step of a decoder. FLOPs per unit come
from torch.utils.flop_counter. A stage is its unit times how often the paper preset runs it (images / batch,
epochs x steps). The H100 estimate divides the FLOPs by an assumed achieved bf16 throughput (--tflops-large
for the towers' big convolutions and matmuls, --tflops-small for the 32-px VQ-VAE steps) and adds a launch
overhead per step; every input is printed. On a GPU the measured seconds are printed beside it.

Host memory: every stage's largest resident arrays follow from the paper's sizes (bytes per item x items,
printed per stage). The formula is checked against a measurement: the peak RSS of building the VQ-VAE's
cache of frozen RN50 maps for two scaled-down image counts (the slope per image isolates the cache from the
model and one batch's activations).

    python bench/paper_cost.py                   # CPU: per-unit timing, H100 extrapolation, memory check
    python bench/paper_cost.py --device cuda     # on a GPU: the same units, measured there
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import open_clip
import torch
from torch.utils.flop_counter import FlopCounterMode

from clipprobe.decoders import vqvae
from clipprobe.decoders.segment_models import build_models, model_names
from clipprobe.features.tower import CALIBRATION_IMAGES, FrozenTower, frozen_features
from clipprobe.params import Params
from clipprobe.profiles import composed_params
from clipprobe.templates import get_templates

CIFAR = {"train": 49_500, "val": 500, "test": 10_000}  # CIFAR-100 / CIFAR-10 with val_per_class 50 held out
PETS = {"train": 3312, "val": 368, "test": 3669}
GIB = 2**30


@dataclass
class Unit:
    stage: str
    what: str
    count: int  # how many times the paper preset runs this unit (at the batch measured here)
    seconds: float  # one unit, measured on this device
    flops: float  # one unit
    large: bool  # big convolutions / matmuls (towers) or small per-step work (decoders)
    steps: int  # the paper's steps behind it (its own batch size): what the launch overhead counts


def _measure(fn: Callable[[], object], device: torch.device, repeats: int = 2) -> tuple[float, float]:
    """(seconds, FLOPs) of one call of fn, after a warm-up call."""
    fn()
    with FlopCounterMode(display=False) as counter:
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats, float(counter.get_total_flops())


def _images(n: int, side: int, device: torch.device) -> torch.Tensor:
    return torch.rand(n, 3, side, side, device=device)


def _tower_unit(stage, what, model, side, n_images, batch, paper_batch, device, pool=False) -> Unit:
    tower = FrozenTower(model).to(device, memory_format=torch.channels_last)
    x = _images(batch, side, device).contiguous(memory_format=torch.channels_last)

    def run():
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            fmap = tower(x)
            return tower.pool(fmap) if pool else fmap

    seconds, flops = _measure(run, device)
    return Unit(
        stage, what, math.ceil(n_images / batch), seconds, flops, True, math.ceil(n_images / paper_batch)
    )


def _train_step_unit(stage, what, model, inputs, loss_of, steps, device, large=False) -> Unit:
    model.to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_of(model, inputs).backward()
        optimizer.step()

    seconds, flops = _measure(step, device)
    return Unit(stage, what, steps, seconds, flops, large, steps)


def measure_units(params: Params, device: torch.device, cpu_batch: int) -> list[Unit]:
    """One unit of every paper stage's heavy work, at the paper's shapes (batches cut to `cpu_batch` on a CPU
    and scaled back by image count)."""
    big = (lambda b: b) if device.type == "cuda" else (lambda b: min(b, cpu_batch))
    torch.manual_seed(0)
    vit = open_clip.create_model("ViT-B-32", force_quick_gelu=True).to(device).eval()
    rn50 = open_clip.create_model("RN50", force_quick_gelu=True).to(device).eval()
    units = []
    batch = big(params.embed.batch_size)
    x = _images(batch, 224, device)

    def encode_images():
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            return vit.encode_image(x)

    seconds, flops = _measure(encode_images, device)
    n_images, paper_batch = sum(CIFAR.values()), params.embed.batch_size
    units.append(Unit("embed", f"ViT-B-32 images, batch {batch}", math.ceil(n_images / batch), seconds, flops,
                      True, math.ceil(n_images / paper_batch)))  # fmt: skip
    prompts = 100 * (2 + len(get_templates(params.embed.ensemble)))
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo of a apple."] * big(256)).to(device)

    def encode_texts():
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            return vit.encode_text(tokens)

    seconds, flops = _measure(encode_texts, device)
    units.append(Unit("embed", f"ViT-B-32 prompts, batch {len(tokens)}", math.ceil(prompts / len(tokens)),
                      seconds, flops, True, math.ceil(prompts / 256)))  # fmt: skip

    clevr = params.data.clevr
    n_clevr = clevr.n_train + clevr.n_val + clevr.n_test
    batch = big(params.counting.batch_size)
    units.append(_tower_unit("counting", f"RN50 tower + pool, batch {batch}", rn50, 224, n_clevr, batch,
                             params.counting.batch_size, device, pool=True))  # fmt: skip

    cfg = params.vqvae
    n_vq = sum(CIFAR.values())
    tower_batch = big(cfg.batch_size)
    units.append(_tower_unit("vqvae", f"RN50 tower at 224 px, 2 towers, batch {tower_batch}", rn50, 224,
                             2 * n_vq + CALIBRATION_IMAGES, tower_batch, cfg.batch_size, device, pool=True))  # fmt: skip
    steps = cfg.epochs * math.ceil(CIFAR["train"] / cfg.batch_size)
    grid = 224 // 32
    features = {
        "clip": torch.zeros(2, 2048, grid, grid),
        "random": torch.zeros(2, 2048, grid, grid),
        "pooled": torch.zeros(2, 1024),
    }
    targets = _images(cfg.batch_size, cfg.image_size, device)
    for name, kind in vqvae.MODELS.items():
        torch.manual_seed(0)
        model = vqvae.build(kind, cfg, features, grid)
        shape = (3, cfg.image_size, cfg.image_size) if kind == "pixels" else features[kind].shape[1:]
        inputs = torch.rand(cfg.batch_size, *shape, device=device)
        model.to(device)
        model(inputs)  # the codebook initialises from its first batch

        def loss_of(m, x):
            out = m(x)
            return torch.nn.functional.mse_loss(out.reconstruction, targets) + out.quantized.commitment

        units.append(_train_step_unit("vqvae", f"{name} VQ-VAE step, batch {cfg.batch_size}", model, inputs,
                                      loss_of, steps, device))  # fmt: skip

    seg = params.segment
    n_pets = sum(PETS.values())
    units.append(_tower_unit("segment", f"RN50 tower + pool, batch {tower_batch}", rn50, 224, n_pets,
                             tower_batch, seg.batch_size, device, pool=True))  # fmt: skip
    # the ImageNet-initialised UNet11 costs what the scratch one does: time that one for both
    built = build_models(model_names(["scratch"]), rn50, tower_size=224, image_size=224, n_classes=3,
                         width_div=seg.unet_width_div, weights_dir="", seed=0, device=device)  # fmt: skip
    seg_batch = big(seg.batch_size)
    steps = seg.epochs * math.ceil(PETS["train"] / seg.batch_size)
    masks = torch.randint(0, 3, (seg_batch, 224, 224), device=device)
    for name, model in built.items():
        if name == "clip":
            inputs = torch.rand(seg_batch, 2048, grid, grid, device=device)
        elif name == "pooled":
            inputs = torch.rand(seg_batch, 1024, device=device)
        else:
            inputs = torch.randint(0, 256, (seg_batch, 224, 224, 3), dtype=torch.uint8, device=device)

        def loss_of(m, x):
            return torch.nn.functional.cross_entropy(m(x), masks)

        scale = seg.batch_size / seg_batch  # a CPU times a smaller batch: scale to the paper's
        unit = _train_step_unit("segment", f"{name} step, batch {seg.batch_size}", model, inputs, loss_of,
                                steps, device, large=name.startswith("unet11"))  # fmt: skip
        unit.seconds, unit.flops = unit.seconds * scale, unit.flops * scale
        for encoder in seg.unet_encoders if name.startswith("unet11") else [None]:
            label = f"unet11_{encoder} step, batch {seg.batch_size}" if encoder else unit.what
            units.append(
                Unit(unit.stage, label, unit.count, unit.seconds, unit.flops, unit.large, unit.steps)
            )
    return units


# ---------------------------------------------------------------------------------------------- memory


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def _cache_peak(n: int, queue) -> None:
    """Peak RSS above the start while frozen_features builds the VQ-VAE cache of n CIFAR-sized images."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = open_clip.create_model("RN50", force_quick_gelu=True).eval()
    images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    from clipprobe.data.store import Split

    splits = {"train": Split(images=images)}
    base, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    cache = frozen_features(model, splits, tower_size=224, towers=("clip", "random"), seed=0,
                            device=torch.device("cpu"), batch_size=8)  # fmt: skip
    done.set()
    sampler.join()
    held = sum(t.nbytes for kinds in cache.values() for t in kinds.values())
    queue.put((peak[0] - base, held))


def memory_table(params: Params) -> list[tuple[str, str, float]]:
    """(stage, what, GiB) of the paper preset's largest host arrays, from its sizes."""
    clevr = params.data.clevr
    n_clevr = clevr.n_train + clevr.n_val + clevr.n_test
    n_cifar, n_pets = sum(CIFAR.values()), sum(PETS.values())
    side = params.data.pets.image_size
    rows = [
        ("data", f"CIFAR-100 images: {n_cifar} x 32 x 32 x 3 uint8", n_cifar * 3072),
        ("data", f"Pets images + masks: {n_pets} x {side}^2 x (3 + 1) uint8", n_pets * side * side * 4),
        (
            "data",
            f"CLEVR images: {n_clevr} x {clevr.image_size}^2 x 3 uint8",
            n_clevr * clevr.image_size**2 * 3,
        ),
        ("embed", f"features: {n_cifar} x (512 + 512 + 768) float32", n_cifar * 1792 * 4),
        (
            "counting",
            f"pooled + 3x3 pre-pool maps: {n_clevr} x (1024 + 2048 x 9) float32",
            n_clevr * (1024 + 2048 * 9) * 4,
        ),  # fmt: skip
        ("vqvae", f"images + targets: {n_cifar} x 3072 x (1 + 4) bytes", n_cifar * 3072 * 5),
        (
            "vqvae",
            f"on the GPU, bf16: 2 maps {n_cifar} x 2048 x 7 x 7 + pooled x 1024",
            n_cifar * (2 * 2048 * 49 + 1024) * 2,
        ),
        ("segment", f"images + masks: {n_pets} x {side}^2 x 4 uint8", n_pets * side * side * 4),
        (
            "segment",
            f"on the GPU, bf16: map {n_pets} x 2048 x 7 x 7 + pooled x 1024",
            n_pets * (2048 * 49 + 1024) * 2,
        ),
    ]
    return [(stage, what, n / GIB) for stage, what, n in rows]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cpu-batch", type=int, default=8, help="batch of the tower units on a CPU")
    parser.add_argument("--tflops-large", type=float, default=300.0, help="assumed H100 bf16 TFLOP/s, towers")
    parser.add_argument("--tflops-small", type=float, default=40.0, help="assumed H100 TFLOP/s, small steps")
    parser.add_argument("--overhead-ms", type=float, default=3.0, help="assumed launch overhead per step, ms")
    parser.add_argument("--check-n", type=int, nargs=2, default=(64, 192), help="images of the memory check")
    args = parser.parse_args()
    device = torch.device(args.device)
    params = composed_params(["profile=paper"])
    torch.set_num_threads(params.threads)

    units = measure_units(params, device, args.cpu_batch)
    print(f"paper preset, per unit on {device} (threads {torch.get_num_threads()}); H100 estimate from FLOPs at "
          f"{args.tflops_large:g} TFLOP/s (towers) / {args.tflops_small:g} TFLOP/s (decoder steps) + "
          f"{args.overhead_ms:g} ms per step")  # fmt: skip
    print(f"{'stage':<9}{'unit':<46}{'count':>8}{'GFLOP':>10}{'s/unit':>9}{'here, min':>11}{'H100, min':>11}")
    totals: dict[str, list[float]] = {}
    for u in units:
        rate = (args.tflops_large if u.large else args.tflops_small) * 1e12
        h100 = (u.count * u.flops / rate + u.steps * args.overhead_ms / 1e3) / 60
        here = u.count * u.seconds / 60
        print(
            f"{u.stage:<9}{u.what[:45]:<46}{u.count:>8}{u.flops / 1e9:>10.1f}{u.seconds:>9.3f}{here:>11.1f}{h100:>11.2f}"
        )
        totals.setdefault(u.stage, [0.0, 0.0])
        totals[u.stage][0] += here
        totals[u.stage][1] += h100
    for stage, (here, h100) in totals.items():
        print(f"{stage:<9}{'stage total':<46}{'':>8}{'':>10}{'':>9}{here:>11.1f}{h100:>11.2f}")
    print(f"{'all':<9}{'(probe, few-shot: cached features, < 1 min)':<46}{'':>27}"
          f"{sum(t[0] for t in totals.values()):>11.1f}{sum(t[1] for t in totals.values()):>11.2f}")  # fmt: skip

    print("\nlargest host arrays of the paper preset (GiB)")
    for stage, what, gib in memory_table(params):
        print(f"{stage:<9}{what:<72}{gib:>7.2f}")
    context = multiprocessing.get_context("spawn")
    measured = []
    for n in args.check_n:
        queue = context.Queue()
        worker = context.Process(target=_cache_peak, args=(n, queue))
        worker.start()
        measured.append((n, *queue.get()))
        worker.join()
    (n1, peak1, held1), (n2, peak2, held2) = measured
    formula = (2 * 2048 * 49 + 1024) * 4  # float32 on the CPU: 2 maps + pooled per image
    print(
        f"\nmemory check, VQ-VAE cache on the CPU (float32, {formula / 1024:.0f} KiB per image by the formula):"
    )
    for n, peak, held in measured:
        print(f"  {n} images: peak RSS +{peak / 2**20:.0f} MiB, cache tensors {held / 2**20:.0f} MiB")
    print(f"  slope of the peak: {(peak2 - peak1) / (n2 - n1) / 1024:.0f} KiB per image "
          f"(formula {formula / 1024:.0f} KiB; bf16 on a GPU halves it)")  # fmt: skip


if __name__ == "__main__":
    main()
