"""The deterministic CPU mode: the same bytes whatever the host's instruction-set and thread settings.

A few CLIP pretraining steps and a few decoder training steps run in fresh processes under different host
settings, as other machines would have them; the weights they end with must be identical to the bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import hashlib
import clipprobe  # first: pins the CPU kernels before torch loads
import numpy as np
import torch
import torch.nn.functional as F
from clipprobe.data.captions import DEFAULT_CAPTION_MIX
from clipprobe.data.shapes import generate_shapes
from clipprobe.decoders.segment_models import FeatureDecoder, UNet11
from clipprobe.decoders.vqvae import build
from clipprobe.decoders.vqvae_train import Pairs, train_vqvae
from clipprobe.models.clip import create_clip
from clipprobe.models.pretrain import PretrainConfig, pretrain_clip
from clipprobe.params import load_params
from clipprobe.runtime import start

start(0, threads=2)
digest = hashlib.sha256()
def absorb(module):
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().contiguous().numpy().tobytes())

data = generate_shapes(96, 64, seed=0, caption_mix=DEFAULT_CAPTION_MIX, workers=1)
model, tokenizer = create_clip("clipprobe-tiny-rn", "scratch")
cfg = PretrainConfig(steps=3, batch_size=32, warmup_steps=1)
pretrain_clip(model, tokenizer, data.images, data.captions, cfg, seed=0, device=torch.device("cpu"), progress=False)
absorb(model)

generator = torch.Generator().manual_seed(1)
maps, masks = torch.randn(8, 512, 4, 4, generator=generator), torch.randint(0, 7, (8, 64, 64), generator=generator)
images = torch.rand(8, 3, 64, 64, generator=generator)
for decoder, inputs in ((FeatureDecoder(512, 4, 64, 7, 8), maps), (UNet11(7, 8), images)):
    decoder = decoder.to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    for _ in range(2):
        loss = F.cross_entropy(decoder(inputs.contiguous(memory_format=torch.channels_last)), masks)
        optimiser.zero_grad(); loss.backward(); optimiser.step()
    absorb(decoder)

vqvae_cfg = load_params().vqvae.model_copy(update={"hidden": 16, "code_dim": 16, "codebook_size": 32})
pixels = torch.rand(16, 3, 32, 32, generator=generator)
vq = build("pixels", vqvae_cfg, {}, grid=4)
train_vqvae(vq, Pairs(pixels, pixels), Pairs(pixels[:4], pixels[:4]), epochs=1, batch_size=8, lr=1e-3, seed=0,
            device=torch.device("cpu"), desc="vqvae")
absorb(vq)
print(digest.hexdigest())
"""

HOST_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
                  "MKL_CBWR", "MKL_DYNAMIC", "OMP_NUM_THREADS", "CLIPPROBE_NATIVE_CPU")  # fmt: skip


def _cpu_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        return set()


def _host_settings() -> dict[str, dict[str, str]]:
    """Host settings other machines have, among those this CPU can run."""
    settings = {
        "default": {},
        "avx2 everywhere": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        "one thread": {"OMP_NUM_THREADS": "1"},
        "two threads, MKL's own choice": {"OMP_NUM_THREADS": "2", "MKL_DYNAMIC": "TRUE"},
    }
    if "avx512f" in _cpu_flags():
        settings["avx512"] = {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    return settings


def _digest(env: dict[str, str], tmp_path: Path) -> str:
    base = {k: v for k, v in os.environ.items() if k not in HOST_VARIABLES}
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env={**base, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(
    sys.platform != "linux" or os.uname().machine != "x86_64", reason="the mode pins x86-64 kernels"
)
def test_training_bytes_do_not_depend_on_the_host(tmp_path):
    digests = {name: _digest(env, tmp_path) for name, env in _host_settings().items()}
    assert len(set(digests.values())) == 1, digests


@pytest.mark.slow
@pytest.mark.skipif("avx512f" not in _cpu_flags(), reason="needs a CPU with AVX-512 to show the difference")
def test_without_the_mode_the_instruction_set_shows_in_the_bytes(tmp_path):
    """The check above has teeth: with the mode off, AVX-512 and AVX2 kernels give other weights."""
    native = {"CLIPPROBE_NATIVE_CPU": "1"}
    avx512 = _digest({**native, "ATEN_CPU_CAPABILITY": "avx512"}, tmp_path)
    avx2 = _digest({**native, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, tmp_path)
    assert avx512 != avx2
