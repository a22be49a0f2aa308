"""The topic suggester's cost in `mcu run`: `python bench/topics_run.py [--code DIR]`.

Starts `mcu run` as a real process against the fake Telegram Bot API server of the tests
(tests/fakes), with a fresh SQLite file and data directory, and measures:
- start-up: from the process start to its first getUpdates call (the bot is serving);
- idle resident memory (VmRSS) once the topic model is built, first trained from the seed
  (a new data directory), then loaded from its cache (a restart);
- the time to answer one citizen message that gets a suggestion, end to end.
`--code DIR` runs another checkout of the code with this virtualenv (e.g. an export of main)
for the baseline. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.telegram_api import FakeTelegramServer  # noqa: E402

SETTLE_SECONDS = 12.0  # long enough for a cold training on this machine


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_run(code: Path, data: Path, label: str, user: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(code),
           # A new database each run (the fake server numbers updates from 1 again), the same
           # data directory: the restart finds the cached model.
           "MCU_DATABASE_URL": f"sqlite+aiosqlite:///{data / f'run{user}.sqlite3'}",
           "MCU_DATA_DIR": str(data / "data")}
    async with FakeTelegramServer() as tg:
        env.update(MCU_TELEGRAM_TOKEN="42:BENCH", MCU_TELEGRAM_API_URL=tg.base_url)
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", cwd=data, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            await tg.wait_polling(timeout=60)
            startup = time.perf_counter() - started
            serving = rss_mb(process.pid)
            await asyncio.sleep(SETTLE_SECONDS)
            idle = rss_mb(process.pid)
            tg.user_message(user, "/start")
            consent = await tg.wait_for(lambda r: r.chat_id == user and bool(r.reply_markup)
                                        and "inline_keyboard" in r.reply_markup,
                                        timeout=20)
            agree = next(b["callback_data"] for row in consent.reply_markup["inline_keyboard"]
                         for b in row if "Согласен" in b["text"])
            tg.press_button(user, agree)
            await tg.wait_for(lambda r: r.chat_id == user and "согласие записано" in (r.text or ""),
                              timeout=20)
            sent = time.perf_counter()
            tg.user_message(user, "Не горит фонарь у дома 7 по улице Ленина")
            answer = await tg.wait_for(lambda r: r.chat_id == user and (
                "тематику" in (r.text or "") or "Похоже" in (r.text or "")), timeout=20)
            turn_ms = (time.perf_counter() - sent) * 1000
            suggested = "⭐" in str(answer.reply_markup) or "Похоже" in (answer.text or "")
            after = rss_mb(process.pid)
            print(f"{label:34} start-up {startup:5.2f} s | RSS serving {serving:5.0f} MB, "
                  f"idle {idle:5.0f} MB, after a report {after:5.0f} MB | "
                  f"text→topic screen {turn_ms:4.0f} ms"
                  f"{' (with suggestion)' if suggested else ''}")
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        await one_run(args.code.resolve(), data, f"{args.code.name}: first start", 700)
        await one_run(args.code.resolve(), data, f"{args.code.name}: restart", 701)


if __name__ == "__main__":
    asyncio.run(main())
