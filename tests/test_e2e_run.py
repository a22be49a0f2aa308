"""End to end: `mcu run` as a real process, serving a citizen through the fake Bot API server."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from handlers.citizen.payloads import ChooseTopic
from tests.fakes.telegram_api import FakeTelegramServer

ROOT = Path(__file__).resolve().parents[1]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCU_")}
    env.update(MCU_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'run.sqlite3'}",
               MCU_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


async def test_run_without_tokens_explains_what_to_set(tmp_path):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run", cwd=tmp_path, env=env_for(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    message = err.decode()
    assert "MCU_TELEGRAM_TOKEN" in message and "MCU_VK_TOKEN" in message
    assert ".env.example" in message
    assert len(message.strip().splitlines()) == 1


async def test_mcu_run_serves_a_citizen_end_to_end(tmp_path):
    async with FakeTelegramServer() as tg:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", cwd=tmp_path,
            env=env_for(tmp_path, MCU_TELEGRAM_TOKEN="42:E2E", MCU_TELEGRAM_API_URL=tg.base_url),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            await tg.wait_polling(timeout=60)
            tg.user_message(700, "/start")
            consent = await tg.wait_for(lambda r: r.chat_id == 700 and r.reply_markup
                                        and "inline_keyboard" in r.reply_markup, timeout=20)
            agree = next(b["callback_data"] for row in consent.reply_markup["inline_keyboard"]
                         for b in row if "Согласен" in b["text"])
            tg.press_button(700, agree)
            await tg.wait_for(lambda r: r.chat_id == 700 and "согласие записано" in (r.text or ""),
                              timeout=20)
            tg.user_message(700, "Не горит фонарь у дома 7 по улице Ленина")
            # The topic screen, or «Похоже, это Энергетика — верно?» once the topic model
            # (warmed up in the background) is ready: either way one button picks energy.
            topics = await tg.wait_for(lambda r: r.chat_id == 700 and (
                "тематику" in (r.text or "") or "Похоже" in (r.text or "")), timeout=20)
            energy = next(b["callback_data"] for row in topics.reply_markup["inline_keyboard"]
                          for b in row if b["callback_data"] == ChooseTopic("energy").pack())
            tg.press_button(700, energy)
            await tg.wait_for(lambda r: r.chat_id == 700 and "фото" in (r.text or ""), timeout=20)
            tg.press_button(700, "photos:skip")
            await tg.wait_for(lambda r: r.chat_id == 700 and "Где это" in (r.text or ""),
                              timeout=20)
            tg.press_button(700, "place:skip")
            await tg.wait_for(lambda r: r.chat_id == 700 and "Проверьте" in (r.text or ""),
                              timeout=20)
            tg.press_button(700, "confirm:send")
            done = await tg.wait_for(lambda r: r.chat_id == 700 and "Номер:" in (r.text or ""),
                                     timeout=20)
            assert "Ответ будет дан не позднее" in done.text
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()[-2000:]
        assert not (tmp_path / ".vkbottle").exists()


@pytest.fixture(autouse=True)
def _project_on_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
