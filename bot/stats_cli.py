"""`mcu stats`, `mcu stats rebuild` and `mcu growth`: statistics from the terminal.

Periods are local (Asia/Sakhalin) days of receipt, both ends included: `--from 2026-11-01
--to 2026-11-30` is November. Usage errors are one line and exit code 2 (bot/cli.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.cli import UsageError, load_org, load_settings
from bot.settings import Settings
from handlers.org import Organisation

DATE_EXAMPLE = "e.g. 2026-11-01 or 01.11.2026"


def add_stats_parsers(commands: Any) -> None:
    stats = commands.add_parser("stats", help="a statistical section as a table, JSON, CSV or "
                                              "XLSX; `mcu stats rebuild` recomputes the rollup")
    stats.add_argument("action", nargs="?", choices=("rebuild",),
                       help="rebuild: recompute the statistics rollup from the items")
    stats.add_argument("--list", action="store_true", help="list the sections and exit")
    stats.add_argument("--section", help="section name (see --list)")
    stats.add_argument("--from", dest="date_from", metavar="DATE",
                       help="first local day, included (2026-11-01 or 01.11.2026)")
    stats.add_argument("--to", dest="date_to", metavar="DATE",
                       help="last local day, included (2026-11-30 = to the end of 30.11)")
    stats.add_argument("--format", choices=("table", "json", "csv", "xlsx"), default="table")
    stats.add_argument("--out", metavar="FILE", help="write to a file (required for xlsx)")
    stats.set_defaults(func=cmd_stats)

    growth = commands.add_parser("growth", help="growing topics: the 7 days before --at "
                                                "against the 4 weeks before them")
    growth.add_argument("--at", metavar="DATE",
                        help="day D (the 7 days before it are compared); default: today")
    growth.add_argument("--format", choices=("table", "json"), default="table",
                        help="json: the flagged topics only")
    growth.set_defaults(func=cmd_growth)


def parse_day(value: str, name: str, command: str = "mcu stats") -> date:
    for pattern in ("%Y-%m-%d", "%d.%m.%Y"):
        try:
            return datetime.strptime(value, pattern).date()
        except ValueError:
            continue
    raise UsageError(f"{command}: {name} {value!r} is not a date, {DATE_EXAMPLE}")


def _open(settings: Settings, *, read_only: bool = False):  # type: ignore[no-untyped-def]
    from storage.db import create_engine, read_session_factory, session_factory
    from storage.migrate import upgrade

    upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    factory = read_session_factory if read_only else session_factory
    return engine, factory(engine, tz=settings.tz)


def cmd_stats(args: argparse.Namespace) -> int:
    settings = load_settings()
    org = load_org(settings)
    if args.action == "rebuild":
        asyncio.run(rebuild(settings))
        print("statistics rollup rebuilt from the items")
        return 0
    if args.list:
        for section in org.sections:
            print(f"{section.name:<20} {section.group_by:<9} {section.title}  "
                  f"[{', '.join(section.metrics)}]")
        return 0
    if not args.section:
        raise UsageError("mcu stats: --section is required (the names: mcu stats --list)")
    section = org.section(args.section)
    if section is None:
        raise UsageError(f"mcu stats: unknown section {args.section!r}; "
                         f"known: {', '.join(s.name for s in org.sections) or 'none'}")
    if not args.date_from or not args.date_to:
        raise UsageError("mcu stats: --from and --to are required, e.g. "
                         "--from 2026-11-01 --to 2026-11-30 (both days included)")
    start, last = parse_day(args.date_from, "--from"), parse_day(args.date_to, "--to")
    if last < start:
        raise UsageError("mcu stats: --to is earlier than --from (both days are included)")
    if args.format == "xlsx" and args.out is None:
        raise UsageError("mcu stats: --format xlsx needs --out FILE.xlsx")
    text = asyncio.run(stats_output(settings, org, section.name, start,
                                    last + timedelta(days=1), args.format, args.out))
    if text is not None:
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


async def rebuild(settings: Settings) -> None:
    from storage.rollups import rebuild as rebuild_rollup

    engine, sessions = _open(settings)
    try:
        async with sessions() as session, session.begin():
            await rebuild_rollup(session, settings.tz)
    finally:
        await engine.dispose()


async def stats_output(settings: Settings, org: Organisation, name: str, start: date, end: date,
                       fmt: str, out: str | None) -> str | None:
    """`end` is the day after the last one (storage.stats.Period)."""
    from handlers.analytics import render
    from handlers.analytics.report import Audience, build_report
    from handlers.clock import SystemClock
    from handlers.i18n import translator
    from handlers.org import METRICS
    from storage.stats import Period

    section = org.section(name)
    assert section is not None
    t = translator(settings.locale)
    engine, sessions = _open(settings, read_only=True)
    try:
        async with sessions() as session:
            # The console is the administrator's: all blocks, names included.
            report = await build_report(session, org, settings.tz, SystemClock().now(), section,
                                        Period(start, end), Audience(), t,
                                        metrics=METRICS if fmt in ("json", "csv") else None)
    finally:
        await engine.dispose()
    if fmt == "xlsx":
        from handlers.analytics.excel import write_xlsx

        assert out is not None
        write_xlsx(report, t, Path(out))
        return None
    if fmt == "json":
        return render.json_text(report)
    if fmt == "csv":
        return render.csv_text(report)
    return "\n".join([report.title, report.period_text,
                      t("stats.xlsx.filters", filters=report.filters), "",
                      render.table_text(report, t), "", render.legend_text(report, t)])


def cmd_growth(args: argparse.Namespace) -> int:
    from handlers.clock import SystemClock

    settings = load_settings()
    org = load_org(settings)
    day = (parse_day(args.at, "--at", "mcu growth") if args.at
           else SystemClock().now().astimezone(settings.tz).date())
    results = asyncio.run(growth_results(settings, org, day))
    if args.format == "json":
        print(json.dumps([g.as_json() for g in results["topic"] if g.flagged],
                         ensure_ascii=False))
        return 0
    settings_ = org.analytics
    print(f"Растущие темы / growing topics: {day - timedelta(days=7):%d.%m.%Y} – "
          f"{day - timedelta(days=1):%d.%m.%Y} against the 4 weeks before "
          f"(≥ {settings_.growth_min_items}, ≥ {settings_.growth_ratio:g}× baseline, "
          f"p < {settings_.growth_p_value:g})")
    for scope, title in (("topic", "topic"), ("block", "block")):
        print(f"\n{title:<22} {'7 days':>7} {'weekly':>8} {'p-value':>9}  flagged")
        for g in results[scope]:
            print(f"{g.key:<22} {g.current:>7} {g.baseline:>8.2f} {g.p_value:>9.2g}  "
                  f"{'YES' if g.flagged else ''}")
    return 0


async def growth_results(settings: Settings, org: Organisation, day: date) -> dict[str, Any]:
    from handlers.analytics.growth import SCOPES, growth

    engine, sessions = _open(settings, read_only=True)
    try:
        async with sessions() as session:
            return {scope: await growth(session, org.analytics, day, scope) for scope in SCOPES}
    finally:
        await engine.dispose()
