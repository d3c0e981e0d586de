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
from clipprobe.probes.fewshot_registry import METHODS

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
MAX_SEED = 2**32 - 1  # numpy's legacy seeding (np.random.seed) takes 0 .. 2**32 - 1

CLASSIFICATION_DATASETS = ("shapes", "cifar100", "cifar10")


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CaptionMix(_Group):
    free: Fraction  # share of free-form captions (counts, colours, sizes, relations)
    class_like: Fraction  # share of "a photo of a red circle." captions naming only the labelled object
    count_only: Fraction  # share of "a photo of two shapes." captions

    @model_validator(mode="after")
    def _sums_to_one(self) -> CaptionMix:
        total = self.free + self.class_like + self.count_only
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"free + class_like + count_only must sum to 1 (got {total:g})")
        return self


class ShapesParams(_Group):
    image_size: Annotated[int, Field(ge=16, le=512)]  # pixels, square
    n_pretrain: PositiveInt  # captioned images for the CLIP pretraining (labels never used)
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
    val_per_class: PositiveInt  # images per class held out of train as the validation pool


class ClevrParams(_Group):
    # CLEVR (paper preset's counting data): train and val are disjoint seeded draws from CLEVR's train split,
    # test is drawn from CLEVR's val split (its test split has no labels).
    n_train: PositiveInt
    n_val: PositiveInt
    n_test: PositiveInt
    image_size: Annotated[int, Field(ge=16, le=1024)]  # pixels of the shortest side the images are stored at


class PetsParams(_Group):
    # Oxford-IIIT Pet (paper preset's segmentation data): trainval rows i % 10 != 0 train, == 0 val; test official
    image_size: Annotated[int, Field(ge=32, le=1024)]  # side images and masks are resized to (masks nearest)
    border: Literal["foreground", "background", "ignore"]  # where the trimap's border class goes


class DataParams(_Group):
    classification: Literal[CLASSIFICATION_DATASETS]  # dataset the probes read
    counting: Literal["shapes", "clevr"]  # dataset the counting stage reads
    vqvae: Literal["shapes", "cifar10"]  # dataset the VQ-VAEs reconstruct
    segment: Literal["shapes", "pets"]  # dataset the segmentation decoders read
    root: str  # where the uniform store lives
    downloads: str  # where downloaded archives and weights are kept (paper preset)
    workers: PositiveInt  # processes for the shapes generator
    shapes: ShapesParams
    cifar: CifarParams
    clevr: ClevrParams
    pets: PetsParams


class PretrainParams(_Group):
    steps: PositiveInt  # optimiser steps (a step budget, not a time budget: timing noise is large)
    batch_size: Annotated[int, Field(ge=2)]
    lr: PositiveFloat  # AdamW peak learning rate
    weight_decay: Annotated[float, Field(ge=0)]
    warmup_steps: Annotated[int, Field(ge=0)]


def _known_arch(arch: str) -> str:
    if arch not in list_archs():
        raise ValueError(f"must be one of {', '.join(TINY_ARCHS)} or an open_clip model name (got {arch!r})")
    return arch


class ClipParams(_Group):
    arch: str  # open_clip model name (ViT-B-32, RN50, ...) or a clipprobe tiny config
    # 'scratch', an open_clip pretrained tag (openai, ...) or a local checkpoint path; the clip stage checks
    # the tag against open_clip's registry when it builds the model
    pretrained: str
    pretrain: PretrainParams

    @field_validator("arch")
    @classmethod
    def _arch(cls, arch: str) -> str:
        return _known_arch(arch)


class EmbedParams(_Group):
    batch_size: PositiveInt
    pre_projection: bool  # also store the features before the final projection (the CLIP paper's probe input)
    ensemble: Literal["cifar", "shapes"]  # template set of the zero-shot ensemble


class ProbeParams(_Group):
    # Which cached image features the linear probe reads.
    features: Literal["raw", "normalized", "pre_projection"]
    # Inverse L2 strength (sklearn's C), or 'auto': the CLIP paper's search on val, then a refit on train+val.
    C: float | Literal["auto"]
    max_iter: PositiveInt  # L-BFGS iterations

    @field_validator("C", mode="before")
    @classmethod
    def _positive_or_auto(cls, C: object) -> object:
        number = isinstance(C, int | float) and not isinstance(C, bool)
        if C == "auto" or (number and math.isfinite(C) and C > 0):
            return C
        raise ValueError(f"must be a positive number or 'auto' (got {C!r})")


class TowerParams(_Group):
    """Whose frozen ResNet tower counting, vqvae and segment read: null = the clip stage's model."""

    arch: str | None  # null or a ResNet CLIP from open_clip (RN50)
    pretrained: str | None  # open_clip tag (openai) or checkpoint path for `arch`; null when arch is null
    size: Annotated[int, Field(ge=32, le=1024)]  # side the decoders' tower reads (images resized to it)

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
    # `random` and `zeroshot` heads: plain AdamW, full batch; weights on the unit-norm scale of the text weights
    lr: PositiveFloat  # AdamW learning rate
    weight_decay: Annotated[float, Field(ge=0)]  # AdamW decoupled weight decay (per step, times lr)


class ClapRecipe(_Group):
    lr: PositiveFloat  # SGD (momentum 0.9) peak learning rate, cosine-annealed to 0 over the epochs


class ProlipRecipe(_Group):
    lr: PositiveFloat  # Adam (eps 1e-4) peak learning rate, cosine-annealed over the epochs; lambda = 1 / shots


class TipRecipe(_Group):
    # grids searched on the few-shot val set; logits = s * (cos to text + alpha * exp(-beta (1 - cos to cache)))
    alphas: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)]  # cache weight, in units of s
    betas: Annotated[list[PositiveFloat], Field(min_length=1)]  # sharpness of the cache affinity


class GdaRecipe(_Group):
    # grid searched on the few-shot val set; logits = s * cos to text + alpha * (Gaussian discriminant)
    alphas: Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=1)]  # weight of the discriminant


class ModesParams(_Group):
    # the modes experiment (shapes world only): concentrated vs spread support sets at equal shots
    attributes: list[
        Literal["background", "count", "size"]
    ]  # within-class variations tested; [] turns it off
    shots: Annotated[
        list[Annotated[int, Field(ge=2)]], Field(min_length=1)
    ]  # K >= 2: at K = 1 both are one image
    draws: Annotated[int, Field(ge=2)]  # support-set draws per attribute, shot count and kind
    epochs: PositiveInt  # full-batch epochs (every evaluation point kept: the curves are the result)


class FewshotParams(_Group):
    inits: Annotated[list[str], Field(min_length=1)]  # methods compared on the same draws (fewshot_registry)
    draws: Annotated[int, Field(ge=2)]  # support-set draws per shot count (a 95% interval needs two)
    epochs: PositiveInt  # full-batch epochs of the trained methods (one step = the whole support set)
    eval_every: PositiveInt  # epochs between evaluations (curves; epoch choice on few-shot val)
    val_per_class: PositiveInt  # few-shot val set: min(shots, this) val images per class
    linear: LinearRecipe
    clap: ClapRecipe
    prolip: ProlipRecipe
    tip: TipRecipe
    gda: GdaRecipe
    modes: ModesParams

    @field_validator("inits")
    @classmethod
    def _known_unique_inits(cls, inits: list[str]) -> list[str]:
        allowed = ", ".join(METHODS)
        unknown = [name for name in inits if name not in METHODS]
        if unknown or len(set(inits)) != len(inits):
            problem = f"unknown method {unknown[0]!r}" if unknown else "a method listed twice"
            raise ValueError(f"each of {allowed} at most once ({problem})")
        return inits


class CountingParams(_Group):
    count_templates: list[str]  # zero-shot prompts, `{}` = the count phrase ("two shapes", "3 objects")
    count_nouns: tuple[str, str]  # (singular, plural) noun of the count phrase
    number_words: bool  # "two shapes" (true) or "2 shapes" (false)
    position_templates: list[str]  # zero-shot prompts, `{}` = the quadrant ("top left", ..., "bottom right")
    prepool_grid: PositiveInt  # cells per side the pre-pool map is average-pooled to before its probe
    Cs: Annotated[list[PositiveFloat], Field(min_length=1)]  # sklearn C values tried; the best on val is kept
    max_iter: PositiveInt  # L-BFGS iterations per probe fit
    batch_size: PositiveInt  # images per forward pass

    @field_validator("count_templates", "position_templates")
    @classmethod
    def _one_slot(cls, templates: list[str]) -> list[str]:
        if not templates or any(t.count("{}") != 1 for t in templates):
            raise ValueError("needs at least one template, each with exactly one '{}'")
        return templates


class _DecoderData(_Group):
    n_train: PositiveInt  # the first n images of the dataset's train split
    n_val: PositiveInt  # the first n of val: curves and the choice of the epoch kept
    n_test: PositiveInt  # the first n of test: the reported numbers only
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat  # Adam learning rate


class VqvaeParams(_DecoderData):
    image_size: Annotated[int, Field(ge=8, le=1024)]  # side every model reconstructs and is scored at
    hidden: PositiveInt  # channels of the encoder and decoder (the tutorial's hidden_dim)
    code_dim: PositiveInt  # width of a codebook vector
    codebook_size: Annotated[int, Field(ge=2)]  # codes in the codebook (the tutorial's n_embeddings)
    commitment: Annotated[float, Field(ge=0)]  # beta of the commitment loss
    decay: Annotated[float, Field(gt=0, lt=1)]  # EMA decay of the codebook
    samples: Annotated[int, Field(ge=1, le=64)]  # test images in the reconstruction grid


class SegmentParams(_DecoderData):
    unet_encoders: Annotated[list[Literal["scratch", "imagenet"]], Field(min_length=1)]  # UNet11 VGG11 inits
    unet_width_div: PositiveInt  # divides every UNet11 width (VGG11 64..512, decoder 32): 1 = TernausNet
    overlays: Annotated[int, Field(ge=1, le=32)]  # validation images in the mask-overlay figure


def _positive_ints(value: object, what: str) -> tuple[int, ...]:
    """A positive integer or a non-empty list of them, as a sorted tuple without repeats."""
    values = value if isinstance(value, list | tuple) else [value]
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad or not values:
        raise ValueError(f"must be {what}: a positive integer or a non-empty list of them (got {value!r})")
    return tuple(sorted(set(values)))


class Params(_Group):
    profile: str  # name of the composed profile (conf/profile/<name>.yaml)
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)]  # data and sampling
    seeds: tuple[int, ...]  # training runs: every stage that trains runs once per seed
    device: Literal["auto", "cpu", "cuda"]
    threads: Annotated[int, Field(ge=1, le=256)]  # intra-op CPU threads of every stage (results depend on it)
    data: DataParams
    clip: ClipParams
    embed: EmbedParams
    probe: ProbeParams
    tower: TowerParams
    counting: CountingParams
    vqvae: VqvaeParams
    segment: SegmentParams
    shots: tuple[int, ...]  # support images per class: one count (`dvc exp run -S shots=4`) or a list
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
