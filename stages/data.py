"""data stage: generate the shapes world and/or download CIFAR, CLEVR and Pets into the store under data/."""

from pathlib import Path

from clipprobe import paths
from clipprobe.data.cifar import prepare_cifar
from clipprobe.data.clevr import prepare_clevr
from clipprobe.data.pets import prepare_pets
from clipprobe.data.shapes import generate_shapes_dataset
from clipprobe.params import load_params
from clipprobe.stage import run_stage


def main() -> None:
    params = load_params()
    cfg = params.data
    root, downloads = Path(cfg.root), paths.downloads_dir(cfg.downloads)  # ~ expanded
    # The shapes world is needed by any task that selects it, and always for pretraining a CLIP from scratch.
    tasks = (cfg.classification, cfg.counting, cfg.vqvae, cfg.segment)
    if "shapes" in tasks or params.clip.pretrained == "scratch":
        shapes = cfg.shapes
        generate_shapes_dataset(
            root,
            image_size=shapes.image_size,
            sizes={
                "pretrain": shapes.n_pretrain,
                "train": shapes.n_train,
                "val": shapes.n_val,
                "test": shapes.n_test,
            },
            seed=params.seed,
            caption_mix=shapes.captions.model_dump(),
            min_objects=shapes.min_objects,
            max_objects=shapes.max_objects,
            workers=cfg.workers,
        )
    for name in sorted({cfg.classification, cfg.vqvae} & {"cifar10", "cifar100"}):
        prepare_cifar(name, downloads, root, val_per_class=cfg.cifar.val_per_class, seed=params.seed)
    if cfg.counting == "clevr":
        clevr = cfg.clevr
        sizes = {"train": clevr.n_train, "val": clevr.n_val, "test": clevr.n_test}
        prepare_clevr(downloads, root, sizes, clevr.image_size, seed=params.seed)
    if cfg.segment == "pets":
        prepare_pets(downloads, root, cfg.pets.image_size, cfg.pets.border)


if __name__ == "__main__":
    run_stage("data", main)
