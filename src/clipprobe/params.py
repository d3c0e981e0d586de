"""Schema and validation of params.yaml (composed from conf/ by clipprobe.profiles).

Every key is required: behaviour comes from the values in params.yaml (which DVC tracks per stage), never
from defaults hidden here; each key is documented in conf/config.yaml. A bad file ends the stage with one
line naming the key and what is allowed: `params.yaml: probe.C: must be a positive number or 'auto' (got -1)`.
Validation imports neither torch nor open_clip (architectures come from `models.registry`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from clipprobe.errors import ClipprobeError
from clipprobe.models.registry import TINY_ARCHS, has_attnpool_map, list_archs
from clipprobe.plateau import PlateauRule
from clipprobe.readouts import FEWSHOT_METHODS
from clipprobe.stage import MAX_SEED

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]

CLASSIFICATION_DATASETS = ("shapes", "cifar100", "cifar10")


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CaptionMix(_Group):
    free: Fraction
    class_like: Fraction
    count_only: Fraction

    @model_validator(mode="after")
    def _sums_to_one(self) -> CaptionMix:
        total = self.free + self.class_like + self.count_only
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"free + class_like + count_only must sum to 1 (got {total:g})")
        return self


class ShapesParams(_Group):
    image_size: Annotated[int, Field(ge=16, le=512)]
    n_pretrain: PositiveInt
    n_train: PositiveInt
    n_val: PositiveInt
    n_test: PositiveInt
    min_objects: Annotated[int, Field(ge=1, le=3)]
    max_objects: Annotated[int, Field(ge=1, le=3)]
    captions: CaptionMix

    @model_validator(mode="after")
    def _object_range(self) -> ShapesParams:
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) must be <= max_objects ({self.max_objects})")
        return self


class CifarParams(_Group):
    val_per_class: PositiveInt


class ClevrParams(_Group):
    n_train: PositiveInt
    n_val: PositiveInt
    n_test: PositiveInt
    image_size: Annotated[int, Field(ge=16, le=1024)]


class PetsParams(_Group):
    image_size: Annotated[int, Field(ge=32, le=1024)]
    border: Literal["foreground", "background", "ignore"]


class DataParams(_Group):
    classification: Literal[CLASSIFICATION_DATASETS]
    counting: Literal["shapes", "clevr"]
    vqvae: Literal["shapes", "cifar10"]
    segment: Literal["shapes", "pets"]
    root: str
    downloads: str
    workers: PositiveInt
    shapes: ShapesParams
    cifar: CifarParams
    clevr: ClevrParams
    pets: PetsParams


class PretrainParams(_Group):
    steps: PositiveInt
    batch_size: Annotated[int, Field(ge=2)]
    lr: PositiveFloat
    weight_decay: Annotated[float, Field(ge=0)]
    warmup_steps: Annotated[int, Field(ge=0)]


def _known_arch(arch: str) -> str:
    if arch not in list_archs():
        raise ValueError(f"must be one of {', '.join(TINY_ARCHS)} or an open_clip model name (got {arch!r})")
    return arch


class ClipParams(_Group):
    arch: str
    pretrained: str
    pretrain: PretrainParams

    @field_validator("arch")
    @classmethod
    def _arch(cls, arch: str) -> str:
        return _known_arch(arch)


class EmbedParams(_Group):
    batch_size: PositiveInt
    pre_projection: bool
    views: Annotated[int, Field(ge=0)]
    ensemble: Literal["cifar", "shapes"]


class ProbeParams(_Group):
    features: Literal["raw", "normalized", "pre_projection"]
    C: float | Literal["auto"]
    max_iter: PositiveInt

    @field_validator("C", mode="before")
    @classmethod
    def _positive_or_auto(cls, C: object) -> object:
        number = isinstance(C, int | float) and not isinstance(C, bool)
        if C == "auto" or (number and math.isfinite(C) and C > 0):
            return C
        raise ValueError(f"must be a positive number or 'auto' (got {C!r})")


class TowerParams(_Group):
    """Whose frozen ResNet tower counting, vqvae and segment read: null = the clip stage's model."""

    arch: str | None
    pretrained: str | None
    size: Annotated[int, Field(ge=32, le=1024)]

    @field_validator("arch")
    @classmethod
    def _resnet_arch(cls, arch: str | None) -> str | None:
        if arch is not None and not has_attnpool_map(_known_arch(arch)):
            raise ValueError(
                f"must be null or a ResNet CLIP such as RN50, with an attention-pool map (got {arch!r})"
            )
        return arch

    @field_validator("pretrained")
    @classmethod
    def _paired(cls, pretrained: str | None, info: ValidationInfo) -> str | None:
        if (info.data.get("arch") is None) != (pretrained is None):
            raise ValueError(
                f"must be null exactly when tower.arch is null, else a tag or checkpoint path (got {pretrained!r})"
            )
        return pretrained


class LinearRecipe(_Group):
    lr: PositiveFloat
    weight_decay: Annotated[float, Field(ge=0)]
    lrs: Annotated[list[PositiveFloat], Field(min_length=1)]


Views = Annotated[
    int, Field(ge=0)
]  # augmented views a method uses (at most embed.views); 0: the clean features


class ClapRecipe(_Group):
    lr: PositiveFloat
    warmup_lr: PositiveFloat
    batch_size: PositiveInt
    views: Views


class LppRecipe(_Group):
    views: Views
    alpha_every: PositiveInt
    val_per_class: PositiveInt


class ProlipRecipe(_Group):
    lr: PositiveFloat
    views: Views


class TipRecipe(_Group):
    beta_scale: Annotated[float, Field(gt=0.1)]
    beta_steps: PositiveInt
    alpha_scale: Annotated[float, Field(gt=0.1)]
    alpha_steps: PositiveInt
    views: Views


class GdaRecipe(_Group):
    alphas: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)]
    views: Views


class ModesParams(_Group):
    attributes: list[
        Literal["background", "count", "size"]
    ]  # within-class variations tested; [] turns it off
    shots: Annotated[
        list[Annotated[int, Field(ge=2)]], Field(min_length=1)
    ]  # K >= 2: at K = 1 both are one image
    draws: Annotated[int, Field(ge=2)]
    epochs: PositiveInt


class FewshotParams(_Group):
    inits: Annotated[
        list[str], Field(min_length=1)
    ]  # methods compared on the same draws (readouts.FEWSHOT_METHODS)
    draws: Annotated[int, Field(ge=2)]
    epochs: PositiveInt
    eval_every: PositiveInt
    val_per_class: PositiveInt
    linear: LinearRecipe
    clap: ClapRecipe
    lpp: LppRecipe
    prolip: ProlipRecipe
    tip: TipRecipe
    gda: GdaRecipe
    modes: ModesParams

    @field_validator("inits")
    @classmethod
    def _known_unique_inits(cls, inits: list[str]) -> list[str]:
        allowed = ", ".join(FEWSHOT_METHODS)
        unknown = [name for name in inits if name not in FEWSHOT_METHODS]
        if unknown or len(set(inits)) != len(inits):
            problem = f"unknown method {unknown[0]!r}" if unknown else "a method listed twice"
            raise ValueError(f"each of {allowed} at most once ({problem})")
        return inits


class CountingParams(_Group):
    count_templates: list[str]
    count_nouns: tuple[str, str]
    number_words: bool
    position_templates: list[str]
    prepool_grid: PositiveInt
    Cs: Annotated[list[PositiveFloat], Field(min_length=1)]
    max_iter: PositiveInt
    batch_size: PositiveInt

    @field_validator("count_templates", "position_templates")
    @classmethod
    def _one_slot(cls, templates: list[str]) -> list[str]:
        if not templates or any(t.count("{}") != 1 for t in templates):
            raise ValueError("needs at least one template, each with exactly one '{}'")
        return templates


class PlateauParams(_Group):
    tolerance: Annotated[float, Field(ge=0, lt=1)]

    def rule(self, max_epochs: int) -> PlateauRule:
        return PlateauRule(self.tolerance, max_epochs)


class _DecoderData(_Group):
    n_train: PositiveInt
    n_val: PositiveInt
    n_test: PositiveInt
    max_epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat


class VqvaeParams(_DecoderData):
    image_size: Annotated[int, Field(ge=8, le=1024)]
    hidden: PositiveInt
    code_dim: PositiveInt
    codebook_size: Annotated[int, Field(ge=2)]
    commitment: Annotated[float, Field(ge=0)]
    decay: Annotated[float, Field(gt=0, lt=1)]
    samples: Annotated[int, Field(ge=1, le=64)]


class SegmentParams(_DecoderData):
    unet_encoders: Annotated[list[Literal["scratch", "imagenet"]], Field(min_length=1)]
    unet_width_div: PositiveInt
    overlays: Annotated[int, Field(ge=1, le=32)]


def _positive_ints(value: object, what: str) -> tuple[int, ...]:
    """A positive integer or a non-empty list of them, as a sorted tuple without repeats."""
    values = value if isinstance(value, list | tuple) else [value]
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad or not values:
        raise ValueError(f"must be {what}: a positive integer or a non-empty list of them (got {value!r})")
    return tuple(sorted(set(values)))


class Params(_Group):
    profile: str
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]
    seeds: tuple[int, ...]
    device: Literal["auto", "cpu", "cuda"]
    threads: Annotated[int, Field(ge=1, le=256)]
    data: DataParams
    clip: ClipParams
    embed: EmbedParams
    probe: ProbeParams
    tower: TowerParams
    counting: CountingParams
    plateau: PlateauParams
    vqvae: VqvaeParams
    segment: SegmentParams
    shots: tuple[int, ...]
    fewshot: FewshotParams

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, seeds: object) -> tuple[int, ...]:
        values = seeds if isinstance(seeds, list | tuple) else None
        bad = values is None or not values or len(set(values)) != len(values)
        bad = bad or any(
            isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEED for v in values
        )
        if bad:
            raise ValueError(
                f"must be a non-empty list of distinct integers in [0, {MAX_SEED}], e.g. [0, 1, 2] or [0] (got {seeds!r})"
            )
        return tuple(values)

    @field_validator("shots", mode="before")
    @classmethod
    def _shots(cls, shots: object) -> tuple[int, ...]:
        return _positive_ints(shots, "support images per class")

    @model_validator(mode="after")
    def _consistent(self) -> Params:
        if self.probe.features == "pre_projection" and not self.embed.pre_projection:
            raise ValueError("probe.features is 'pre_projection' but embed.pre_projection is false")
        if "prolip" in self.fewshot.inits and not self.embed.pre_projection:
            raise ValueError(
                "fewshot.inits holds prolip, which trains CLIP's last projection on the pre-projection "
                "features, but embed.pre_projection is false"
            )
        return self


# pydantic's error types -> what is allowed, in the words every other message uses
_ALLOWED = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "literal_error": "must be {expected}",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "too_short": "must hold at least {min_length} item(s)",
    "too_long": "must hold at most {max_length} item(s)",
    "model_type": "must be a mapping of keys",
    "dict_type": "must be a mapping of keys",
}


def _format_error(err: ValidationError, source: str) -> str:
    """The first validation error as one line: `params.yaml: probe.C: <what is allowed> (got ...)`."""
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    where = f"{key}: " if key else ""
    if first["type"] == "extra_forbidden":
        model: type[BaseModel] = Params
        for part in first["loc"][:-1]:
            model = model.model_fields[str(part)].annotation  # type: ignore[assignment]
        return f"{source}: {key}: unknown key; allowed here: {', '.join(model.model_fields)}"
    if first["type"] == "missing":
        return f"{source}: {key}: required key is missing"
    if first["type"] == "value_error":  # our validators say what is allowed and what they got
        return f"{source}: {where}{first['msg'].removeprefix('Value error, ')}"
    allowed = _ALLOWED.get(first["type"], first["msg"]).format(**first.get("ctx", {}))
    got = "" if isinstance(first["input"], dict) else f" (got {first['input']!r})"  # a whole group is noise
    return f"{source}: {where}{allowed}{got}"


def parse_params(raw: object, source: str = "params.yaml") -> Params:
    """Validate an already-loaded params mapping."""
    if not isinstance(raw, dict):
        raise ClipprobeError(f"{source}: must be a mapping of parameter groups (got {type(raw).__name__})")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ClipprobeError(_format_error(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; any problem is a one-line ClipprobeError."""
    path = Path(path)
    if not path.is_file():
        raise ClipprobeError(f"{path}: not found (run from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ClipprobeError(f"{path}: not valid YAML{where}") from None
    return parse_params(raw, source=str(path))
