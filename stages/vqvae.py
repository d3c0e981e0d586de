"""vqvae stage: a VQ-VAE on the frozen CLIP ResNet tower vs the tutorial's plain VQ-VAE, with controls."""

from clipprobe import paths
from clipprobe.decoders import vqvae
from clipprobe.decoders.inputs import first_images
from clipprobe.io import save_arrays, write_csv, write_json
from clipprobe.models.tower import tower_clip
from clipprobe.params import load_params
from clipprobe.runtime import resolve_device, seed_everything
from clipprobe.stage import run_stage


def main() -> None:
    params = load_params()
    seed_everything(params.seed)
    device = resolve_device(params.device)
    cfg = params.vqvae
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    splits = first_images(params.data.root, params.data.vqvae, sizes, "vqvae")
    model, _ = tower_clip(params.tower, clip_dir=paths.CLIP, downloads=params.data.downloads, device=device)
    result = vqvae.evaluate(model, splits, cfg, tower_size=params.tower.size, seed=params.seed, device=device)
    write_csv(paths.VQVAE_CURVES, *result["curves"])
    save_arrays(paths.VQVAE_SAMPLES, result["samples"])
    write_json(paths.VQVAE, result["metrics"])


if __name__ == "__main__":
    run_stage("vqvae", main)
