"""CLEVR object counts (3-10) through torchvision's CLEVRClassification, converted into the uniform store.

The CLIP paper's counting task (CLEVRCounts). CLEVR's test split has no scene annotations, so train and val
are disjoint seeded draws from CLEVR's train split and test is a seeded draw from CLEVR's val split. Each
480x320 render is converted to RGB and resized (bicubic, aspect kept) so its shortest side is ``image_size``:
the first step of open_clip's eval transform, so the stored images are what the model would be shown.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import CLEVRClassification
from torchvision.datasets.utils import calculate_md5, check_integrity

from clipprobe.data.fetch import fetch, short_error
from clipprobe.data.store import DatasetMeta, Split, save_dataset
from clipprobe.errors import ClipprobeError

_logger = logging.getLogger(__name__)

COUNTS = tuple(range(3, 11))  # every CLEVR scene holds 3 to 10 objects; label = count - 3
ARCHIVE = "CLEVR_v1.0.zip"


def prepare_clevr(
    downloads: Path,
    root: Path,
    sizes: Mapping[str, int],
    image_size: int,
    seed: int,
    download: bool = True,
) -> Path:
    """Fetch CLEVR into ``downloads/clevr`` and write ``root/clevr`` with splits train, val and test.

    ``sizes`` gives the images per split (keys train, val, test). ``download=False`` never touches the
    network: it uses the extracted folder or the archive already in ``downloads/clevr``. Returns the folder.
    """
    if sorted(sizes) != ["test", "train", "val"] or min(sizes.values()) < 1:
        raise ClipprobeError(f"data.clevr: n_train, n_val and n_test must each be >= 1 (got {dict(sizes)})")
    if image_size < 16:
        raise ClipprobeError(f"data.clevr.image_size: must be >= 16 pixels (got {image_size})")
    official_train = _load(Path(downloads), "train", download)
    official_val = _load(Path(downloads), "val", download=False)  # the first load fetched everything
    if sizes["train"] + sizes["val"] > len(official_train) or sizes["test"] > len(official_val):
        raise ClipprobeError(
            f"data.clevr: asks for {sizes['train']} + {sizes['val']} train/val and {sizes['test']} test images; "
            f"CLEVR has {len(official_train)} train and {len(official_val)} val images"
        )
    rng = np.random.default_rng(seed)
    pool = rng.permutation(len(official_train))
    draws = {
        "train": (official_train, pool[: sizes["train"]]),
        "val": (official_train, pool[sizes["train"] : sizes["train"] + sizes["val"]]),
        "test": (official_val, rng.permutation(len(official_val))[: sizes["test"]]),
    }
    splits = {name: _convert(dataset, np.sort(idx), image_size) for name, (dataset, idx) in draws.items()}
    meta = DatasetMeta(
        name="clevr",
        class_names=[str(c) for c in COUNTS],
        image_size=tuple(splits["test"].images.shape[1:3]),
        splits={},  # filled in by save_dataset
        source=f"torchvision.datasets.CLEVRClassification ({CLEVRClassification._URL})",
        extra={"seed": seed, "train_val_from": "CLEVR train", "test_from": "CLEVR val"},
    )
    _logger.info("CLEVR counts: train %d, val %d, test %d images", *(len(s) for s in splits.values()))
    return save_dataset(root, meta, splits)


def _convert(dataset: CLEVRClassification, indices: np.ndarray, image_size: int) -> Split:
    images, counts = [], []
    for i in indices:
        image, count = dataset[int(i)]
        if not COUNTS[0] <= count <= COUNTS[-1]:
            raise ClipprobeError(
                f"data: a CLEVR scene holds {count} objects (3-10 expected); is the archive intact?"
            )
        images.append(np.asarray(_resize_shortest(image.convert("RGB"), image_size)))
        counts.append(count)
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise ClipprobeError(
            f"data: CLEVR images of different sizes {sorted(shapes)}; is the archive intact?"
        )
    counts = np.array(counts, dtype=np.int64)
    return Split(images=np.stack(images), labels=counts - COUNTS[0], counts=counts)


def _resize_shortest(image: Image.Image, size: int) -> Image.Image:
    """torchvision Resize(size) on PIL: shortest side to `size`, long side int(size * long / short)."""
    width, height = image.size
    scale = size / min(width, height)
    new = (size, int(height * scale)) if width <= height else (int(width * scale), size)
    return image.resize(new, Image.Resampling.BICUBIC)


def _load(downloads: Path, split: str, download: bool) -> CLEVRClassification:
    archive = downloads / "clevr" / ARCHIVE
    return fetch(
        lambda get: CLEVRClassification(root=downloads, split=split, download=get),
        archive_intact=check_integrity(archive, CLEVRClassification._MD5),
        url=CLEVRClassification._URL,
        download=download,
        failure=lambda err, tried: _fetch_failure(archive, err, tried),
    )


def _fetch_failure(archive: Path, err: BaseException | None, download: bool) -> str:
    folder, md5, url = archive.parent, CLEVRClassification._MD5, CLEVRClassification._URL
    why = f"the download failed ({short_error(err)})" if download and err else "downloading is off"
    if not archive.is_file():
        return f"data: CLEVR not found in {folder}/ and {why}; put {ARCHIVE} (md5 {md5}) from {url} into {folder}/"
    actual = calculate_md5(archive)
    if actual != md5:
        return f"data: {archive} is corrupt (md5 {actual}, expected {md5}) and {why}; replace it with {ARCHIVE} from {url}"
    detail = f" ({short_error(err)})" if err else ""
    return (
        f"data: could not read CLEVR from {folder}/{detail}; delete {folder / Path(ARCHIVE).stem}/ and rerun"
    )
