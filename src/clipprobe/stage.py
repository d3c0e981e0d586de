"""The entry-point guard every stage script ends with (torch-free, so the report stage never loads torch)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import clipprobe
from clipprobe import io
from clipprobe.errors import ClipprobeError


class FoldedWarnings(logging.Handler):
    """Collects every warning of a stage (logging's, and warnings.warn's through logging.captureWarnings)
    and prints each distinct one once, at the end, with its count: 13 identical "stopped at max_iter" lines
    of one stage become one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: dict[tuple[str, str], list] = {}  # (logger, message template) -> [first message, count]

    def emit(self, record: logging.LogRecord) -> None:
        first_line = next(iter(record.getMessage().strip().splitlines()), "")  # warnings.warn adds its source
        entry = self.seen.setdefault((record.name, str(record.msg)), [first_line, 0])
        entry[1] += 1

    def lines(self) -> list[str]:
        return [
            f"warning: {message}" + (f" ({count} times)" if count > 1 else "")
            for message, count in self.seen.values()
        ]


class _InfoLines(logging.StreamHandler):
    """The library's progress notes (logger.info in clipprobe.*), printed as plain lines on stdout."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.addFilter(lambda record: record.levelno < logging.WARNING)  # warnings fold at the end instead


def _collect_warnings() -> FoldedWarnings:
    handler = FoldedWarnings()
    root = logging.getLogger()
    root.handlers[:] = [handler]  # before open_clip's root-level warnings can install basicConfig's
    root.setLevel(logging.WARNING)
    library = logging.getLogger("clipprobe")
    library.handlers[:] = [_InfoLines()]
    library.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return handler


MAX_SEED = 2**32 - 1  # numpy's legacy seeding (np.random.seed) takes 0 .. 2**32 - 1


def _seed_argument(name: str) -> int:
    """The training seed a per-seed stage runs for: its one argument (dvc.yaml: `foreach: ${seeds}`)."""
    arg = sys.argv[1] if len(sys.argv) == 2 else ""
    if not (arg.isascii() and arg.isdigit() and int(arg) <= MAX_SEED):
        raise ClipprobeError(
            f"usage: python stages/{name}.py <seed>: a seed of params.yaml's seeds, 0 to {MAX_SEED} in ASCII "
            f"digits (got {' '.join(sys.argv[1:])!r})"
        )
    return int(arg)


def run_stage(name: str, main: Callable[..., None], per_seed: bool = False) -> None:
    """Run a stage's main() (main(seed) for a per-seed stage); end with one line naming what it wrote and how
    long the process took, imports included. A ClipprobeError ends the process with one line on stderr and
    exit code 2; warnings are printed once each before the last line (`FoldedWarnings`)."""
    warnings = _collect_warnings()
    try:
        with io.transaction():  # every output swapped in together at the end, or none of them
            if per_seed:
                seed = _seed_argument(name)
                name = f"{name}@{seed}"
                main(seed)
            else:
                main()
    except ClipprobeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for line in warnings.lines():
        print(line, file=sys.stderr)
    wrote = ", ".join(dict.fromkeys(str(path) for path in io.WRITTEN)) or "nothing"
    print(f"{name}: wrote {wrote} in {time.perf_counter() - clipprobe.STARTED:.1f} s")
