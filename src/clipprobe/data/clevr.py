"""CLEVR object counts (3-10), read straight from CLEVR_v1.0.zip into the uniform store, nothing extracted.

The CLIP paper's counting task (CLEVRCounts). CLEVR's test split has no scene annotations, so train and val
are disjoint seeded draws from CLEVR's train split and test is a seeded draw from CLEVR's val split. Each
480x320 render is converted to RGB and resized (bicubic, aspect kept) so its shortest side is ``image_size``:
the first step of open_clip's eval transform, so the stored images are what the model would be shown.

The archive is 18 GB of about 100k renders, and the draws need two scenes JSONs and a few thousand PNGs. So
those are read from the zip itself (random access through its central directory; every member read is
checked against its CRC-32), never the rest: no 37 GB extraction. The zip is hashed once, when it arrives or
is first seen, and stamped (data/fetch.py); an interrupted download resumes. An extraction already on disk
(``downloads/clevr/CLEVR_v1.0/``, as torchvision leaves it) is read instead when it is complete: both scenes
JSONs parse and every image they list is there; then the archive is not even looked at. A partial extraction
is named in one line: a warning when the zip is read instead, else the error. Scenes are indexed in
file-name order, as torchvision's CLEVRClassification indexes the image files, so a seed draws the same
images from either source as it did through torchvision.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import CLEVRClassification

from clipprobe.data.fetch import archive_intact, archive_md5, download_file, fetch, short_error
from clipprobe.data.store import DatasetMeta, Split, save_dataset
from clipprobe.errors import ClipprobeError
from clipprobe.paths import downloads_dir

_logger = logging.getLogger(__name__)

COUNTS = tuple(range(3, 11))  # every CLEVR scene holds 3 to 10 objects; label = count - 3
ARCHIVE = "CLEVR_v1.0.zip"  # torchvision's CLEVRClassification._URL's file (its _MD5: the checksum)
TOP = "CLEVR_v1.0"  # the archive's top folder, and the extraction's under downloads/clevr/
SCENE_SPLITS = ("train", "val")  # the splits with scenes (the draws never touch CLEVR's test split)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, zipfile.BadZipFile, zlib.error)


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
    network: it uses a complete extraction or the archive already in ``downloads/clevr``. Returns the folder.
    """
    if sorted(sizes) != ["test", "train", "val"] or min(sizes.values()) < 1:
        raise ClipprobeError(f"data.clevr: n_train, n_val and n_test must each be >= 1 (got {dict(sizes)})")
    if image_size < 16:
        raise ClipprobeError(f"data.clevr.image_size: must be >= 16 pixels (got {image_size})")
    clevr = _load(downloads_dir(downloads) / "clevr", download)
    try:
        splits = _draw(clevr, sizes, image_size, seed)
    finally:
        clevr.source.close()
    meta = DatasetMeta(
        name="clevr",
        class_names=[str(c) for c in COUNTS],
        image_size=tuple(splits["test"].images.shape[1:3]),
        splits={},  # filled in by save_dataset
        source=f"{ARCHIVE} ({CLEVRClassification._URL}), labelled as torchvision.datasets.CLEVRClassification",
        extra={"seed": seed, "train_val_from": "CLEVR train", "test_from": "CLEVR val"},
    )
    _logger.info("CLEVR counts: train %d, val %d, test %d images", *(len(s) for s in splits.values()))
    return save_dataset(root, meta, splits)


def _draw(clevr: _Clevr, sizes: Mapping[str, int], image_size: int, seed: int) -> dict[str, Split]:
    n_train, n_val = len(clevr.scenes["train"]), len(clevr.scenes["val"])
    if sizes["train"] + sizes["val"] > n_train or sizes["test"] > n_val:
        raise ClipprobeError(
            f"data.clevr: asks for {sizes['train']} + {sizes['val']} train/val and {sizes['test']} test images; "
            f"CLEVR has {n_train} train and {n_val} val images"
        )
    rng = np.random.default_rng(seed)
    pool = rng.permutation(n_train)
    draws = {
        "train": ("train", pool[: sizes["train"]]),
        "val": ("train", pool[sizes["train"] : sizes["train"] + sizes["val"]]),
        "test": ("val", rng.permutation(n_val)[: sizes["test"]]),
    }
    return {name: clevr.convert(split, np.sort(idx), image_size) for name, (split, idx) in draws.items()}


class Incomplete(RuntimeError):
    """A CLEVR source lacks a file the draws may need; the message names it (one line)."""


class _Extracted:
    """The archive's files extracted under `folder` (downloads/clevr/CLEVR_v1.0)."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found")
        self.folder = folder

    def read(self, member: str) -> bytes:
        return (self.folder / member).read_bytes()

    def names(self, split: str) -> set[str]:
        try:
            return set(os.listdir(self.folder / "images" / split))
        except OSError:
            return set()

    def where(self, member: str) -> str:
        return str(self.folder / member)

    def remedy(self) -> str:
        return f"delete {self.folder}/ and rerun (CLEVR is then read from {ARCHIVE}, without extracting)"

    def close(self) -> None:
        pass


class _Archive:
    """CLEVR_v1.0.zip itself: a member is read on demand, nothing else."""

    def __init__(self, archive: Path) -> None:
        try:
            self.zip = zipfile.ZipFile(archive)
        except zipfile.BadZipFile as err:  # truncated: no central directory at its end
            raise OSError(f"{archive} is not a whole zip file ({err})") from None
        self.archive = archive

    def read(self, member: str) -> bytes:
        try:
            return self.zip.read(f"{TOP}/{member}")
        except (zipfile.BadZipFile, zlib.error) as err:  # a member failing its CRC-32 or its inflation
            raise OSError(f"{TOP}/{member}: {err}") from None

    def names(self, split: str) -> set[str]:
        prefix = f"{TOP}/images/{split}/"
        return {name[len(prefix) :] for name in self.zip.namelist() if name.startswith(prefix)} - {""}

    def where(self, member: str) -> str:
        return f"{self.archive} ({TOP}/{member})"

    def remedy(self) -> str:
        return f"delete {self.archive} and rerun (it is downloaded again)"

    def close(self) -> None:
        self.zip.close()


class _Clevr:
    """CLEVR's scenes from one source: per split, (image file, objects) in file-name order. Raises
    Incomplete naming what the source lacks: a scenes JSON, or images the scenes list."""

    def __init__(self, source: _Extracted | _Archive) -> None:
        self.source = source
        try:
            self.scenes = {split: self._scenes(split) for split in SCENE_SPLITS}
        except BaseException:
            source.close()
            raise

    def _scenes(self, split: str) -> list[tuple[str, int]]:
        member = f"scenes/CLEVR_{split}_scenes.json"
        try:
            raw = self.source.read(member)
        except (KeyError, FileNotFoundError):
            raise Incomplete(f"{member} missing") from None
        try:
            rows = sorted((s["image_filename"], len(s["objects"])) for s in json.loads(raw)["scenes"])
        except (ValueError, KeyError, TypeError) as err:
            raise Incomplete(f"{member} does not parse ({short_error(err)})") from None
        present = self.source.names(split)
        missing = [name for name, _ in rows if name not in present]
        if missing:
            more = ", ..." if len(missing) > 3 else ""
            raise Incomplete(
                f"images/{split}/ lacks {len(missing)} of the {len(rows)} images its scenes list: "
                f"{', '.join(missing[:3])}{more}"
            )
        return rows

    def convert(self, split: str, indices: np.ndarray, image_size: int) -> Split:
        """The scenes `indices` of `split`, their images read and resized; nothing else is read."""
        images, counts = [], []
        for i in indices:
            name, count = self.scenes[split][int(i)]
            if not COUNTS[0] <= count <= COUNTS[-1]:
                raise ClipprobeError(
                    f"data: a CLEVR scene holds {count} objects (3-10 expected); is the archive intact?"
                )
            images.append(np.asarray(_resize_shortest(self._image(f"images/{split}/{name}"), image_size)))
            counts.append(count)
        shapes = {image.shape for image in images}
        if len(shapes) != 1:
            raise ClipprobeError(
                f"data: CLEVR images of different sizes {sorted(shapes)}; is the archive intact?"
            )
        counts = np.array(counts, dtype=np.int64)
        return Split(images=np.stack(images), labels=counts - COUNTS[0], counts=counts)

    def _image(self, member: str) -> Image.Image:
        try:
            with Image.open(io.BytesIO(self.source.read(member))) as image:
                return image.convert("RGB")  # torchvision's loader: RGBA renders lose their alpha
        except _DECODE_ERRORS as err:
            raise ClipprobeError(
                f"data: cannot read CLEVR image {self.source.where(member)} ({short_error(err)}); "
                f"{self.source.remedy()}"
            ) from None


def _resize_shortest(image: Image.Image, size: int) -> Image.Image:
    """torchvision Resize(size) on PIL: shortest side to `size`, long side int(size * long / short)."""
    width, height = image.size
    scale = size / min(width, height)
    new = (size, int(height * scale)) if width <= height else (int(width * scale), size)
    return image.resize(new, Image.Resampling.BICUBIC)


def _load(folder: Path, download: bool) -> _Clevr:
    """A complete extraction in `folder`/CLEVR_v1.0, else the verified zip, downloaded first when needed."""
    archive, partial = folder / ARCHIVE, []  # partial: what an extraction on disk lacks

    def open_clevr(from_archive: bool) -> _Clevr:
        if from_archive:
            clevr = _Clevr(_Archive(archive))
            if partial:
                _logger.warning(
                    "%s/ is incomplete (%s); reading %s instead", folder / TOP, partial[0], ARCHIVE
                )
            return clevr
        try:
            return _Clevr(_Extracted(folder / TOP))
        except Incomplete as err:
            partial.append(str(err))
            raise

    return fetch(
        open_clevr,
        archive_intact=lambda: archive_intact(archive, CLEVRClassification._MD5),
        urls=[CLEVRClassification._URL],
        download=download,
        failure=lambda err, tried: _fetch_failure(folder, err, tried, partial),
        get=lambda answering: download_file(answering[0], archive, CLEVRClassification._MD5),
    )


def _fetch_failure(folder: Path, err: BaseException | None, download: bool, partial: list[str]) -> str:
    archive, md5, url = folder / ARCHIVE, CLEVRClassification._MD5, CLEVRClassification._URL
    why = f"the download failed ({short_error(err)})" if download and err else "downloading is off"
    found = (
        f"CLEVR in {folder / TOP}/ is incomplete ({partial[0]})"
        if partial
        else f"CLEVR not found in {folder}/"
    )
    part = archive.with_name(archive.name + ".part")
    resume = f" ({part.stat().st_size} bytes are in {part}: rerun to resume)" if part.is_file() else ""
    if not archive.is_file():
        return (
            f"data: {found} and {why}; put {ARCHIVE} (md5 {md5}, 18 GB, read without extracting) "
            f"from {url} into {folder}/{resume}"
        )
    actual = archive_md5(archive, md5)
    if actual != md5:
        return f"data: {archive} is corrupt (md5 {actual}, expected {md5}) and {why}; replace it with {ARCHIVE} from {url}"
    detail = f" ({short_error(err)})" if err else ""
    return f"data: could not read CLEVR from {archive}{detail}; delete it and rerun"
