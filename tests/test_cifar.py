"""CIFAR-10/100 through torchvision's real loader and checksums, on fake archives in the real on-disk format.

The real md5s cannot match fake files, so each test monkeypatches torchvision's expected checksums on the
class (``tgz_md5``, ``train_list``, ``test_list``, ``meta``) to the fake files' md5s: the integrity checks
still run, against the fakes. The download URLs point at a closed local port, so the real download code runs
and fails fast whether or not the machine is online.
"""

from pathlib import Path

import numpy as np
import pytest
from fakes import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR_TEST_ID_OFFSET,
    fake_ids,
    fake_images,
    write_fake_cifar,
)
from helpers import one_line
from torchvision.datasets.utils import calculate_md5

from clipprobe.contracts import load_meta, load_split
from clipprobe.data import fetch
from clipprobe.data.cifar import CIFAR_DATASETS, holdout_val, prepare_cifar
from clipprobe.errors import ClipprobeError

PER_CLASS = 4  # fake images per class in each file; CIFAR-10 has 5 train files, CIFAR-100 one 5x file
REAL_MD5 = {"cifar10": "c58f30108f718f92721af3b95e74349a", "cifar100": "eb9058c3a382ffc7106e4002c42a8d85"}


@pytest.fixture(autouse=True)
def closed_network(monkeypatch):
    for cls in CIFAR_DATASETS.values():
        monkeypatch.setattr(cls, "url", f"http://127.0.0.1:9/{cls.filename}")


def fake_cifar(monkeypatch, name: str, downloads: Path) -> None:
    checksums = write_fake_cifar(name, downloads, PER_CLASS)
    for attr, value in checksums.items():  # torchvision now verifies the fakes against their own md5s
        monkeypatch.setattr(CIFAR_DATASETS[name], attr, value)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_prepare_cifar_round_trip(tmp_path, monkeypatch, name):
    fake_cifar(monkeypatch, name, tmp_path / "downloads")
    prepare_cifar(name, tmp_path / "downloads", tmp_path / "data", val_per_class=3, seed=0)

    n_classes, fake_names = {"cifar10": (10, CIFAR10_CLASSES), "cifar100": (100, CIFAR100_CLASSES)}[name]
    meta = load_meta(tmp_path / "data", name)
    assert meta.class_names == [c.replace("_", " ") for c in fake_names]
    if name == "cifar100":
        assert {"aquarium fish", "sweet pepper", "maple tree"} <= set(meta.class_names)
    assert meta.image_size == (32, 32)
    n_train = 5 * PER_CLASS * n_classes
    assert meta.splits == {
        "train": n_train - 3 * n_classes,
        "val": 3 * n_classes,
        "test": PER_CLASS * n_classes,
    }

    ids = {}
    for split in ("train", "val", "test"):
        data = load_split(tmp_path / "data", name, split)
        assert data.images.dtype == np.uint8 and data.images.shape[1:] == (32, 32, 3)
        assert data.labels.dtype == np.int64
        ids[split] = fake_ids(data.images)
        np.testing.assert_array_equal(data.images, fake_images(ids[split]))  # every pixel survived, HWC
        np.testing.assert_array_equal(data.labels, ids[split] % n_classes)
        assert np.all(np.diff(ids[split]) > 0)  # official order kept
    np.testing.assert_array_equal(np.bincount(ids["val"] % n_classes, minlength=n_classes), 3)
    assert not set(ids["val"]) & set(ids["train"])
    np.testing.assert_array_equal(np.sort(np.concatenate([ids["train"], ids["val"]])), np.arange(n_train))
    np.testing.assert_array_equal(ids["test"], CIFAR_TEST_ID_OFFSET + np.arange(PER_CLASS * n_classes))


def test_val_pool_is_fixed_by_seed(tmp_path, monkeypatch):
    fake_cifar(monkeypatch, "cifar10", tmp_path / "downloads")
    val = {}
    for run, seed in [("a", 0), ("b", 0), ("c", 1)]:
        prepare_cifar("cifar10", tmp_path / "downloads", tmp_path / run, val_per_class=5, seed=seed)
        val[run] = fake_ids(load_split(tmp_path / run, "cifar10", "val").images)
    np.testing.assert_array_equal(val["a"], val["b"])
    assert not np.array_equal(val["a"], val["c"])


def test_holdout_val_takes_each_class_evenly():
    labels = np.repeat(np.arange(3), [5, 7, 9])
    train, val = holdout_val(labels, n_classes=3, val_per_class=4, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[val]), [4, 4, 4])
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    _, empty = holdout_val(labels, n_classes=3, val_per_class=0, seed=0)
    assert len(empty) == 0


@pytest.mark.parametrize("val_per_class", [-1, 5 * PER_CLASS])
def test_val_per_class_out_of_range(tmp_path, monkeypatch, val_per_class):
    fake_cifar(monkeypatch, "cifar10", tmp_path / "downloads")
    with pytest.raises(ClipprobeError) as excinfo:
        prepare_cifar("cifar10", tmp_path / "downloads", tmp_path / "data", val_per_class, seed=0)
    assert one_line(excinfo).startswith("data.cifar.val_per_class:")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("download", [True, False])
def test_missing_archive_names_the_file_and_md5(tmp_path, download):
    downloads = tmp_path / "downloads"
    with pytest.raises(ClipprobeError) as excinfo:
        prepare_cifar("cifar100", downloads, tmp_path / "data", val_per_class=1, seed=0, download=download)
    message = one_line(excinfo)
    assert f"put cifar-100-python.tar.gz (md5 {REAL_MD5['cifar100']})" in message
    assert f"into {downloads}/" in message
    # the reason: the host did not answer the reachability probe (network.reachable), or torchvision's error
    assert ("the download failed (" if download else "downloading is off") in message
    assert not (tmp_path / "data").exists()


def test_corrupt_archive_is_reported(tmp_path, monkeypatch):
    downloads = tmp_path / "downloads"
    fake_cifar(monkeypatch, "cifar10", downloads)
    archive = downloads / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:1000])  # a truncated download
    with pytest.raises(ClipprobeError) as excinfo:
        prepare_cifar("cifar10", downloads, tmp_path / "data", val_per_class=1, seed=0)
    message = one_line(excinfo)
    expected = CIFAR_DATASETS["cifar10"].tgz_md5
    assert f"{archive} is corrupt (md5 {calculate_md5(archive)}, expected {expected})" in message


def test_archive_is_used_with_download_off(tmp_path, monkeypatch):
    fake_cifar(monkeypatch, "cifar10", tmp_path / "downloads")
    prepare_cifar(
        "cifar10", tmp_path / "downloads", tmp_path / "data", val_per_class=1, seed=0, download=False
    )
    assert load_meta(tmp_path / "data", "cifar10").splits["test"] == 10 * PER_CLASS


def test_corrupt_extracted_files_are_reported(tmp_path, monkeypatch):
    downloads = tmp_path / "downloads"
    fake_cifar(monkeypatch, "cifar10", downloads)
    prepare_cifar("cifar10", downloads, tmp_path / "data", val_per_class=1, seed=0)
    (downloads / "cifar-10-batches-py" / "batches.meta").write_bytes(b"garbage")  # not re-checked on extract
    with pytest.raises(ClipprobeError) as excinfo:
        prepare_cifar("cifar10", downloads, tmp_path / "data", val_per_class=1, seed=0)
    assert f"delete {downloads / 'cifar-10-batches-py'}/ and rerun" in one_line(excinfo)


def test_archive_is_hashed_only_when_the_extracted_files_are_missing(tmp_path, monkeypatch):
    downloads = tmp_path / "downloads"
    fake_cifar(monkeypatch, "cifar10", downloads)
    hashed: list[str] = []
    real = fetch.file_md5
    monkeypatch.setattr(fetch, "file_md5", lambda path: hashed.append(Path(path).name) or real(path))
    prepare_cifar("cifar10", downloads, tmp_path / "a", val_per_class=1, seed=0)
    assert hashed == ["cifar-10-python.tar.gz"]  # checked once, before extracting it
    monkeypatch.setattr(fetch, "_hashed", {})  # a later run
    prepare_cifar("cifar10", downloads, tmp_path / "b", val_per_class=1, seed=0)
    assert hashed == ["cifar-10-python.tar.gz"]  # the extracted files answer: the archive is not read


def test_downloads_path_expands_the_home_folder(tmp_path, monkeypatch):
    """data.downloads defaults to ~/.cache/clipprobe: `~` is the user's home, not a folder named ~."""
    monkeypatch.setenv("HOME", str(tmp_path))
    fake_cifar(monkeypatch, "cifar10", tmp_path / ".cache" / "clipprobe")
    monkeypatch.chdir(tmp_path)
    prepare_cifar("cifar10", "~/.cache/clipprobe", tmp_path / "data", val_per_class=1, seed=0, download=False)
    assert (tmp_path / ".cache" / "clipprobe" / "cifar-10-batches-py").is_dir() and not Path("~").exists()
