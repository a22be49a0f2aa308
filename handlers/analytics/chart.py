"""A report as a PNG chart (matplotlib, Agg, DejaVu Sans for Cyrillic)."""

from __future__ import annotations

from pathlib import Path

from handlers.analytics.report import Report
from handlers.i18n import Translator
from storage.stats import COUNT_METRICS, PERIOD_GROUPINGS, SHARE_METRICS

MAX_BARS = 20  # more categories than this do not read on a phone
LABEL_CHARS = 38
COLOURS = ("#1f6fb2", "#e4572e", "#76b041", "#ffc914", "#7e5a9b")


def chart_metrics(report: Report) -> list[str]:
    """The section's first metric; when it is a count, every count (they share one axis)."""
    first = report.metrics[0]
    return [m for m in report.metrics if m in COUNT_METRICS] if first in COUNT_METRICS else [first]


def render_chart(report: Report, t: Translator, path: Path) -> Path:
    # Imported here: matplotlib is heavy and only this path needs it. The Figure API keeps
    # pyplot's global state (and any GUI backend) out of a server process.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = chart_metrics(report)
    by_period = report.section.group_by in PERIOD_GROUPINGS
    rows = report.rows if by_period else report.rows[:MAX_BARS]
    labels = [r.label if len(r.label) <= LABEL_CHARS else r.label[:LABEL_CHARS - 1] + "…"
              for r in rows]
    scale = {m: 100.0 if m in SHARE_METRICS else 1.0 for m in metrics}
    series = {m: [float(r.values.get(m) or 0) * scale[m] for r in rows] for m in metrics}

    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 10}):
        height = 4.5 if by_period else max(3.0, 0.4 * len(rows) * len(metrics) + 1.6)
        figure = Figure(figsize=(9, min(height, 12)), dpi=110)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        width = 0.8 / len(metrics)
        positions = range(len(rows))
        for i, metric in enumerate(metrics):
            offsets = [p - 0.4 + width * (i + 0.5) for p in positions]
            name = t(f"stats.metric.{metric}")
            colour = COLOURS[i % len(COLOURS)]
            if by_period:
                bars = axes.bar(offsets, series[metric], width, label=name, color=colour)
            else:
                bars = axes.barh(offsets, series[metric], width, label=name, color=colour)
            if len(rows) <= 12:
                axes.bar_label(bars, fmt="%.0f" if metric in COUNT_METRICS else "%.1f",
                               padding=2, fontsize=8)
        if by_period:
            step = max(1, len(rows) // 15)
            axes.set_xticks(list(positions)[::step], labels[::step], rotation=45, ha="right")
        else:
            axes.set_yticks(list(positions), labels)
            axes.invert_yaxis()  # the largest group on top, as in the table
        if len(metrics) > 1:
            axes.legend(loc="best", fontsize=8)
        elif metrics[0] in SHARE_METRICS:
            (axes.set_ylabel if by_period else axes.set_xlabel)("%")
            (axes.set_ylim if by_period else axes.set_xlim)(0, 105)
        elif metrics[0] == "average_rating":
            (axes.set_ylim if by_period else axes.set_xlim)(0, 5.2)  # the whole 1-5 scale
        axes.set_title(f"{report.title}\n{report.period_text}", fontsize=11)
        axes.grid(axis="y" if by_period else "x", alpha=0.3)
        axes.set_axisbelow(True)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    return path
