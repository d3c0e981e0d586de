"""Every on-disk contract between stages, read through one checked loader each.

A loader checks that the file exists and is a file, that it parses, and its keys, dtypes, shapes, row counts
across files and finite values. Any failure is one ClipprobeError line naming the file, what was expected,
what was found, and the stage that writes it (so the fix is `dvc repro <stage>`). docs/architecture.md
lists the contracts (`CONTRACTS` below, checked against it by a test). torch is imported only by the loaders
of .pt files, so the summary and report stages stay torch-free.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipprobe import paths
from clipprobe.data.store import DatasetMeta, Split
from clipprobe.errors import ClipprobeError

# path pattern -> (the stage that writes it, what its loader checks); the table of docs/architecture.md
CONTRACTS: dict[str, tuple[str, str]] = {
    "data/<dataset>/meta.json": (
        "data",
        "JSON object with name, class_names, image_size [H, W], splits {split: n}, source, mask_class_names; "
        "extra.raw_class_names (CIFAR: torchvision's names), one per class",
    ),
    "data/<dataset>/<split>/images.npy": ("data", "uint8 (N, H, W, 3), N = meta.json's splits[split]"),
    "data/<dataset>/<split>/labels.npy": ("data", "int64 (N,) in [0, classes)"),
    "data/<dataset>/<split>/captions.json": ("data", "list of N strings"),
    "data/<dataset>/<split>/masks.npy": ("data", "uint8 (N, H, W) in [0, mask classes) or 255"),
    "data/<dataset>/<split>/counts.npy": ("data", "int64 (N,) >= 0"),
    "data/<dataset>/<split>/positions.npy": ("data", "float32 (N, 2), finite, in [0, 1]"),
    "data/<dataset>/<split>/backgrounds.npy, sizes.npy": (
        "data",
        "int64 (N,) in [0, 3); float32 (N,) finite in [0, 1] (shapes world)",
    ),
    "models/clip/seed<k>/model.json": (
        "clip",
        "JSON object with arch, pretrained (strings), image_size > 0, mean [3] finite, std [3] finite > 0",
    ),
    "models/clip/seed<k>/weights.pt": (
        "clip",
        "a weights_only torch file holding a state dict of tensors, every floating one float32 and finite",
    ),
    "features/seed<k>/<split>.pt": (
        "embed",
        "image, image_norm float32 (N, D) finite; labels int64 (N,); image_pre float32 (N, P) when present",
    ),
    "features/seed<k>/text.pt": (
        "embed",
        "class_names [C], logit_scale > 0, templates, text {set: float32 (T, C, D)} finite, D as the image features",
    ),
    "runs/seed<k>/<experiment>.json": (
        "the experiment's stage",
        'flat JSON object {"<readout>.<measure>": number} (experiment.Result.figures) with the keys the summary reads, finite numbers',
    ),
    "runs/seed<k>/<experiment>_hits/<name>.npy": (
        "the experiment's stage",
        "bool (N,) or (H, N) per-image test hits",
    ),
    "runs/seed<k>/modes_accuracy/<name>.npy": ("modes", "float64 (E, H) accuracy curves; epochs int64 (E,)"),
    "runs/seed<k>/<experiment>_curves.csv, probe_c_search.csv, clip_pretrain.csv": (
        "the experiment's stage",
        "CSV with the columns the summary reads",
    ),
    "results/summary.json": (
        "summary",
        "JSON object with one entry per experiment: figures, claims, context and the curves the report draws",
    ),
    "results/vqvae_samples/, results/segment_overlays/": (
        "summary",
        "the first seed's sample images, as written",
    ),
}


def problem(path: str | Path, expected: str, found: str, stage: str) -> ClipprobeError:
    """The one-line error of a bad contract file."""
    return ClipprobeError(
        f"{path}: expected {expected}, found {found} (written by the {stage} stage; rerun it: dvc repro {stage})"
    )


def _existing(path: str | Path, stage: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise problem(path, "a file", "nothing there", stage)
    if not path.is_file():
        raise problem(path, "a file", "a directory" if path.is_dir() else "no regular file", stage)
    return path


def read_json(path: str | Path, stage: str, keys: Sequence[str] = ()) -> Any:
    """A JSON file; when `keys` are given it must be an object holding them."""
    path = _existing(path, stage)
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as err:
        raise problem(
            path, "valid JSON", f"a parse error ({err.__class__.__name__}: {str(err)[:60]})", stage
        ) from None
    if keys:
        if not isinstance(value, dict):
            raise problem(path, "a JSON object", type(value).__name__, stage)
        missing = [key for key in keys if key not in value]
        if missing:
            raise problem(path, f"keys {', '.join(keys)}", f"no {', '.join(missing)}", stage)
    return value


def _finite_numbers(value: Any, path: Path, stage: str, where: str = "") -> None:
    """Every number nested in `value` is finite (JSON written by Python may hold NaN and Infinity)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _finite_numbers(item, path, stage, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _finite_numbers(item, path, stage, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise problem(path, "finite numbers", f"{value} at {where}", stage)


def read_results(path: str | Path, stage: str, keys: Sequence[str] = ()) -> dict:
    """A per-seed result JSON (runs/seed<k>/<experiment>.json, `experiment.Result.figures`): a flat object
    with `keys`, every value a finite number."""
    value = read_json(path, stage, keys)
    if not isinstance(value, dict):
        raise problem(path, "a JSON object", type(value).__name__, stage)
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise problem(path, "a number under every key", f"{number!r} at {key}", stage)
    _finite_numbers(value, Path(path), stage)
    return value


def read_npy(
    path: str | Path,
    stage: str,
    *,
    dtype: str | None,
    shape: Sequence[int | None] | None,
    mmap: bool = False,
) -> np.ndarray:
    """A .npy array of `dtype` (None: any) whose shape matches `shape` (None on an axis: any length; None: any
    shape)."""
    path = _existing(path, stage)
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # truncated data, a broken header, not an .npy at all
        raise problem(
            path, f"a {dtype or ''} .npy array", f"an unreadable file ({str(err)[:60]})", stage
        ) from None
    shape = [None] * array.ndim if shape is None else shape
    wanted = "(" + ", ".join("N" if n is None else str(n) for n in shape) + ")"
    fits = array.ndim == len(shape) and all(
        n is None or n == m for n, m in zip(shape, array.shape, strict=True)
    )
    if (dtype is not None and str(array.dtype) != dtype) or not fits:
        raise problem(path, f"{dtype or 'an array'} {wanted}", f"{array.dtype} {tuple(array.shape)}", stage)
    return array


def _values_in(
    array: np.ndarray, path: Path, stage: str, low: float, high: float, allowed: Sequence[int] = ()
) -> None:
    """Values in [low, high) (or among `allowed`), checked on the whole array (cheap next to reading it)."""
    outside = (array < low) | (array >= high)
    for value in allowed:
        outside &= array != value
    if outside.any():
        raise problem(path, f"values in [{low:g}, {high:g})", f"{array[outside].flat[0]}", stage)


# ---------------------------------------------------------------------------------------------- data store


def load_meta(root: str | Path, name: str) -> DatasetMeta:
    """data/<name>/meta.json."""
    path = Path(root) / name / "meta.json"
    payload = read_json(path, "data", ("name", "class_names", "image_size", "splits", "source"))
    size, splits = payload["image_size"], payload["splits"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) for n in size)):
        raise problem(path, "image_size as [H, W]", repr(size), "data")
    if not (isinstance(splits, dict) and all(isinstance(n, int) and n >= 0 for n in splits.values())):
        raise problem(path, "splits as {split: images}", repr(splits)[:60], "data")
    if not (
        isinstance(payload["class_names"], list) and all(isinstance(c, str) for c in payload["class_names"])
    ):
        raise problem(path, "class_names as a list of strings", repr(payload["class_names"])[:60], "data")
    extra = payload.get("extra", {})
    if not isinstance(extra, dict):
        raise problem(path, "extra as a JSON object", repr(extra)[:60], "data")
    raw = extra.get("raw_class_names", payload["class_names"])
    if not (isinstance(raw, list) and len(raw) == len(payload["class_names"])):
        raise problem(path, "extra.raw_class_names: one per class", repr(raw)[:60], "data")
    payload["image_size"] = tuple(size)
    try:
        return DatasetMeta(**payload)
    except TypeError as err:
        raise problem(path, "the keys of a clipprobe dataset", str(err), "data") from None


def load_split(root: str | Path, name: str, split: str, mmap: bool = True) -> Split:
    """One split of data/<name>/, its arrays memory-mapped unless `mmap=False`, all checked against meta.json."""
    meta = load_meta(root, name)
    if split not in meta.splits:
        raise problem(Path(root) / name, f"a split '{split}'", f"splits {', '.join(meta.splits)}", "data")
    folder, n = Path(root) / name / split, meta.splits[split]
    height, width = meta.image_size
    images = read_npy(folder / "images.npy", "data", dtype="uint8", shape=(n, height, width, 3), mmap=mmap)
    fields: dict[str, Any] = {"images": images}
    specs = {"labels": ("int64", (n,)), "masks": ("uint8", (n, height, width)), "counts": ("int64", (n,)),
             "positions": ("float32", (n, 2)), "backgrounds": ("int64", (n,)), "sizes": ("float32", (n,))}  # fmt: skip
    for field_name, (dtype, shape) in specs.items():
        path = folder / f"{field_name}.npy"
        if path.exists():
            fields[field_name] = read_npy(path, "data", dtype=dtype, shape=shape, mmap=mmap)
    if "labels" in fields:
        _values_in(np.asarray(fields["labels"]), folder / "labels.npy", "data", 0, len(meta.class_names))
    if "masks" in fields and meta.mask_class_names:
        _values_in(
            np.asarray(fields["masks"]), folder / "masks.npy", "data", 0, len(meta.mask_class_names), (255,)
        )
    if "counts" in fields:
        _values_in(np.asarray(fields["counts"]), folder / "counts.npy", "data", 0, np.inf)
    if "backgrounds" in fields:
        _values_in(np.asarray(fields["backgrounds"]), folder / "backgrounds.npy", "data", 0, 3)
    if "sizes" in fields:
        sizes = np.asarray(fields["sizes"])
        if not np.isfinite(sizes).all():
            raise problem(folder / "sizes.npy", "finite sizes", "NaN or inf", "data")
        _values_in(sizes, folder / "sizes.npy", "data", 0.0, 1.0 + 1e-6)
    if "positions" in fields:
        positions = np.asarray(fields["positions"])
        if not np.isfinite(positions).all():
            raise problem(folder / "positions.npy", "finite positions", "NaN or inf", "data")
        _values_in(positions, folder / "positions.npy", "data", 0.0, 1.0 + 1e-6)
    captions = folder / "captions.json"
    if captions.exists():
        fields["captions"] = read_json(captions, "data")
        if not (isinstance(fields["captions"], list) and len(fields["captions"]) == n):
            raise problem(
                captions,
                f"a list of {n} captions",
                f"{type(fields['captions']).__name__} of {len(fields['captions'])}",
                "data",
            )
    return Split(**fields)


def load_first(root: str | Path, name: str, sizes: Mapping[str, int], group: str) -> dict[str, Split]:
    """The first `sizes[split]` rows of each split of data/<name>/, in memory (splits are stored shuffled);
    asking for more rows than a split holds is an error naming the param (`<group>.n_<split>`)."""
    out = {}
    for split, n in sizes.items():
        data = load_split(root, name, split)
        if n > len(data):
            raise ClipprobeError(f"{group}.n_{split}: asks for {n} images; {name} {split} holds {len(data)}")
        fields = {k: v for k, v in data.__dict__.items() if isinstance(v, np.ndarray)}
        out[split] = Split(**{k: np.array(v[:n]) for k, v in fields.items()})
    return out


# ---------------------------------------------------------------------------------------------- torch files


def read_torch(path: str | Path, stage: str) -> Any:
    """A torch file loaded with weights_only=True (code in a pickle never runs)."""
    import torch

    path = _existing(path, stage)
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # pickle, zip and tensor-storage errors all mean a bad file
        detail = str(err).strip().splitlines()[0][:80] if str(err).strip() else type(err).__name__
        raise problem(path, "a weights_only torch file", f"an unreadable file ({detail})", stage) from None


def read_weights(path: str | Path, stage: str) -> dict:
    """A state dict written by `save_clip`: tensors only, every floating one float32 and finite (a NaN would
    turn every feature downstream to NaN, a float16 copy would change every one)."""
    import torch

    state = read_torch(path, stage)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise problem(path, "a state dict of tensors", type(state).__name__, stage)
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            raise problem(
                path, "float32 weights", f"{str(tensor.dtype).removeprefix('torch.')} in '{key}'", stage
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise problem(path, "finite weights", f"NaN or inf in '{key}'", stage)
    return state


def read_model_info(path: str | Path, stage: str) -> dict:
    """model.json: arch and pretrained (strings), image_size (a positive int), mean and std (3 numbers each,
    std positive): the preprocessing every later stage applies."""
    info = read_json(path, stage, ("arch", "pretrained", "image_size", "mean", "std"))
    path = Path(path)

    def numbers(key: str, positive: bool) -> bool:
        value = info[key]
        return (
            isinstance(value, list)
            and len(value) == 3
            and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
            )
            and (not positive or all(v > 0 for v in value))
        )

    if not all(isinstance(info[key], str) for key in ("arch", "pretrained")):
        raise problem(
            path, "arch and pretrained as strings", f"{info['arch']!r}, {info['pretrained']!r}", stage
        )
    size = info["image_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise problem(path, "image_size a positive integer", repr(size), stage)
    for key, positive in (("mean", False), ("std", True)):
        if not numbers(key, positive):
            want = "3 positive finite numbers" if positive else "3 finite numbers"
            raise problem(path, f"{key} as {want}", repr(info[key]), stage)
    return info


def _tensor(
    value: Any, path: Path, key: str, stage: str, dtype: str, ndim: int, rows: int | None = None
) -> Any:
    import torch

    if not isinstance(value, torch.Tensor):
        raise problem(path, f"'{key}' as a tensor", type(value).__name__, stage)
    if (
        str(value.dtype).removeprefix("torch.") != dtype
        or value.ndim != ndim
        or (rows is not None and len(value) != rows)
    ):
        want = f"{dtype} with {ndim} dims" + (f" and {rows} rows" if rows is not None else "")
        raise problem(path, f"'{key}' {want}", f"{value.dtype} {tuple(value.shape)}", stage)
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise problem(path, f"finite values in '{key}'", "NaN or inf", stage)
    return value


def load_features(folder: str | Path) -> tuple[dict[str, dict[str, Any]], dict]:
    """The embed stage's cache: ({split: feature dict} for train/val/test, text.pt's dict), all consistent."""
    folder = Path(folder)
    splits, dim = {}, None
    text = read_torch(folder / "text.pt", "embed")
    if not isinstance(text, dict) or not {"class_names", "logit_scale", "text"} <= set(text):
        raise problem(
            folder / "text.pt", "a dict with class_names, logit_scale, text", type(text).__name__, "embed"
        )
    n_classes = len(text["class_names"])
    scale = text["logit_scale"]
    if not (isinstance(scale, float) and math.isfinite(scale) and scale > 0):
        raise problem(folder / "text.pt", "a positive finite logit_scale", repr(scale), "embed")
    for split in ("train", "val", "test"):
        path = folder / f"{split}.pt"
        feats = read_torch(path, "embed")
        if not isinstance(feats, dict) or not {"image", "image_norm", "labels"} <= set(feats):
            raise problem(
                path,
                "a dict with image, image_norm, labels",
                repr(sorted(feats) if isinstance(feats, dict) else type(feats).__name__),
                "embed",
            )
        image = _tensor(feats["image"], path, "image", "embed", "float32", 2)
        dim = dim or image.shape[1]
        if image.shape[1] != dim:
            raise problem(
                path, f"image features of width {dim} (as train)", f"width {image.shape[1]}", "embed"
            )
        _tensor(feats["image_norm"], path, "image_norm", "embed", "float32", 2, len(image))
        labels = _tensor(feats["labels"], path, "labels", "embed", "int64", 1, len(image))
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
            raise problem(
                path, f"labels in [0, {n_classes})", f"{int(labels.min())}..{int(labels.max())}", "embed"
            )
        if "image_pre" in feats:
            _tensor(feats["image_pre"], path, "image_pre", "embed", "float32", 2, len(image))
        for key, base in (("views", "image"), ("views_pre", "image_pre")):  # (V, N, width) augmented views
            if key in feats:
                views = _tensor(feats[key], path, key, "embed", "float16", 3)
                if views.shape[1:] != feats[base].shape:
                    want = f"'{key}' of shape (V, {', '.join(map(str, feats[base].shape))})"
                    raise problem(path, want, str(tuple(views.shape)), "embed")
        splits[split] = feats
    if "projection" in text:
        projection, pre = text["projection"], splits["train"].get("image_pre")
        width = None if pre is None else pre.shape[1]
        weight = _tensor(
            projection.get("weight") if isinstance(projection, dict) else None,
            folder / "text.pt",
            "projection.weight",
            "embed",
            "float32",
            2,
        )
        _tensor(projection.get("bias"), folder / "text.pt", "projection.bias", "embed", "float32", 1, dim)
        if weight.shape != (dim, width):
            raise problem(
                folder / "text.pt",
                f"projection.weight of shape ({dim}, {width})",
                str(tuple(weight.shape)),
                "embed",
            )
    for name, embedding in text["text"].items():
        tensor = _tensor(embedding, folder / "text.pt", f"text.{name}", "embed", "float32", 3)
        if tensor.shape[1:] != (n_classes, dim):
            raise problem(
                folder / "text.pt",
                f"text.{name} of shape (T, {n_classes}, {dim})",
                str(tuple(tensor.shape)),
                "embed",
            )
    return splits, text


# ---------------------------------------------------------------------------------------------- per-seed runs


def _folder(folder: str | Path, stage: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        found = "nothing there" if not folder.exists() else "a file"
        raise problem(folder, "a folder of .npy arrays", found, stage)
    return folder


def load_arrays(folder: str | Path, stage: str, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """A folder of named .npy arrays (`io.save_arrays`): those of `names`, or all of them."""
    folder = _folder(folder, stage)
    names = names if names is not None else [path.stem for path in sorted(folder.glob("*.npy"))]
    return {name: read_npy(folder / f"{name}.npy", stage, dtype=None, shape=None) for name in names}


def load_hits(
    folder: str | Path, stage: str, names: Sequence[str], n_images: int | None = None
) -> dict[str, np.ndarray]:
    """A hits folder (runs/seed<k>/<experiment>_hits): bool (N,) or (H, N) arrays, one per name, same N."""
    hits = {}
    for name, array in load_arrays(folder, stage, names).items():
        path = Path(folder) / f"{name}.npy"
        if array.dtype != np.bool_ or array.ndim not in (1, 2):
            raise problem(path, "bool (N,) or (H, N)", f"{array.dtype} {tuple(array.shape)}", stage)
        n_images = n_images or array.shape[-1]
        if array.shape[-1] != n_images:
            raise problem(path, f"hits on {n_images} test images", f"{array.shape[-1]}", stage)
        hits[name] = array
    return hits


def read_csv(path: str | Path, stage: str, columns: Sequence[str]) -> Any:
    """A per-seed CSV (pandas DataFrame) holding `columns`, every cell a finite number (a NaN would drop a
    seed from a mean over seeds without a word; a word would be copied into plots/)."""
    import pandas as pd

    path = _existing(path, stage)
    try:
        frame = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as err:
        raise problem(path, "a CSV", f"a parse error ({str(err)[:60]})", stage) from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise problem(path, f"columns {', '.join(columns)}", f"no {', '.join(missing)}", stage)
    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            cell = frame[column].iloc[row]
            raise problem(
                path, "finite numbers in every cell", f"{cell!r} in column {column}, row {row + 1}", stage
            )
    return frame


class Runs:
    """The per-seed results of `seeds` (by exact name: stale seeds on disk are ignored), each read through
    its checked loader; `name` is a `paths.Run` attribute."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.runs = [paths.Run(seed) for seed in seeds]
        self.seeds = list(seeds)

    @staticmethod
    def writer(name: str) -> str:
        """The stage that writes `paths.Run(<seed>).<name>`."""
        probe_run = paths.Run(0)
        return next(
            stage for stage in paths.PER_SEED_STAGES if getattr(probe_run, name) in paths.outputs(stage, 0)
        )

    def json(self, name: str, keys: Sequence[str] = ()) -> list[dict]:
        return [read_results(getattr(run, name), self.writer(name), keys) for run in self.runs]

    def hits(self, name: str, names: Sequence[str]) -> list[dict[str, np.ndarray]]:
        return [load_hits(getattr(run, name), self.writer(name), names) for run in self.runs]

    def arrays(self, name: str) -> list[dict[str, np.ndarray]]:
        return [load_arrays(getattr(run, name), self.writer(name)) for run in self.runs]

    def csv(self, name: str, columns: Sequence[str]) -> list[Any]:
        return [read_csv(getattr(run, name), self.writer(name), columns) for run in self.runs]


def read_stability() -> dict:
    """docs/verdicts.json (bench/verdicts.py): {"perturbation": str, "claims": {"<exp>/<claim>": {"committed",
    "perturbed"}}}; {} when it is absent (the report then marks no claim)."""
    if not paths.VERDICTS.exists():
        return {}
    return read_json(paths.VERDICTS, "report", ["perturbation", "claims"])


def read_fewshot_before() -> dict:
    """docs/fewshot_before.json (tools/fewshot_snapshot.py): {"protocol": str, "seeds": [int], "per_seed":
    {"<K>shot_<method>": [acc per seed]}}; {} when it is absent (the report then shows no before/after)."""
    if not paths.FEWSHOT_BEFORE.exists():
        return {}
    return read_json(paths.FEWSHOT_BEFORE, "report", ["protocol", "seeds", "per_seed"])


def read_summary() -> dict:
    """results/summary.json: the summary stage's figures, claims, context and curves per experiment."""
    summary = read_json(paths.SUMMARY, "summary", ["seeds"])
    _finite_numbers(summary, paths.SUMMARY, "summary")
    return summary
