"""A report as a monospace table (chat, terminal), CSV and JSON (machines)."""

from __future__ import annotations

import csv
import io
import json

from handlers.analytics.report import Report
from handlers.i18n import Translator
from storage.stats import COUNT_METRICS, HOUR_METRICS, SHARE_METRICS, Value

LABEL_WIDTH = 22  # a phone shows about 40 monospace characters; the label gets half


def cell(metric: str, value: Value, locale: str = "ru") -> str:
    if value is None:
        return "—"
    if metric in COUNT_METRICS:
        return str(int(value))
    if metric in SHARE_METRICS:
        return f"{value * 100:.0f}%"
    text = f"{value:.1f}" if metric in HOUR_METRICS else f"{value:.2f}"
    return text.replace(".", ",") if locale == "ru" else text


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def table_text(report: Report, t: Translator) -> str:
    """Aligned columns: the group, then one column per metric; the total last."""
    headers = [t(f"stats.short.{m}") for m in report.metrics]
    rows = [*report.rows, *([report.total] if report.total else [])]
    cells = [[cell(m, row.values.get(m), t.locale) for m in report.metrics] for row in rows]
    widths = [max([len(h), *(len(line[i]) for line in cells)]) for i, h in enumerate(headers)]
    label_width = min(LABEL_WIDTH, max([len(report.group_title),
                                        *(len(row.label) for row in rows)]))

    def line(label: str, values: list[str]) -> str:
        columns = " ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))
        return f"{_fit(label, label_width).ljust(label_width)} {columns}".rstrip()

    lines = [line(report.group_title, headers)]
    lines.append("-" * len(lines[0]))
    for row, values in zip(report.rows, cells, strict=False):
        lines.append(line(row.label, values))
    if report.total is not None:
        lines.append("-" * len(lines[0]))
        lines.append(line(report.total.label, cells[-1]))
    return "\n".join(lines)


def legend_text(report: Report, t: Translator) -> str:
    """What the short column names mean."""
    return "\n".join(f"{t(f'stats.short.{m}')} — {t(f'stats.metric.{m}')}"
                     for m in report.metrics)


def _machine(value: Value) -> Value:
    return round(value, 4) if isinstance(value, float) else value


def machine_rows(report: Report) -> list[dict[str, object]]:
    """The stable form: the group key under the grouping's name, then every metric."""
    grouping = report.section.group_by
    return [{grouping: row.key, **{m: _machine(row.values.get(m)) for m in report.metrics}}
            for row in report.rows]


def json_text(report: Report) -> str:
    return json.dumps(machine_rows(report), ensure_ascii=False, indent=2)


def csv_text(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([report.section.group_by, *report.metrics])
    for data in machine_rows(report):
        writer.writerow(["" if v is None else v for v in data.values()])
    return buffer.getvalue()
