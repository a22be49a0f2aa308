"""Drills: `mcu run` killed and restarted, updates delivered twice, several processes on one
database. Each prints its figure."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.drills.harness import (
    DIALOG,
    NUMBER_MARK,
    REPORT_STEPS,
    STEP_ANSWERS,
    Drill,
    answers,
    bodies_to,
    cards_to,
    duplicates,
    eventually,
    figure,
    in_order,
    numbers_to,
    polling_resumed,
    report_updates,
    settle,
    stale_answers,
    tg_payloads,
    vk_duplicates,
    vk_texts_to,
    vk_walk_report,
    walk_report,
)
from tests.fakes.telegram_api import FakeTelegramServer
from tests.fakes.vk_api import FakeVKServer

HEAD = 9001
TEXT = "Не горит фонарь у дома 3 по улице Советской, темно уже неделю"
PLACE_PROMPT = STEP_ANSWERS["photos"]  # «Где это?», the answer to «Пропустить» under photos


async def test_drill_sigkill_mid_dialog_and_right_after_confirm(
        drill: Drill, tg: FakeTelegramServer, capsys: pytest.CaptureFixture[str]) -> None:
    """1. The citizen presses «Пропустить» (photos); the process takes the update and is
    SIGKILLed the moment it tells Telegram the update is done (the next getUpdates offset),
    or 5 s after taking it. After a restart the dialog goes on from the same step, once.
    2. The citizen presses «Отправить»; the report is committed, but the Bot API refuses
    every sendMessage until the process is SIGKILLed. After a restart the report exists once
    and the number reaches the citizen."""
    user = 7201
    run = await drill.run()
    await drill.join_staff(HEAD)
    await walk_report(tg, user, TEXT, steps=REPORT_STEPS[:4])

    [skip] = report_updates(tg, user, TEXT, steps=["photos"])
    confirmed = False

    def kill_on_confirmation(params: dict[str, object]) -> None:
        nonlocal confirmed
        offset = params.get("offset")
        if not confirmed and isinstance(offset, int) and offset > skip:
            confirmed = True
            run.kill_now()

    tg.on_get_updates(kill_on_confirmation)
    await eventually(lambda: skip in tg.delivered, 30, "the bot took «Пропустить»")
    with contextlib.suppress(AssertionError):
        await eventually(lambda: confirmed, 5, "the bot confirmed «Пропустить»")
    confirmed = True  # no more kills from the hook
    await run.kill()
    calls = tg.get_updates_calls
    await run.start()
    await polling_resumed(tg, calls)
    continued = await settle(drill, lambda: any(PLACE_PROMPT in b for b in bodies_to(tg, user)),
                             timeout=150)
    place_prompts = sum(PLACE_PROMPT in b for b in bodies_to(tg, user))
    figure(capsys, f"SIGKILL mid-dialog: the dialog continued at the same step: {continued}, "
                   f"place prompts shown: {place_prompts}, stale-button answers: "
                   f"{stale_answers(tg)}")
    assert (continued, place_prompts, stale_answers(tg)) == (True, 1, 0), drill.logs()

    await walk_report(tg, user, TEXT, steps=["place"])
    [confirm] = report_updates(tg, user, TEXT, steps=["confirm"])
    outage = tg.fail_for(status=500, methods=["sendMessage"], once_delivered=[confirm])

    async def registered() -> bool:
        return await drill.items_with_text(TEXT) >= 1

    await eventually(registered, 30, "the report was committed")
    await run.kill()
    numbers_before_restart = numbers_to(tg, user)
    outage.end()
    calls = tg.get_updates_calls
    await run.start()
    await polling_resumed(tg, calls)
    # Generous: a row the dead process had claimed may wait for its claim to expire.
    await settle(drill, lambda: numbers_to(tg, user) >= 1, timeout=150)
    items, numbers = await drill.items_with_text(TEXT), numbers_to(tg, user)
    figure(capsys, f"SIGKILL right after confirm (number not yet delivered: "
                   f"{numbers_before_restart == 0}): {items} report(s) registered, "
                   f"{numbers} number message(s) after the restart, "
                   f"{duplicates(tg, [user, HEAD])} duplicates")
    assert (items, numbers, duplicates(tg, [user, HEAD])) == (1, 1, 0), drill.logs()


async def test_drill_the_same_update_twice(
        drill: Drill, tg: FakeTelegramServer, capsys: pytest.CaptureFixture[str]) -> None:
    """1. Every update of a whole report is delivered a second time (same update_id) after
    the bot answered it. 2. Another citizen's «Отправить» arrives twice in the same batch.
    Each update is handled once."""
    user, second, second_text = 7301, 7302, TEXT.replace("дома 3", "дома 4")
    await drill.run()
    await drill.join_staff(HEAD)
    for step in REPORT_STEPS:
        [update_id] = report_updates(tg, user, TEXT, steps=[step])
        await tg.wait_for(lambda r, s=step: r.chat_id == user
                          and answers(s, r.body or "", tg_payloads(r)), timeout=30)
        tg.redeliver(update_id)
        await eventually(lambda u=update_id: tg.delivered.count(u) >= 2, 30,
                         "the duplicate was taken")

    await walk_report(tg, second, second_text, steps=REPORT_STEPS[:6])
    [confirm] = report_updates(tg, second, second_text, steps=["confirm"])
    tg.redeliver(confirm)  # both copies wait in the same batch
    await settle(drill, lambda: numbers_to(tg, second) >= 1, timeout=30)
    await settle(drill, lambda: False, timeout=20, quiet=4)  # let any double handling show

    items = (await drill.items_with_text(TEXT), await drill.items_with_text(second_text))
    numbers = (numbers_to(tg, user), numbers_to(tg, second))
    cards = cards_to(tg, HEAD)
    dups, stale = duplicates(tg, [user, second, HEAD]), stale_answers(tg)
    redelivered = len(REPORT_STEPS) + 1
    figure(capsys, f"the same update twice ({redelivered} updates queued a second time, one "
                   f"of them in the same batch): reports {items[0]} + {items[1]}, numbers "
                   f"{numbers[0]} + {numbers[1]}, {cards} cards, {stale} stale-button answers, "
                   f"{dups} duplicates")
    assert (items, numbers, cards, stale, dups) == ((1, 1), (1, 1), 2, 0, 0), drill.logs()


async def test_drill_two_run_processes_and_a_scheduler_on_one_database(
        drill: Drill, tg: FakeTelegramServer, vk: FakeVKServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Two `mcu run` (Telegram and VK) and one `mcu scheduler` share the database; three
    Telegram citizens and one VK citizen report at the same time. Only one process polls
    Telegram at a time (no 409 conflict); nothing is lost, nothing is sent twice, each citizen
    sees the dialog in order."""
    drill.vk = vk
    await drill.run("run-a")
    await drill.run("run-b")
    await drill.scheduler()
    await vk.wait_for_poller(timeout=30)
    await drill.join_staff(HEAD)
    citizens = [(7400 + i, f"Не горит фонарь у дома {i} по улице Победы, темно") for i in (1, 2, 3)]
    vk_user, vk_text = 7404, "Не горит фонарь у дома 4 по улице Победы, темно"
    walks = await asyncio.gather(*(walk_report(tg, user, text, timeout=45)
                                   for user, text in citizens),
                                 vk_walk_report(vk, vk_user, vk_text, timeout=45),
                                 return_exceptions=True)
    await settle(drill, lambda: cards_to(tg, HEAD) >= 4,
                 timeout=60)
    await settle(drill, lambda: False, timeout=8, quiet=4)  # would anything come twice?
    vk_texts = vk_texts_to(vk, vk_user)
    vk_ok = (await drill.items_with_text(vk_text) == 1
             and sum(NUMBER_MARK in t for t in vk_texts) == 1
             and in_order(vk_texts, DIALOG) and vk_duplicates(vk) == 0)
    registered = sum([await drill.items_with_text(text) == 1 for _, text in citizens])
    numbers = sum(numbers_to(tg, user) == 1 for user, _ in citizens)
    ordered = sum(in_order(bodies_to(tg, user), DIALOG) for user, _ in citizens)
    cards = cards_to(tg, HEAD)
    dups = duplicates(tg, [user for user, _ in citizens] + [HEAD])
    lost = sum(isinstance(w, BaseException) for w in walks)
    figure(capsys, f"2 × mcu run + mcu scheduler: Telegram {registered}/3 registered, "
                   f"{numbers}/3 numbers, {ordered}/3 dialogs in order; VK citizen complete, "
                   f"once, in order: {vk_ok}; {cards}/4 cards; {lost} dialogs stuck, "
                   f"{dups + vk_duplicates(vk)} duplicates, {tg.conflicts} getUpdates "
                   f"conflicts (409)")
    assert (registered, numbers, cards, ordered, lost, dups) == (3, 3, 4, 3, 0, 0), (
        walks, drill.logs())
    assert vk_ok, (vk_texts, drill.logs())
    assert tg.conflicts == 0, "two processes polled Telegram at the same time"
