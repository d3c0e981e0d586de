"""Benchmark: what the deterministic CPU mode costs, and the other vendor-neutral settings it was chosen from.

Runs the same workload in fresh processes, alternating the settings (A, B, C, A, B, C, ...) so that drift in
the machine's load hits all alike: CLIP pretraining steps of the embedded default's tiny CLIP (batch 128,
64 px shapes images) and training steps of the segmentation decoder on a frozen map. Every setting runs at
the same thread count (params.yaml) and with `torch.sqrt` through the IEEE instruction, as the mode does.
The candidates are the settings of tools/cpu_canary.py that give the same bytes on Intel and AMD
(docs/cpu.md); `native` is the host's own kernels (CLIPPROBE_NATIVE_CPU=1). Prints the seconds per step of
each setting (median of its runs) and its ratio to the mode.

    python bench/cpu_mode.py                 # 30 pretraining steps + 40 decoder steps, 3 runs per setting
    python bench/cpu_mode.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

WORKLOAD = """
import os, time
import clipprobe
import torch
import torch.nn.functional as F
from clipprobe.cpu.sqrt import exact_sqrt
from clipprobe.data.captions import DEFAULT_CAPTION_MIX
from clipprobe.data.shapes import generate_shapes
from clipprobe.decoders.segment_models import FeatureDecoder
from clipprobe.models.clip import create_clip
from clipprobe.models.pretrain import PretrainConfig, pretrain_clip
from clipprobe.params import load_params
from clipprobe.runtime import start

params = load_params()
start(0, params.threads)
exact_sqrt()
torch.backends.mkldnn.enabled = os.environ.get("BENCH_NO_ONEDNN") != "1"
data = generate_shapes(1024, 64, seed=0, caption_mix=DEFAULT_CAPTION_MIX, workers=1)
model, tokenizer = create_clip("clipprobe-tiny-rn", "scratch")
tic = time.perf_counter()
pretrain_clip(model, tokenizer, data.images, data.captions, PretrainConfig(steps={steps}, batch_size=128),
              seed=0, device=torch.device("cpu"), progress=False)
pretrain = time.perf_counter() - tic
decoder = FeatureDecoder(512, 4, 64, 7, 4).to(memory_format=torch.channels_last)
optimiser = torch.optim.Adam(decoder.parameters(), lr=1e-3)
maps = torch.randn(32, 512, 4, 4).contiguous(memory_format=torch.channels_last)
masks = torch.randint(0, 7, (32, 64, 64))
tic = time.perf_counter()
for _ in range({decoder_steps}):
    loss = F.cross_entropy(decoder(maps), masks)
    optimiser.zero_grad(); loss.backward(); optimiser.step()
print(pretrain, time.perf_counter() - tic)
"""
COMPATIBLE = {"MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE"}
SETTINGS = {  # None: the mode itself (clipprobe.cpu); a dict: the mode off and these variables set
    "the mode: avx2, MKL compatible": None,
    "sse4.1, MKL compatible": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", **COMPATIBLE},
    "avx2, MKL compatible, no oneDNN": {"ATEN_CPU_CAPABILITY": "avx2", "BENCH_NO_ONEDNN": "1", **COMPATIBLE},
    "native (not vendor-neutral)": {},
}
HOST = (
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
)


def run(setting: dict[str, str] | None, steps: int, decoder_steps: int) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k not in (*HOST, "CLIPPROBE_NATIVE_CPU")}
    if setting is not None:
        env.update({"CLIPPROBE_NATIVE_CPU": "1", **setting})
    code = WORKLOAD.format(steps=steps, decoder_steps=decoder_steps)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    pretrain, decoder = out.stdout.split()
    return float(pretrain), float(decoder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per setting, alternated")
    parser.add_argument("--steps", type=int, default=30, help="pretraining steps per run")
    parser.add_argument("--decoder-steps", type=int, default=40, help="decoder training steps per run")
    args = parser.parse_args()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
    for _ in range(args.runs):
        for name, setting in SETTINGS.items():
            times[name].append(run(setting, args.steps, args.decoder_steps))
    medians = {
        name: (
            statistics.median(t[0] for t in runs) / args.steps,
            statistics.median(t[1] for t in runs) / args.decoder_steps,
        )
        for name, runs in times.items()
    }
    mode = medians[next(iter(SETTINGS))]
    print(f"{'setting':<34} {'pretrain s/step':>16} {'decoder s/step':>15} {'vs the mode':>14}")
    for name, (pre, dec) in medians.items():
        print(f"{name:<34} {pre:>16.3f} {dec:>15.4f} {pre / mode[0]:>6.2f}x {dec / mode[1]:>5.2f}x")
    print(f"(median of {args.runs} alternated runs per setting; ratios: pretraining, decoder)")


if __name__ == "__main__":
    main()
