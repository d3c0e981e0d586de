"""Shared test setup: never touch the network; fixtures several test modules use."""

import os
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def default_raw() -> dict:
    """The committed params.yaml as a plain mapping (copy it before editing: see helpers.edited)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())
