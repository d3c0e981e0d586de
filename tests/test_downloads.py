"""Downloads that neither fail nor waste hours: a resumable download through `<file>.part`, archives hashed
once (a stamp beside them) and only when the extracted files are missing, Oxford-IIIT Pet's partial
extractions caught and its moved host named and tried. Local HTTP servers only; CIFAR and CLEVR have their
own tests (test_cifar.py, test_counting.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from fakes import write_fake_pets
from helpers import clear_proxies, one_line, serve_files
from torchvision.datasets import OxfordIIITPet

from clipprobe.contracts import load_meta
from clipprobe.data import fetch, pets
from clipprobe.data.fetch import archive_md5, download_file
from clipprobe.data.pets import prepare_pets
from clipprobe.errors import ClipprobeError

DATA = bytes(range(256)) * 4099  # about 1 MB: more than one read chunk
MD5 = hashlib.md5(DATA).hexdigest()


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    clear_proxies(monkeypatch)


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = fetch.file_md5
    monkeypatch.setattr(fetch, "file_md5", lambda path: seen.append(Path(path).name) or real(path))
    monkeypatch.setattr(fetch, "_hashed", {})
    return seen


# ---------------------------------------------------------------------------------------------- one file


def test_an_interrupted_download_resumes_where_it_stopped(tmp_path, hashes):
    dest = tmp_path / "a.zip"
    (tmp_path / "a.zip.part").write_bytes(DATA[:300_000])
    with serve_files({"/a.zip": DATA}) as (base, requests):
        download_file(f"{base}/a.zip", dest, MD5)
    assert [r.get("Range") for r in requests] == ["bytes=300000-"]
    assert dest.read_bytes() == DATA and not (tmp_path / "a.zip.part").exists()
    assert archive_md5(dest, MD5) == MD5 and hashes == []  # verified as it arrived, then stamped


def test_a_server_without_ranges_starts_over(tmp_path):
    (tmp_path / "a.zip.part").write_bytes(b"stale bytes of another file")
    with serve_files({"/a.zip": DATA}, ranges=False) as (base, _):
        download_file(f"{base}/a.zip", tmp_path / "a.zip", MD5)
    assert (tmp_path / "a.zip").read_bytes() == DATA


def test_a_whole_part_file_is_finished_without_a_download(tmp_path):
    (tmp_path / "a.zip.part").write_bytes(DATA)  # the last run stopped after the last byte
    with serve_files({"/a.zip": DATA}) as (base, requests):
        download_file(f"{base}/a.zip", tmp_path / "a.zip", MD5)  # the server answers 416
    assert (tmp_path / "a.zip").read_bytes() == DATA and len(requests) == 1


def test_a_wrong_download_is_deleted_and_named(tmp_path):
    with serve_files({"/a.zip": DATA[:-1] + b"x"}) as (base, _), pytest.raises(OSError) as excinfo:
        download_file(f"{base}/a.zip", tmp_path / "a.zip", MD5)
    assert f"expected {MD5} (partial file deleted)" in str(excinfo.value)
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "a.zip.part").exists()


def test_a_stamp_spares_the_hash_until_the_file_changes(tmp_path, hashes, monkeypatch):
    archive = tmp_path / "a.zip"
    archive.write_bytes(DATA)
    assert archive_md5(archive, MD5) == MD5 and hashes == ["a.zip"]
    monkeypatch.setattr(fetch, "_hashed", {})  # a new process: only the stamp remembers
    assert archive_md5(archive, MD5) == MD5 and hashes == ["a.zip"]
    archive.write_bytes(DATA[:-1] + b"x")  # replaced in place
    os.utime(archive, ns=(0, archive.stat().st_mtime_ns + 10**9))
    assert archive_md5(archive, MD5) != MD5 and hashes == ["a.zip", "a.zip"]
    assert archive_md5(archive, MD5) != MD5 and len(hashes) == 2  # a bad file is hashed once per process


# ---------------------------------------------------------------------------------------------- Pets


@pytest.fixture
def pets_archives(tmp_path, monkeypatch) -> Path:
    downloads = tmp_path / "downloads"
    monkeypatch.setattr(OxfordIIITPet, "_RESOURCES", write_fake_pets(downloads, n_trainval=12, n_test=5))
    return downloads


def test_pets_archives_are_hashed_only_to_extract_them(tmp_path, pets_archives, hashes):
    prepare_pets(pets_archives, tmp_path / "a", 32, "foreground", download=False)
    assert sorted(hashes) == ["annotations.tar.gz", "images.tar.gz"]
    fetch._hashed.clear()
    prepare_pets(pets_archives, tmp_path / "b", 32, "foreground", download=False)
    assert len(hashes) == 2  # the extracted folders are complete: the archives are not read


def test_pets_partial_extraction_is_one_line_naming_what_is_missing(tmp_path, pets_archives):
    prepare_pets(pets_archives, tmp_path / "data", 32, "foreground", download=False)
    folder = pets_archives / "oxford-iiit-pet"
    (folder / "images" / "american_bulldog_4.jpg").unlink()  # torchvision only checks the folders exist
    missing = "1 of the 34 images and trimaps the split lists name are missing: images/american_bulldog_4.jpg"
    with pytest.raises(ClipprobeError) as excinfo:
        prepare_pets(pets_archives, tmp_path / "data", 32, "foreground", download=False)
    assert one_line(excinfo) == (
        f"data: could not read Oxford-IIIT Pet from {folder}/ (RuntimeError: {missing}); "
        f"delete {folder}/images/ and {folder}/annotations/ and rerun"
    )
    for archive in ("images.tar.gz", "annotations.tar.gz"):
        (folder / archive).unlink()
    with pytest.raises(ClipprobeError) as excinfo:
        prepare_pets(pets_archives, tmp_path / "data", 32, "foreground", download=False)
    assert one_line(excinfo).startswith(
        f"data: Oxford-IIIT Pet incomplete in {folder}/ ({missing}) and downloading is off; put images.tar.gz"
    )


def test_pets_message_names_the_host_the_files_moved_to(tmp_path):
    with pytest.raises(ClipprobeError) as excinfo:
        prepare_pets(tmp_path / "downloads", tmp_path / "data", 32, "foreground", download=False)
    assert (
        "from https://thor.robots.ox.ac.uk/~vgg/data/pets/ "
        "(moved there from https://www.robots.ox.ac.uk/~vgg/data/pets/data/) into"
    ) in one_line(excinfo)


def test_pets_download_takes_the_moved_host(tmp_path, monkeypatch):
    downloads = tmp_path / "downloads"
    served = write_fake_pets(downloads, n_trainval=12, n_test=5)
    folder = downloads / "oxford-iiit-pet"
    files = {f"/new/{Path(url).name}": (folder / Path(url).name).read_bytes() for url, _ in served}
    for name in ("images.tar.gz", "annotations.tar.gz"):
        (folder / name).unlink()
    with serve_files(files) as (base, requests):  # the old folder answers 404, the new one serves the files
        monkeypatch.setattr(pets, "OLD_HOST", f"{base}/old/")
        monkeypatch.setattr(pets, "MOVED_TO", f"{base}/new/")
        resources = tuple((f"{base}/old/{Path(url).name}", md5) for url, md5 in served)
        monkeypatch.setattr(OxfordIIITPet, "_RESOURCES", resources)
        prepare_pets(downloads, tmp_path / "data", 32, "foreground")
    assert [r["path"] for r in requests] == ["/new/images.tar.gz", "/new/annotations.tar.gz"]
    assert load_meta(tmp_path / "data", "pets").splits == {"train": 10, "val": 2, "test": 5}
