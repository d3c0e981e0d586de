"""Which CLIP architectures exist, read from open_clip's JSON configs without importing open_clip (or torch).

params.py validates `clip.arch` and `tower.arch` against this, so validating params.yaml stays fast and
torch-free. The tiny shapes-world configs in ``model_configs/`` are registered with open_clip by
``clipprobe.models.clip`` (the module that builds models).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_ARCHS = tuple(sorted(path.stem for path in CONFIG_DIR.glob("*.json")))


def _open_clip_config_dir() -> Path:
    # find_spec locates the installed package without executing its __init__ (which imports torch)
    spec = importlib.util.find_spec("open_clip")
    assert spec is not None and spec.submodule_search_locations, "open_clip_torch is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "model_configs"


@functools.cache
def _configs() -> dict[str, Path]:
    paths = {path.stem: path for path in _open_clip_config_dir().glob("*.json")}
    paths.update({path.stem: path for path in CONFIG_DIR.glob("*.json")})
    return paths


def list_archs() -> list[str]:
    """Every name `open_clip.create_model` accepts once the tiny configs are registered, sorted."""
    return sorted(_configs())


def has_attnpool_map(arch: str) -> bool:
    """Whether open_clip builds `arch` with a ModifiedResNet tower (its rule: vision `layers` is a list)."""
    path = _configs().get(arch)
    vision = json.loads(path.read_text()).get("vision_cfg", {}) if path else {}
    return isinstance(vision.get("layers"), (list, tuple)) and not vision.get("timm_model_name")
