"""clipprobe: measure what frozen CLIP features know.

Importing the package turns on the deterministic CPU mode (`clipprobe.cpu`): before torch loads, every CPU
kernel is pinned to one instruction set, so the same params give the same bytes on any x86-64 machine.
"""

import time

from clipprobe.cpu import pin_kernels

__version__ = "0.1.0"
STARTED = time.perf_counter()  # when the process imported clipprobe: a stage's closing line counts from it
DETERMINISTIC_CPU = pin_kernels()
