"""CLIP's symmetric contrastive pretraining from scratch, on (image, caption) pairs held in memory.

The recipe is the shapes prototype's (shared/anchors/shapes-prototype.md): open_clip's ClipLoss, a learnable
logit scale (init 1/0.07, clamped at 100 after every step as in open_clip's trainer), AdamW with betas
(0.9, 0.98) and weight decay on weight matrices only, linear warm-up then cosine decay over a budget of
*steps*: wall-clock budgets are not comparable across runs (timing noise on shared CPUs is large).

The whole uint8 image array is moved to the device once and batches are sliced from it by index
(airbench-style, no DataLoader); captions are tokenised once up front. BatchNorm layers train as usual, so
their running statistics track the data; a model that is *not* pretrained (random init) needs its BN
statistics recalibrated on data before its features mean anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import open_clip
import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import text_global_pool

from clipprobe import syncs
from clipprobe.errors import ClipprobeError
from clipprobe.models.clip import Tokenizer, image_size, mean_std
from clipprobe.preprocess import preprocess_uint8
from clipprobe.progress import progress as progress_bar
from clipprobe.syncs import Rows

MAX_LOGIT_SCALE = 100.0  # CLIP's clamp on exp(logit_scale)
READ_EVERY = 50  # steps between the declared syncs that read the losses (and check them) on a GPU


def read_every(device: torch.device) -> int:
    """Steps between the reads of the losses: every step on the CPU, where a read costs nothing and a
    divergence is caught at once; READ_EVERY on a GPU, where each read is a sync."""
    return 1 if device.type == "cpu" else READ_EVERY


@dataclass
class PretrainConfig:
    steps: int = 400  # optimiser steps (the budget: steps, not seconds)
    batch_size: int = 128  # image-caption pairs per step (the contrastive loss sees batch_size² pairs)
    lr: float = 2e-3  # peak AdamW learning rate, reached after the warm-up
    weight_decay: float = 0.05  # decoupled AdamW decay on weight matrices (not gains, biases, embeddings)
    warmup_steps: int = 20  # steps of linear warm-up from lr / warmup_steps to lr


def pretrain_clip(
    model: open_clip.CLIP,
    tokenizer: Tokenizer,
    images: np.ndarray,
    captions: list[str],
    cfg: PretrainConfig,
    seed: int,
    device: torch.device,
    progress: bool,
) -> list[dict]:
    """Train ``model`` in place with CLIP's contrastive loss; it is left in eval mode on ``device``.

    Parameters
    ----------
    images : (N, H, W, 3) uint8; preprocessed per batch on the device as the features module does
        (shortest side resized bicubic + antialias to the model's input size only if it differs, then normalised)
    captions : N strings, caption i describes image i
    seed : seeds the batch order (epoch permutations); the model's init is the caller's

    Returns one row per step: {"step": 1..steps, "loss": loss of that step's batch before the update,
    "logit_scale": exp(logit_scale) after the update, "lr": learning rate of the update}. The images and
    tokens go to the device in one declared sync before the first step; the steps never read the device on
    the host: the rows are read (and checked) in one declared sync every `read_every(device)` steps (every
    step on the CPU, READ_EVERY on a GPU); CLIP's loss is computed in float32, outside the bf16 autocast of
    the towers.
    """
    _check_inputs(images, captions, cfg)
    device = torch.device(device)
    size = image_size(model)
    mean, std = mean_std(model)
    host_tokens = tokenizer(captions)  # (N, context) int64
    lengths = host_tokens.argmax(dim=-1) + 1  # each caption up to its end-of-text token, read on the host
    # (N, H, W, 3) uint8 out of any mmap, and the tokens: moved once, before the steps (one declared sync)
    pixels, tokens = syncs.upload(
        torch.from_numpy(np.array(images)), host_tokens, device=device, what="pretrain: inputs"
    )
    model.to(device).train()
    # channels_last: oneDNN's convolutions and BatchNorm run faster on it (ResNet towers, CPU and CUDA)
    memory_format = (
        torch.channels_last if isinstance(model.visual, ModifiedResNet) else torch.contiguous_format
    )
    model.visual.to(memory_format=memory_format)
    optimizer = _adamw(model, cfg)
    loss_fn = open_clip.ClipLoss()
    batches = _epoch_batches(len(captions), cfg.batch_size, seed, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    history = torch.empty(cfg.steps, 2, device=device)  # per step: loss, exp(logit_scale); read in chunks
    rows: list[dict] = []
    every = read_every(device)
    bar = progress_bar(total=cfg.steps, desc="pretrain", enabled=progress)
    for step in range(1, cfg.steps + 1):
        lr = _lr_at(step - 1, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches)
        x = preprocess_uint8(pixels[batch.on_device], size, mean, std).contiguous(
            memory_format=memory_format
        )  # (B, 3, S, S)
        with amp:
            image_features = model.encode_image(x, normalize=True)  # (B, D)
            text_features = encode_captions(model, tokens[batch.on_device], int(lengths[batch.host].max()))
        # the loss in float32: bf16 logits would be spaced 0.25-0.5 apart at CLIP's scale (32-100)
        loss = loss_fn(image_features.float(), text_features.float(), model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
            history[step - 1] = torch.stack([loss.detach(), model.logit_scale.exp()])
        if step % every == 0 or step == cfg.steps:
            rows += _read_rows(history, len(rows), step, cfg)
            bar.set_postfix_str(f"loss {rows[-1]['loss']:.3f}")
        bar.update()
    bar.close()
    model.visual.to(memory_format=torch.contiguous_format)  # saved and reloaded in the usual layout
    model.eval()
    return rows


def _read_rows(history: torch.Tensor, done: int, step: int, cfg: PretrainConfig) -> list[dict]:
    """The rows of steps done + 1 .. step, read from the device in one declared sync; a non-finite loss
    among them stops the run, naming its step."""
    (chunk,) = syncs.host(history[done:step], what="pretrain: losses")
    rows = [
        {"step": done + k + 1, "loss": loss, "logit_scale": scale, "lr": _lr_at(done + k, cfg)}
        for k, (loss, scale) in enumerate(chunk.tolist())
    ]
    bad = next((row for row in rows if not math.isfinite(row["loss"])), None)
    if bad is not None:
        raise ClipprobeError(
            f"clip.pretrain.lr: the pretraining diverged (loss {bad['loss']} at step {bad['step']}); "
            f"lower the learning rate (got {cfg.lr:g})"
        )
    return rows


def encode_captions(model: open_clip.CLIP, tokens: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """`model.encode_text(tokens, normalize=True)` on the batch cut to its longest caption.

    CLIP's text tower is causal and reads each caption's features at its end-of-text token (the largest
    token id), so the padding after the batch's longest caption never reaches any feature or gradient:
    dropping those columns changes only the cost (the text tower is a third of a pretraining step, and shapes
    captions fill about half of the 32 positions). Towers that pool otherwise run on the full tokens.
    `length`: that longest caption's length with its end-of-text token, when the caller knows it on the
    host (read from device tokens, it would cost a sync).
    """
    if model.text_pool_type != "argmax" or model.attn_mask is None:
        return model.encode_text(tokens, normalize=True)
    if length is None:
        length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
    x = text_global_pool(x, tokens, "argmax")
    projection = model.text_projection
    x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
    return torch.nn.functional.normalize(x, dim=-1)


def _check_inputs(images: np.ndarray, captions: list[str], cfg: PretrainConfig) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ClipprobeError(
            f"pretrain images: must be uint8 (N, H, W, 3) (got {images.dtype} {images.shape})"
        )
    if len(captions) != len(images):
        raise ClipprobeError(
            f"pretrain captions: one per image needed (got {len(captions)} for {len(images)})"
        )
    if not 2 <= cfg.batch_size <= len(images):
        raise ClipprobeError(
            f"clip.pretrain.batch_size: must be in [2, {len(images)} pretrain images] (got {cfg.batch_size})"
        )
    if cfg.steps < 1 or cfg.warmup_steps < 0 or cfg.lr <= 0 or cfg.weight_decay < 0:
        raise ClipprobeError(
            f"clip.pretrain: steps >= 1, warmup_steps >= 0, lr > 0, weight_decay >= 0 ({cfg})"
        )


def _adamw(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on weight matrices only: gains, biases (ndim < 2), embeddings and the logit scale
    are left alone, as in CLIP."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        skip = param.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel per step instead of ~10 elementwise passes over 8M parameters (12% of a CPU step)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), fused=True)


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up to cfg.lr over warmup_steps, then cosine decay to 0 at cfg.steps (open_clip's cosine_lr)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress)) * cfg.lr


def _epoch_batches(n: int, batch_size: int, seed: int, device: torch.device) -> Iterator[Rows]:
    """Endless index batches, on the host and on `device`: a fresh seeded permutation per epoch (drawn on
    the host, moved once per epoch without waiting), the last partial batch dropped."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator)
        on_device = syncs.to_device(order, device)
        for start in range(0, n - batch_size + 1, batch_size):
            yield Rows(order[start : start + batch_size], on_device[start : start + batch_size])
