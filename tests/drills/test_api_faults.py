"""Drills: the messenger APIs fail while citizens keep typing (`mcu run` as a real process).

Each drill prints its figure. A drill waits until its goal is met or nothing has happened for
a while, then asserts what the fake servers and the database show.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from storage.models import Account
from tests.drills.conftest import OUTAGE
from tests.drills.harness import (
    CARD_LEAD,
    NUMBER_MARK,
    REPORT_STEPS,
    TYPED_ADDRESS_STEPS,
    Drill,
    bodies_to,
    cards_to,
    duplicates,
    eventually,
    figure,
    interleave,
    numbers_to,
    polling,
    settle,
    stale_answers,
    step_makers,
    vk_duplicates,
    vk_report_update,
    vk_texts_to,
    vk_walk_report,
    walk_report,
)
from tests.fakes.telegram_api import FakeTelegramServer
from tests.fakes.vk_api import FakeVKServer

HEAD = 9001
CITIZENS = [(7100 + i, f"Не горит фонарь у дома {i} по улице Ленина, темно уже неделю")
            for i in range(1, 6)]


async def outcome(drill: Drill, tg: FakeTelegramServer,
                  citizens: list[tuple[int, str]]) -> tuple[int, int, int, int]:
    registered = sum([await drill.items_with_text(text) == 1 for _, text in citizens])
    numbers = sum(numbers_to(tg, user) == 1 for user, _ in citizens)
    chats = [user for user, _ in citizens] + [HEAD]
    return registered, numbers, stale_answers(tg), duplicates(tg, chats)


async def test_drill_bot_api_500_on_every_method_while_citizens_type_ahead(
        drill: Drill, tg: FakeTelegramServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The Bot API answers 500 to every method, getUpdates included, for OUTAGE seconds.

    Citizens 1–2 typed their whole report and 3–5 its first three steps (2 and 4 type an
    address, the others skip the place); the bot took that
    batch, and at that moment the API went down: every reply of the batch (the numbers of
    1–2 included) fails. During the outage 3–5 type the rest, which waits on the server.
    Expected: all 5 registered once, all 5 learn their number once, no «stale button»
    answer, nothing shown twice.
    """
    await drill.run()
    await drill.join_staff(HEAD)
    await polling(tg)
    # Citizens 2 and 4 type an address instead of skipping the place.
    steps = [TYPED_ADDRESS_STEPS if i % 2 else REPORT_STEPS for i in range(len(CITIZENS))]
    batch = interleave(*(step_makers(tg, user, text, steps[i] if i < 2 else steps[i][:3])
                         for i, (user, text) in enumerate(CITIZENS)))
    window = tg.fail_for(OUTAGE, status=500, once_delivered=batch)
    await eventually(lambda: window.started, 30, "the bot took the first batch")
    interleave(*(step_makers(tg, user, text, steps[i][3:])
                 for i, (user, text) in enumerate(CITIZENS) if i >= 2))
    await eventually(lambda: window.finished, OUTAGE + 5, "the outage ended")

    done = await settle(drill, lambda: all(numbers_to(tg, u) for u, _ in CITIZENS), timeout=120)
    registered, numbers, stale, dups = await outcome(drill, tg, CITIZENS)
    figure(capsys, f"Bot API 500 for {window.duration:.0f} s on every method "
                   f"({window.failures} calls refused), 5 citizens typing ahead: "
                   f"{registered}/5 registered, {numbers}/5 numbers delivered, "
                   f"{stale} stale-button answers, {dups} duplicates")
    assert (registered, numbers, stale, dups) == (5, 5, 0, 0), (done, drill.logs())


async def test_drill_429_with_retry_after_on_every_method(
        drill: Drill, tg: FakeTelegramServer, capsys: pytest.CaptureFixture[str]) -> None:
    """Every method answers 429 with retry_after=2 for a while, right after the bot took three
    whole reports: everything reaches its chat (numbers, the head's cards) exactly once."""
    citizens = CITIZENS[:3]
    await drill.run()
    await drill.join_staff(HEAD)
    await polling(tg)
    batch = interleave(*(step_makers(tg, user, text) for user, text in citizens))
    window = tg.fail_for(min(OUTAGE, 6), status=429, retry_after=2, once_delivered=batch)
    await eventually(lambda: window.started, 30, "the bot took the batch")

    def delivered() -> bool:
        return (all(numbers_to(tg, u) for u, _ in citizens)
                and cards_to(tg, HEAD) >= len(citizens))

    done = await settle(drill, delivered, timeout=120)
    registered, numbers, stale, dups = await outcome(drill, tg, citizens)
    cards = cards_to(tg, HEAD)
    figure(capsys, f"429 retry_after=2 on every method for {window.duration:.0f} s "
                   f"({window.failures} calls refused): {registered}/3 registered, "
                   f"{numbers}/3 numbers, {cards}/3 cards delivered, {stale} stale-button "
                   f"answers, {dups} duplicates")
    assert (registered, numbers, cards, stale, dups) == (3, 3, 3, 0, 0), (done, drill.logs())


async def test_drill_403_from_a_citizen_who_blocked_the_bot(
        drill: Drill, tg: FakeTelegramServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The citizen blocks the bot after reporting; the head answers. The answer is marked
    undeliverable after one attempt, the account is marked, the head's card says so."""
    user, text = CITIZENS[0]
    await drill.run()
    await drill.join_staff(HEAD)
    await walk_report(tg, user, text)
    await settle(drill, lambda: any(CARD_LEAD in b for b in bodies_to(tg, HEAD)), timeout=60)
    [item] = await drill.items()
    tg.block_user(user)

    mark = len(tg.sent)
    tg.press_button(HEAD, f"s:answer:{item.id}")
    await tg.wait_for(lambda r: r.chat_id == HEAD and r.method == "sendMessage", since=mark,
                      timeout=30)
    tg.user_message(HEAD, "Лампы заменены, освещение восстановлено", first_name="Начальник")

    async def answer_settled() -> bool:
        rows = await drill.outbox(user)
        return bool(rows) and all(r.status != "pending" for r in rows) and any(
            r.status == "undeliverable" for r in rows)

    await settle(drill, answer_settled, timeout=60)
    rows = await drill.outbox(user)
    attempts = sum(1 for r in tg.failed if r.chat_id == user)
    async with drill.sessions() as session:
        account = await session.scalar(select(Account).where(Account.platform == "telegram",
                                                              Account.user_id == str(user)))
    mark = len(tg.sent)
    tg.user_message(HEAD, f"/task {item.number}", first_name="Начальник")
    card = await tg.wait_for(lambda r: r.chat_id == HEAD and item.number in (r.body or ""),
                             since=mark, timeout=30)
    await settle(drill, lambda: False, timeout=6, quiet=3)  # would anything be retried?
    later_attempts = sum(1 for r in tg.failed if r.chat_id == user)
    says_blocked = any("заблокировал бота" in (r.body or "") for r in tg.sent[mark:]
                       if r.chat_id == HEAD)
    undeliverable = sum(r.status == "undeliverable" for r in rows)
    figure(capsys, f"403 from a citizen: {undeliverable} row(s) undeliverable after "
                   f"{attempts} attempt(s), account marked: {account.blocked_bot_at is not None}, "
                   f"card says so: {says_blocked}, retries afterwards: "
                   f"{later_attempts - attempts}")
    assert undeliverable >= 1 and all(r.status != "pending" for r in rows), [
        (r.status, r.last_error) for r in rows]
    assert account is not None and account.blocked_bot_at is not None
    assert says_blocked, card.body
    assert attempts <= len(rows) and later_attempts == attempts
    assert NUMBER_MARK in "\n".join(bodies_to(tg, user))


async def test_drill_vk_error_6_on_every_method(
        drill: Drill, vk: FakeVKServer, tg: FakeTelegramServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    """VK answers error 6 (too many requests) to every method for a while, from the moment
    a VK citizen pressed «Отправить»: after the pause the number is delivered, once."""
    user = 7801
    text = "Не горит фонарь у дома 11 по улице Ленина, темно уже неделю"
    drill.vk = vk
    await drill.run()
    await vk.wait_for_poller(timeout=30)
    await drill.join_staff(HEAD)
    await vk_walk_report(vk, user, text, steps=REPORT_STEPS[:6])
    window = vk.fail_for(min(OUTAGE, 5), code=6)
    vk_report_update(vk, user, text, "confirm")

    def numbers() -> int:
        return sum(NUMBER_MARK in t for t in vk_texts_to(vk, user))

    done = await settle(drill, lambda: numbers() >= 1 and not window.active(), timeout=90)
    await settle(drill, lambda: False, timeout=8, quiet=4)  # anything twice?
    registered = await drill.items_with_text(text)
    figure(capsys, f"VK error 6 on every method for {window.duration:.0f} s "
                   f"({window.failures} calls refused): {registered} report(s) registered, "
                   f"number delivered {numbers()} time(s), {vk_duplicates(vk)} duplicates")
    assert (registered, numbers(), vk_duplicates(vk)) == (1, 1, 0), (done, drill.logs())
