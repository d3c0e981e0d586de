"""The golden fingerprint on CPUs this machine is not: qemu-user emulates an AMD EPYC and an Intel Core.

qemu's user-mode emulator runs the same Python and wheels, but answers CPUID as the chosen CPU model (vendor,
instruction sets, cache sizes), so MKL and oneDNN take the code paths they would take there. Every
instruction is computed by qemu's own implementation of its IEEE definition: where a kernel uses an
instruction whose result the ISA leaves to the vendor (RSQRTPS, RCPPS), the emulated bytes differ from this
machine's. Loops that agree here and natively therefore depend neither on the vendor's dispatch nor on
vendor-specific rounding. It found the MKL square root (docs/cpu.md). Slow: about 9 minutes per CPU model.

    apt-get install qemu-user
    python tools/cpu_emulated.py                          # EPYC-Milan-v1 and Skylake-Client-v1
    python tools/cpu_emulated.py --cpu EPYC-Rome-v1
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time

FINGERPRINT = [sys.executable, "-m", "clipprobe.cpu", "--json"]


def run(cpu: str | None) -> dict[str, str]:
    """The fingerprint natively (cpu None) or under qemu-user emulating `cpu`."""
    command = FINGERPRINT if cpu is None else ["qemu-x86_64", "-cpu", cpu, *FINGERPRINT]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"error: {' '.join(command)} failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpu", action="append", help="qemu CPU model (repeatable; `qemu-x86_64 -cpu help`)")
    args = parser.parse_args()
    if shutil.which("qemu-x86_64") is None:
        sys.exit("error: qemu-x86_64 not found: apt-get install qemu-user")
    models = args.cpu or ["EPYC-Milan-v1", "Skylake-Client-v1"]
    native = run(None)
    columns = {"this machine": native}
    for model in models:
        tic = time.perf_counter()
        columns[model] = run(model)
        print(f"{model}: {time.perf_counter() - tic:.0f} s", file=sys.stderr)
    print(f"{'loop':<22}" + "".join(f"{name:>20}" for name in columns) + "  verdict")
    for loop in native:
        hashes = [column[loop] for column in columns.values()]
        verdict = "same bytes" if len(set(hashes)) == 1 else "DIFFERENT"
        print(f"{loop:<22}" + "".join(f"{h[:12]:>20}" for h in hashes) + f"  {verdict}")


if __name__ == "__main__":
    main()
