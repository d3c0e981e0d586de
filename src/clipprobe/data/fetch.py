"""Getting a torchvision dataset onto disk: from what is already there, from an intact archive, or from the
network, in that order, and when none works one line saying which file to put where. Offline, the network
is tried once, for a few seconds (`network.reachable`), never through torchvision's retries."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

from clipprobe.errors import ClipprobeError
from clipprobe.network import reachable

# What torchvision raises when the download, its checksum or the extraction fails (URLError is an OSError)
FETCH_ERRORS = (OSError, RuntimeError, http.client.HTTPException)
T = TypeVar("T")


def short_error(err: BaseException) -> str:
    """One line for an exception; a URLError's reason is the useful part."""
    detail = getattr(err, "reason", None) or err
    return f"{type(err).__name__}: {detail}".replace("\n", " ")


def fetch(
    open_dataset: Callable[[bool], T],
    *,
    archive_intact: bool,
    url: str,
    download: bool,
    failure: Callable[[BaseException | None, bool], str],
) -> T:
    """`open_dataset(download)` (a torchvision constructor) without the network when the extracted files or
    an intact archive are there, else with it when `download` and `url`'s host answers.

    `failure(err, download)` words the error: err None when the network was never tried.
    """
    try:
        return open_dataset(False)  # the extracted files, checked by torchvision
    except FETCH_ERRORS:
        pass
    if not archive_intact and not download:
        raise ClipprobeError(failure(None, False))
    if not archive_intact and not reachable(url):
        raise ClipprobeError(
            failure(ConnectionError(f"{urlparse(url).hostname} unreachable (offline?)"), True)
        )
    try:
        return open_dataset(True)  # extracts an intact archive without the network, else downloads
    except FETCH_ERRORS as err:
        raise ClipprobeError(failure(err, download)) from None
