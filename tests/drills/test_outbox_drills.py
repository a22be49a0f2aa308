"""Drills on the outbox: a message held for later never blocks one that is due, and a reply
of several visible parts (a photo and a text) survives a failure between its parts. Each
prints its figure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from handlers.events import ChatRef, Platform, Reply
from handlers.outbox import enqueue
from tests.drills.harness import (
    CARD_LEAD,
    Drill,
    bodies_to,
    duplicates,
    figure,
    settle,
    walk_report,
)
from tests.fakes.telegram_api import FakeTelegramServer, SentRecord

HEAD = 9001
TEXT = "Не горит фонарь у дома 8 по улице Комсомольской, темно уже неделю"
HELD = "Эскалация: срок ответа по сообщению истёк (отправить в 09:00)"
ANSWER = "Лампы заменены, освещение на улице Комсомольской восстановлено"
T_DAILY = "Сводка МЦУ за сутки"  # summary.daily_title
ANSWER_PHOTO = b"\xff\xd8\xff\xe0" + b"answer-photo-drill" * 40 + b"\xff\xd9"


def fail_between_parts(tg: FakeTelegramServer, chat_id: int,
                       is_photo: Callable[[SentRecord], bool],
                       is_text: Callable[[SentRecord], bool]) -> list[str]:
    """Once the first part of a photo + text reply reached `chat_id` (whichever comes first),
    fail the next call for the other part once with a 500. Returns a list that gets the name
    of the failed method when the failure was armed (empty list: never armed)."""
    armed: list[str] = []

    def hook(record: SentRecord) -> None:
        if armed or record.chat_id != chat_id:
            return
        if record.method == "sendPhoto" and is_photo(record):
            armed.append("sendMessage")
        elif record.method == "sendMessage" and is_text(record):
            armed.append("sendPhoto")
        else:
            return
        tg.fail_next(armed[0], status=500, chat_id=chat_id)

    tg.on_sent(hook)
    return armed


async def test_drill_a_row_held_until_morning_does_not_hold_a_new_card(
        drill: Drill, tg: FakeTelegramServer, capsys: pytest.CaptureFixture[str]) -> None:
    """An escalation to the head is queued for the morning (10 h ahead); then a citizen
    reports. The new card reaches the head now; the escalation still waits."""
    user = 7701
    await drill.run()
    await drill.join_staff(HEAD)
    now = datetime.now(UTC)
    async with drill.sessions() as session, session.begin():
        enqueue(session, ChatRef(Platform.TELEGRAM, str(HEAD)), Reply(HELD), audience="staff",
                now=now, not_before=now + timedelta(hours=10))
    await walk_report(tg, user, TEXT)
    delivered = await settle(drill, lambda: any(CARD_LEAD in b for b in bodies_to(tg, HEAD)),
                             timeout=30, quiet=8)
    held_rows = [r for r in await drill.outbox(HEAD) if r.payload.get("text") == HELD]
    still_held = (not any(HELD in b for b in bodies_to(tg, HEAD))
                  and [r.status for r in held_rows] == ["pending"])
    figure(capsys, f"a row held until morning (+10 h) and a new card to the same head: "
                   f"card delivered now: {delivered}, the held row still held: {still_held}")
    assert delivered, drill.logs()
    assert still_held


async def test_drill_photo_and_text_reply_with_a_failure_between_the_parts(
        drill: Drill, tg: FakeTelegramServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The head answers with a photo and a text; the answer reaches the citizen as two
    messages. The Bot API fails the text once, right after the photo went out: each part is
    delivered exactly once."""
    user = 7702
    await drill.run()
    await drill.join_staff(HEAD)
    await walk_report(tg, user, TEXT)
    [item] = await drill.items()

    armed = fail_between_parts(tg, user, lambda r: r.photo == ANSWER_PHOTO,
                               lambda r: ANSWER in (r.text or ""))
    mark = len(tg.sent)
    tg.press_button(HEAD, f"s:answer:{item.id}")
    await tg.wait_for(lambda r: r.chat_id == HEAD and r.method == "sendMessage", since=mark,
                      timeout=30)
    mark = len(tg.sent)
    tg.user_message(HEAD, photo=ANSWER_PHOTO, first_name="Начальник")
    await tg.wait_for(lambda r: r.chat_id == HEAD and r.method == "sendMessage", since=mark,
                      timeout=30)
    tg.user_message(HEAD, ANSWER, first_name="Начальник")

    def photos() -> int:
        return sum(1 for r in tg.messages_to(user)
                   if r.method == "sendPhoto" and r.photo == ANSWER_PHOTO)

    def texts() -> int:
        return sum(ANSWER in b for b in bodies_to(tg, user))

    done = await settle(drill, lambda: photos() >= 1 and texts() >= 1, timeout=60)
    await settle(drill, lambda: False, timeout=8, quiet=4)  # would a part come again?
    failed_between = bool(armed) and any(r.chat_id == user and r.error_code == 500
                                         for r in tg.failed)
    figure(capsys, f"photo + text answer, 500 between the parts ({failed_between}): photo "
                   f"delivered {photos()} time(s), text {texts()} time(s), "
                   f"{duplicates(tg, [user])} duplicates")
    assert failed_between, "the failure between the parts was not injected"
    assert (photos(), texts()) == (1, 1), (done, drill.logs())


async def test_drill_daily_summary_chart_and_text_with_a_failure_between_the_parts(
        drill: Drill, tg: FakeTelegramServer, capsys: pytest.CaptureFixture[str]) -> None:
    """`mcu jobs run daily_summary` queues the summary (a chart and a text) for the chairman's
    group; the Bot API fails the text once, right after the chart went out. The group gets
    the chart once and the text once."""
    chairman, group = 9101, -100_500
    await drill.run()
    await drill.join_staff(chairman, role="chairman", block=None, name="Председатель")
    mark = len(tg.sent)
    tg.user_message(chairman, "/bind_summary_group", chat_id=group, chat_type="group",
                    first_name="Председатель")
    await tg.wait_for(lambda r: r.chat_id == group, since=mark, timeout=30)

    armed = fail_between_parts(tg, group, lambda r: True, lambda r: T_DAILY in (r.text or ""))
    await drill.cli("jobs", "run", "daily_summary")

    def charts() -> int:
        return sum(1 for r in tg.messages_to(group) if r.method == "sendPhoto")

    def texts() -> int:
        return sum(T_DAILY in b for b in bodies_to(tg, group))

    done = await settle(drill, lambda: charts() >= 1 and texts() >= 1, timeout=60)
    await settle(drill, lambda: False, timeout=8, quiet=4)  # would a part come again?
    figure(capsys, f"daily summary (chart + text), 500 between the parts ({bool(armed)}): chart "
                   f"delivered {charts()} time(s), text {texts()} time(s)")
    assert armed, "no part of the summary went out"
    assert (charts(), texts()) == (1, 1), (done, drill.logs())
