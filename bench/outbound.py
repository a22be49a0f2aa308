"""Outbound rate: `python bench/outbound.py [--quick]`.

1,000 notifications (300 with --quick) to distinct chats, queued in the outbox of a fresh
SQLite file and delivered by the running OutboxSender through the real TelegramTransport to
the fake Bot API of the tests over HTTP. The fake answers 429 to any message past 30 in one
second (`FakeTelegramServer.rate_limit`), as Telegram does. Reported: messages a second
(from the sender's start to the last message's receipt), the 429s, and the most messages the
fake received in any one-second window. Baseline: Telegram's 30 messages a second.
Goal (issue 12): ≥ 27 msg/s (0.9×), no 429, never over 30 in any second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from common import Row, table  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bot.bootstrap import build_app  # noqa: E402
from bot.settings import Settings  # noqa: E402
from handlers.events import ChatRef, Platform, Reply  # noqa: E402
from handlers.outbox import enqueue  # noqa: E402
from storage.migrate import upgrade_async  # noqa: E402
from storage.models import OutboxMessage  # noqa: E402
from tests.fakes.telegram_api import FakeTelegramServer  # noqa: E402

TELEGRAM_PER_SECOND = 30
FIRST_CHAT = 100_000


def busiest_second(stamps: list[float]) -> int:
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def deliver(count: int, work: Path) -> tuple[float, int, int]:
    """(messages a second, 429 answers, most in any one-second window)."""
    async with FakeTelegramServer() as tg:
        tg.rate_limit(TELEGRAM_PER_SECOND)
        settings = Settings(_env_file=None, telegram_token="42:BENCH",  # type: ignore[call-arg]
                            telegram_api_url=tg.base_url, data_dir=work / "data",
                            database_url=f"sqlite+aiosqlite:///{work / 'outbound.sqlite3'}")
        await upgrade_async(settings.database_url)
        app = build_app(settings)
        services = app.services
        async with services.sessions() as session, session.begin():
            for n in range(count):
                enqueue(session, ChatRef(Platform.TELEGRAM, str(FIRST_CHAT + n)),
                        Reply(f"Напоминание: срок по сообщению 2026-{n:06d} истекает завтра"),
                        audience="staff", now=services.now())
        try:
            for name, transport in app.transports.items():
                await transport.open_for_sending()
                app.services.capabilities[name] = transport.capabilities
            started = time.monotonic()
            await app.sender.start()
            deadline = started + count / 10 + 60
            while True:
                async with services.sessions() as session:
                    pending = await session.scalar(select(func.count()).where(
                        OutboxMessage.status == "pending"))
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{pending} notifications still pending")
                await asyncio.sleep(0.1)
        finally:
            await app.close()
        stamps = [r.timestamp for r in tg.sent if r.method == "sendMessage"]
        if len(stamps) != count:
            raise AssertionError(f"{len(stamps)} of {count} delivered")
        return count / (max(stamps) - started), tg.rate_limited, busiest_second(stamps)


def run(quick: bool) -> list[Row]:
    logging.disable(logging.WARNING)
    count = 300 if quick else 1000
    with tempfile.TemporaryDirectory(prefix="mcu-outbound-") as work:
        rate, limited, busiest = asyncio.run(deliver(count, Path(work)))
    baseline = f"Telegram's {TELEGRAM_PER_SECOND}/s"
    return [
        Row(f"{count:,} notifications to distinct chats: rate", f"{rate:.2f} msg/s", baseline,
            rate / TELEGRAM_PER_SECOND, "≥ 27 msg/s (0.9×)", rate >= 27),
        Row(f"{count:,} notifications: 429 answers", str(limited), "—", None, "0",
            limited == 0),
        Row(f"{count:,} notifications: most in any one second", str(busiest), baseline,
            busiest / TELEGRAM_PER_SECOND, "≤ 30", busiest <= TELEGRAM_PER_SECOND),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(table(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
