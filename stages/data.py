"""data stage: generate the shapes world and/or download CIFAR into the uniform store under data/."""

from clipprobe.data.cifar import prepare_cifar
from clipprobe.data.shapes import generate_shapes_dataset
from clipprobe.params import load_params
from clipprobe.runtime import run_stage, seed_everything


def data() -> None:
    params = load_params()
    seed_everything(params.seed)
    cfg = params.data
    # The shapes world is needed for the probes when selected, and always for pretraining a CLIP from scratch.
    if cfg.classification == "shapes" or params.clip.pretrained == "scratch":
        shapes = cfg.shapes
        path = generate_shapes_dataset(
            cfg.root,
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
        print(f"wrote {path}")
    if cfg.classification in ("cifar10", "cifar100"):
        path = prepare_cifar(
            cfg.classification,
            cfg.downloads,
            cfg.root,
            val_per_class=cfg.cifar.val_per_class,
            seed=params.seed,
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    run_stage(data)
