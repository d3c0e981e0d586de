"""Write errors: a full disk, a read-only folder, an immutable output, an undeletable old file.

Each case runs one stage script of the reproduced tiny pipeline in a copy of it, with a real full disk (a
small tmpfs holding the previous outputs, mounted over the output folder in a private mount namespace), a
read-only bind mount or `chattr +i`, and checks: exit code 2, exactly one `error:` line naming the path and
its cause, no traceback, no temporary file left, and the previous outputs byte for byte as they were.
Needs root (mount namespaces, chattr); skipped with the reason where the machine does not allow them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _allowed(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


NAMESPACES = _allowed(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"])
needs_namespaces = pytest.mark.skipif(not NAMESPACES, reason="needs root and `unshare -m` (mount namespaces)")


@pytest.fixture
def repo(tiny_repo, tmp_path) -> Path:
    """A private copy of the reproduced tiny pipeline (every output a plain file)."""
    root = tmp_path / "repo"
    shutil.copytree(tiny_repo, root, symlinks=False, ignore=shutil.ignore_patterns(".git", ".dvc"))
    return root


def _digests(root: Path, *names: str) -> dict[str, str]:
    """sha256 of every file under `names`, and the names of every file there (debris shows as a new name)."""
    out = {}
    for name in names:
        top = root / name
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            if path.is_file():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _stage(root: Path, script: str, *, mount: str = "", after: str = "") -> subprocess.CompletedProcess:
    """Run `python stages/<script>` in `root`: after `mount` (in a private mount namespace), then `after`,
    while the mounts still stand; the exit code is the stage's."""
    command = f"{mount} {sys.executable} stages/{script}; rc=$?; {after} exit $rc"
    argv = ["unshare", "-m", "sh", "-c", command] if mount else ["sh", "-c", command]
    return subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=600)


def _inside(root: Path, folder: str) -> str:
    """Shell that records, while the mount stands, the digests of what `folder` holds (in ./inside.txt)."""
    return f"(cd {folder} && find . -type f -exec sha256sum {{}} + | sort > {root}/inside.txt);"


def _recorded(root: Path) -> list[str]:
    return (root / "inside.txt").read_text().splitlines()


def _one_error_line(result: subprocess.CompletedProcess, *parts: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") and all(part in lines[0] for part in parts), lines[0]
    return lines[0]


def _full_disk(folder: str, root: Path) -> str:
    """Shell that mounts a tmpfs over `folder` holding a copy of its files, with only 8 KiB to spare."""
    used = sum(p.stat().st_size for p in (root / folder).rglob("*") if p.is_file())
    size = (
        used // 4096 + len(list((root / folder).rglob("*"))) + 2
    ) * 4096  # data pages, one per inode, spare
    keep = root / f".saved-{folder.replace('/', '-')}"
    shutil.copytree(root / folder, keep)
    return f"mount -t tmpfs -o size={size} tmpfs {folder} && cp -a {keep}/. {folder}/ &&"


@needs_namespaces
def test_full_disk_under_the_features(repo):
    folder = "features/seed0"
    before = _digests(repo, folder)
    result = _stage(repo, "embed.py 0", mount=_full_disk(folder, repo), after=_inside(repo, folder))
    _one_error_line(result, f"{folder}/", "No space left on device")
    inside = {line.split()[1].removeprefix("./"): line.split()[0] for line in _recorded(repo)}
    assert inside == {name.removeprefix(f"{folder}/"): digest for name, digest in before.items()}  # no debris


@needs_namespaces
def test_full_disk_under_the_weights_keeps_the_old_curve_too(repo):
    folder = "models/clip/seed0"
    curve = _digests(repo, "runs/seed0/clip_pretrain.csv")
    before = _digests(repo, folder)
    result = _stage(repo, "clip.py 0", mount=_full_disk(folder, repo), after=_inside(repo, folder))
    _one_error_line(result, f"{folder}/", "No space left on device")
    assert len(_recorded(repo)) == len(before)  # the old weights and model.json, whole, and nothing else
    assert _digests(repo, "runs/seed0/clip_pretrain.csv") == curve  # no new curve beside old weights


@needs_namespaces
@pytest.mark.parametrize(
    ("read_only", "script", "outputs"),
    [
        ("runs/seed0", "probe.py 0", "runs/seed0"),
        (".", "report.py", "reports"),
    ],  # files in it; a whole folder
)
def test_read_only_output_folder(repo, read_only, script, outputs):
    before = _digests(repo, outputs)
    mount = f'mount --bind {read_only} {read_only} && mount -o remount,bind,ro {read_only} && cd "$PWD" &&'  # cd: into the mount
    _one_error_line(_stage(repo, script, mount=mount), outputs, "Read-only file system")
    assert _digests(repo, outputs) == before


@pytest.fixture
def immutable(repo):
    """chattr +i on files of the repo copy, undone after the test."""
    marked: list[Path] = []

    def mark(path: Path) -> None:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("needs root and a file system with the immutable attribute (chattr +i)")
        marked.append(path)

    yield mark
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def test_immutable_output_leaves_every_output_of_the_stage_as_it_was(repo, immutable):
    outputs = ("runs/seed0/probe.json", "runs/seed0/probe_hits", "runs/seed0/probe_c_search.csv")
    before = _digests(repo, *outputs)
    immutable(repo / "runs/seed0/probe.json")
    _one_error_line(_stage(repo, "probe.py 0"), "runs/seed0/probe.json", "Operation not permitted")
    assert _digests(repo, *outputs) == before
    debris = [
        p.name for p in (repo / "runs/seed0").iterdir() if p.name.startswith(".") and p.name != ".gitignore"
    ]
    assert not debris


def test_an_undeletable_old_file_does_not_half_empty_a_folder(repo, immutable):
    hits = repo / "runs/seed0/probe_hits"
    names = sorted(p.name for p in hits.iterdir())
    immutable(hits / names[0])
    result = _stage(repo, "probe.py 0")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in hits.iterdir()) == names  # the new folder, whole
    assert "warning: the previous runs/seed0/probe_hits could not be deleted" in result.stderr
    subprocess.run(["chattr", "-i", str(repo / "runs/seed0/.probe_hits.old" / names[0])], capture_output=True)
    assert os.path.isdir(repo / "runs/seed0/.probe_hits.old")  # the old one, moved aside whole
