"""What every benchmark of bench/ returns: one row per measure, as a ratio to a baseline
measured in the same run (`python bench/run.py` prints them as one table)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).parent / ".data"  # cached datasets, not in git


@dataclass(frozen=True)
class Row:
    measure: str  # what was measured, e.g. "dialog updates/s"
    value: str  # the figure with its unit, e.g. "612 upd/s"
    baseline: str  # the baseline with its unit, e.g. "bare aiogram 1,020 upd/s"
    ratio: float | None  # value / baseline (or the reverse where smaller is better)
    goal: str  # e.g. "≥ 0.5×"
    met: bool

    def cells(self) -> list[str]:
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}×"
        return [self.measure, self.value, self.baseline, ratio, self.goal,
                "yes" if self.met else "NO"]


def table(rows: list[Row]) -> str:
    """A Markdown table, the same one that goes into the README."""
    head = ["measure", "value", "baseline (same run)", "ratio", "goal", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)
