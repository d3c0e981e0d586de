"""vqvae stage (per seed): a VQ-VAE on the frozen CLIP ResNet tower vs the tutorial's plain VQ-VAE, with controls."""

from clipprobe import paths
from clipprobe.decoders import vqvae
from clipprobe.decoders.inputs import first_images
from clipprobe.io import save_arrays, write_csv, write_json
from clipprobe.models.tower import tower_clip
from clipprobe.params import load_params
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)  # the seed fixes the inits, the batch order and the random-weight tower
    device = resolve_device(params.device)
    cfg = params.vqvae
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    splits = first_images(params.data.root, params.data.vqvae, sizes, "vqvae")
    clip_dir = paths.clip_dir(seed)
    model, _ = tower_clip(params.tower, clip_dir=clip_dir, downloads=params.data.downloads, device=device)
    result = vqvae.evaluate(model, splits, cfg, tower_size=params.tower.size, seed=seed, device=device)
    run = paths.Run(seed)
    write_csv(run.vqvae_curves, *result["curves"])
    save_arrays(run.vqvae_samples, result["samples"])
    write_json(run.vqvae, result["metrics"])


if __name__ == "__main__":
    run_stage("vqvae", main, per_seed=True)
