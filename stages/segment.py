"""segment stage: UNet11's decoder on the frozen pre-pool CLIP map vs on the pooled embedding vs UNet11 itself."""

import time
from pathlib import Path

import torch

from clipprobe.data.store import load_meta
from clipprobe.decoders.inputs import first_images, frozen_features
from clipprobe.decoders.segment_models import build_models, check_widths, model_names
from clipprobe.decoders.segment_train import Recipe, check_masks, compare, curve_columns
from clipprobe.errors import ClipprobeError
from clipprobe.models.tower import tower_clip
from clipprobe.params import load_params
from clipprobe.runtime import resolve_device, run_stage, save_arrays, seed_everything, write_csv, write_json

METRICS = Path("metrics/segment.json")
CURVES = Path("plots/segment_curves.csv")
OVERLAYS = Path("segment/overlays")


def segment() -> None:
    params = load_params()
    seed_everything(params.seed)
    # Barely trained decoders produce denormal gradients, which slow CPU convolutions; flush them to zero
    # (set before any parallel region, so the OpenMP worker threads inherit it).
    torch.set_flush_denormal(True)
    device = resolve_device(params.device)
    cfg, dataset = params.segment, params.data.segment
    check_widths(cfg.unet_width_div, cfg.unet_encoders)
    class_names = load_meta(params.data.root, dataset).mask_class_names
    if not class_names:
        raise ClipprobeError(f"data.segment: {dataset} has no masks (mask_class_names); use shapes or pets")
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    splits = first_images(params.data.root, dataset, sizes, "segment")
    clip, _ = tower_clip(params, "segment", clip_dir="models/clip", device=device)

    images = {split: torch.tensor(data.images, device=device) for split, data in splits.items()}
    masks = {split: torch.tensor(data.masks, device=device) for split, data in splits.items()}
    check_masks(masks, len(class_names), dataset)
    models = build_models(  # before the features: missing ImageNet weights fail fast
        model_names(cfg.unet_encoders),
        clip,
        tower_size=cfg.tower_size,
        image_size=images["train"].shape[1],
        n_classes=len(class_names),
        width_div=cfg.unet_width_div,
        weights_dir=Path(params.data.downloads) / "torchvision",
        seed=params.seed,
        device=device,
    )

    start = time.perf_counter()
    features = frozen_features(
        clip,
        splits,
        tower_size=cfg.tower_size,
        towers=("clip",),
        seed=params.seed,
        device=device,
        batch_size=cfg.batch_size,
    )
    print(
        f"frozen features in {time.perf_counter() - start:.1f} s: {features['train']['clip'].shape[1:]} map"
    )
    recipe = Recipe(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=params.seed)
    result = compare(models, features, images, masks, class_names, recipe, cfg.overlays)
    write_json(METRICS, result.metrics)
    write_csv(CURVES, result.curves, curve_columns(list(models)))
    save_arrays(OVERLAYS, result.overlays)
    for name, scores in result.metrics.items():
        took = f" ({result.seconds[name]:.1f} s)" if name in result.seconds else ""
        print(f"{name}: test mIoU {scores['miou']:.3f}, pixel acc {scores['pixel_acc']:.3f}{took}")
    print(f"wrote {METRICS}, {CURVES}, {OVERLAYS} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_stage(segment)
