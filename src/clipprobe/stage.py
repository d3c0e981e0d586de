"""The entry-point guard every stage script ends with (torch-free, so the report stage never loads torch)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from clipprobe import io
from clipprobe.errors import ClipprobeError


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's main(); end with one line naming what it wrote and how long it took.

    A ClipprobeError ends the process with one line on stderr and exit code 2.
    """
    start = time.perf_counter()
    try:
        main()
    except ClipprobeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    wrote = ", ".join(dict.fromkeys(str(path) for path in io.WRITTEN)) or "nothing"
    print(f"{name}: wrote {wrote} in {time.perf_counter() - start:.1f} s")
