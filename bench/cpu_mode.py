"""Benchmark: what the deterministic CPU mode costs, pinned (AVX2 everywhere) against native dispatch.

Runs the same workload in fresh processes, alternating the two modes (pinned, native, pinned, native, ...) so
that drift in the machine's load hits both alike: CLIP pretraining steps of the embedded default's tiny CLIP
(batch 128, 64 px shapes images) and training steps of the segmentation decoder on a frozen map. Prints the
seconds of each run and the ratio of the medians. Both modes run at the same thread count (params.yaml).

    python bench/cpu_mode.py                 # 30 pretraining steps + 40 decoder steps, 3 runs per mode
    python bench/cpu_mode.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

WORKLOAD = """
import time
import clipprobe
import torch
import torch.nn.functional as F
from clipprobe.data.captions import DEFAULT_CAPTION_MIX
from clipprobe.data.shapes import generate_shapes
from clipprobe.decoders.segment_models import FeatureDecoder
from clipprobe.models.clip import create_clip
from clipprobe.models.pretrain import PretrainConfig, pretrain_clip
from clipprobe.params import load_params
from clipprobe.runtime import start

params = load_params()
start(0, params.threads)
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
print(pretrain, time.perf_counter() - tic, clipprobe.DETERMINISTIC_CPU)
"""


def run(native: bool, steps: int, decoder_steps: int) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != "CLIPPROBE_NATIVE_CPU"}
    if native:
        env["CLIPPROBE_NATIVE_CPU"] = "1"
    code = WORKLOAD.format(steps=steps, decoder_steps=decoder_steps)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    pretrain, decoder, pinned = out.stdout.split()
    assert (pinned == "True") != native, f"mode not as asked: {out.stdout}"
    return float(pretrain), float(decoder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per mode, alternated")
    parser.add_argument("--steps", type=int, default=30, help="pretraining steps per run")
    parser.add_argument("--decoder-steps", type=int, default=40, help="decoder training steps per run")
    args = parser.parse_args()
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(args.runs):
        for native in (False, True):
            times[native].append(run(native, args.steps, args.decoder_steps))
    print(f"{'mode':<26} {'pretrain s/step':>16} {'decoder s/step':>15}   runs")
    medians = {}
    for native, label in ((False, "pinned (AVX2, the default)"), (True, "native (CLIPPROBE_NATIVE_CPU=1)")):
        pre = statistics.median(t[0] for t in times[native]) / args.steps
        dec = statistics.median(t[1] for t in times[native]) / args.decoder_steps
        medians[native] = (pre, dec)
        runs = ", ".join(f"{a:.1f}+{b:.1f}" for a, b in times[native])
        print(f"{label:<26} {pre:>16.3f} {dec:>15.4f}   {runs} s")
    print(
        f"pinned / native: pretraining {medians[False][0] / medians[True][0]:.2f}x, "
        f"decoder {medians[False][1] / medians[True][1]:.2f}x (median of {args.runs} alternated runs each)"
    )


if __name__ == "__main__":
    main()
