"""Drills: the database is unavailable for a while (SQLite locked past the busy timeout,
PostgreSQL restarted) while citizens send messages. Each prints its figure."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tests.drills.harness import (
    REPORT_STEPS,
    STEP_ANSWERS,
    Drill,
    bodies_to,
    cards_to,
    duplicates,
    eventually,
    figure,
    numbers_to,
    report_updates,
    settle,
    stale_answers,
    temporary_errors,
    walk_report,
)
from tests.fakes.telegram_api import FakeTelegramServer
from tests.support.postgres import PostgresServer

HEAD = 9001
BUSY_TIMEOUT = 1  # seconds: MCU_SQLITE_BUSY_TIMEOUT of the process under test
LOCK_SECONDS = 5  # how long the test holds the write lock (longer than the busy timeout)
DOWN_SECONDS = 3  # how long PostgreSQL stays down


async def to_confirmation(tg: FakeTelegramServer, base: int,
                          street: str) -> tuple[list[tuple[int, str]], int]:
    """Three citizens walk to the confirmation screen; returns them and a newcomer's id."""
    citizens = [(base + i, f"Не горит фонарь у дома {i} по улице {street}, темно")
                for i in (1, 2, 3)]
    await asyncio.gather(*(walk_report(tg, user, text, steps=REPORT_STEPS[:6], timeout=45)
                           for user, text in citizens))
    return citizens, base + 9


def send_during_outage(tg: FakeTelegramServer, citizens: list[tuple[int, str]],
                       newcomer: int) -> list[int]:
    """Each citizen presses «Отправить», the newcomer sends /start."""
    ids = [report_updates(tg, user, text, steps=["confirm"])[0] for user, text in citizens]
    ids += report_updates(tg, newcomer, "", steps=["start"])
    return ids


async def outcome(drill: Drill, tg: FakeTelegramServer, citizens: list[tuple[int, str]],
                  newcomer: int) -> tuple[int, int, bool, int, int, int]:
    registered = sum([await drill.items_with_text(text) == 1 for _, text in citizens])
    numbers = sum(numbers_to(tg, user) == 1 for user, _ in citizens)
    answered = any(STEP_ANSWERS["start"] in b for b in bodies_to(tg, newcomer))
    chats = [user for user, _ in citizens] + [newcomer, HEAD]
    return (registered, numbers, answered, temporary_errors(tg), stale_answers(tg),
            duplicates(tg, chats))


def all_answered(tg: FakeTelegramServer, citizens: list[tuple[int, str]], newcomer: int,
                 ) -> bool:
    return (all(numbers_to(tg, user) for user, _ in citizens)
            and any(STEP_ANSWERS["start"] in b for b in bodies_to(tg, newcomer))
            and cards_to(tg, HEAD) >= len(citizens))


async def test_drill_sqlite_locked_longer_than_the_busy_timeout(
        drill: Drill, tg: FakeTelegramServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Another connection holds `BEGIN EXCLUSIVE` for LOCK_SECONDS while the process waits at
    most BUSY_TIMEOUT for a lock. The messages sent meanwhile are all handled after the lock
    is released: no «временная ошибка», nothing lost, nothing twice."""
    await drill.run(MCU_SQLITE_BUSY_TIMEOUT=str(BUSY_TIMEOUT))
    await drill.join_staff(HEAD)
    citizens, newcomer = await to_confirmation(tg, 7500, "Ленина")

    locker = sqlite3.connect(tmp_path / "drill.sqlite3", isolation_level=None, timeout=30)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        ids = send_during_outage(tg, citizens, newcomer)
        await eventually(lambda: set(ids) <= set(tg.delivered), 30, "the bot took the messages")
        await asyncio.sleep(max(0.0, LOCK_SECONDS - (time.monotonic() - locked_at)))
        held = time.monotonic() - locked_at
        locker.execute("COMMIT")
    finally:
        locker.close()

    done = await settle(drill, lambda: all_answered(tg, citizens, newcomer), timeout=60)
    registered, numbers, answered, temporary, stale, dups = await outcome(
        drill, tg, citizens, newcomer)
    figure(capsys, f"SQLite locked {held:.0f} s (busy timeout {BUSY_TIMEOUT} s): "
                   f"{registered}/3 registered, {numbers}/3 numbers, newcomer answered: "
                   f"{answered}, {temporary} «временная ошибка» answers, {stale} stale-button "
                   f"answers, {dups} duplicates")
    assert (registered, numbers, answered, temporary, stale, dups) == (3, 3, True, 0, 0, 0), (
        done, drill.logs())


async def test_drill_postgresql_restarted_mid_run(
        tg: FakeTelegramServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A private PostgreSQL server is stopped (fast shutdown) for DOWN_SECONDS and started
    again while citizens send messages: everything is handled after it is back."""
    server = PostgresServer()
    await asyncio.to_thread(server.start)
    drill = Drill(tmp_path, server.create_database("drill_pg_restart"), tg=tg)
    try:
        await drill.migrate()
        await drill.run()
        await drill.join_staff(HEAD)
        citizens, newcomer = await to_confirmation(tg, 7600, "Дзержинского")

        await asyncio.to_thread(server.halt)
        down_at = time.monotonic()
        ids = send_during_outage(tg, citizens, newcomer)
        await eventually(lambda: set(ids) <= set(tg.delivered), 30, "the bot took the messages")
        await asyncio.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
        await asyncio.to_thread(server.resume)
        down = time.monotonic() - down_at

        done = await settle(drill, lambda: all_answered(tg, citizens, newcomer), timeout=60)
        registered, numbers, answered, temporary, stale, dups = await outcome(
            drill, tg, citizens, newcomer)
        figure(capsys, f"PostgreSQL down {down:.0f} s mid-run: {registered}/3 registered, "
                       f"{numbers}/3 numbers, newcomer answered: {answered}, {temporary} "
                       f"«временная ошибка» answers, {stale} stale-button answers, "
                       f"{dups} duplicates")
        assert (registered, numbers, answered, temporary, stale, dups) == (
            3, 3, True, 0, 0, 0), (done, drill.logs())
    finally:
        await drill.close()
        await asyncio.to_thread(server.stop)
