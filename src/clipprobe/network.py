"""Whether a download can start: one quick probe, so an offline run fails in seconds with one line instead of
after a storm of retries (Hugging Face's hub retries for most of a minute).

The probe takes the road the download will take. Behind a proxy (HTTPS_PROXY / HTTP_PROXY, unless NO_PROXY
names the host: the variables urllib, so torchvision, and huggingface_hub read) it asks the proxy for a tunnel
to the host (HTTP CONNECT) and counts a 2xx answer as reachable; a cluster whose only way out is its proxy
is online. Without one it opens a TCP connection to the host. The host is the download's own, so a Hugging
Face mirror (HF_ENDPOINT) is probed, not huggingface.co (models/clip.py). CLIPPROBE_OFFLINE=1 makes every
host unreachable: nothing is ever downloaded (air-gapped runs, tests)."""

from __future__ import annotations

import base64
import functools
import os
import socket
import ssl
import urllib.request
from urllib.parse import unquote, urlparse

TIMEOUT_S = 3.0
_GATEWAY_ERRORS = (b"502", b"503", b"504")  # a proxy's "could not reach the host"


def reachable(url: str) -> bool:
    """Whether `url`'s host answers within TIMEOUT_S, through the proxy the download would use (cached per
    process for each host, port and proxy)."""
    if os.environ.get("CLIPPROBE_OFFLINE") == "1":
        return False
    parsed = urlparse(url if "//" in url else f"https://{url}")
    scheme = parsed.scheme or "https"
    port = parsed.port or (80 if scheme == "http" else 443)
    return _probe(scheme, parsed.hostname or "", port, proxy_for(scheme, parsed.hostname or ""))


def proxy_for(scheme: str, host: str) -> str | None:
    """The proxy urllib would send a `scheme` request for `host` through (its HTTPS_PROXY / HTTP_PROXY and
    NO_PROXY rules), or None for a direct connection."""
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


@functools.cache
def _probe(scheme: str, host: str, port: int, proxy: str | None) -> bool:
    if proxy is None:
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT_S):
                return True
        except OSError:
            return False
    return _through_proxy(scheme, host, port, proxy)


def _through_proxy(scheme: str, host: str, port: int, proxy: str) -> bool:
    """https: whether the proxy opens a tunnel to host:port (CONNECT answered 2xx, as torchvision's and the
    hub's downloads need). http: whether it answers a HEAD for the host with anything but a gateway error
    (plain http goes through a proxy as a request, and many proxies allow CONNECT only to port 443)."""
    parsed = urlparse(proxy if "//" in proxy else f"http://{proxy}")
    target = f"{host}:{port}"
    line = f"CONNECT {target} HTTP/1.1" if scheme == "https" else f"HEAD http://{target}/ HTTP/1.1"
    headers = [line, f"Host: {target}"]
    if parsed.username:  # user:password@proxy, as urllib accepts it
        token = f"{unquote(parsed.username)}:{unquote(parsed.password or '')}".encode()
        headers.append(f"Proxy-Authorization: Basic {base64.b64encode(token).decode()}")
    address = (parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))
    try:
        with socket.create_connection(address, timeout=TIMEOUT_S) as raw:
            sock = raw
            if parsed.scheme == "https":  # TLS to the proxy itself
                sock = ssl.create_default_context().wrap_socket(raw, server_hostname=parsed.hostname)
            sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
            status = _status_code(sock)
    except OSError:  # refused, timed out, TLS failed
        return False
    if scheme == "https":
        return status.startswith(b"2")
    return bool(status) and status != b"407" and status not in _GATEWAY_ERRORS


def _status_code(sock: socket.socket) -> bytes:
    """The status code of the HTTP answer's first line (b"" when it is not one)."""
    answer = b""
    while b"\r\n" not in answer and len(answer) < 4096:
        chunk = sock.recv(1024)
        if not chunk:
            break
        answer += chunk
    parts = answer.split(b"\r\n", 1)[0].split()
    return parts[1] if len(parts) >= 2 and parts[0].startswith(b"HTTP/") else b""
