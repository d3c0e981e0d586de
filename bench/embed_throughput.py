"""Images per second of clipprobe's embedding path vs the usual one, each in both precisions, on random uint8
images (224 px by default, so both paths resize nothing and the ratio measures the data path).

usual:     PIL image -> open_clip eval transform -> torch DataLoader with workers -> encode_image
clipprobe: features.embed_images (uint8 batches through the streamer, resize/normalise on the device)

Each path runs in float32 and under bf16 autocast (bf16 on CUDA only), so a ratio compares paths at one
precision, never tensor cores with CUDA cores. One warm-up run, then `--repeats` timed runs: the median
and the spread (min-max) are printed, with the min cosine between the two paths' features at each precision.
Random weights (`pretrained: scratch`), so nothing is downloaded.
Example: python bench/embed_throughput.py --arch ViT-B-32 --n 4096 --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import time
from functools import partial

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from clipprobe.features import embed
from clipprobe.features.embed import embed_images
from clipprobe.models.clip import create_clip, image_size
from clipprobe.models.registry import TINY_ARCHS
from clipprobe.runtime import resolve_device


class PILImages(Dataset):
    """The usual dataset: one PIL image per item through open_clip's eval transform."""

    def __init__(self, images: np.ndarray, transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.images[i]))


def usual_path(
    model, images: np.ndarray, *, device: torch.device, batch_size: int, workers: int, bf16: bool
) -> torch.Tensor:
    cfg = open_clip.get_model_preprocess_cfg(model)
    transform = open_clip.image_transform(cfg["size"], is_train=False, mean=cfg["mean"], std=cfg["std"])
    loader = DataLoader(
        PILImages(images, transform),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    model.to(device).eval()
    with torch.inference_mode(), _precision(device, bf16):
        chunks = [model.encode_image(x.to(device, non_blocking=True)).float().cpu() for x in loader]
    return torch.cat(chunks)


def clipprobe_path(
    model, images: np.ndarray, *, device: torch.device, batch_size: int, bf16: bool
) -> torch.Tensor:
    if bf16:
        return embed_images(model, images, device=device, batch_size=batch_size)["image"]
    with _float32_towers():
        return embed_images(model, images, device=device, batch_size=batch_size)["image"]


def _precision(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@contextlib.contextmanager
def _float32_towers():
    """embed_images with its autocast off: the same data path in float32."""
    saved = embed.autocast
    embed.autocast = lambda device: contextlib.nullcontext()
    try:
        yield
    finally:
        embed.autocast = saved


def timed(run, images: np.ndarray, repeats: int) -> tuple[torch.Tensor, list[float]]:
    """One warm-up run on all images (lazy init, cuDNN autotuning, worker start-up), then `repeats` timed runs."""
    out = run(images)
    seconds = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = run(images)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return out, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-32", help=f"ViT-B-32, RN50, {', '.join(TINY_ARCHS)}, ...")
    parser.add_argument("--n", type=int, default=512, help="number of images")
    parser.add_argument("--image-size", type=int, default=224, help="side of the square uint8 images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per path and precision, after one warm-up"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model, _ = create_clip(args.arch, "scratch")
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, (args.n, args.image_size, args.image_size, 3), dtype=np.uint8)

    cpu = f"cpu, {torch.get_num_threads()} threads"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    size = f"{args.image_size}px -> {image_size(model)}px"
    print(f"{args.arch} (random weights), {args.n} images {size}, {where}")
    print(
        f"{f'path (batch {args.batch_size}, median of {args.repeats})':<46}{'img/s':>10}{'s':>8}{'min-max s':>14}"
    )
    usual_name = f"PIL + DataLoader ({args.workers} workers)"
    for bf16 in (False, True) if device.type == "cuda" else (False,):
        # each path on a fresh copy of the CPU model: embed_images switches a ResNet tower to channels_last
        common = {"device": device, "batch_size": args.batch_size, "bf16": bf16}
        usual, usual_s = timed(
            partial(usual_path, copy.deepcopy(model), workers=args.workers, **common), images, args.repeats
        )
        ours, ours_s = timed(partial(clipprobe_path, copy.deepcopy(model), **common), images, args.repeats)
        precision = "bf16" if bf16 else "fp32"
        for label, seconds in ((f"{usual_name}, {precision}", usual_s), (f"clipprobe, {precision}", ours_s)):
            median = statistics.median(seconds)
            spread = f"{min(seconds):.2f}-{max(seconds):.2f}"
            print(f"{label:<46}{args.n / median:>10.1f}{median:>8.2f}{spread:>14}")
        ratio = statistics.median(usual_s) / statistics.median(ours_s)
        min_cos = F.cosine_similarity(usual, ours).min().item()
        print(f"{precision}: speed-up x{ratio:.2f}; min cosine between the two paths' features {min_cos:.6f}")


if __name__ == "__main__":
    main()
