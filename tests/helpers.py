"""Helpers shared by the test modules."""

from __future__ import annotations

import contextlib
import copy
import http.server
import threading
from collections.abc import Iterator

import pytest


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    """The raised error's message, asserted to be the one line a user sees."""
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def edited(raw: dict, dotted: str, value: object) -> dict:
    """A deep copy of a params mapping with the key at `dotted` (e.g. `probe.C`) set to `value`."""
    raw = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[leaf] = value
    return raw


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy and no offline switch from the host's environment: a test sets what it needs."""
    for name in (*PROXY_VARIABLES, *(v.upper() for v in PROXY_VARIABLES), "CLIPPROBE_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@contextlib.contextmanager
def serve_files(files: dict[str, bytes], ranges: bool = True) -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP server of `files` (path -> bytes), answering `Range: bytes=N-` with 206 when `ranges`
    (else always the whole file, 200). Yields its base URL and the headers of every request it got."""
    requests: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            requests.append({"path": self.path, **dict(self.headers)})
            data = files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            wanted = self.headers.get("Range", "")
            if ranges and wanted.startswith("bytes="):
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
