"""What an import tells the operator: counts, then the rows to look at, each with its reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from handlers.i18n import Translator
from handlers.operator.import_plan import ImportPlan, Rejection
from handlers.operator.importer import ImportResult
from handlers.org import OTHER_TOPIC, Organisation
from handlers.topics import CONFIDENT_SCORE

SHOWN = 30  # rows listed on screen per section; the rejected file has them all
LINES_PER_CATEGORY = 10


def reason_text(t: Translator, rejection: Rejection) -> str:
    return t(rejection.key, **rejection.values)


def report_lines(t: Translator, org: Organisation, plan: ImportPlan, result: ImportResult, *,
                 source: str, dry_run: bool, rejected_file: Path | None,
                 seconds: float | None = None) -> list[str]:
    channel = t(f"channel.{plan.channel}")
    lines = [t("import.report.title", channel=channel, file=source, rows=plan.total)]
    if dry_run:
        lines.append(t("import.report.dry_run"))
    created = len(plan.rows) - result.already_present if dry_run else result.created
    lines.append(t("import.report.would_create" if dry_run else "import.report.created",
                   count=created))
    lines.append(t("import.report.present", count=result.already_present))
    lines.append(t("import.report.file_duplicates", count=len(plan.file_duplicates)))
    lines += _listed(t, [t("import.report.file_duplicate_line", line=line, external=external,
                           first=first) for line, external, first in plan.file_duplicates])
    lines.append(t("import.report.rejected", count=len(plan.rejected)))
    lines += _listed(t, [t("import.report.rejected_line", line=r.line, reason=reason_text(t, r))
                         for r in plan.rejected])
    if rejected_file is not None:
        lines.append(t("import.report.rejected_file", path=str(rejected_file)))
    unknown = sum(len(rows) for rows in plan.unknown_categories.values())
    if plan.suggested:
        lines += suggested_lines(t, org, plan)
        lines.append(t("import.report.unknown_categories_suggested", count=unknown))
    else:
        lines.append(t("import.report.unknown_categories", count=unknown,
                       other=org.topic_by_id[OTHER_TOPIC].label(t.locale)))
    lines += _listed(t, [t("import.report.unknown_category_line",
                           category=category or t("import.category_empty"),
                           lines=_numbers(rows)) for category, rows in
                         sorted(plan.unknown_categories.items(), key=lambda kv: -len(kv[1]))])
    if plan.no_answer:
        lines.append(t("import.report.no_answer", count=plan.no_answer))
    if not dry_run:
        lines.append(t("import.report.messages", count=result.messages))
    if seconds is not None:
        lines.append(t("import.report.elapsed", seconds=f"{seconds:.1f}"))
    return lines


def suggested_lines(t: Translator, org: Organisation, plan: ImportPlan) -> list[str]:
    """How many rows got their topic from the text, how confidently, and which topics."""
    rows = plan.suggested_rows
    scores = [row.suggestion_score or 0.0 for row in rows]
    confident = sum(score >= CONFIDENT_SCORE for score in scores)
    mean = round(100 * sum(scores) / len(scores)) if scores else 0
    lines = [t("import.report.suggested", count=len(rows), threshold=round(CONFIDENT_SCORE * 100),
               confident=confident, mean=mean)]
    by_topic = Counter(row.suggested_topic for row in rows)
    lines += _listed(t, [t("import.report.suggested_line",
                           topic=org.topic_by_id[topic].label(t.locale), count=count)
                         for topic, count in by_topic.most_common() if topic])
    return lines


def _listed(t: Translator, entries: list[str]) -> list[str]:
    shown = ["  " + entry for entry in entries[:SHOWN]]
    if len(entries) > SHOWN:
        shown.append("  " + t("import.report.more", count=len(entries) - SHOWN))
    return shown


def _numbers(rows: list[int]) -> str:
    text = ", ".join(str(n) for n in rows[:LINES_PER_CATEGORY])
    return text + (f", … (+{len(rows) - LINES_PER_CATEGORY})" if len(rows) > LINES_PER_CATEGORY
                   else "")
