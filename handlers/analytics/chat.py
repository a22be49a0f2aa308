"""/stats in chat: a section, a period, then the table, the chart and an «Excel» button.

Open to the chairman, the curator, the IM coordinator and the press service (all blocks) and to
heads (their own block). Buttons carry only the section and the dates: who may see which block
is decided from the staff record on every press (handlers/analytics/report.py Audience).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from handlers.analytics.chart import render_chart
from handlers.analytics.payloads import ChoosePeriod, ChooseSection, Sections, Spreadsheet
from handlers.analytics.periods import (
    PRESETS,
    PeriodError,
    decode_day,
    encode_day,
    parse_range,
    preset_period,
)
from handlers.analytics.render import legend_text, table_text
from handlers.analytics.report import STATS_ROLES, Audience, Report, build_report
from handlers.events import Button, IncomingMessage, OutgoingDocument, OutgoingPhoto, Reply
from handlers.formatting import split_text
from handlers.i18n import Translator
from handlers.org import Section
from handlers.payloads import tag_of, unpack_any
from handlers.staff.authz import refuse
from handlers.staff.features import Feature
from handlers.staff.payloads import CancelInput
from handlers.turn import Turn
from storage.models import Staff
from storage.stats import Period

PREFIX = Sections.tag.split(":")[0]  # the feature's payloads: "st:..."
# Charts and workbooks are sent at once; two days later nobody needs the files.
REPORT_RETENTION = timedelta(days=2)
class StatsState(StrEnum):
    DATES = "stats_dates"  # waiting for a typed period


DATES_STATE = StatsState.DATES
# matplotlib's rc_context is process-global: one chart at a time.
_render_lock = threading.Lock()


def new_report_path(turn: Turn, suffix: str) -> Path:
    """A fresh file under MCU_DATA_DIR/reports/; files older than REPORT_RETENTION go."""
    directory = turn.services.files.root / "reports"
    if directory.is_dir():
        cutoff = time.time() - REPORT_RETENTION.total_seconds()
        for old in directory.iterdir():
            with contextlib.suppress(OSError):  # another process may have removed it
                if old.is_file() and old.stat().st_mtime < cutoff:
                    old.unlink()
    return directory / f"{uuid.uuid4().hex}{suffix}"


def section_by_name(turn: Turn, name: str) -> Section | None:
    return turn.services.org.section(name)


def sections_reply(turn: Turn) -> Reply:
    t, sections = turn.t, turn.services.org.sections
    if not sections:
        return Reply(t("stats.no_sections"))
    return Reply(t("stats.choose_section"), title=t("stats.title"), buttons=[
        [Button(s.label(t.locale)[:60], ChooseSection(s.name).pack())] for s in sections])


def periods_reply(turn: Turn, section: Section) -> Reply:
    t = turn.t
    buttons = [Button(t(f"stats.period.{p}"), ChoosePeriod(section.name, p).pack())
               for p in (*PRESETS, "custom")]
    return Reply(t("stats.choose_period", section=section.label(t.locale)),
                 buttons=[buttons[i:i + 2] for i in range(0, len(buttons), 2)])


# ---------------------------------------------------------------------------------------------

async def start(turn: Turn, staff: Staff, argument: str) -> None:
    section = section_by_name(turn, argument) if argument else None
    turn.reply(periods_reply(turn, section) if section else sections_reply(turn))


async def on_button(turn: Turn, staff: Staff, raw: str) -> None:
    payload = unpack_any(raw, (Sections, ChooseSection, ChoosePeriod, Spreadsheet))
    section = (section_by_name(turn, payload.section)
               if isinstance(payload, ChooseSection | ChoosePeriod | Spreadsheet) else None)
    if isinstance(payload, Sections):
        turn.reply(sections_reply(turn))
    elif isinstance(payload, ChooseSection) and section is not None:
        turn.reply(periods_reply(turn, section))
    elif isinstance(payload, ChoosePeriod) and section is not None:
        await on_period(turn, staff, section, payload.period, raw)
    elif isinstance(payload, Spreadsheet) and section is not None:
        first, last = decode_day(payload.first), decode_day(payload.last)
        if first is None or last is None or last < first:
            stale(turn, staff, raw)
            return
        await send_excel(turn, staff, section, Period(first, last + timedelta(days=1)))
    else:
        stale(turn, staff, raw)


async def on_period(turn: Turn, staff: Staff, section: Section, period: str, raw: str) -> None:
    if period == "custom":
        turn.dialog.set(DATES_STATE, {"section": section.name}, now=turn.now)
        turn.reply(ask_dates(turn))
    elif period in PRESETS:
        today = turn.services.local(turn.now).date()
        await show_result(turn, staff, section, preset_period(period, today))
    else:
        stale(turn, staff, raw)


def stale(turn: Turn, staff: Staff, raw: str) -> None:
    refuse(staff.id, "stats payload " + tag_of(raw), None)
    turn.notice = turn.t("button.stale")
    turn.say("button.stale_long")


def ask_dates(turn: Turn) -> Reply:
    return Reply(turn.t("stats.ask_dates"), buttons=[[
        Button(turn.t("button.cancel"), CancelInput().pack())]])


async def on_message(turn: Turn, staff: Staff, message: IncomingMessage) -> None:
    section = section_by_name(turn, str(turn.dialog.data.get("section", "")))
    if section is None:
        turn.dialog.reset(turn.now)
        turn.reply(sections_reply(turn))
        return
    try:
        period = parse_range(message.text or "")
    except PeriodError as error:
        turn.say(f"stats.dates_{error.reason}")
        turn.reply(ask_dates(turn))
        return
    turn.dialog.reset(turn.now)
    await show_result(turn, staff, section, period)


# ---------------------------------------------------------------------------------------------

async def report_for(turn: Turn, staff: Staff, section: Section, period: Period) -> Report:
    # Its own read-only session: the statements of a report never take the SQLite write lock
    # (the turn's own transaction is the core's business).
    async with turn.services.readers() as session:
        return await build_report(session, turn.services.org, turn.services.tz, turn.now,
                                  section, period, Audience.of(staff), turn.t)


async def show_result(turn: Turn, staff: Staff, section: Section, period: Period) -> None:
    t = turn.t
    report = await report_for(turn, staff, section, period)
    title = t("stats.result_title", section=report.title, period=report.period_text)
    if not report.has_data:
        turn.reply(Reply(t("stats.no_data", filters=report.filters), title=title,
                         buttons=result_buttons(turn, report, excel=False)))
        return
    for i, piece in enumerate(split_text(table_text(report, t))):
        turn.reply(Reply(piece, title=title if i == 0 else None, monospace=True))
    path = new_report_path(turn, ".png")
    footer = Reply(t("stats.result_footer", filters=report.filters,
                     legend=legend_text(report, t)),
                   buttons=result_buttons(turn, report, excel=True))

    async def chart() -> list[Reply]:  # after the commit, in a thread
        await asyncio.to_thread(_locked, render_chart, report, t, path)
        return [Reply("", photos=[OutgoingPhoto(path, caption=title)]), footer]

    turn.reply_later(chart)


def result_buttons(turn: Turn, report: Report, *, excel: bool) -> list[list[Button]]:
    t, name = turn.t, report.section.name
    rows = []
    if excel:
        rows.append([Button(t("stats.button.excel"), Spreadsheet(
            name, encode_day(report.period.start), encode_day(report.period.last_day)).pack())])
    rows.append([Button(t("stats.button.other_period"), ChooseSection(name).pack()),
                 Button(t("stats.button.sections"), Sections().pack())])
    return rows


async def send_excel(turn: Turn, staff: Staff, section: Section, period: Period) -> None:
    report = await report_for(turn, staff, section, period)
    path, t = new_report_path(turn, ".xlsx"), turn.t

    async def spreadsheet() -> list[Reply]:  # after the commit, in a thread
        # openpyxl (and numpy, which it loads) cost ~35 MB: only once a spreadsheet is asked.
        from handlers.analytics.excel import write_xlsx

        await asyncio.to_thread(_locked, write_xlsx, report, t, path)
        return [Reply(t("stats.excel_caption", section=report.title, period=report.period_text),
                      document=OutgoingDocument(path, f"{report.file_stem}.xlsx"))]

    turn.reply_later(spreadsheet)


def _locked(render: Callable[[Report, Translator, Path], Path], report: Report, t: Translator,
            path: Path) -> Path:
    with _render_lock:
        return render(report, t, path)


FEATURE = Feature(command="stats", payload_prefix=PREFIX, state_prefix="stats_",
                        roles=frozenset(STATS_ROLES), start=start, on_message=on_message,
                        on_button=on_button)
