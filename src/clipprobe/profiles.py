"""Profiles: params.yaml is conf/config.yaml composed with one profile of conf/profile/, as DVC composes it.

`dvc exp run` composes conf/ into params.yaml on every run (DVC's Hydra mode, `.dvc/config`), so
`dvc exp run -S profile=paper` selects the paper profile and `-S shots=4` overrides one key. `dvc repro`
reads params.yaml as it is, so the committed params.yaml must be the default composition: regenerate it with

    python -m clipprobe.profiles            # the default profile -> params.yaml
    python -m clipprobe.profiles profile=paper --output /tmp/paper.yaml

Composition drops comments; every key is documented in conf/config.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from clipprobe.errors import ClipprobeError
from clipprobe.io import atomic_write
from clipprobe.params import Params, parse_params

CONF_DIR = Path("conf")  # relative to the repository root, like params.yaml
HEADER = (
    "# Composed from conf/ (the documented source of every key): edit conf/config.yaml or conf/profile/,\n"
    "# then `python -m clipprobe.profiles`. `dvc exp run` rewrites this file from conf/ on every run.\n"
)


def compose(overrides: list[str] | tuple[str, ...] = (), conf_dir: str | Path = CONF_DIR) -> str:
    """The YAML DVC writes to params.yaml for these Hydra overrides (`profile=paper`, `shots=4`, ...)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(Path(conf_dir).resolve()), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except yaml.YAMLError as err:  # a syntax error in a file of conf/
        where = getattr(err, "problem_mark", None)
        at = (
            f"{Path(where.name).relative_to(Path(conf_dir).resolve().parent)}, line {where.line + 1}"
            if where
            else conf_dir
        )
        raise ClipprobeError(f"{at}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    except (HydraException, OmegaConfBaseException) as err:  # an unknown profile, key or override
        detail = " ".join(
            line.strip() for line in str(err).split("Config search path")[0].splitlines() if line.strip()
        )
        raise ClipprobeError(f"{conf_dir}/ with {list(overrides)}: {detail}") from None
    return OmegaConf.to_yaml(cfg)


def composed_params(overrides: list[str] | tuple[str, ...] = (), conf_dir: str | Path = CONF_DIR) -> Params:
    """The validated params a profile composes to, without writing params.yaml."""
    return parse_params(yaml.safe_load(compose(overrides, conf_dir)), source=f"conf/ with {list(overrides)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as `dvc exp run -S` takes them")
    parser.add_argument("--output", default="params.yaml", help="file to write (default: params.yaml)")
    args = parser.parse_args()
    try:
        text = HEADER + compose(args.overrides)
        parse_params(yaml.safe_load(text), source=f"conf/ with {args.overrides}")  # written only when valid
        atomic_write(args.output, lambda tmp: tmp.write_text(text))
    except ClipprobeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
