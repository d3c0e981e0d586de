"""embed stage: frozen image features for train/val/test and class text features per template set."""

from clipprobe import paths
from clipprobe.data.store import load_meta, load_split
from clipprobe.features import SPLITS, embed_dataset
from clipprobe.io import write_json
from clipprobe.models.clip import load_clip
from clipprobe.params import load_params
from clipprobe.runtime import resolve_device, save_torch, seed_everything
from clipprobe.stage import run_stage
from clipprobe.templates import get_templates


def main() -> None:
    params = load_params()
    seed_everything(params.seed)
    device = resolve_device(params.device)
    model, tokenizer, info = load_clip(paths.CLIP, device=device)
    dataset = params.data.classification
    features, text = embed_dataset(
        model,
        tokenizer,
        {split: load_split(params.data.root, dataset, split) for split in SPLITS},
        load_meta(params.data.root, dataset).class_names,
        {name: get_templates(name) for name in ("single", params.embed.ensemble)},
        device=device,
        batch_size=params.embed.batch_size,
        pre_projection=params.embed.pre_projection,
    )
    for split, feats in features.items():
        save_torch(paths.FEATURES / f"{split}.pt", feats)
        print(f"{split}: {len(feats['labels'])} images -> {tuple(feats['image'].shape)}")
    save_torch(paths.FEATURES / "text.pt", text)
    write_json(paths.FEATURES / "meta.json", {**info, "dataset": dataset, "device": device.type})


if __name__ == "__main__":
    run_stage("embed", main)
