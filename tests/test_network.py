"""The reachability probe takes the road the download takes: through HTTPS_PROXY with an HTTP CONNECT (a fake
proxy on localhost answers it; no real network), around the proxy for NO_PROXY hosts, and to the HF_ENDPOINT
mirror for Hugging Face weights."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from helpers import clear_proxies, one_line

from clipprobe.errors import ClipprobeError
from clipprobe.network import reachable

CLEVR = "https://dl.fbaipublicfiles.com/clevr/CLEVR_v1.0.zip"  # never resolved here: only the proxy sees it


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    clear_proxies(monkeypatch)


@contextlib.contextmanager
def fake_proxy(answer: bytes, netloc: str = "") -> Iterator[tuple[str, list[bytes]]]:
    """A proxy on localhost that reads each request's head and sends `answer`; yields its URL (with `netloc`
    credentials, e.g. "user:pw@") and the heads it got."""
    heads: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                head = b""
                while b"\r\n\r\n" not in head and (chunk := conn.recv(1024)):
                    head += chunk
                heads.append(head)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://{netloc}127.0.0.1:{listener.getsockname()[1]}", heads
    finally:
        stop.set()
        thread.join()
        listener.close()


@contextlib.contextmanager
def listening() -> Iterator[int]:
    """A local port that accepts TCP connections (a host reached directly)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_probe_passes_through_an_https_proxy(monkeypatch, variable):
    with fake_proxy(b"HTTP/1.1 200 Connection established\r\n\r\n") as (proxy, heads):
        monkeypatch.setenv(variable, proxy)
        assert reachable(CLEVR)
    assert heads[0].startswith(b"CONNECT dl.fbaipublicfiles.com:443 HTTP/1.1\r\n")
    assert b"\r\nHost: dl.fbaipublicfiles.com:443\r\n" in heads[0]


@pytest.mark.parametrize(
    "answer", [b"HTTP/1.1 403 Forbidden\r\n\r\n", b"HTTP/1.0 502 Bad Gateway\r\n\r\n", b""]
)
def test_a_proxy_that_refuses_the_tunnel_is_offline(monkeypatch, answer):
    with fake_proxy(answer) as (proxy, heads):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        assert not reachable(CLEVR)
    assert heads and heads[0].startswith(b"CONNECT ")


def test_proxy_credentials_go_in_proxy_authorization(monkeypatch):
    with fake_proxy(b"HTTP/1.1 200 OK\r\n\r\n", netloc="alice:p%40ss@") as (proxy, heads):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        assert reachable("https://huggingface.co")
    token = base64.b64encode(b"alice:p@ss").decode()
    assert f"\r\nProxy-Authorization: Basic {token}\r\n".encode() in heads[0]


def test_plain_http_goes_to_the_proxy_as_a_request(monkeypatch):
    with fake_proxy(b"HTTP/1.1 301 Moved Permanently\r\n\r\n") as (proxy, heads):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        assert reachable("http://www.example.invalid/data.tar.gz")
    assert heads[0].startswith(b"HEAD http://www.example.invalid:80/ HTTP/1.1\r\n")
    with fake_proxy(b"HTTP/1.1 504 Gateway Timeout\r\n\r\n") as (proxy, _):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        assert not reachable("http://www.example.invalid/data.tar.gz")


def test_no_proxy_hosts_are_probed_directly(monkeypatch):
    with listening() as port, fake_proxy(b"HTTP/1.1 403 Forbidden\r\n\r\n") as (proxy, heads):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        assert not reachable(f"https://127.0.0.1:{port}/file")  # through the proxy, which refuses
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        assert reachable(f"https://127.0.0.1:{port}/file")  # directly, to the listening port
    assert len(heads) == 1


def test_without_a_proxy_a_tcp_connection_decides(monkeypatch):
    with listening() as port:
        assert reachable(f"https://127.0.0.1:{port}/file")
    assert not reachable("http://127.0.0.1:9/closed")  # the discard port: nothing listens
    with fake_proxy(b"HTTP/1.1 200 OK\r\n\r\n") as (proxy, heads):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        monkeypatch.setenv("CLIPPROBE_OFFLINE", "1")
        assert not reachable(CLEVR)  # the air-gap switch wins: not even the proxy is asked
    assert heads == []


def test_hugging_face_weights_probe_the_hf_endpoint_mirror(tmp_path, monkeypatch):
    """huggingface_hub reads HF_ENDPOINT into constants.ENDPOINT at import: a mirror set there is probed and
    named in the offline message, not huggingface.co."""
    import huggingface_hub.constants

    from clipprobe.models import clip

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://hf-mirror.example.org")
    probed: list[str] = []
    monkeypatch.setattr(clip, "reachable", lambda url: probed.append(url) or False)
    with pytest.raises(ClipprobeError) as excinfo:
        clip._fetch_tag("ViT-B-32", "openai", str(tmp_path), "clip")
    assert probed == ["https://hf-mirror.example.org"]
    assert "from https://hf-mirror.example.org/timm/vit_base_patch32_clip_224.openai" in one_line(excinfo)
