"""`python -m clipprobe.cpu`: does this machine reproduce the committed bytes? Ten seconds, before a repro.

Prints the CPU, the kernel settings of the deterministic mode, the thread count and, loop by loop, whether
the golden fingerprint (clipprobe.fingerprint) comes out byte for byte. Exit code 0 when it does, 1 when not.

    python -m clipprobe.cpu              # the check
    python -m clipprobe.cpu --json       # this machine's fingerprint as JSON (tools/cpu_emulated.py reads it)
    python -m clipprobe.cpu --update     # GOLDEN as this machine computes it, to paste into fingerprint.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import clipprobe
from clipprobe.cpu import NATIVE, PINNED, describe_cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the fingerprint as JSON only")
    output.add_argument("--update", action="store_true", help="print the GOLDEN dict this machine computes")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the loops are too short to converge, and say so
    from clipprobe import fingerprint

    found = fingerprint.fingerprint()
    if args.json or args.update:
        print(json.dumps(found, indent=4) if args.json else f"GOLDEN = {json.dumps(found, indent=4)}")
        return 0
    pins = " ".join(f"{key}={os.environ.get(key)}" for key in PINNED if not key.startswith("NPY_"))
    pins += ", numpy without AVX-512, torch.sqrt -> IEEE sqrt, float16 in integer arithmetic"
    mode = f"on: {pins}" if clipprobe.DETERMINISTIC_CPU else f"off ({NATIVE}=1): the host's own kernels"
    print(f"cpu       {describe_cpu()}")
    print(f"kernels   deterministic mode {mode}")
    print(
        f"threads   {fingerprint.THREADS} intra-op (params.yaml `threads`; the golden bytes are for this count)"
    )
    for name, golden in fingerprint.GOLDEN.items():
        verdict = "same bytes" if found.get(name) == golden else f"OTHER BYTES ({found.get(name, '-')[:12]})"
        print(f"{'golden' if name == next(iter(fingerprint.GOLDEN)) else '':9} {name:<20} {verdict}")
    message = fingerprint.mismatch_message(found)
    print(
        message
        or "verdict   this machine reproduces the golden fingerprint: dvc repro gives the committed bytes"
    )
    return 1 if message else 0


if __name__ == "__main__":
    sys.exit(main())
