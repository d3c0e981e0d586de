#!/usr/bin/env python3
"""CPU canary: which kernel settings give the same float32 bytes on every x86-64 machine?

Runs a fixed set of torch workloads (MKL BLAS, oneDNN convolutions, ATen vectorised ops, a few training steps)
in a fresh process per setting of the kernel-dispatch environment variables, and prints one sha256 per
workload family. Two machines agree on a setting when every hash matches. Needs only torch.

    python cpu_canary.py                 # the table for this machine
    python cpu_canary.py --json out.json # also save it
    python cpu_canary.py --compare a.json b.json   # which settings agree between two machines

Reference tables measured elsewhere live beside this file (cpu_canary.*.json).

clipprobe's copy of shared/tools/cpu_canary.py, extended (docs/cpu.md): the setting `project` is the
deterministic mode as clipprobe runs it (MKL's COMPATIBLE branch plus `torch.sqrt` through the IEEE
instruction, clipprobe.cpu.sqrt), and `--emulate MODEL` runs every child under qemu-user as another CPU
(`apt-get install qemu-user`; `qemu-x86_64 -cpu help` lists the models; about 10 minutes a setting).

    python tools/cpu_canary.py --json docs/cpu/canary.intel-sapphire-rapids.json
    python tools/cpu_canary.py --emulate EPYC-Milan-v1 --only project --json /tmp/milan.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

BASE = {"MKL_DYNAMIC": "FALSE", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
SETTINGS = {
    "native": {},
    "avx2-cbwr-avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "MKL_CBWR": "AVX2",
    },
    "avx2-cbwr-avx2-strict": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "MKL_CBWR": "AVX2,STRICT",
    },
    "avx2-cbwr-compatible": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
    },
    "sse41-cbwr-compatible": {
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "DNNL_MAX_CPU_ISA": "SSE41",
        "MKL_CBWR": "COMPATIBLE",
    },
    # oneDNN off (torch.backends.mkldnn.enabled = False): convolutions fall back to ATen's own kernels + MKL
    "avx2-compatible-no-onednn": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "COMPATIBLE",
        "CANARY_NO_ONEDNN": "1",
    },
    "default-compatible-no-onednn": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_CBWR": "COMPATIBLE",
        "CANARY_NO_ONEDNN": "1",
    },
    # clipprobe's deterministic mode (clipprobe.cpu): the avx2-cbwr-compatible pins with an exact torch.sqrt
    "project": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "COMPATIBLE",
        "CANARY_EXACT_SQRT": "1",
    },
}


def workloads() -> dict[str, str]:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(2)
    if os.environ.get("CANARY_EXACT_SQRT") == "1":
        from clipprobe.cpu.sqrt import exact_sqrt

        exact_sqrt()
    if os.environ.get("CANARY_NO_ONEDNN") == "1":
        torch.backends.mkldnn.enabled = False
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    out: dict[str, list[torch.Tensor]] = {"blas": [], "conv": [], "aten": [], "train": []}
    for m, k, n in [(128, 512, 512), (77, 256, 768), (129, 257, 131), (4096, 128, 48), (3, 1000, 7)]:
        a, b = r(m, k).requires_grad_(), r(k, n).requires_grad_()
        y = a @ b
        y.square().sum().backward()
        out["blas"] += [y, a.grad, b.grad, torch.bmm(r(8, m, k), r(8, k, n))]
    for cl in (False, True):
        x = r(8, 32, 31, 33).requires_grad_()
        w3, w1 = r(48, 32, 3, 3).requires_grad_(), r(64, 48, 1, 1).requires_grad_()
        xi = x.contiguous(memory_format=torch.channels_last) if cl else x
        y = F.conv2d(F.relu(F.conv2d(xi, w3, padding=1, stride=2)), w1)
        y = F.batch_norm(y, None, None, training=True)
        y.square().mean().backward()
        out["conv"] += [y.contiguous(), x.grad, w3.grad, w1.grad]
    x = r(64, 1000)
    out["aten"] += [
        x.softmax(-1),
        x.log_softmax(-1),
        F.gelu(x),
        x.exp(),
        x.sum(0),
        x.cumsum(1),
        F.layer_norm(x, (1000,)),
        F.cross_entropy(x, torch.arange(64) % 1000),
        x.norm(dim=1),
        F.normalize(x, dim=-1) @ F.normalize(x, dim=-1).T,
    ]
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(512, 64),
        nn.GELU(),
        nn.LayerNorm(64),
        nn.Linear(64, 10),
    )
    attn = nn.MultiheadAttention(64, 4, batch_first=True)
    opt = torch.optim.AdamW(list(model.parameters()) + list(attn.parameters()), lr=1e-3)
    xs, ys, tok = r(32, 3, 24, 24), torch.arange(32) % 10, r(32, 12, 64)
    for _ in range(8):
        opt.zero_grad()
        a, _ = attn(tok, tok, tok)
        loss = F.cross_entropy(model(xs), ys) + a.square().mean()
        loss.backward()
        opt.step()
    out["train"] += [p.detach() for p in list(model.parameters()) + list(attn.parameters())]
    try:  # the project's own model family: a tiny open_clip CLIP (ModifiedResNet tower), contrastive steps
        from open_clip.loss import ClipLoss
        from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    except ImportError:
        return _digest(out)
    torch.manual_seed(0)
    clip = CLIP(
        128,
        CLIPVisionCfg(layers=[1, 1, 1, 1], width=16, head_width=32, image_size=64, patch_size=None),
        CLIPTextCfg(context_length=32, vocab_size=49408, width=128, heads=4, layers=2),
    )
    clip = clip.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(clip.parameters(), lr=2e-3, weight_decay=0.1)
    images = r(64, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    tokens = torch.randint(1, 49407, (64, 32), generator=g)
    loss_fn, out["clip"] = ClipLoss(), []
    for _ in range(6):
        opt.zero_grad()
        f_img, f_txt, scale = clip(images, tokens)
        loss = loss_fn(f_img, f_txt, scale)
        loss.backward()
        opt.step()
        out["clip"].append(loss.detach().reshape(1))
    out["clip"] += [p.detach() for p in clip.parameters()]
    return _digest(out)


def _digest(out: dict) -> dict[str, str]:
    return {
        k: hashlib.sha256(b"".join(t.detach().contiguous().numpy().tobytes() for t in v)).hexdigest()[:16]
        for k, v in out.items()
    }


def machine() -> dict:
    info = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        for key in ("vendor_id", "model name", "cpu family", "model"):
            info[key] = next(
                line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith(key)
            )
        flags = next(line for line in cpu.splitlines() if line.startswith("flags")).split()
        info["isa"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "avx_vnni") if f in flags]
    except (OSError, StopIteration):
        pass
    import torch

    info["torch"] = torch.__version__
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--compare", nargs=2)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--emulate", help="run the workloads under qemu-user as this CPU model")
    ap.add_argument("--only", nargs="+", choices=list(SETTINGS), help="these settings only")
    a = ap.parse_args()
    if a.child:
        import time

        t0 = time.perf_counter()
        hashes = workloads()
        print(json.dumps(hashes | {"seconds": round(time.perf_counter() - t0, 2)}))
        return
    if a.compare:
        x, y = (json.loads(Path(p).read_text()) for p in a.compare)
        print("A:", x["machine"], "\nB:", y["machine"])
        for s in SETTINGS:
            fa, fb = x["settings"].get(s, {}), y["settings"].get(s, {})
            if not fa or not fb:
                print(f"{s:24} not in both tables")
                continue
            fa = {k: v for k, v in fa.items() if k != "seconds"}
            same = [f for f in fa if fa.get(f) == fb.get(f)]
            print(
                f"{s:24} agree on {len(same)}/{len(fa)}: {', '.join(f for f in fa if f not in same) or 'all'}"
                + ("" if len(same) < len(fa) else "  <- same bytes")
            )
        return
    res = {"machine": {"emulated": a.emulate} if a.emulate else machine(), "settings": {}}
    emulator = ["qemu-x86_64", "-cpu", a.emulate] if a.emulate else []
    for name, env in SETTINGS.items():
        if a.only and name not in a.only:
            continue
        e = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ATEN_", "ONEDNN_", "DNNL_", "MKL_", "OMP_"))
        }
        e.update(BASE | env)
        p = subprocess.run(
            [*emulator, sys.executable, __file__, "--child"],
            env=e,
            capture_output=True,
            text=True,
            check=True,
        )
        res["settings"][name] = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"{name:24}", "  ".join(f"{k} {v}" for k, v in res["settings"][name].items()), flush=True)
    print(json.dumps(res["machine"]))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
