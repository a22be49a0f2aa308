"""Staff work through the real core: invitations, cards, actions, authorisation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from storage.models import (
    Account,
    GroupBinding,
    Item,
    ItemEvent,
    OutboxMessage,
    TopicCorrection,
)
from tests.support.chat import ChatClient, join_as


async def outbox_to(services, user_id: str, platform: str = "telegram") -> list[OutboxMessage]:
    async with services.sessions() as session:
        rows = await session.scalars(select(OutboxMessage).where(
            OutboxMessage.chat_id == user_id, OutboxMessage.platform == platform,
            OutboxMessage.audience != "reply")  # notifications, not the replies to own turns
            .order_by(OutboxMessage.id))
        return list(rows.all())


def texts(rows) -> str:
    return "\n".join(f"{row.payload['title'] or ''}\n{row.payload['text']}" for row in rows)


def buttons(rows) -> dict[str, str]:
    return {b["text"]: b["payload"] for row in rows for line in row.payload["buttons"]
            for b in line}


async def report(citizen: ChatClient, text: str = "Не работает уличное освещение на ул. Ленина",
                 topic: str = "Энергетика") -> None:
    await citizen.send("/start")
    await citizen.click("Согласен")
    await citizen.send(text)
    await citizen.click(topic)
    await citizen.click("Пропустить")
    await citizen.click("Пропустить")
    await citizen.click("Отправить")


async def item(services, number: str = "2026-000001") -> Item:
    async with services.sessions() as session:
        return await session.scalar(select(Item).where(Item.number == number))


@pytest.fixture
async def head(core):
    return await join_as(core, "head", "housing", user_id="1001", name="Начальник отдела ЖКХ")


@pytest.fixture
async def executor(core):
    return await join_as(core, "executor", "housing", user_id="1002", name="Инженер Петров")


@pytest.fixture
async def chairman(core):
    return await join_as(core, "chairman", user_id="1003", name="Председатель")


async def test_new_item_card_reaches_the_head_with_actions(core, services, head, citizen):
    await report(citizen)
    rows = await outbox_to(services, "1001")
    assert "2026-000001" in texts(rows) and "Анна Петрова" in texts(rows)
    assert "Взять в работу" in " ".join(buttons(rows))


async def test_the_whole_chain(core, services, head, executor, citizen):
    await report(citizen)
    await head.press(buttons(await outbox_to(services, "1001"))["✅ Взять в работу"])
    assert "взято в работу" in head.texts()
    await head.click("Уточнить")
    await head.send("Уточните, пожалуйста, номер дома")
    to_citizen = await outbox_to(services, citizen.user_id)
    assert "номер дома" in texts(to_citizen)
    await citizen.send("Дом 12, второй подъезд")
    assert "передан" in citizen.texts()
    assert "Дом 12" in texts(await outbox_to(services, "1001"))
    await head.send("/task 2026-000001")
    await head.click("Назначить")
    await head.click("Инженер Петров")
    assert "поручено" in head.texts()
    executor_rows = await outbox_to(services, "1002")
    await executor.press(buttons(executor_rows)["✍ Ответить"])
    await executor.send(photos=1)
    await executor.send("Лампы заменены 25.11, освещение работает")
    assert "на утверждение" in executor.texts()
    approval = await outbox_to(services, "1001")
    assert "Лампы заменены" in texts(approval)
    assert any(row.payload["photos"] for row in approval)  # the head sees the answer's photo
    await head.press(buttons(approval)["👍 Утвердить"])
    answer = (await outbox_to(services, citizen.user_id))[-1]
    assert "Лампы заменены 25.11" in answer.payload["text"]
    assert len(answer.payload["photos"]) == 1
    current = await item(services)
    assert current.status == "answered" and current.first_reaction_at is not None
    async with services.sessions() as session:
        actions = (await session.scalars(select(ItemEvent.action).order_by(ItemEvent.id))).all()
    assert actions == ["register", "route", "take", "ask_citizen", "citizen_replied",
                       "delegate", "submit_answer", "approve"]


async def test_redirect_needs_a_reason_and_tells_the_chairman(core, services, head, chairman,
                                                              citizen):
    other_head = await join_as(core, "head", "culture_sport", user_id="1010")
    await report(citizen)
    await head.send("/task 2026-000001")
    await head.click("Передать")
    await head.click("культуре, спорту")
    assert "Какая тематика" in head.texts()  # the block has two topics: the head names it
    await head.click("Спорт")
    assert "причину" in head.texts()
    await head.send("Это вопрос освещения стадиона")
    moved = await item(services)
    assert (moved.block_id, moved.topic) == ("culture_sport", "sport")
    async with services.sessions() as session:
        correction = await session.scalar(select(TopicCorrection))
    assert (correction.item_id, correction.from_topic, correction.to_topic) == (
        moved.id, "energy", "sport")
    assert "передано вам" in texts(await outbox_to(services, "1010"))
    assert "Это вопрос освещения стадиона" in texts(await outbox_to(services, "1003"))
    # The old head has no say any more.
    await head.send("/task 2026-000001")
    assert "недоступно" in head.texts()
    await other_head.send("/task 2026-000001")
    assert "2026-000001" in other_head.texts()


async def test_extension_of_a_message_within_the_limit(core, services, head, citizen):
    await report(citizen)
    before = (await item(services)).answer_due
    await head.send("/task 2026-000001")
    await head.click("Продлить")
    await head.click("+3")
    await head.send("Ждём поставку ламп")
    after = (await item(services)).answer_due
    assert after > before
    assert "продлён" in texts(await outbox_to(services, citizen.user_id))


async def make_appeal(services, citizen_account: Account | None = None) -> Item:
    from handlers.items import NewItem, register_item
    from handlers.rules.deadlines import Kind
    from handlers.rules.lifecycle import Actor

    async with services.sessions() as session, session.begin():
        return await register_item(session, services, NewItem(
            kind=Kind.APPEAL, channel="letter", topic="housing", text="Прошу отремонтировать крышу",
            received_at=services.now(),
            reply_account_id=citizen_account.id if citizen_account else None), Actor.OPERATOR)


async def test_appeal_extension_only_once_and_chairman_approves(core, services, head, chairman):
    appeal = await make_appeal(services)
    await head.press(f"s:take:{appeal.id}")
    await head.press(f"s:extend:{appeal.id}")
    await head.send("Нужна экспертиза кровли")
    extended = await item(services, appeal.number)
    assert extended.extension_count == 1
    assert extended.answer_due.astimezone(services.tz).date().isoformat() == "2027-01-25"
    await head.press(f"s:extend:{appeal.id}")
    assert "только один раз" in head.texts()
    # The head's answer to an appeal goes to the chairman first (organisation file).
    await head.press(f"s:answer:{appeal.id}")
    await head.send("Ремонт кровли включён в план на 2027 год")
    assert (await item(services, appeal.number)).status == "on_approval"
    await chairman.press(f"s:approve:{appeal.id}")
    assert (await item(services, appeal.number)).status == "answered"


async def test_not_in_competence_for_a_message(core, services, head, citizen):
    await report(citizen)
    await head.send("/task 2026-000001")
    await head.click("Не в компетенции")
    await head.send("Обратитесь в ПАО «Россети»: сети принадлежат им.")
    assert (await item(services)).status == "forwarded"
    assert "Россети" in texts(await outbox_to(services, citizen.user_id))


async def test_rework_by_the_chairman(core, services, head, chairman, citizen):
    await report(citizen)
    await head.send("/task 2026-000001")
    await head.click("Ответить")
    await head.send("Проверим")
    due = (await item(services)).answer_due
    await chairman.send("/task 2026-000001")
    await chairman.click("доработку")
    await chairman.send("Ответ не по существу: когда починят?")
    current = await item(services)
    assert current.status == "rework" and current.answer_due == due
    assert "не по существу" in texts(await outbox_to(services, "1001"))


async def test_group_bindings(core, services, head, chairman, citizen):
    await head.send("/bind_summary_group", chat_id="-500", is_private=False)
    assert "только председатель" in head.texts()
    await citizen.send("/bind_summary_group", chat_id="-500", is_private=False)
    assert "только председатель" in citizen.texts()
    await chairman.send("/bind_summary_group", chat_id="-500", is_private=False)
    assert "сводка" in chairman.texts()
    await head.send("/bind_block_group", chat_id="-600", is_private=False)
    async with services.sessions() as session:
        bindings = (await session.scalars(select(GroupBinding).order_by(GroupBinding.id))).all()
    assert [(b.purpose, b.block_id, b.chat_id) for b in bindings] == [
        ("summary", "", "-500"), ("block", "housing", "-600")]
    await report(citizen)
    group_rows = await outbox_to(services, "-600")
    assert "2026-000001" in texts(group_rows)
    assert "Анна Петрова" not in texts(group_rows)  # no personal data in a group


async def test_tasks_list_scoped_and_paginated(core, services, head, chairman, citizen, clock):
    core.services.flood_limit_per_minute = 1000  # one citizen reporting ten times in a row
    for i in range(10):
        await report(citizen, text=f"Проблема с освещением номер {i:02d}")
    education_head = await join_as(core, "head", "education", user_id="2002")
    await education_head.send("/tasks")
    assert "Открытых задач нет" in education_head.texts()
    await head.send("/tasks")
    assert "10" in head.last.replies[0].title and "2026-000001" in head.texts()
    await head.click("Далее")
    assert "2026-000009" in head.texts()
    clock.advance(days=30)
    await head.send("/tasks overdue")
    assert "🔴" in head.texts()


async def test_outside_item_answer_goes_to_the_operator_for_publication(core, services, head):
    operator = await join_as(core, "operator", user_id="4001")
    from handlers.items import NewItem, register_item
    from handlers.rules.deadlines import Kind
    from handlers.rules.lifecycle import Actor
    from storage.models import Staff

    async with services.sessions() as session, session.begin():
        staff = await session.scalar(select(Staff).where(Staff.role == "operator"))
        registered = await register_item(session, services, NewItem(
            kind=Kind.MESSAGE, channel="pos", topic="housing", external_number="POS-77",
            text="Нет горячей воды", received_at=services.now(),
            registered_by_id=staff.id), Actor.OPERATOR)
    await head.press(f"s:answer:{registered.id}")
    await head.send("Подача горячей воды восстановлена")
    rows = await outbox_to(services, "4001")
    assert "POS-77" in texts(rows) and "восстановлена" in texts(rows)
    await operator.press(buttons(rows)[next(k for k in buttons(rows) if "размещён" in k)])
    current = await item(services, registered.number)
    assert current.answer_published_at is not None
    await operator.press(f"s:published:{registered.id}")
    assert "уже отмечен" in operator.texts()
    assert timedelta(0) <= current.answer_published_at - current.answered_at
