"""embed stage: frozen image features for train/val/test and class text features per template set."""

from pathlib import Path

import torch

from clipprobe.data.store import load_meta, load_split
from clipprobe.features import embed_images, embed_texts
from clipprobe.models.clip import load_clip
from clipprobe.params import load_params
from clipprobe.runtime import (
    resolve_device,
    run_stage,
    save_torch,
    seed_everything,
    show_progress,
    write_json,
)
from clipprobe.templates import get_templates

OUT = Path("features")
SPLITS = ("train", "val", "test")


def embed() -> None:
    params = load_params()
    seed_everything(params.seed)
    device = resolve_device(params.device)
    model, tokenizer, info = load_clip("models/clip", device=device)
    dataset = params.data.classification
    meta = load_meta(params.data.root, dataset)
    for split in SPLITS:
        data = load_split(params.data.root, dataset, split)
        feats = embed_images(
            model,
            data.images,
            device=device,
            batch_size=params.embed.batch_size,
            pre_projection=params.embed.pre_projection,
            progress=show_progress(),
        )
        feats["labels"] = torch.from_numpy(data.labels.astype("int64"))
        save_torch(OUT / f"{split}.pt", feats)
        print(f"{split}: {len(data)} images -> {tuple(feats['image'].shape)}")
    template_sets = {name: get_templates(name) for name in ("single", params.embed.ensemble)}
    text = {
        name: embed_texts(model, tokenizer, meta.class_names, templates, device=device)
        for name, templates in template_sets.items()
    }
    logit_scale = float(model.logit_scale.exp().item())
    save_torch(
        OUT / "text.pt",
        {
            "class_names": meta.class_names,
            "logit_scale": logit_scale,
            "templates": template_sets,
            "text": text,
        },
    )
    write_json(OUT / "meta.json", {**info, "dataset": dataset, "device": device.type})


if __name__ == "__main__":
    run_stage(embed)
