"""Progress of long loops: a tqdm bar on a terminal, and in logs (DVC, CI) a line every half minute with the
elapsed time and an estimate of what is left. Loops shorter than that print nothing; the stage's closing line
gives the total."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

LOG_EVERY_S = 30.0  # seconds between progress lines in logs


def on_terminal() -> bool:
    return sys.stderr.isatty()


class Progress:
    """tqdm's interface (iterate, update, set_postfix_str, close) with the log fallback described above."""

    def __init__(
        self, iterable: Iterable | None = None, *, total: int | None = None, desc: str, enabled: bool = True
    ):
        self.iterable, self.desc = iterable, desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.bar = tqdm(iterable, total=self.total, desc=desc) if enabled and on_terminal() else None
        self.logging = enabled and self.bar is None
        self.done, self.postfix = 0, ""
        self.start = self.last = time.perf_counter()

    def __iter__(self) -> Iterator[Any]:
        if self.bar is not None:
            yield from self.bar
            return
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)
            return
        self.done += n
        now = time.perf_counter()
        if self.logging and now - self.last >= LOG_EVERY_S:
            self.last = now
            elapsed = now - self.start
            left = (
                f", about {elapsed * (self.total - self.done) / self.done:.0f} s left" if self.total else ""
            )
            done = f"{self.done}/{self.total}" if self.total else str(self.done)
            extra = f" ({self.postfix})" if self.postfix else ""
            print(f"{self.desc}: {done} after {elapsed:.0f} s{left}{extra}", file=sys.stderr, flush=True)

    def set_postfix_str(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
        self.postfix = text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress(
    iterable: Iterable | None = None, *, total: int | None = None, desc: str, enabled: bool = True
) -> Progress:
    """Wrap a loop: `for x in progress(xs, desc="...")`, or `bar = progress(total=n, desc=...)`; `bar.update()`."""
    return Progress(iterable, total=total, desc=desc, enabled=enabled)
