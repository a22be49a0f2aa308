"""Drill: `mcu backup` while `mcu run` takes citizens' reports from the fake Telegram server,
then `mcu restore`, refused while the bot runs and done once it has stopped."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.drills.harness import Drill, eventually, figure, walk_report
from tests.fakes.telegram_api import FakeTelegramServer

TEXT = "Не вывозят мусор во дворе дома 7 по улице Ленина"
CITIZENS_AT_ONCE = 4


def numbers_in(path: Path) -> set[str]:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert [row[0] for row in connection.execute("PRAGMA integrity_check")] == ["ok"]
        return {row[0] for row in connection.execute("SELECT number FROM items")}
    finally:
        connection.close()


async def mcu(drill: Drill, *argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *argv, cwd=drill.tmp_path, env=drill.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_drill_backup_and_restore_around_a_running_bot(
        drill: Drill, tg: FakeTelegramServer, capsys: pytest.CaptureFixture[str]) -> None:
    run = await drill.run()
    users = itertools.count(7600)
    stop = asyncio.Event()

    async def keep_reporting() -> None:
        while not stop.is_set():
            await walk_report(tg, next(users), TEXT, timeout=60)

    citizens = [asyncio.create_task(keep_reporting()) for _ in range(CITIZENS_AT_ONCE)]
    try:
        await eventually(lambda: _registered(drill), timeout=120,
                         what="first reports registered")
        before = {item.number for item in await drill.items()}
        code, out, err = await mcu(drill, "backup", "backup.sqlite3", "--pages", "4",
                                   "--pause", "0.01")
        assert code == 0, err
    finally:
        stop.set()
        await asyncio.gather(*citizens)
    copied = numbers_in(drill.tmp_path / "backup.sqlite3")
    assert before <= copied
    assert f"{len(copied)} item(s)" in out

    # The bot runs: it has the database open and holds its polling lease.
    code, _, err = await mcu(drill, "restore", "backup.sqlite3", "--force")
    assert code == 1 and "open in another process" in err
    everything = {item.number for item in await drill.items()}
    assert copied <= everything

    await run.stop()
    await _close(drill)
    code, out, err = await mcu(drill, "restore", "backup.sqlite3")
    assert code == 0, err
    assert numbers_in(drill.tmp_path / "drill.sqlite3") == copied
    figure(capsys, f"backup while mcu run took reports: {len(before)} registered before, "
                   f"{len(copied)} in the copy, {len(everything)} at the end; "
                   f"restore refused while running, then {len(copied)} restored")


async def _registered(drill: Drill) -> bool:
    return len(await drill.items()) >= CITIZENS_AT_ONCE


async def _close(drill: Drill) -> None:
    """The test's own connections count as "open elsewhere" for `mcu restore`."""
    if drill._engine is not None:
        await drill._engine.dispose()
        drill._engine = None
