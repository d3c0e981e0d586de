"""Build .dvc/plots/offline.html: DVC's plots page with vega, vega-lite and vega-embed inlined, so that
`dvc plots show` renders the interactive plots with no network (DVC's own page loads them from a CDN).

.dvc/config points `plots.html_template` at the result. The versions are those DVC's renderer asks for
(dvc_render.vega.VegaRenderer.SCRIPTS); each npm tarball is checked against its pinned sha256. Rerun when
dvc-render changes its versions: python tools/offline_plots.py
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / ".dvc/plots/offline.html"
PACKAGES = {  # npm package -> (version, sha256 of its registry tarball)
    "vega": ("5.20.2", "d77deab01d6104b1239228720721f93003e60797d2faced7ffdd759fa70f989d"),
    "vega-lite": ("5.2.0", "f64ca4745f043447ac86b67dc9e9592ec2b85ac8b8dafc35faf970f142463e4b"),
    "vega-embed": ("6.18.2", "93aeee312e92077b0252ef026c0fe0ec8fa430c19825aeada6cd3a6804e68e1b"),
}
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>clipprobe plots</title>
    <!-- {credits}: inlined by tools/offline_plots.py so the page needs no network.
{licences}
    -->
{scripts}
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def _tarball(name: str, version: str, sha256: str) -> tarfile.TarFile:
    url = f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        sys.exit(f"{url}: sha256 {digest}, expected {sha256}")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


def main() -> None:
    scripts, licences = [], []
    for name, (version, sha256) in PACKAGES.items():
        with _tarball(name, version, sha256) as tar:
            script = tar.extractfile(f"package/build/{name}.min.js").read().decode()
            licence = tar.extractfile("package/LICENSE").read().decode()
        for placeholder in ("{plot_divs}", "{scripts}", "{refresh_tag}"):
            if placeholder in script:
                sys.exit(f"{name}.min.js holds DVC's placeholder {placeholder}")
        scripts.append(f"    <script>/* {name} {version} */\n{script}\n    </script>")
        licences.append(f"{name} {version}:\n{licence.replace('--', '- -').strip()}")
    credits = ", ".join(f"{name} {version}" for name, (version, _) in PACKAGES.items())
    page = PAGE.format(credits=credits, licences="\n\n".join(licences), scripts="\n".join(scripts))
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(page)
    print(f"wrote {TEMPLATE.relative_to(ROOT)} ({len(page) // 1024} KiB: {credits})")


if __name__ == "__main__":
    main()
