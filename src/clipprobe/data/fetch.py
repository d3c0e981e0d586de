"""Getting a data set onto disk: from what is already extracted, from an intact archive, or from the network,
in that order, and when none works one line saying which file to put where.

An archive is checked only when the extracted files are missing or incomplete, and a verified archive gets a
stamp beside it (`<archive>.verified`: its md5, size and modification time), so an 18 GB archive is hashed
once, not on every load; a file that changes voids its stamp. Offline, the network is tried once, for a few
seconds (`network.reachable`, through the proxy the download would use), never through torchvision's
retries. `download_file` fetches one archive through `<archive>.part`, and an interrupted download resumes
where it stopped (HTTP Range) instead of starting over.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from clipprobe.errors import ClipprobeError
from clipprobe.network import reachable
from clipprobe.progress import progress

_logger = logging.getLogger(__name__)

# What torchvision raises when the download, its checksum or the extraction fails (URLError is an OSError)
FETCH_ERRORS = (OSError, RuntimeError, http.client.HTTPException)
CHUNK = 1 << 20
T = TypeVar("T")
_hashed: dict[
    tuple[str, int, int], str
] = {}  # (path, size, mtime) -> md5: no file is hashed twice per process


def short_error(err: BaseException) -> str:
    """One line for an exception; a URLError's reason is the useful part."""
    detail = getattr(err, "reason", None) or err
    return f"{type(err).__name__}: {detail}".replace("\n", " ")


def fetch(
    open_dataset: Callable[[bool], T],
    *,
    archive_intact: Callable[[], bool],
    urls: Sequence[str],
    download: bool,
    failure: Callable[[BaseException | None, bool], str],
    get: Callable[[list[str]], None] | None = None,
) -> T:
    """`open_dataset(False)` (the extracted files) when it works; else `open_dataset(True)` from an intact
    archive, fetched first when `download` and one of `urls`' hosts answers.

    `archive_intact()` runs only when the extracted files fail. `open_dataset(True)` is a torchvision
    constructor with download=True (it extracts an intact archive, or downloads it when `get` is None) or
    a reader of the archive itself; `get(answering_urls)` downloads the archives. `failure(err, download)`
    words the error: err None when the network was never tried.
    """
    try:
        return open_dataset(False)
    except FETCH_ERRORS:
        pass
    if not archive_intact():
        if not download:
            raise ClipprobeError(failure(None, False))
        answering = [url for url in urls if reachable(url)]
        if not answering:
            hosts = " and ".join(dict.fromkeys(str(urlparse(url).hostname) for url in urls))
            raise ClipprobeError(failure(ConnectionError(f"{hosts} unreachable (offline?)"), True))
        if get is not None:
            try:
                get(answering)
            except FETCH_ERRORS as err:
                raise ClipprobeError(failure(err, True)) from None
    try:
        return open_dataset(True)
    except FETCH_ERRORS as err:
        raise ClipprobeError(failure(err, download)) from None


def file_md5(path: Path) -> str:
    """The md5 of a file, read once (the one place an archive is hashed)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def archive_md5(archive: Path, expected: str) -> str | None:
    """The md5 of `archive` (None when it is not a file): its stamp's when the stamp matches the file, else
    computed (once per process) and stamped when it is `expected`."""
    try:
        stat = archive.stat()
    except OSError:
        return None
    if not archive.is_file():
        return None
    key = (str(archive.resolve()), stat.st_size, stat.st_mtime_ns)
    if _stamp_of(archive) == {"md5": expected, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
        return expected
    if key not in _hashed:
        _hashed[key] = file_md5(archive)
    if _hashed[key] == expected:
        _write_stamp(archive, expected)
    return _hashed[key]


def archive_intact(archive: Path, md5: str) -> bool:
    """Whether `archive` is the file with `md5` (hashed at most once: see `archive_md5`)."""
    return archive_md5(archive, md5) == md5


def download_file(url: str, dest: Path, md5: str) -> None:
    """Download `url` to `dest` through `<dest>.part`, resuming a partial file an interrupted run left there.

    The md5 is computed as the bytes arrive (one pass over the file); a match is renamed to `dest` and
    stamped, a mismatch deleted. urllib takes the proxy of HTTPS_PROXY / HTTP_PROXY, as the probe did.
    Raises OSError (URLError, HTTPError, a wrong md5).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "clipprobe", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not have:  # 416: nothing after `have` bytes, so the part may be whole
            raise
        response = None
    resume = response is None or (
        response.status == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {have}-")
    )
    digest = hashlib.md5(usedforsecurity=False)
    if resume and have:
        _logger.info("%s: resuming after %d bytes", dest.name, have)
        with open(part, "rb") as file:
            while chunk := file.read(CHUNK):
                digest.update(chunk)
    if response is not None:
        with response, open(part, "ab" if resume else "wb") as out:
            left = int(response.headers.get("Content-Length") or 0) or None
            bar = progress(total=left, desc=f"{dest.name} (bytes)")
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            bar.close()
    if digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise OSError(f"{url} gave md5 {digest.hexdigest()}, expected {md5} (partial file deleted)")
    os.replace(part, dest)
    _write_stamp(dest, md5)


def _stamp_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".verified")


def _stamp_of(archive: Path) -> dict | None:
    try:
        return json.loads(_stamp_path(archive).read_text())
    except (OSError, ValueError):
        return None


def _write_stamp(archive: Path, md5: str) -> None:
    """Best effort: a read-only shared cache only costs a hash on the next load."""
    stat = archive.stat()
    payload = {"md5": md5, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stamp = _stamp_path(archive)
    tmp = stamp.with_name(stamp.name + ".tmp")
    try:
        tmp.write_text(json.dumps(payload) + "\n")
        os.replace(tmp, stamp)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
