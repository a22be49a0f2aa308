"""A process that registers items one after another until it is killed, through the same use
case as a citizen's report or an operator's /register (handlers/registration.py), and appends
each item's number to a file once its transaction has committed. tests/test_backup.py takes a
backup while it runs.

    python -m tests.support.backup_writer DATABASE_URL DATA_DIR NUMBERS_FILE
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from handlers.clock import ManualClock
from handlers.items import NewItem
from handlers.registration import register
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Actor
from tests.conftest import DEFAULT_START, make_services

# Long enough that the database grows by a few pages per item.
TEXT = "Не вывозят мусор во дворе дома 12 по улице Ленина. " * 40


async def write_forever(url: str, data_dir: Path, numbers: Path) -> None:
    clock = ManualClock(DEFAULT_START)
    services = await make_services(url, data_dir, clock)
    with numbers.open("a", encoding="utf-8") as out:
        while True:
            clock.advance(seconds=1)
            async with services.sessions() as session, session.begin():
                item = await register(session, services, NewItem(
                    kind=Kind.MESSAGE, channel="phone", topic="roads", text=TEXT,
                    received_at=clock.now()), Actor.OPERATOR)
            # Only after the commit: a number in the file is a committed item.
            out.write(item.number + "\n")
            out.flush()


if __name__ == "__main__":
    asyncio.run(write_forever(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
