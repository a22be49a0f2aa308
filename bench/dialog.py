"""Dialog updates per second with persistence: `python bench/dialog.py [--quick] [--code DIR]`.

The subject is `mcu run` as a real process (TelegramTransport with its own polling, the core,
the outbox, a SQLite file). N citizens who have already agreed to the processing of their
data each send M messages ("/report": the topic screen, one reply each, the dialog state
written). The baseline is a bare aiogram bot answering every message with one `send_message`,
polled by aiogram itself, given the same updates. Both run against the fake Bot API of the
tests (tests/fakes/telegram_api.py), which runs in this process, so its own work is charged
to neither bot.

The rate is from the moment the updates are queued at the fake server to the last reply
received there; the bots are idle (their CPU time settled) before that. `--code DIR` runs
another checkout of the code (e.g. `git worktree add /tmp/main main`) as the subject with this
virtualenv: the figure before a change.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import DATA_DIR, Row, offline_core, stop, table  # noqa: E402

TEXT = "/report"
GOAL = 0.5

# `mcu run`, with Telegram's total of ~30 messages/s lifted: that limit is Telegram's, the fake
# server does not enforce it, and with it the stack could never pass 28 replies/s whatever a
# turn costs. Everything else (the per-chat spacing, the outbox, the lanes) stays.
SUBJECT = """
import sys
from dataclasses import fields, replace
import scheduler.limits as limits
table = getattr(limits, "DEFAULT_LIMITS", None)
if isinstance(table, dict) and "telegram" in table and "per_second" in {
        f.name for f in fields(table["telegram"])}:
    table["telegram"] = replace(table["telegram"], per_second=1_000_000)
else:
    print("bench: the total rate limit could not be lifted", file=sys.stderr)
from bot.cli import main
sys.exit(main(["run"]))
"""

BARE_BOT = """
import asyncio, sys
from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message

router = Router()

@router.message()
async def answer(message: Message) -> None:
    await message.bot.send_message(message.chat.id, "Выберите тематику проблемы:")

async def main() -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(sys.argv[1]))
    bot = Bot("42:BENCH", session=session)
    dp = Dispatcher()
    dp.include_router(router)
    await dp.start_polling(bot, handle_signals=True, polling_timeout=25)

asyncio.run(main())
"""


@dataclass(frozen=True)
class Result:
    rate: float  # updates per second
    cpu_ms: float  # the bot's CPU time per update


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settle(pid: int, limit: float = 60.0) -> None:
    """Wait until the process stops working (start-up, the topic model's warm-up)."""
    deadline = time.monotonic() + limit
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = cpu_seconds(pid)
        if now - last < 0.02:
            return
        last = now


async def measure(argv: list[str], env: dict[str, str], cwd: Path, users: list[int],
                  per_user: int) -> Result:
    from tests.fakes.telegram_api import FakeTelegramServer

    async with FakeTelegramServer(token="42:BENCH", validate_html=False) as tg:
        argv = [part.replace("{api}", tg.base_url) for part in argv]
        env = {**env, "MCU_TELEGRAM_API_URL": tg.base_url}
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        try:
            await tg.wait_polling(timeout=60)
            # A first message from everyone, not timed: the libraries build their models of
            # the Bot API types on first use, the pools fill.
            await answered(tg, process, users, 1)
            await settle(process.pid)
            cpu = cpu_seconds(process.pid)
            started = time.perf_counter()
            await answered(tg, process, users, per_user)
            elapsed = time.perf_counter() - started
            used = cpu_seconds(process.pid) - cpu
        finally:
            await stop(process)
    count = len(users) * per_user
    return Result(count / elapsed, used / count * 1000)


async def answered(tg: Any, process: asyncio.subprocess.Process, users: list[int],
                   per_user: int) -> None:
    """Queue `per_user` messages from each user; return once each got its reply."""
    before = len(tg.calls("sendMessage"))
    target = before + len(users) * per_user
    for _ in range(per_user):
        for user in users:
            tg.user_message(user, TEXT)
    deadline = time.perf_counter() + 600
    while len(tg.calls("sendMessage")) < target:
        if time.perf_counter() > deadline or process.returncode is not None:
            raise RuntimeError(f"{len(tg.calls('sendMessage')) - before} of "
                               f"{target - before} replies")
        await asyncio.sleep(0.005)


async def seed(url: str, data: Path, users: list[int]) -> None:
    """Citizens who agreed already, as if they had written before; nothing left to send."""
    from tests.support.chat import ChatClient

    async with offline_core(url, data / "data") as core:
        for user in users:
            citizen = ChatClient(core, str(user))
            await citizen.send("/start", update_key=f"seed-start-{user}")
            await citizen.click("Согласен")


def subject_env(code: Path, data: Path, url: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(code), "MCU_DATABASE_URL": url,
            "MCU_DATA_DIR": str(data / "data"), "MCU_TELEGRAM_TOKEN": "42:BENCH",
            "MCU_FLOOD_LIMIT_PER_MINUTE": "1000000", "MCU_LOG_LEVEL": "WARNING",
            # Telegram's total lifted (see SUBJECT; older checkouts have no such setting).
            "MCU_TELEGRAM_MESSAGES_PER_SECOND": "1000000"}


async def compare(quick: bool, code: Path) -> tuple[Result, Result, int]:
    users = list(range(700001, 700001 + (20 if quick else 50)))
    per_user = 10 if quick else 20
    work = DATA_DIR / "dialog"
    work.mkdir(parents=True, exist_ok=True)
    (work / "data").mkdir(exist_ok=True)  # kept: the topic model's cache is reused
    database = work / "bench.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    url = f"sqlite+aiosqlite:///{database}"
    await seed(url, work, users)
    stack = await measure([sys.executable, "-c", SUBJECT],
                          subject_env(code, work, url), work, users, per_user)
    bare = await measure([sys.executable, "-c", BARE_BOT, "{api}"], dict(os.environ), work,
                         users, per_user)
    return stack, bare, len(users) * per_user


def run(quick: bool, code: Path = ROOT) -> list[Row]:
    stack, bare, count = asyncio.run(compare(quick, code))
    ratio = stack.rate / bare.rate
    return [Row(
        measure=f"dialog updates/s with persistence ({count} updates, one reply each)",
        value=f"{stack.rate:,.0f} upd/s ({stack.cpu_ms:.1f} ms CPU/upd)",
        baseline=f"bare aiogram {bare.rate:,.0f} upd/s ({bare.cpu_ms:.1f} ms CPU/upd)",
        ratio=ratio, goal=f"≥ {GOAL}×", met=ratio >= GOAL)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the checkout `mcu run` runs from (default: this one)")
    args = parser.parse_args()
    print(table(run(args.quick, args.code.resolve())))


if __name__ == "__main__":
    main()
