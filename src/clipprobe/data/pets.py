"""Oxford-IIIT Pet trimaps through torchvision's OxfordIIITPet downloader, converted into the uniform store.

The paper preset's segmentation data. Splits follow segmentation_models.pytorch's protocol: train = the
official trainval rows with i % 10 != 0, val = the rows with i % 10 == 0, test = the official test split.
Images are resized to ``image_size`` x ``image_size`` (bicubic), masks with nearest neighbour only. The trimap
(1 pet, 2 background, 3 border) becomes 0 = background, 1 = pet, and the border goes where ``border`` says:
``foreground`` -> 1 (the usual binary protocol), ``background`` -> 0, ``ignore`` -> 255 (scored nowhere).
Labels are the 37 breeds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import OxfordIIITPet
from torchvision.datasets.utils import calculate_md5, check_integrity

from clipprobe.data.fetch import fetch, short_error
from clipprobe.data.store import IGNORE, DatasetMeta, Split, save_dataset
from clipprobe.errors import ClipprobeError

_logger = logging.getLogger(__name__)

BORDER_VALUES = {"foreground": 1, "background": 0, "ignore": IGNORE}  # where the trimap's border class goes
MASK_CLASS_NAMES = ["background", "pet"]
FOLDER = "oxford-iiit-pet"  # torchvision's folder under the download root
_PET, _BACKGROUND, _BORDER = 1, 2, 3  # trimap values (the dataset's README)


def prepare_pets(downloads: Path, root: Path, image_size: int, border: str, download: bool = True) -> Path:
    """Fetch Oxford-IIIT Pet into ``downloads/oxford-iiit-pet`` and write ``root/pets`` (train, val, test).

    ``download=False`` never touches the network: it uses the extracted folders or the two archives already
    in ``downloads/oxford-iiit-pet``. Returns the dataset folder.
    """
    if border not in BORDER_VALUES:
        raise ClipprobeError(f"data.pets.border: one of {', '.join(BORDER_VALUES)} (got {border!r})")
    if image_size < 32:
        raise ClipprobeError(f"data.pets.image_size: must be >= 32 pixels (got {image_size})")
    trainval = _load(Path(downloads), "trainval", download)
    test = _load(Path(downloads), "test", download=False)  # the first load fetched everything
    rows = np.arange(len(trainval))
    draws = {"train": (trainval, rows[rows % 10 != 0]), "val": (trainval, rows[rows % 10 == 0])}
    draws["test"] = (test, np.arange(len(test)))
    splits = {
        name: _convert(dataset, idx, image_size, BORDER_VALUES[border])
        for name, (dataset, idx) in draws.items()
    }
    meta = DatasetMeta(
        name="pets",
        class_names=list(trainval.classes),
        image_size=(image_size, image_size),
        splits={},  # filled in by save_dataset
        source=f"torchvision.datasets.OxfordIIITPet ({_url_folder()})",
        mask_class_names=list(MASK_CLASS_NAMES),
        extra={"border": border, "split": "train: trainval i % 10 != 0; val: i % 10 == 0; test: official"},
    )
    _logger.info("Oxford-IIIT Pet: train %d, val %d, test %d images", *(len(s) for s in splits.values()))
    return save_dataset(root, meta, splits)


def remap_trimap(trimap: np.ndarray, border_value: int) -> np.ndarray:
    """(H, W) trimap 1 pet / 2 background / 3 border -> uint8 mask 0 background / 1 pet / border_value."""
    values = set(np.unique(trimap).tolist())
    if not values <= {_PET, _BACKGROUND, _BORDER}:
        raise ClipprobeError(
            f"data: a Pets trimap holds values {sorted(values)} (1, 2, 3 expected); is the archive intact?"
        )
    lut = np.zeros(256, dtype=np.uint8)
    lut[_PET], lut[_BORDER] = 1, border_value
    return lut[trimap]


def _convert(dataset: OxfordIIITPet, indices: np.ndarray, image_size: int, border_value: int) -> Split:
    size = (image_size, image_size)
    images, masks, labels = [], [], []
    for i in indices:
        try:
            image, (label, trimap) = dataset[int(i)]
        except OSError as err:  # a missing or undecodable file of the extracted folders
            raise ClipprobeError(
                f"data: could not read Oxford-IIIT Pet image {i} ({short_error(err)}); "
                f"delete {dataset.root}/{FOLDER}/ (keep its .tar.gz archives) and rerun"
            ) from None
        images.append(np.asarray(image.resize(size, Image.Resampling.BICUBIC)))
        masks.append(remap_trimap(np.asarray(trimap.resize(size, Image.Resampling.NEAREST)), border_value))
        labels.append(label)
    return Split(images=np.stack(images), labels=np.array(labels, dtype=np.int64), masks=np.stack(masks))


def _url_folder() -> str:
    return OxfordIIITPet._RESOURCES[0][0].rsplit("/", 1)[0] + "/"


def _load(downloads: Path, split: str, download: bool) -> OxfordIIITPet:
    base = downloads / FOLDER
    return fetch(
        lambda get: OxfordIIITPet(
            downloads, split=split, target_types=["category", "segmentation"], download=get
        ),
        archive_intact=all(
            check_integrity(base / Path(url).name, md5) for url, md5 in OxfordIIITPet._RESOURCES
        ),
        url=OxfordIIITPet._RESOURCES[0][0],
        download=download,
        failure=lambda err, tried: _fetch_failure(base, err, tried),
    )


def _fetch_failure(folder: Path, err: BaseException | None, download: bool) -> str:
    why = f"the download failed ({short_error(err)})" if download and err else "downloading is off"
    archives = [(Path(url).name, md5) for url, md5 in OxfordIIITPet._RESOURCES]
    missing = [f"{name} (md5 {md5})" for name, md5 in archives if not (folder / name).is_file()]
    if missing:
        return (
            f"data: Oxford-IIIT Pet not found in {folder}/ and {why}; put {' and '.join(missing)} "
            f"from {_url_folder()} into {folder}/"
        )
    for name, md5 in archives:
        actual = calculate_md5(folder / name)
        if actual != md5:
            return (
                f"data: {folder / name} is corrupt (md5 {actual}, expected {md5}) and {why}; "
                f"replace it with {name} from {_url_folder()}"
            )
    detail = f" ({short_error(err)})" if err else ""
    return f"data: could not read Oxford-IIIT Pet from {folder}/{detail}; delete {folder}/images/ and {folder}/annotations/ and rerun"
