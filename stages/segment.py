"""segment stage (per seed): UNet11's decoder on the frozen pre-pool CLIP map vs on the pooled embedding vs
UNet11 itself."""

from clipprobe import paths
from clipprobe.contracts import load_first, load_meta
from clipprobe.decoders import segment
from clipprobe.errors import ClipprobeError
from clipprobe.experiment import write_result
from clipprobe.models.clip import tower_clip
from clipprobe.params import load_params
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)  # the seed fixes every model's init and the batch order
    device = resolve_device(params.device)
    clip_dir = paths.clip_dir(seed)  # the tower first: offline, its fetch fails before any data is read
    clip, _ = tower_clip(params.tower, clip_dir=clip_dir, downloads=params.data.downloads, device=device)
    cfg, dataset = params.segment, params.data.segment
    class_names = load_meta(params.data.root, dataset).mask_class_names
    if not class_names:
        raise ClipprobeError(f"data.segment: {dataset} has no masks (mask_class_names); use shapes or pets")
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    splits = load_first(params.data.root, dataset, sizes, "segment")
    weights_dir = paths.torchvision_cache(params.data.downloads)
    inputs = segment.Inputs(
        clip, splits, class_names, dataset, params.tower.size, weights_dir, seed, params.plateau, device
    )
    write_result(paths.run_dir(seed), "segment", segment.evaluate(inputs, cfg))


if __name__ == "__main__":
    run_stage("segment", main, per_seed=True)
