"""segment stage: UNet11's decoder on the frozen pre-pool CLIP map vs on the pooled embedding vs UNet11 itself."""

import torch

from clipprobe import paths
from clipprobe.data.store import load_meta
from clipprobe.decoders import segment
from clipprobe.decoders.inputs import first_images
from clipprobe.errors import ClipprobeError
from clipprobe.io import save_arrays, write_csv, write_json
from clipprobe.models.tower import tower_clip
from clipprobe.params import load_params
from clipprobe.runtime import resolve_device, seed_everything
from clipprobe.stage import run_stage


def main() -> None:
    params = load_params()
    seed_everything(params.seed)
    torch.set_flush_denormal(True)  # before any parallel region, so the OpenMP worker threads inherit it
    device = resolve_device(params.device)
    cfg, dataset = params.segment, params.data.segment
    class_names = load_meta(params.data.root, dataset).mask_class_names
    if not class_names:
        raise ClipprobeError(f"data.segment: {dataset} has no masks (mask_class_names); use shapes or pets")
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    splits = first_images(params.data.root, dataset, sizes, "segment")
    clip, _ = tower_clip(params.tower, clip_dir=paths.CLIP, downloads=params.data.downloads, device=device)
    result = segment.evaluate(
        clip,
        splits,
        class_names,
        cfg,
        dataset=dataset,
        tower_size=params.tower.size,
        weights_dir=paths.torchvision_cache(params.data.downloads),
        seed=params.seed,
        device=device,
    )
    write_json(paths.SEGMENT, result["metrics"])
    write_csv(paths.SEGMENT_CURVES, *result["curves"])
    save_arrays(paths.SEGMENT_OVERLAYS, result["overlays"])


if __name__ == "__main__":
    run_stage("segment", main)
