"""Scoring a suggester on labelled messages: accuracy, confusions, and how precise the top
suggestion is above a confidence threshold (what the citizen's «Похоже, это … — верно?» uses).

Shared by `mcu topics eval` and bench/topics.py. The file format is TSV with a header and the
columns id, topic, text.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from handlers.topics import Suggestion, TopicSuggester

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class EvalFileError(Exception):
    pass


@dataclass(frozen=True)
class Labelled:
    id: str
    topic: str
    text: str


@dataclass
class ThresholdRow:
    threshold: float
    covered: int  # messages whose top score reaches the threshold
    correct: int  # of those, how many have the right top suggestion


@dataclass
class EvalReport:
    total: int = 0
    top1: int = 0
    top3: int = 0
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (true, predicted)
    per_topic: dict[str, tuple[int, int]] = field(default_factory=dict)  # topic → (right, all)
    thresholds: list[ThresholdRow] = field(default_factory=list)

    @property
    def top1_share(self) -> float:
        return self.top1 / self.total if self.total else 0.0

    @property
    def top3_share(self) -> float:
        return self.top3 / self.total if self.total else 0.0


def read_labelled(path: Path) -> list[Labelled]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            missing = {"id", "topic", "text"} - set(reader.fieldnames or [])
            if missing:
                raise EvalFileError(f"{path}: missing columns {', '.join(sorted(missing))} "
                                    "(expected a TSV header: id, topic, text)")
            return [Labelled(row["id"], row["topic"].strip(), row["text"]) for row in reader
                    if (row.get("text") or "").strip()]
    except OSError as exc:
        raise EvalFileError(f"{path}: {exc.strerror}") from exc


def evaluate(suggester: TopicSuggester, rows: list[Labelled]) -> EvalReport:
    results = suggester.suggest_many([row.text for row in rows])
    return score(rows, results)


def score(rows: list[Labelled], results: list[list[Suggestion]]) -> EvalReport:
    report = EvalReport(total=len(rows))
    per_topic: dict[str, list[int]] = {}
    tops: list[tuple[float, bool]] = []
    for row, suggestions in zip(rows, results, strict=True):
        best = suggestions[0]
        right = best.topic_id == row.topic
        report.top1 += right
        report.top3 += row.topic in {s.topic_id for s in suggestions[:3]}
        if not right:
            report.confusions[(row.topic, best.topic_id)] += 1
        counts = per_topic.setdefault(row.topic, [0, 0])
        counts[0] += right
        counts[1] += 1
        tops.append((best.score, right))
    report.per_topic = {topic: (c[0], c[1]) for topic, c in sorted(per_topic.items())}
    report.thresholds = [ThresholdRow(t, sum(s >= t for s, _ in tops),
                                      sum(s >= t and ok for s, ok in tops)) for t in THRESHOLDS]
    return report


def report_lines(report: EvalReport, pairs: int = 10) -> list[str]:
    lines = [f"messages: {report.total}",
             f"top-1: {report.top1_share:.1%} ({report.top1}/{report.total})",
             f"top-3: {report.top3_share:.1%} ({report.top3}/{report.total})",
             "per topic (top-1): " + ", ".join(
                 f"{topic} {right}/{count}" for topic, (right, count) in report.per_topic.items())]
    if report.confusions:
        lines.append("confusions (true → suggested: count):")
        lines += [f"  {true} → {predicted}: {count}"
                  for (true, predicted), count in report.confusions.most_common(pairs)]
    lines.append("top suggestion above a threshold (coverage, precision):")
    for row in report.thresholds:
        precision = row.correct / row.covered if row.covered else 1.0
        lines.append(f"  ≥ {row.threshold:.2f}: {row.covered / (report.total or 1):.0%} of "
                     f"messages, right {precision:.1%} ({row.correct}/{row.covered})")
    return lines
