"""`mcu import FILE --channel …`: an export of ПОС, «Инцидент менеджмент», «Сахалин.Онлайн» or
СМЛС becomes registered, routed items. The work is done by handlers/operator; this is the edge:
arguments, the database, the progress bar and the printed report."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.cli import UsageError, load_org, load_settings
from bot.settings import Settings
from handlers.clock import SystemClock
from handlers.i18n import Translator, translator
from handlers.operator.fields import IMPORT_CHANNELS
from handlers.operator.import_plan import ImportPlan, prepare
from handlers.operator.import_report import reason_text, report_lines
from handlers.operator.importer import ImportResult, count_present, run_import
from handlers.operator.mapping import default_mapping, load_mapping
from handlers.operator.tabular import TableError, read_table, rejected_path, write_rejected
from handlers.org import Organisation, Role
from handlers.topics import TopicSuggester

PROGRESS_FROM_ROWS = 500  # smaller files finish before a bar would be worth drawing
PUBLISHING_ROLES = (Role.OPERATOR, Role.IM_COORDINATOR, Role.CHAIRMAN)


def add_import_parser(commands: Any) -> None:
    parser = commands.add_parser("import", help="import an export of an outside system "
                                                "(CSV or XLSX)")
    parser.add_argument("file", help="the exported file: .csv (UTF-8 or cp1251, ';' or ',') "
                                     "or .xlsx")
    parser.add_argument("--channel", required=True, choices=IMPORT_CHANNELS,
                        help="the system the file comes from")
    parser.add_argument("--mapping", help="a TOML file renaming the columns ([columns] …)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and report; write nothing")
    parser.add_argument("--operator", type=int, metavar="STAFF_ID",
                        help="the staff member (operator) who publishes the answers in the "
                             "outside system; default: the chairman (incidents: the IM "
                             "coordinator)")
    parser.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    settings = load_settings()
    org = load_org(settings)
    t = translator(settings.locale)
    source = Path(args.file)
    try:
        table = read_table(source)
        mapping = (load_mapping(Path(args.mapping), args.channel) if args.mapping
                   else default_mapping(args.channel))
        plan = prepare(table, args.channel, mapping, org, settings.tz, SystemClock().now(),
                       suggester=topic_suggester(settings, org, args.dry_run))
    except TableError as exc:
        raise UsageError(f"mcu import: {t(exc.key, **exc.values)}") from exc
    started = time.monotonic()
    rejected_file: Path | None = None
    if args.dry_run:
        result = ImportResult(already_present=asyncio.run(present_in_database(settings, plan)))
    else:
        result = import_with_progress(settings, org, plan, source, args.operator, t)
        rejected_file = save_rejected(source, plan, t)
    print("\n".join(report_lines(t, org, plan, result, source=source.name,
                                 dry_run=args.dry_run, rejected_file=rejected_file,
                                 seconds=time.monotonic() - started)))
    return 0


def topic_suggester(settings: Settings, org: Organisation, dry_run: bool) -> TopicSuggester:
    """Trained (or loaded from the cache) only if some row has an unknown category; a dry run
    writes nothing to disk, so it does not write the model cache either."""
    from handlers.topics.suggester import LinearTopicSuggester

    return LinearTopicSuggester(org, cache_dir=None if dry_run else settings.data_dir / "cache")


async def present_in_database(settings: Settings, plan: ImportPlan) -> int:
    """Read-only: a missing SQLite file is an empty database, not something to create."""
    from storage.db import create_engine, is_sqlite, session_factory

    url = settings.database_url
    if is_sqlite(url) and not Path(make_url(url).database or "").exists():
        return 0
    engine = create_engine(url)
    try:
        return await count_present(session_factory(engine), plan)
    except SQLAlchemyError:
        return 0  # not migrated yet: nothing is registered there
    finally:
        await engine.dispose()


def import_with_progress(settings: Settings, org: Organisation, plan: ImportPlan, source: Path,
                         operator: int | None, t: Translator) -> ImportResult:
    if not (sys.stdout.isatty() and plan.total > PROGRESS_FROM_ROWS):
        return asyncio.run(write_items(settings, plan, source, operator, None))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task(t("import.progress"), total=len(plan.rows))
        return asyncio.run(write_items(settings, plan, source, operator,
                                       lambda done: bar.advance(task, done)))


async def write_items(settings: Settings, plan: ImportPlan, source: Path, operator: int | None,
                      progress: Callable[[int], None] | None) -> ImportResult:
    from bot.bootstrap import build_services
    from storage.db import create_engine
    from storage.migrate import upgrade_async

    await upgrade_async(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        services = build_services(settings, engine, SystemClock())
        if operator is not None:
            await check_operator(services.sessions, operator)
        return await run_import(services, plan, source=f"import {source.name}",
                                registered_by_id=operator, progress=progress)
    finally:
        await engine.dispose()


async def check_operator(sessions: Any, staff_id: int) -> None:
    from storage.models import Staff

    async with sessions() as session:
        staff = await session.get(Staff, staff_id)
    if staff is None or staff.revoked_at is not None or staff.role not in PUBLISHING_ROLES:
        raise UsageError(f"mcu import: --operator {staff_id}: no active operator, IM "
                         "coordinator or chairman with this id (see `mcu staff list`)")


def save_rejected(source: Path, plan: ImportPlan, t: Translator) -> Path | None:
    """Next to the input; an old one from an earlier run is removed once nothing is rejected."""
    target = rejected_path(source)
    try:
        if not plan.rejected:
            target.unlink(missing_ok=True)
            return None
        write_rejected(target, plan.headers, t("import.rejected.line"),
                       t("import.rejected.reason"),
                       [(r.line, reason_text(t, r), r.cells) for r in plan.rejected])
    except OSError as exc:
        print(t("import.error.rejected_not_written", path=str(target), problem=exc.strerror),
              file=sys.stderr)
        return None
    return target
