"""vqvae stage (per seed): a VQ-VAE on the frozen CLIP ResNet tower vs the tutorial's plain VQ-VAE, with controls."""

from clipprobe import paths
from clipprobe.contracts import load_first
from clipprobe.decoders import vqvae
from clipprobe.experiment import write_result
from clipprobe.models.clip import tower_clip
from clipprobe.params import load_params
from clipprobe.runtime import resolve_device, start
from clipprobe.stage import run_stage


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)  # the seed fixes the inits, the batch order and the random-weight tower
    device = resolve_device(params.device)
    cfg = params.vqvae
    sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    splits = load_first(params.data.root, params.data.vqvae, sizes, "vqvae")
    clip_dir = paths.clip_dir(seed)
    clip, _ = tower_clip(params.tower, clip_dir=clip_dir, downloads=params.data.downloads, device=device)
    result = vqvae.evaluate(vqvae.Inputs(clip, splits, params.tower.size, seed, params.plateau, device), cfg)
    write_result(paths.run_dir(seed), "vqvae", result)


if __name__ == "__main__":
    run_stage("vqvae", main, per_seed=True)
