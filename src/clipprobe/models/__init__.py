"""Models: open_clip CLIPs (incl. the tiny shapes-world configs) and their contrastive pretraining.

Importing this package registers the JSON configs in ``model_configs/`` with open_clip, so
``open_clip.create_model("clipprobe-tiny-rn")`` resolves like any built-in name ("RN50", "ViT-B-32").
"""

from pathlib import Path

import open_clip

CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_ARCHS = tuple(sorted(path.stem for path in CONFIG_DIR.glob("*.json")))

# add_model_config appends to open_clip's search path on every call; register once per process.
if not set(TINY_ARCHS) <= set(open_clip.list_models()):
    open_clip.add_model_config(CONFIG_DIR)
