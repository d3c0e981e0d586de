"""embed stage (per seed): frozen image features for train/val/test, augmented views of train (the few-shot
methods' official inputs) and class text features per template set."""

from clipprobe import paths
from clipprobe.contracts import load_meta, load_split
from clipprobe.features.embed import SPLITS, embed_dataset
from clipprobe.features.views import embed_views
from clipprobe.io import write_json
from clipprobe.models.clip import load_clip
from clipprobe.params import load_params
from clipprobe.runtime import resolve_device, save_torch, start
from clipprobe.stage import run_stage
from clipprobe.templates import get_templates


def main(seed: int) -> None:
    params = load_params()
    start(seed, params.threads)
    device = resolve_device(params.device)
    model, tokenizer, info = load_clip(paths.clip_dir(seed), device=device)
    dataset = params.data.classification
    meta = load_meta(params.data.root, dataset)
    splits = {split: load_split(params.data.root, dataset, split) for split in SPLITS}
    features, text = embed_dataset(
        model,
        tokenizer,
        splits,
        meta.class_names,
        {name: get_templates(name) for name in ("report", "single", params.embed.ensemble)},
        device=device,
        batch_size=params.embed.batch_size,
        pre_projection=params.embed.pre_projection,
        raw_class_names=meta.raw_class_names,
    )
    if params.embed.views:
        views = embed_views(
            model,
            splits["train"].images,
            params.embed.views,
            seed,
            device=device,
            batch_size=params.embed.batch_size,
            pre_projection=params.embed.pre_projection,
        )
        features["train"].update({f"views{key.removeprefix('image')}": value for key, value in views.items()})
    out = paths.features_dir(seed)
    for split, feats in features.items():
        save_torch(out / f"{split}.pt", feats)
        print(f"{split}: {len(feats['labels'])} images -> {tuple(feats['image'].shape)}")
    save_torch(out / "text.pt", text)
    write_json(out / "meta.json", {**info, "dataset": dataset, "device": device.type})


if __name__ == "__main__":
    run_stage("embed", main, per_seed=True)
