"""CIFAR-10/100 through torchvision's downloader and checksums, converted into the uniform store.

CIFAR has no validation split, so a fixed, seeded pool of ``val_per_class`` images per class is held out of
the official train set; ``test`` is the official test set and nothing is ever selected on it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100

from clipprobe.data.fetch import archive_intact, archive_md5, fetch, short_error
from clipprobe.data.store import DatasetMeta, Split, save_dataset
from clipprobe.errors import ClipprobeError
from clipprobe.paths import downloads_dir

_logger = logging.getLogger(__name__)

CIFAR_DATASETS: dict[str, type[CIFAR10]] = {"cifar10": CIFAR10, "cifar100": CIFAR100}
_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def prepare_cifar(
    name: Literal["cifar10", "cifar100"],
    downloads: Path,
    root: Path,
    val_per_class: int,
    seed: int,
    download: bool = True,
) -> Path:
    """Fetch CIFAR-10/100 into ``downloads`` and write it as ``root/<name>`` with splits train, val and test.

    ``download=False`` never touches the network: it uses the extracted files or the archive already in
    ``downloads``. The archive is hashed only when the extracted files are missing or fail torchvision's
    checks. Returns the dataset folder.
    """
    if name not in CIFAR_DATASETS:
        raise ClipprobeError(f"data: unknown CIFAR dataset {name!r}; choose one of {sorted(CIFAR_DATASETS)}")
    if val_per_class < 0:
        raise ClipprobeError(f"data.cifar.val_per_class: must be >= 0 (got {val_per_class})")
    downloads = downloads_dir(downloads)
    official_train = _load(name, downloads, train=True, download=download)
    labels = np.asarray(official_train.targets, dtype=np.int64)
    train_idx, val_idx = holdout_val(labels, len(official_train.classes), val_per_class, seed)
    official_test = _load(name, downloads, train=False, download=False)  # the first load fetched everything

    meta = DatasetMeta(
        name=name,
        class_names=[c.replace("_", " ") for c in official_train.classes],
        image_size=(32, 32),
        splits={},  # filled in by save_dataset
        source=f"torchvision.datasets.{type(official_train).__name__} ({official_train.url})",
        extra={
            "val_per_class": val_per_class,
            "val_seed": seed,
            "raw_class_names": list(official_train.classes),
        },
    )
    splits = {
        "train": Split(images=official_train.data[train_idx], labels=labels[train_idx]),
        "val": Split(images=official_train.data[val_idx], labels=labels[val_idx]),
        "test": Split(
            images=np.ascontiguousarray(official_test.data),  # (N, 32, 32, 3) uint8, HWC
            labels=np.asarray(official_test.targets, dtype=np.int64),
        ),
    }
    sizes = {split: len(data) for split, data in splits.items()}
    _logger.info("%s: %d classes, images per split %s", _TITLES[name], len(meta.class_names), sizes)
    return save_dataset(root, meta, splits)


def holdout_val(
    labels: np.ndarray, n_classes: int, val_per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of ``labels`` (N,) into (train, val); val gets ``val_per_class`` random ones per class.

    Both index arrays are sorted, so each split keeps the official order. The same seed gives the same pool.
    """
    counts = np.bincount(labels, minlength=n_classes)
    if not 0 <= val_per_class < counts.min():
        raise ClipprobeError(
            f"data.cifar.val_per_class: must be between 0 and {counts.min() - 1} so every class keeps "
            f"train images (the smallest class has {counts.min()}; got {val_per_class})"
        )
    rng = np.random.default_rng(seed)
    val = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:val_per_class] for c in range(n_classes)]
    )
    val = np.sort(val)
    return np.setdiff1d(np.arange(len(labels)), val), val


def _load(name: str, downloads: Path, train: bool, download: bool) -> CIFAR10:
    cls = CIFAR_DATASETS[name]
    archive = downloads / cls.filename
    return fetch(
        lambda get: cls(root=downloads, train=train, download=get),
        archive_intact=lambda: archive_intact(archive, cls.tgz_md5),
        urls=[cls.url],
        download=download,
        failure=lambda err, tried: _fetch_failure(name, archive, err, tried),
    )


def _fetch_failure(name: str, archive: Path, err: BaseException | None, download: bool) -> str:
    cls, title, folder = CIFAR_DATASETS[name], _TITLES[name], archive.parent
    why = f"the download failed ({short_error(err)})" if download and err else "downloading is off"
    if not archive.is_file():
        return (
            f"data: {title} not found in {folder}/ and {why}; "
            f"put {cls.filename} (md5 {cls.tgz_md5}) from {cls.url} into {folder}/"
        )
    md5 = archive_md5(archive, cls.tgz_md5)
    if md5 != cls.tgz_md5:
        return (
            f"data: {archive} is corrupt (md5 {md5}, expected {cls.tgz_md5}) and {why}; "
            f"replace it with {cls.filename} from {cls.url}"
        )
    # the archive is intact, so what failed is the extraction or the extracted files
    extracted = folder / cls.base_folder
    detail = f" ({short_error(err)})" if err else ""
    return f"data: could not read {title} from {folder}/{detail}; delete {extracted}/ and rerun"
