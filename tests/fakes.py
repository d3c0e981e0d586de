"""Fake datasets in the exact on-disk format of the real ones, so the real loaders can be tested offline.

Fake images carry their own id: pixel (0, 0) holds the id in base 256 (R = low byte), and every other pixel
is ``(8 y + 3 x + 85 c + id) % 256``, so a wrong reshape or transpose, a lost image or a mixed-up label shows.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_FINE_NAMES = """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard
lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark
shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone
television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
"""
_COARSE_NAMES = """
aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices
household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes
large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees
vehicles_1 vehicles_2
"""
CIFAR100_CLASSES = _FINE_NAMES.split()  # the real fine_label_names, in order
CIFAR100_COARSE = _COARSE_NAMES.split()
CIFAR_TEST_ID_OFFSET = 100_000  # test image ids start here, so no test image can pass for a train image


def fake_images(ids: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) uint8 images, each identifiable by its id (see the module docstring)."""
    ids = np.asarray(ids, dtype=np.int64)
    y, x, c = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    images = (8 * y + 3 * x + 85 * c + ids[:, None, None, None]) % 256  # (N, 32, 32, 3)
    images[:, 0, 0, :] = (ids[:, None] >> np.array([0, 8, 16])) & 255
    return images.astype(np.uint8)


def fake_ids(images: np.ndarray) -> np.ndarray:
    """The ids fake_images() wrote into pixel (0, 0)."""
    corner = np.asarray(images[:, 0, 0, :], dtype=np.int64)
    return corner[:, 0] | corner[:, 1] << 8 | corner[:, 2] << 16


def _pickled(payload: dict) -> bytes:
    return pickle.dumps(payload, protocol=2)  # the real files are Python 2 pickles


def _cifar_batch(ids: np.ndarray, n_classes: int, label_key: str, extra: dict) -> dict:
    images = fake_images(ids)
    return {
        "batch_label": "fake batch",
        # (N, 3072): the 1024 R values, then G, then B, each plane row-major, as in the real files
        "data": images.transpose(0, 3, 1, 2).reshape(len(ids), 3072),
        label_key: [int(i) % n_classes for i in ids],
        "filenames": [f"fake_{int(i)}.png" for i in ids],
        **extra,
    }


def _cifar10_files(per_class: int) -> tuple[dict[str, dict], dict]:
    per_file = 10 * per_class
    files = {
        f"data_batch_{k + 1}": _cifar_batch(np.arange(k * per_file, (k + 1) * per_file), 10, "labels", {})
        for k in range(5)
    }
    files["test_batch"] = _cifar_batch(CIFAR_TEST_ID_OFFSET + np.arange(per_file), 10, "labels", {})
    meta = {"num_cases_per_batch": per_file, "label_names": CIFAR10_CLASSES, "num_vis": 3072}
    return files, meta


def _cifar100_files(per_class: int) -> tuple[dict[str, dict], dict]:
    def batch(ids: np.ndarray) -> dict:
        return _cifar_batch(ids, 100, "fine_labels", {"coarse_labels": [int(i) % 20 for i in ids]})

    # the real train file holds 5x the test file (500 vs 100 per class); keep that ratio
    files = {
        "train": batch(np.arange(500 * per_class)),
        "test": batch(CIFAR_TEST_ID_OFFSET + np.arange(100 * per_class)),
    }
    meta = {"fine_label_names": CIFAR100_CLASSES, "coarse_label_names": CIFAR100_COARSE}
    return files, meta


# name -> (folder inside the archive, archive name, meta file, meta key, builder of the batch files)
_CIFAR_LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        "batches.meta",
        "label_names",
        _cifar10_files,
    ),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", "meta", "fine_label_names", _cifar100_files),
}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_fake_cifar(name: str, downloads: Path, per_class: int = 4) -> dict:
    """Write ``downloads/<archive>.tar.gz`` laid out like the real CIFAR-10/100 python archive.

    Each test file holds ``per_class`` images per class, each train file as many (CIFAR-10: 5 batches;
    CIFAR-100: one file with 5x). Returns the torchvision class attributes that carry checksums (``tgz_md5``,
    ``train_list``, ``test_list``, ``meta``) with the fake files' md5s, for a test to patch onto the class.
    """
    folder, archive_name, meta_name, meta_key, build = _CIFAR_LAYOUT[name]
    batches, meta = build(per_class)
    members = {member: _pickled(payload) for member, payload in batches.items()}
    members[meta_name] = _pickled(meta)

    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / archive_name
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(_tar_dir(folder))
        for member, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    test_names = [n for n in batches if "test" in n]
    return {
        "tgz_md5": _md5(archive.read_bytes()),
        "train_list": [[n, _md5(members[n])] for n in batches if n not in test_names],
        "test_list": [[n, _md5(members[n])] for n in test_names],
        "meta": {"filename": meta_name, "key": meta_key, "md5": _md5(members[meta_name])},
    }


def _tar_dir(path: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


# ---------------------------------------------------------------------------------------------- Oxford-IIIT Pet

PETS_BREEDS = ("Abyssinian", "american_bulldog")  # (cat, dog): real breed ids, CLASS-ID 1 and 2
PETS_SIZE = (48, 40)  # (width, height) of every fake image and trimap, deliberately not square


def pets_pixel(uid: int, label: int, test: bool) -> tuple[int, int, int]:
    """The flat colour of fake Pets image `uid`: R = uid, G = label, B = 200 for test (JPEG keeps it to ±2)."""
    return uid, 60 + 100 * label, 200 if test else 20


def pets_trimap() -> np.ndarray:
    """(H, W) uint8 trimap: left third 1 (pet), middle third 3 (border), right third 2 (background)."""
    width, height = PETS_SIZE
    trimap = np.full((height, width), 2, dtype=np.uint8)
    trimap[:, : width // 3] = 1
    trimap[:, width // 3 : 2 * width // 3] = 3
    return trimap


def write_fake_pets(downloads: Path, n_trainval: int, n_test: int) -> tuple[tuple[str, str], ...]:
    """Write ``downloads/oxford-iiit-pet/{images,annotations}.tar.gz`` laid out like the real archives.

    Image ids alternate the two breeds; trainval ids are 0..n_trainval-1 and test ids follow. Returns
    torchvision's ``OxfordIIITPet._RESOURCES`` for the fakes: a closed local port as URL and the fakes' md5s.
    """
    folder = downloads / "oxford-iiit-pet"
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = {}, {}
    lists = {"trainval": [], "test": []}
    trimap = io.BytesIO()
    Image.fromarray(pets_trimap(), mode="L").save(trimap, format="PNG")
    for uid in range(n_trainval + n_test):
        split = "trainval" if uid < n_trainval else "test"
        label = uid % len(PETS_BREEDS)
        image_id = f"{PETS_BREEDS[label]}_{uid + 1}"
        jpeg = io.BytesIO()
        Image.new("RGB", PETS_SIZE, pets_pixel(uid, label, split == "test")).save(
            jpeg, format="JPEG", quality=95
        )
        images[f"images/{image_id}.jpg"] = jpeg.getvalue()
        annotations[f"annotations/trimaps/{image_id}.png"] = trimap.getvalue()
        lists[split].append(f"{image_id} {label + 1} {label + 1} 1\n")  # CLASS-ID SPECIES BREED-ID
    for split, lines in lists.items():
        annotations[f"annotations/{split}.txt"] = "".join(lines).encode()
    resources = []
    for name, members in (("images.tar.gz", images), ("annotations.tar.gz", annotations)):
        with tarfile.open(folder / name, "w:gz") as tar:
            for directory in sorted({str(Path(member).parent) for member in members}):
                tar.addfile(_tar_dir(directory))
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        resources.append((f"http://127.0.0.1:9/pets/{name}", _md5((folder / name).read_bytes())))
    return tuple(resources)


# ---------------------------------------------------------------------------------------------- CLEVR


def write_fake_clevr(downloads: Path, n: dict[str, int]) -> str:
    """downloads/clevr/CLEVR_v1.0.zip laid out like the real archive (RGBA renders, 3:2, scene JSONs).

    Image i of split s is flat: R = i, G = 20 * count, B = 100 * (s == "val"), so any mix-up shows.
    Returns the archive's md5.
    """
    archive = downloads / "clevr" / "CLEVR_v1.0.zip"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for split, size in n.items():
            scenes = []
            for i in range(size):
                name = f"CLEVR_{split}_{i:06d}.png"
                count = 3 + i % 2  # two counts: any seeded draw of more than half the images holds both
                pixel = (i, 20 * count, 100 * (split == "val"), 255)
                buffer = io.BytesIO()
                Image.new("RGBA", (48, 32), pixel).save(buffer, format="PNG")
                zf.writestr(f"CLEVR_v1.0/images/{split}/{name}", buffer.getvalue())
                objects = [{"shape": "cube", "size": "large", "pixel_coords": [10, 10, 5.0]}] * count
                scenes.append({"image_index": i, "image_filename": name, "split": split, "objects": objects})
            if split != "test":  # the real test split has no scenes
                zf.writestr(f"CLEVR_v1.0/scenes/CLEVR_{split}_scenes.json", json.dumps({"scenes": scenes}))
    return hashlib.md5(archive.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- weights


def put_in_hf_cache(cache_dir: Path, repo: str, state_dict: dict) -> None:
    """The layout hf_hub_download reads offline: refs/main -> snapshots/<commit>/<file>."""
    commit = "0" * 40
    folder = cache_dir / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, folder / "snapshots" / commit / "open_clip_pytorch_model.bin")
