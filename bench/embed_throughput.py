"""Images per second of clipprobe's embedding path vs the usual one, on CIFAR-size random uint8 images.

usual:     PIL image -> open_clip eval transform -> torch DataLoader with workers -> encode_image in float32
clipprobe: features.embed_images (uint8 batches, resize/normalise on the device; bf16 autocast on CUDA)

Random weights (`pretrained: scratch`), so nothing is downloaded. Prints one table and the min cosine between
the two paths' features. Example: python bench/embed_throughput.py --arch ViT-B-32 --n 4096 --device cuda
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

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
    model, images: np.ndarray, *, device: torch.device, batch_size: int, workers: int
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
    with torch.inference_mode():
        chunks = [model.encode_image(x.to(device, non_blocking=True)).float().cpu() for x in loader]
    return torch.cat(chunks)


def clipprobe_path(model, images: np.ndarray, *, device: torch.device, batch_size: int) -> torch.Tensor:
    return embed_images(model, images, device=device, batch_size=batch_size)["image"]


def timed(run, images: np.ndarray, warmup: int, repeats: int) -> tuple[torch.Tensor, float]:
    """Warm up on the first `warmup` images (lazy init, cuDNN autotuning), then time `repeats` full runs.

    The best run is reported: the minimum is the one least disturbed by other load on the machine.
    """
    run(images[:warmup])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = run(images)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-32", help=f"ViT-B-32, RN50, {', '.join(TINY_ARCHS)}, ...")
    parser.add_argument("--n", type=int, default=512, help="number of images")
    parser.add_argument(
        "--image-size", type=int, default=32, help="side of the square uint8 images (CIFAR: 32)"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per path; the best one is reported"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model, _ = create_clip(args.arch, "scratch")
    rng = np.random.default_rng(args.seed)
    images = rng.integers(0, 256, (args.n, args.image_size, args.image_size, 3), dtype=np.uint8)

    # the usual path first: embed_images may switch a ResNet tower to channels_last on CUDA
    usual_run = partial(usual_path, model, device=device, batch_size=args.batch_size, workers=args.workers)
    usual, usual_s = timed(usual_run, images, args.batch_size, args.repeats)
    ours_run = partial(clipprobe_path, model, device=device, batch_size=args.batch_size)
    ours, ours_s = timed(ours_run, images, args.batch_size, args.repeats)
    min_cos = F.cosine_similarity(usual, ours).min().item()

    cpu = f"cpu, {torch.get_num_threads()} threads"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    size = f"{args.image_size}px -> {image_size(model)}px"
    print(f"{args.arch} (random weights), {args.n} images {size}, {where}")
    print(f"{f'path (batch {args.batch_size}, best of {args.repeats})':<46}{'img/s':>10}{'seconds':>10}")
    usual_name = f"PIL + DataLoader ({args.workers} workers), fp32"
    ours_name = "clipprobe embed_images, " + ("bf16 autocast" if device.type == "cuda" else "fp32")
    for label, seconds in ((usual_name, usual_s), (ours_name, ours_s)):
        print(f"{label:<46}{args.n / seconds:>10.1f}{seconds:>10.2f}")
    print(f"speed-up x{usual_s / ours_s:.2f}; min cosine between the two paths' features {min_cos:.6f}")


if __name__ == "__main__":
    main()
