"""`mcu privacy forget --item NUMBER`: erasure (152-ФЗ) for a citizen who withdrew consent by
phone, on paper or in person. The work is done by handlers/erasure.py, as for /forget in the
chat; this is the edge: arguments, the transaction, the files after the commit, the report."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from sqlalchemy import select

from bot.cli import UsageError, command_group, load_org, load_settings
from bot.settings import Settings
from handlers.clock import SystemClock
from handlers.erasure import ErasureReport, NothingToErase, erase_citizen
from handlers.erasure_cleanup import clean_up


def add_privacy_parser(commands: Any) -> None:
    privacy_commands = command_group(commands, "privacy", "personal data (152-ФЗ)")
    forget = privacy_commands.add_parser(
        "forget", help="erase a citizen's personal data (consent withdrawn by phone or on "
                       "paper); numbers, topics, dates and statuses stay for the statistics")
    target = forget.add_mutually_exclusive_group(required=True)
    target.add_argument("--item", metavar="NUMBER",
                        help="a registration number, e.g. 2026-000123: its citizen and all "
                             "of their items")
    target.add_argument("--citizen", type=int, metavar="ID", help="a citizen record id")
    forget.set_defaults(func=cmd_privacy_forget)


def cmd_privacy_forget(args: argparse.Namespace) -> int:
    settings = load_settings()
    load_org(settings)
    try:
        report = asyncio.run(forget(settings, number=args.item, citizen_id=args.citizen))
    except NothingToErase as exc:
        what = f"item {args.item!r}" if args.item else f"citizen {args.citizen}"
        raise UsageError(f"mcu privacy forget: no {what} in the database") from exc
    print(f"Данные заявителя удалены / personal data erased: "
          f"{len(report.numbers)} item(s), {report.accounts} messenger account(s), "
          f"{report.attachments} file(s), {report.events} comment(s), "
          f"{report.outbox_redacted} queued message(s) emptied "
          f"({report.outbox_cancelled} cancelled).")
    for item in report.kept:
        print(f"  kept: {item.number}  {item.topic}  received {item.received_at:%Y-%m-%d}  "
              f"status {item.status}")
    return 0


async def forget(settings: Settings, *, number: str | None,
                 citizen_id: int | None) -> ErasureReport:
    from bot.bootstrap import build_services
    from storage.db import create_engine
    from storage.migrate import upgrade_async
    from storage.models import Item

    await upgrade_async(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        services = build_services(settings, engine, SystemClock())
        async with services.sessions() as session, session.begin():
            item_id = None
            if number is not None:
                item_id = await session.scalar(select(Item.id).where(Item.number == number))
                if item_id is None:
                    raise NothingToErase(number)
            report = await erase_citizen(session, services, services.now(), item_id=item_id,
                                         citizen_id=citizen_id)
        # Only after the commit: a rollback must not leave rows pointing at deleted files.
        await clean_up(services, report.files)
        return report
    finally:
        await engine.dispose()
