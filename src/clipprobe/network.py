"""Whether a download can start: one quick connection attempt, so an offline run fails in seconds with one
line instead of after a storm of retries (Hugging Face's hub retries for most of a minute).
CLIPPROBE_OFFLINE=1 makes every host unreachable: nothing is ever downloaded (air-gapped runs, tests)."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

TIMEOUT_S = 3.0


@functools.cache
def reachable(url: str) -> bool:
    """Whether a TCP connection to `url`'s host opens within TIMEOUT_S (cached per process)."""
    if os.environ.get("CLIPPROBE_OFFLINE") == "1":
        return False
    parsed = urlparse(url if "//" in url else f"https://{url}")
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=TIMEOUT_S):
            return True
    except OSError:
        return False
