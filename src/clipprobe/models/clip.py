"""open_clip CLIPs by ``(arch, pretrained)``: create (scratch, tag or checkpoint file), save and reload.

``pretrained`` is one of
- ``"scratch"``: random init (the tiny shapes-world models are then pretrained by ``pretrain.py``);
- an open_clip tag for ``arch`` (``openai`` for ViT-B-32 / RN50): fetched through open_clip into
  ``cache_dir``; when it is not cached and cannot be downloaded, one ClipprobeError says which file to get;
- a path to a checkpoint file (open_clip's ``pretrained=<path>`` route, strict load, ``weights_only``).

A tag trained with QuickGELU (every ``openai`` tag) gets QuickGELU here, as open_clip's ``-quickgelu``
names do; a plain ``ViT-B-32`` with GELU would load those weights without error and give worse features.
A checkpoint *path* carries no such flag: pick the ``-quickgelu`` arch for OpenAI weights.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import open_clip
import torch
from open_clip.factory import load_state_dict
from open_clip.modified_resnet import ModifiedResNet

from clipprobe import paths
from clipprobe.contracts import problem, read_model_info, read_weights
from clipprobe.errors import ClipprobeError
from clipprobe.io import write_json
from clipprobe.models.registry import CONFIG_DIR, TINY_ARCHS
from clipprobe.network import reachable
from clipprobe.runtime import save_torch

_logger = logging.getLogger(__name__)

# add_model_config appends to open_clip's search path on every call; register once per process, so that
# open_clip.create_model("clipprobe-tiny-rn") resolves like any built-in name ("RN50", "ViT-B-32").
if not set(TINY_ARCHS) <= set(open_clip.list_models()):
    open_clip.add_model_config(CONFIG_DIR)

SCRATCH = "scratch"
WEIGHTS_FILE = "weights.pt"
INFO_FILE = "model.json"
# The shapes world's pixel statistics (grey-ish scenes); the real archs use their tag's preprocess cfg.
TINY_MEAN = (0.45, 0.45, 0.45)
TINY_STD = (0.27, 0.27, 0.27)

Tokenizer = Any  # open_clip's tokenizers share no base class: callable list[str] -> (N, context) int64


def create_clip(
    arch: str, pretrained: str, cache_dir: Path | None = None, key: str = "clip"
) -> tuple[open_clip.CLIP, Tokenizer]:
    """Build ``arch`` with ``pretrained`` weights (see the module docstring), in eval mode on the CPU.

    Returns the model and its tokenizer. Never falls back to random weights silently. Errors name the
    params group ``key`` the choice came from (``clip.pretrained``, ``tower.pretrained``).
    """
    if arch not in open_clip.list_models():
        raise ClipprobeError(
            f"{key}.arch: unknown arch '{arch}'; use one of {', '.join(TINY_ARCHS)} "
            "or a name from open_clip.list_models() (ViT-B-32, RN50, ...)"
        )
    if pretrained == SCRATCH:
        model = _build(arch, pretrained)
    elif open_clip.get_pretrained_cfg(arch, pretrained):
        cache = str(cache_dir) if cache_dir is not None else None
        _fetch_tag(arch, pretrained, cache, key)
        model = _build(arch, pretrained, pretrained=pretrained, cache_dir=cache, require_pretrained=True)
    elif Path(pretrained).is_file():
        model = _load_checkpoint_file(arch, Path(pretrained), key)
    else:
        raise ClipprobeError(_unknown_pretrained(arch, pretrained, key))
    poisoned = next(
        (name for name, v in model.state_dict().items() if v.is_floating_point() and not v.isfinite().all()),
        None,
    )
    if poisoned:  # a NaN in the weights turns every feature downstream to NaN
        raise ClipprobeError(
            f"{key}.pretrained: {pretrained} holds NaN or inf weights ('{poisoned}'); use other weights"
        )
    _logger.info("created %s (pretrained: %s)", arch, pretrained)
    return model.eval(), _tokenizer(arch)


def mean_std(model: open_clip.CLIP) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) the model's image inputs are normalised with."""
    cfg = open_clip.get_model_preprocess_cfg(model)
    return tuple(float(m) for m in cfg["mean"]), tuple(float(s) for s in cfg["std"])


def image_size(model: open_clip.CLIP) -> int:
    """Side in pixels of the (square) images the vision tower takes."""
    size = model.visual.image_size  # int (ModifiedResNet) or (H, W) (VisionTransformer)
    height, width = (size, size) if isinstance(size, int) else size
    assert height == width, f"non-square input {size} is not supported"
    return int(height)


def save_clip(model: open_clip.CLIP, arch: str, pretrained: str, out_dir: str | Path) -> None:
    """Write ``out_dir/weights.pt`` (CPU state_dict, weights_only-loadable) and ``out_dir/model.json``."""
    out_dir = Path(out_dir)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    mean, std = mean_std(model)
    info = {"arch": arch, "pretrained": pretrained, "image_size": image_size(model), "mean": mean, "std": std}
    save_torch(out_dir / WEIGHTS_FILE, state)
    write_json(out_dir / INFO_FILE, info)


def load_clip(
    model_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[open_clip.CLIP, Tokenizer, dict]:
    """Rebuild the model ``save_clip`` wrote (strict load), in eval mode on ``device``.

    Returns (model, tokenizer, info) where info is the content of model.json. Both files go through their
    checked loaders (`clipprobe.contracts`); a state dict of another architecture is one line saying how.
    """
    model_dir = Path(model_dir)
    info = read_model_info(model_dir / INFO_FILE, "clip")
    if info["arch"] not in open_clip.list_models():
        raise problem(model_dir / INFO_FILE, "an open_clip arch", repr(info["arch"]), "clip")
    state = read_weights(model_dir / WEIGHTS_FILE, "clip")
    model = _build(
        info["arch"], info["pretrained"], preprocess={"mean": tuple(info["mean"]), "std": tuple(info["std"])}
    )
    mismatch = state_dict_mismatch(model, state)
    if mismatch:
        raise problem(model_dir / WEIGHTS_FILE, f"the weights of {info['arch']}", mismatch, "clip")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), _tokenizer(info["arch"]), info


def state_dict_mismatch(model: torch.nn.Module, state: object) -> str:
    """'' when `state` loads into `model` strictly; else what differs, in one short phrase."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"{type(state).__name__}, not a state dict of tensors"
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    parts = [
        f"{len(names)} {what} ({', '.join(names[:2])}{', ...' if len(names) > 2 else ''})"
        for what, names in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if names
    ]
    return "; ".join(parts)


@functools.cache
def _tokenizer(arch: str) -> Tokenizer:
    """Tokenizers are stateless and slow to build (the BPE merges are read from a .gz): one per arch."""
    return open_clip.get_tokenizer(arch)


def _build(arch: str, tag: str, preprocess: dict | None = None, **kwargs: Any) -> open_clip.CLIP:
    """open_clip.create_model with the tiny configs' normalisation and the tag's activation function."""
    tiny = {"mean": TINY_MEAN, "std": TINY_STD} if arch in TINY_ARCHS else {}
    quick_gelu = bool(open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False))
    quiet = _RandomInitNote()  # random init is what scratch asks for, and a checkpoint file is loaded next
    logging.getLogger().addFilter(quiet)
    try:
        return open_clip.create_model(
            arch,
            force_quick_gelu=quick_gelu,
            force_preprocess_cfg={**tiny, **(preprocess or {})},
            **kwargs,
        )
    finally:
        logging.getLogger().removeFilter(quiet)


class _RandomInitNote(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded ... initialized randomly" warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


def _fetch_tag(arch: str, tag: str, cache_dir: str | None, key: str) -> None:
    """Make sure the tag's weights are in the cache, so create_model finds them; offline, say what to get.

    The cache is tried first without the network; only when it misses and the weights' host answers within
    a few seconds does open_clip download (no retry storm offline).
    """
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    try:
        with _hub_offline(True):
            open_clip.download_pretrained(cfg, cache_dir=cache_dir)
        return
    except (OSError, RuntimeError, ValueError):  # not cached (hf_hub raises a LocalEntryNotFoundError)
        pass
    host = _hub_endpoint() if cfg.get("hf_hub") else cfg["url"]  # probe the host the download will use
    try:
        if not reachable(host):
            raise OSError(f"{host} unreachable")
        open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except (
        OSError,
        RuntimeError,
        ValueError,
    ):  # hf_hub: FileNotFoundError; url: URLError; no hub: RuntimeError
        where = cache_dir or "the Hugging Face cache"
        arch_hint = f" with {key}.arch {arch}-quickgelu" if cfg.get("quick_gelu") else ""
        raise ClipprobeError(
            f"{key}.pretrained: the {arch} '{tag}' weights are not in {where} and could not be downloaded "
            f"(offline?); download {_weights_source(cfg)} and set {key}.pretrained to that file's path"
            f"{arch_hint}, or run once with network access"
        ) from None


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import: flip its constant for the block."""
    import huggingface_hub.constants as hub

    before = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = offline
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = before


def _hub_endpoint() -> str:
    """Where huggingface_hub downloads from: HF_ENDPOINT (a mirror) when set, else https://huggingface.co."""
    import huggingface_hub.constants as hub

    return hub.ENDPOINT


def _weights_source(cfg: dict) -> str:
    """Where a tag's weights live, as a person would download them (the files open_clip itself tries)."""
    hub = cfg.get("hf_hub", "")
    if not hub:
        return cfg["url"]
    repo, filename = hub.rsplit("/", 1)  # 'org/name/' (default files) or 'org/name/file.pt'
    files = filename or "open_clip_model.safetensors (or open_clip_pytorch_model.bin)"
    return f"{files} from {_hub_endpoint()}/{repo}"


def _load_checkpoint_file(arch: str, path: Path, key: str) -> open_clip.CLIP:
    try:
        return _build(arch, SCRATCH, pretrained=str(path), require_pretrained=True)
    # A user's file can fail in many ways (pickle, safetensors header, missing keys): all mean a bad file.
    except Exception as err:
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if cause.startswith("Error(s) in loading state_dict"):  # say which keys, not just that some differ
            cause = _file_mismatch(arch, path) or cause
        raise ClipprobeError(
            f"{key}.pretrained: {path} is not a loadable {arch} checkpoint ({cause})"
        ) from None


def _file_mismatch(arch: str, path: Path) -> str:
    """How a checkpoint file's state dict differs from `arch`'s (open_clip's own unwrapping of the file)."""
    try:
        state = load_state_dict(str(path), weights_only=True)
    except Exception:  # unreadable: the caller keeps open_clip's own reason
        return ""
    return state_dict_mismatch(_build(arch, SCRATCH), state)


def _unknown_pretrained(arch: str, pretrained: str, key: str) -> str:
    if Path(pretrained).is_dir():
        return f"{key}.pretrained: {pretrained} is a directory; give the checkpoint file inside it"
    if Path(pretrained).suffix or "/" in pretrained:
        return f"{key}.pretrained: checkpoint file {pretrained} not found"
    tags = open_clip.list_pretrained_tags_by_model(arch)
    allowed = ", ".join([SCRATCH, *tags, "a checkpoint file path"])
    return f"{key}.pretrained: '{pretrained}' is not a tag of {arch}; allowed: {allowed}"


class TowerChoice(Protocol):
    """params.yaml's `tower` group: arch (None = the clip stage's model) and its pretrained weights."""

    arch: str | None
    pretrained: str | None


def tower_clip(
    choice: TowerChoice, *, clip_dir: str | Path, downloads: str | Path, device: torch.device
) -> tuple[open_clip.CLIP, Tokenizer]:
    """The CLIP (and tokenizer) whose ResNet tower counting and the decoders read: `choice.arch` with its
    `pretrained` weights (fetched into `downloads`), or, when arch is None, the clip stage's model in `clip_dir`."""
    if choice.arch is None:
        model, tokenizer, info = load_clip(clip_dir, device=device)
        if not isinstance(model.visual, ModifiedResNet):
            raise ClipprobeError(
                f"tower.arch: null reads the clip stage's {info['arch']}, which has no attention-pool map; "
                "set tower.arch to a ResNet CLIP (RN50) and tower.pretrained to its tag"
            )
        return model, tokenizer
    cache = paths.open_clip_cache(downloads)
    model, tokenizer = create_clip(choice.arch, choice.pretrained, cache_dir=cache, key="tower")
    return model.to(device), tokenizer
