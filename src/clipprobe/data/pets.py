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
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image
from torchvision.datasets import OxfordIIITPet

from clipprobe.data.fetch import archive_intact, archive_md5, download_file, fetch, short_error
from clipprobe.data.store import IGNORE, DatasetMeta, Split, save_dataset
from clipprobe.errors import ClipprobeError
from clipprobe.paths import downloads_dir

_logger = logging.getLogger(__name__)

BORDER_VALUES = {"foreground": 1, "background": 0, "ignore": IGNORE}  # where the trimap's border class goes
MASK_CLASS_NAMES = ["background", "pet"]
FOLDER = "oxford-iiit-pet"  # torchvision's folder under the download root
# torchvision 0.29 still downloads from the old folder; others report the files moved to thor (keras-io#1200)
OLD_HOST = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/"
MOVED_TO = "https://thor.robots.ox.ac.uk/~vgg/data/pets/"
_PET, _BACKGROUND, _BORDER = 1, 2, 3  # trimap values (the dataset's README)


def prepare_pets(downloads: Path, root: Path, image_size: int, border: str, download: bool = True) -> Path:
    """Fetch Oxford-IIIT Pet into ``downloads/oxford-iiit-pet`` and write ``root/pets`` (train, val, test).

    ``download=False`` never touches the network: it uses the extracted folders or the two archives already
    in ``downloads/oxford-iiit-pet``. The archives are hashed only when the extracted folders are missing or
    incomplete; a download tries the files' new host first, then torchvision's. Returns the dataset folder.
    """
    if border not in BORDER_VALUES:
        raise ClipprobeError(f"data.pets.border: one of {', '.join(BORDER_VALUES)} (got {border!r})")
    if image_size < 32:
        raise ClipprobeError(f"data.pets.image_size: must be >= 32 pixels (got {image_size})")
    trainval = _load(downloads_dir(downloads), "trainval", download)
    test = _load(downloads_dir(downloads), "test", download=False)  # the first load fetched everything
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


def _candidates(url: str) -> list[str]:
    """Where one archive can be downloaded: its new host first when `url` is on the old one, then `url`."""
    return [MOVED_TO + url.removeprefix(OLD_HOST), url] if url.startswith(OLD_HOST) else [url]


def _where() -> str:
    """The folder a person downloads the archives from, as a message names it."""
    folder = _url_folder()
    return f"{MOVED_TO} (moved there from {folder})" if folder == OLD_HOST else folder


def _open(downloads: Path, split: str, get: bool) -> OxfordIIITPet:
    dataset = OxfordIIITPet(downloads, split=split, target_types=["category", "segmentation"], download=get)
    problem = _extraction_problem(downloads / FOLDER)
    if problem:  # torchvision checks only that the two folders exist
        raise RuntimeError(problem)
    return dataset


def _extraction_problem(folder: Path) -> str | None:
    """What a partial extraction under `folder` lacks (None when every image and trimap that trainval.txt and
    test.txt name is there): an interrupted extraction passes torchvision's check, which only sees folders."""
    lists = [folder / "annotations" / f"{split}.txt" for split in ("trainval", "test")]
    absent = [str(path.relative_to(folder)) for path in lists if not path.is_file()]
    if absent:
        return f"{' and '.join(absent)} missing"
    ids = [line.split()[0] for path in lists for line in path.read_text().splitlines() if line.strip()]
    present = {sub: _listing(folder / sub) for sub in ("images", "annotations/trimaps")}
    wanted = [("images", f"{i}.jpg") for i in ids] + [("annotations/trimaps", f"{i}.png") for i in ids]
    missing = [f"{sub}/{name}" for sub, name in wanted if name not in present[sub]]
    if not missing:
        return None
    more = ", ..." if len(missing) > 3 else ""
    return (
        f"{len(missing)} of the {len(wanted)} images and trimaps the split lists name are missing: "
        f"{', '.join(missing[:3])}{more}"
    )


def _listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


def _extracted(folder: Path) -> bool:
    return (folder / "images").exists() or (folder / "annotations").exists()


def _load(downloads: Path, split: str, download: bool) -> OxfordIIITPet:
    base = downloads / FOLDER
    return fetch(
        lambda get: _open(downloads, split, get),
        archive_intact=lambda: all(
            archive_intact(base / Path(url).name, md5) for url, md5 in OxfordIIITPet._RESOURCES
        ),
        urls=_candidates(OxfordIIITPet._RESOURCES[0][0]),
        download=download,
        failure=lambda err, tried: _fetch_failure(base, err, tried),
        get=lambda answering: _download_archives(base, answering),
    )


def _download_archives(folder: Path, answering: list[str]) -> None:
    """Each archive that is not intact, from the first host that answered the probe and serves it whole."""
    hosts = {urlparse(url).hostname for url in answering}
    for url, md5 in OxfordIIITPet._RESOURCES:
        archive = folder / Path(url).name
        if archive_intact(archive, md5):
            continue
        errors: list[OSError] = []
        for candidate in (c for c in _candidates(url) if urlparse(c).hostname in hosts):
            try:
                download_file(candidate, archive, md5)
                break
            except OSError as err:
                errors.append(err)
        else:
            raise errors[-1] if errors else OSError(f"no host of {url} answers")


def _fetch_failure(folder: Path, err: BaseException | None, download: bool) -> str:
    why = f"the download failed ({short_error(err)})" if download and err else "downloading is off"
    archives = [(Path(url).name, md5) for url, md5 in OxfordIIITPet._RESOURCES]
    missing = [f"{name} (md5 {md5})" for name, md5 in archives if not (folder / name).is_file()]
    problem = _extraction_problem(folder) if _extracted(folder) else None
    found = f"incomplete in {folder}/ ({problem})" if problem else f"not found in {folder}/"
    redo = f"; then delete {folder}/images/ and {folder}/annotations/ and rerun" if problem else ""
    if missing:
        return (
            f"data: Oxford-IIIT Pet {found} and {why}; put {' and '.join(missing)} "
            f"from {_where()} into {folder}/{redo}"
        )
    for name, md5 in archives:
        actual = archive_md5(folder / name, md5)
        if actual != md5:
            return (
                f"data: {folder / name} is corrupt (md5 {actual}, expected {md5}) and {why}; "
                f"replace it with {name} from {_where()}{redo}"
            )
    detail = f" ({short_error(err)})" if err else ""
    return f"data: could not read Oxford-IIIT Pet from {folder}/{detail}; delete {folder}/images/ and {folder}/annotations/ and rerun"
