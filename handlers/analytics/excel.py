"""A report as an .xlsx workbook: the title, the period and the filters on top, then the table."""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from handlers.analytics.report import Report
from handlers.i18n import Translator
from storage.stats import COUNT_METRICS, HOUR_METRICS, SHARE_METRICS

HEADER_ROW = 6  # rows 1-4: title, period, filters, generated; row 5 stays empty


def number_format(metric: str) -> str:
    if metric in COUNT_METRICS:
        return "0"
    if metric in SHARE_METRICS:
        return "0.0%"
    return "0.0" if metric in HOUR_METRICS else "0.00"


def write_xlsx(report: Report, t: Translator, path: Path) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = t("stats.xlsx.sheet")
    sheet["A1"] = report.title
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A2"] = t("stats.xlsx.period", period=report.period_text)
    sheet["A3"] = t("stats.xlsx.filters", filters=report.filters)
    local = report.generated_at.astimezone(report.tz)
    sheet["A4"] = t("stats.xlsx.generated", when=f"{local:%d.%m.%Y %H:%M}",
                    zone=str(report.tz))
    headers = [report.group_title, *(t(f"stats.metric.{m}") for m in report.metrics)]
    for column, header in enumerate(headers, start=1):
        cell = sheet.cell(row=HEADER_ROW, column=column, value=header)
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    rows = [*report.rows, *([report.total] if report.total else [])]
    for offset, row in enumerate(rows, start=1):
        number = HEADER_ROW + offset
        sheet.cell(row=number, column=1, value=row.label)
        for column, metric in enumerate(report.metrics, start=2):
            cell = sheet.cell(row=number, column=column, value=row.values.get(metric))
            cell.number_format = number_format(metric)
        if row is report.total:
            for column in range(1, len(headers) + 1):
                sheet.cell(row=number, column=column).font = Font(bold=True)
    sheet.column_dimensions["A"].width = max(24, min(60, max(
        [len(report.group_title), *(len(r.label) for r in rows)]) + 2))
    for column in range(2, len(headers) + 1):
        sheet.column_dimensions[get_column_letter(column)].width = 18
    sheet.freeze_panes = sheet.cell(row=HEADER_ROW + 1, column=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path
