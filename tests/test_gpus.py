"""One GPU per process: the claiming logic, on the CPU, with fake GPU counts."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from clipprobe import gpus

HOLD = """
import sys, time
from pathlib import Path
from clipprobe import gpus
print(gpus.claim({n}, Path(sys.argv[1]), poll=0.05), flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(n: int, locks: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD.format(n=n), str(locks), str(seconds)], stdout=subprocess.PIPE, text=True
    )


def test_each_process_holds_its_own_gpu_and_a_fifth_waits_for_one(tmp_path):
    holders = [_holder(4, tmp_path, 3.0) for _ in range(4)]
    claimed = sorted(int(p.stdout.readline()) for p in holders)
    assert claimed == [0, 1, 2, 3]
    start = time.perf_counter()
    late = _holder(4, tmp_path, 0.0)
    index = int(late.stdout.readline())  # only once a holder has exited (and the kernel dropped its lock)
    assert time.perf_counter() - start > 1.0 and index in range(4)
    for process in [*holders, late]:
        process.wait()


def test_a_lock_is_released_when_its_process_ends(tmp_path):
    first = _holder(2, tmp_path, 0.0)
    assert int(first.stdout.readline()) == 0
    first.wait()
    assert gpus.claim(2, tmp_path) == 0  # free again, without any cleanup


def test_the_user_s_own_choice_and_one_gpu_machines_are_left_alone(monkeypatch, tmp_path):
    monkeypatch.setattr(gpus, "LOCKS", tmp_path)
    monkeypatch.setattr(gpus, "count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    gpus.claim_for("auto")
    assert not list(tmp_path.iterdir())  # Slurm or the user set it: nothing claimed
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    gpus.claim_for("cpu")
    monkeypatch.setattr(gpus, "count", lambda: 1)
    gpus.claim_for("auto")
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(gpus, "count", lambda: 3)
    monkeypatch.setattr(gpus, "_held", [])
    gpus.claim_for("cuda")
    assert (tmp_path / "gpu0.lock").exists() and gpus.os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
