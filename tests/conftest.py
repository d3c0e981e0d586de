"""Shared test setup: never touch the network; fixtures several test modules use."""

# isort: off
import clipprobe  # noqa: F401  (first: pins the CPU kernels before torch loads, as in every stage)

# isort: on
import os
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need a CUDA device: skipped cleanly without one (bench/gpu_check.sh runs them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_thread():
    """For tiny tensors: a second intra-op thread only adds synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_clip():
    """(model, tokenizer) of the tiny ResNet CLIP with random weights (seed 0), one per test module."""
    from clipprobe.models.clip import create_clip

    torch.manual_seed(0)
    return create_clip("clipprobe-tiny-rn", "scratch")


@pytest.fixture(scope="module")
def tiny(tiny_clip):
    """The tiny CLIP of `tiny_clip`, without its tokenizer."""
    return tiny_clip[0]


@pytest.fixture(scope="session")
def default_raw() -> dict:
    """The committed params.yaml as a plain mapping (copy it before editing: see helpers.edited)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """The pipeline reproduced once with tiny params (two seeds) in a fresh git + DVC repo, committed."""
    from pipeline_repo import ROOT as _ROOT
    from pipeline_repo import TINY, make_repo

    path = tmp_path_factory.mktemp("pipeline")
    return make_repo(path, TINY, extra={"fewshot_heldout.py": _ROOT / "bench" / "fewshot_heldout.py"})
