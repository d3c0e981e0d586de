"""A paired claim of the summary ("A is ahead of B") put into words: a winner only when its interval excludes
zero, otherwise "not distinguishable", always with the seeds its sign holds in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """A paired difference a - b (results/summary.json's claims), its 95% interval and the seeds it holds in."""

    delta: float
    half: float | None  # None: one value per seed and a single seed, so no interval
    holds: int  # seeds whose own difference has the sign of `delta`
    seeds: int
    stability: str = ""  # how its verdict fared under bench/verdicts.py's perturbation ("" when not checked)

    @property
    def distinguishable(self) -> bool:
        return self.half is not None and abs(self.delta) > self.half

    def measured(self, unit: str = "points", scale: float = 100.0) -> str:
        """'+4.10 ± 2.00 points, 3 of 3 seeds', then the stability verdict when there is one."""
        interval = "no interval: one seed" if self.half is None else f"± {scale * self.half:.2f}"
        return f"{scale * self.delta:+.2f} {interval} {unit}, {self.holds} of {self.seeds} seeds{self._stability()}"

    def _stability(self) -> str:
        return f"; {self.stability}" if self.stability else ""

    def verdict(self) -> str:
        """Whether the numbers support the prediction `delta` > 0: 'supported', 'contradicted' (the
        interval excludes zero on the other side) or 'not distinguishable'."""
        if not self.distinguishable:
            return "not distinguishable"
        return "supported" if self.delta > 0 else "contradicted"

    def marked(self, label: str) -> str:
        """`label` with the stability verdict in brackets, when there is one (a finding stated in a list)."""
        return f"{label} ({self.stability})" if self.stability else label

    def words(self, a: str, b: str, unit: str = "points", scale: float = 100.0) -> str:
        """'a is ahead of b by 4.10 ± 2.00 points (3 of 3 seeds)', or 'a and b are not distinguishable
        (...)'."""
        if not self.distinguishable:
            return f"{a} and {b} are not distinguishable ({self.measured(unit, scale)})"
        ahead, behind = (a, b) if self.delta > 0 else (b, a)
        by = f"{scale * abs(self.delta):.2f} ± {scale * self.half:.2f} {unit}"
        return f"{ahead} is ahead of {behind} by {by} ({self.holds} of {self.seeds} seeds{self._stability()})"


def stability_words(record: dict, key: str, verdict: str) -> str:
    """How claim `key` ("<experiment>/<claim>") fared in docs/verdicts.json (`record`, from bench/verdicts.py):
    "stable under <perturbation>", "**fragile**: <verdict> under <perturbation>", or "" when it was not
    checked or was checked on a run whose verdict differs from this one (another commit's results)."""
    checked = record.get("claims", {}).get(key)
    if not checked or checked["committed"] != verdict:
        return ""
    if checked["perturbed"] == verdict:
        return f"stable under {record['perturbation']}"
    return f"**fragile**: {checked['perturbed']} under {record['perturbation']}"
