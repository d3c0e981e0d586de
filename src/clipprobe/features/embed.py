"""CLIP embeddings: image features (projected, L2-normalised, pre-projection) and class prompt features.

Images come through `features.stream.stream_images` (GPU fast path, CPU fallback) and are prepared on the
device by `clipprobe.preprocess` (open_clip's eval transform). On CUDA the towers run under bf16 autocast
but their last projection runs in float32, outside it, from the pre-projection features as stored: so
ProLIP, which trains that projection from those features, starts exactly at the zero-shot classifier there
too. On CPU everything is float32. ResNet towers take channels_last inputs on both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import AttentionPool2d, ModifiedResNet
from open_clip.transformer import VisionTransformer

from clipprobe.data.store import Split
from clipprobe.errors import ClipprobeError
from clipprobe.features.stream import check_finite, stream_images
from clipprobe.preprocess import autocast, model_input
from clipprobe.progress import progress as progress_bar
from clipprobe.templates import RAW_NAMES

# maps a preprocessed (B, 3, S, S) batch to {"image": (B, D)} and, for pre-projection encoders, "image_pre"
Encoder = Callable[[torch.Tensor], dict[str, torch.Tensor]]
SPLIT_TOWERS = (VisionTransformer, ModifiedResNet)  # towers whose last projection can be run on its own


def embed_images(
    model: torch.nn.Module,
    images: np.ndarray,
    *,
    device: torch.device,
    batch_size: int,
    pre_projection: bool = False,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Image features of a uint8 array, streamed in batches (memory bounded by the batch, not the dataset).

    The model is moved to `device` and put in eval mode.

    Parameters
    ----------
    model : open_clip CLIP model
    images : (N, H, W, 3) uint8 array, may be a read-only memmap
    device : where to compute; CUDA takes the bf16 fast path, CPU computes in float32
    pre_projection : also return the tower's features before its final projection (the CLIP paper's probe
        features): the pooled token before `proj` (ViT), the attention-pool output before `c_proj` (ResNet)

    Returns
    -------
    dict of float32 CPU tensors: "image" (N, D) raw `encode_image` output, "image_norm" (N, D) L2-normalised,
    and with `pre_projection` "image_pre" (N, P)
    """
    _check_images(images)
    if batch_size < 1:
        raise ClipprobeError(f"batch_size: must be >= 1 (got {batch_size})")
    split = pre_projection or (device.type == "cuda" and isinstance(model.visual, SPLIT_TOWERS))
    encode = _pre_projection_encoder(model.visual) if split else _projected_encoder(model)
    image_size, mean, std = _preprocess_cfg(model)
    model.eval().to(device)
    channels_last = isinstance(model.visual, ModifiedResNet)
    if channels_last:
        model.visual.to(memory_format=torch.channels_last)

    chunks: dict[str, list[torch.Tensor]] = {}
    batches = stream_images(images, batch_size, device)
    total = math.ceil(len(images) / batch_size)
    for batch in progress_bar(batches, total=total, desc="embed images", enabled=progress):
        for key, value in _embed_batch(encode, batch, image_size, mean, std, channels_last).items():
            chunks.setdefault(key, []).append(value)
    # concatenated outside inference mode, so callers get ordinary tensors they may train on
    features = {
        key: torch.cat(values).cpu() for key, values in chunks.items() if key != "image_pre" or pre_projection
    }
    check_finite(features.values(), "image features")
    features["image_norm"] = F.normalize(features["image"], dim=-1)
    return features


def _check_images(images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ClipprobeError(
            f"images: need a non-empty uint8 (N, H, W, 3) array (got {images.dtype} {tuple(images.shape)})"
        )


def _preprocess_cfg(model: torch.nn.Module) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Input size, mean and std the model was built with (open_clip keeps them on `model.visual`)."""
    cfg = open_clip.get_model_preprocess_cfg(model)
    height, width = open_clip.transform.to_2tuple(cfg["size"])
    if height != width:
        raise ClipprobeError(f"model image_size: only square inputs are supported (got {height}x{width})")
    for key, supported in (("resize_mode", "shortest"), ("interpolation", "bicubic")):
        if cfg.get(key, supported) != supported:
            raise ClipprobeError(
                f"model preprocess {key}: only {supported!r} is supported (got {cfg[key]!r})"
            )
    mean = tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD))
    return height, mean, std


def _projected_encoder(model: torch.nn.Module) -> Encoder:
    return lambda x: {"image": model.encode_image(x)}


def _pre_projection_encoder(visual: torch.nn.Module) -> Encoder:
    """One forward pass that returns both the projected and the pre-projection features."""
    if isinstance(visual, VisionTransformer):
        return lambda x: _vit_features(visual, x)
    if isinstance(visual, ModifiedResNet):
        return lambda x: _resnet_features(visual, x)
    raise ClipprobeError(
        "pre_projection: supported for VisionTransformer and ModifiedResNet towers "
        f"(got {type(visual).__name__})"
    )


def last_projection(visual: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tower's last linear map as image = image_pre W^T + b: {"weight": (D, P), "bias": (D,)}, float32."""
    if isinstance(visual, VisionTransformer):  # pooled @ proj, no bias
        weight = visual.proj.detach().T
        bias = torch.zeros(weight.shape[0])
    elif isinstance(visual, ModifiedResNet):
        weight, bias = visual.attnpool.c_proj.weight.detach(), visual.attnpool.c_proj.bias.detach()
    else:
        raise ClipprobeError(f"pre_projection: no last projection known for a {type(visual).__name__} tower")
    return {"weight": weight.float().cpu().contiguous(), "bias": bias.float().cpu().contiguous()}


def _vit_features(visual: VisionTransformer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    # VisionTransformer.forward with the projection split off (`proj` is a bare parameter: no hook point)
    pooled, _ = visual._pool(visual.transformer(visual._embeds(x)))  # (B, width)
    image = _float32_projection(pooled, visual.proj.T) if x.is_cuda else pooled @ visual.proj
    return {"image": image, "image_pre": pooled}


def _resnet_features(visual: ModifiedResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    for stage in (visual.stem, visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        x = stage(x)  # ends as (B, C, h, w), the pre-attnpool map
    pre = _attnpool_without_c_proj(visual.attnpool, x)  # (B, C)
    c_proj = visual.attnpool.c_proj
    image = _float32_projection(pre, c_proj.weight, c_proj.bias) if x.is_cuda else c_proj(pre)
    return {"image": image, "image_pre": pre}


def _float32_projection(
    pre: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """pre W^T (+ b) in float32 outside autocast, from `pre` rounded as it will be stored, in the form
    ProLIP computes its logits in (`probes.fewshot.methods.ProLIP`)."""
    with torch.autocast(pre.device.type, enabled=False):
        image = torch.matmul(pre.float(), weight.float().mT)
        return image if bias is None else image + bias.float()


def _attnpool_without_c_proj(pool: AttentionPool2d, x: torch.Tensor) -> torch.Tensor:
    """AttentionPool2d.forward up to its output projection.

    open_clip folds `c_proj` into F.multi_head_attention_forward, so a hook on it never fires. Only the
    mean token's query is computed: the pool returns that token alone.
    """
    batch, width = x.shape[:2]
    heads = pool.num_heads
    x = x.flatten(2).transpose(1, 2)  # (B, hw, C)
    x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # (B, hw+1, C): mean token first
    x = x + pool.positional_embedding.to(x.dtype)
    q = pool.q_proj(x[:, :1]).view(batch, 1, heads, -1).transpose(1, 2)  # (B, heads, 1, C/heads)
    k = pool.k_proj(x).view(batch, x.shape[1], heads, -1).transpose(1, 2)  # (B, heads, hw+1, C/heads)
    v = pool.v_proj(x).view(batch, x.shape[1], heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, 1, C/heads)
    return out.transpose(1, 2).reshape(batch, width)


@torch.inference_mode()
def _embed_batch(
    encode: Encoder,
    batch: torch.Tensor,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    channels_last: bool,
) -> dict[str, torch.Tensor]:
    x = model_input(batch, image_size, mean, std, channels_last)  # (B, 3, S, S) float32
    with autocast(batch.device):
        features = encode(x)
    return {key: value.float() for key, value in features.items()}


def embed_texts(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    class_names: list[str],
    templates: list[str],
    *,
    device: torch.device,
    batch_size: int = 256,
) -> torch.Tensor:
    """Raw text embeddings of every (template, class) prompt, in float32.

    Parameters
    ----------
    class_names : C names, put into each template's `{}` as they are
    templates : T templates with one `{}` each (see clipprobe.templates)

    Returns
    -------
    (T, C, D) float32 CPU tensor, template-major: [t, c] embeds templates[t] filled with class_names[c]
    """
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise ClipprobeError(
            f"templates: need at least one, each with exactly one '{{}}' (got {bad or templates})"
        )
    if not class_names:
        raise ClipprobeError("class_names: need at least one class name (got none)")
    texts = [template.replace("{}", name) for template in templates for name in class_names]
    model.eval().to(device)
    chunks = [
        _encode_texts(model, tokenizer(texts[i : i + batch_size]).to(device))
        for i in range(0, len(texts), batch_size)
    ]
    return torch.cat(chunks).cpu().view(len(templates), len(class_names), -1)


@torch.inference_mode()
def _encode_texts(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    return model.encode_text(tokens).float()  # (B, D)


SPLITS = ("train", "val", "test")


def embed_dataset(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    splits: dict[str, Split],
    class_names: list[str],
    template_sets: dict[str, list[str]],
    *,
    device: torch.device,
    batch_size: int,
    pre_projection: bool,
    raw_class_names: list[str] | None = None,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """What the embed stage caches: per split the image features (`embed_images`) plus "labels" (N,) int64,
    and the text side {"class_names", "logit_scale", "templates": {set: [str]}, "text": {set: (T, C, D)}},
    with `pre_projection` also "projection": `last_projection` (what ProLIP fine-tunes). The sets of
    `templates.RAW_NAMES` are filled with `raw_class_names` (default: `class_names`)."""
    features = {}
    for name, split in splits.items():
        features[name] = embed_images(
            model,
            split.images,
            device=device,
            batch_size=batch_size,
            pre_projection=pre_projection,
            progress=True,
        )
        features[name]["labels"] = torch.from_numpy(split.labels.astype("int64"))
    text = {
        "class_names": class_names,
        "logit_scale": float(model.logit_scale.exp().item()),
        "templates": template_sets,
        "text": {
            name: embed_texts(
                model,
                tokenizer,
                (raw_class_names or class_names) if name in RAW_NAMES else class_names,
                templates,
                device=device,
            )
            for name, templates in template_sets.items()
        },
    }
    if pre_projection:
        text["projection"] = last_projection(model.visual)
    return features, text
