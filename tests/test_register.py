"""/register through the real core: every channel, appeals without an address, duplicates."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from handlers.rules.deadlines import working_day_deadline
from storage.models import Attachment, Citizen, Item, ItemEvent, OutboxMessage, Staff
from tests.conftest import SAKHALIN
from tests.support.chat import ChatClient, join_as

TEXT = "Яма на дороге у дома 5 по ул. Советской, машины объезжают по встречной"
POSTAL = "694490, г. Оха, ул. Ленина, д. 1, кв. 2"
CHANNELS = {  # channel id → (button text, default kind, external number)
    "pos": ("ПОС", "message", "ПОС-2026-1001"),
    "incident_management": ("Инцидент менеджмент", "incident", "IM-555"),
    "sakhalin_online": ("Сахалин.Онлайн", "message", "SO-42"),
    "smls": ("СМЛС", "message", "СМЛС-7"),
    "phone": ("телефон", "message", None),
    "letter": ("письмо", "appeal", "вх-15"),
    "visit": ("личный приём", "message", None),
}


@pytest.fixture
async def operator(core) -> ChatClient:
    return await join_as(core, "operator", user_id="2001", name="Оператор Иванова")


@pytest.fixture
async def head(core) -> ChatClient:
    return await join_as(core, "head", "housing", user_id="1001", name="Начальник отдела ЖКХ")


async def items(services) -> list[Item]:
    async with services.sessions() as session:
        return list((await session.scalars(select(Item).order_by(Item.id))).all())


async def outbox_text(services, chat_id: str) -> str:
    async with services.sessions() as session:
        rows = await session.scalars(select(OutboxMessage).where(OutboxMessage.chat_id == chat_id,
                                                                 OutboxMessage.audience != "reply")
                                     .order_by(OutboxMessage.id))
        return "\n".join(f"{r.payload['title'] or ''}\n{r.payload['text']}" for r in rows)


async def fill(client: ChatClient, channel: str, *, external: str | None = "skip",
               received: str | None = None, name: str | None = "Петров Пётр Петрович",
               phone: str | None = "+7 924 111-22-33", email: str | None = None,
               postal: str | None = POSTAL, link: str | None = "https://vk.com/wall-1_2",
               text: str = TEXT, topic: str = "Дорожная деятельность", photos: int = 0) -> None:
    """Walk the dialog up to the confirmation screen; None means press «Пропустить»."""
    label, _kind, number = CHANNELS[channel]
    await client.send("/register")
    assert "Откуда поступило" in client.texts()
    await client.click(label)
    await client.click("✓")  # the default kind
    number = number if external == "skip" else external
    if number is None:
        await client.click("Пропустить")
    else:
        await client.send(number)
    if received is None:
        await client.click("Сейчас")
    else:
        await client.send(received)
    for value in (name, phone, email, postal):
        await (client.click("Пропустить") if value is None else client.send(value))
    if channel == "incident_management":
        await (client.click("Пропустить") if link is None else client.send(link))
    await client.send(text)
    await client.click(topic)
    if photos:
        await client.send(photos=photos)
        await client.click("Готово")
    else:
        await client.click("Пропустить")
    assert "Проверьте перед регистрацией" in client.last.replies[0].title


@pytest.mark.parametrize("channel", list(CHANNELS))
async def test_each_channel_is_registered_routed_and_notified(core, services, clock, operator,
                                                              head, channel):
    await fill(operator, channel, photos=1 if channel == "letter" else 0)
    await operator.click("Зарегистрировать")
    assert "Зарегистрировано: № 2026-000001" in operator.last.replies[0].title
    [item] = await items(services)
    label, kind, number = CHANNELS[channel]
    assert (item.channel, item.kind, item.external_number) == (channel, kind, number)
    assert item.status == "assigned" and item.block_id == "housing" and item.topic == "roads"
    assert item.received_at == clock.now() and item.answer_due is not None
    assert item.no_answer is False
    assert item.post_url == ("https://vk.com/wall-1_2" if channel == "incident_management"
                             else None)
    async with services.sessions() as session:
        staff = await session.scalar(select(Staff).where(Staff.role == "operator"))
        citizen = await session.get(Citizen, item.citizen_id)
        history = (await session.scalars(select(ItemEvent.action).order_by(ItemEvent.id))).all()
        photos = await session.scalar(select(func.count()).select_from(Attachment)
                                      .where(Attachment.item_id == item.id))
    assert item.registered_by_id == staff.id
    assert (citizen.name, citizen.phone, citizen.postal_address) == (
        "Петров Пётр Петрович", "+7 924 111-22-33", POSTAL)
    assert history == ["register", "route"]
    assert photos == (1 if channel == "letter" else 0)
    to_head = await outbox_text(services, "1001")
    assert "Новое сообщение" in to_head and "2026-000001" in to_head and label in to_head


async def test_registration_works_in_vk_too(core, services):
    operator = await join_as(core, "im_coordinator", user_id="77", platform="vk")
    await fill(operator, "incident_management")
    await operator.click("Зарегистрировать")
    [item] = await items(services)
    assert item.kind == "incident" and item.first_reaction_due is not None


async def test_typed_time_of_receipt_starts_the_deadlines(core, services, operator):
    await fill(operator, "pos", received="20.11.2026 17:45")
    await operator.click("Зарегистрировать")
    [item] = await items(services)
    received = datetime(2026, 11, 20, 17, 45, tzinfo=SAKHALIN)
    assert item.received_at == received and item.registered_at == services.now()
    assert item.answer_due == working_day_deadline(services.calendar, received, 10)


async def test_appeal_without_postal_address_is_recorded_without_answer(core, services,
                                                                        operator, head):
    await fill(operator, "letter", postal=None, phone=None)
    assert "ответ не даётся" in operator.texts()
    await operator.click("Зарегистрировать")
    assert "ответ не даётся" in operator.texts()
    [item] = await items(services)
    assert item.kind == "appeal" and item.no_answer is True
    assert item.registration_due is not None and item.forward_due is not None
    assert "ответ не даётся (59-ФЗ, ст. 11)" in await outbox_text(services, "1001")


async def test_anonymous_appeal_has_no_citizen_row(core, services, operator):
    await fill(operator, "letter", name=None, phone=None, postal=None)
    await operator.click("Зарегистрировать")
    [item] = await items(services)
    assert item.no_answer is True and item.citizen_id is None


async def test_a_duplicate_external_number_is_refused_with_the_existing_number(core, services,
                                                                             operator):
    await fill(operator, "pos", external="77001")
    await operator.click("Зарегистрировать")
    await operator.send("/register pos")  # the argument skips the channel question
    await operator.click("✓")
    await operator.send("77001")
    assert "уже зарегистрировано: № 2026-000001" in operator.texts()
    assert "Номер сообщения в системе" in operator.texts()  # asked again
    # The same number from another system is a different item.
    await operator.send("/register")
    await operator.click("СМЛС")
    await operator.click("✓")
    await operator.send("77001")
    assert "Когда поступило" in operator.texts()
    assert len(await items(services)) == 1


async def test_the_number_is_required_for_outside_systems(core, operator):
    await operator.send("/register sakhalin_online")
    await operator.click("✓")
    with pytest.raises(AssertionError):
        operator.find_button("Пропустить")
    await operator.send("   ")
    assert "Номер сообщения" in operator.texts()


async def test_bad_input_gets_a_clear_answer(core, services, clock, operator):
    await operator.send("/register phone")
    await operator.send("просто текст")
    assert "ответьте кнопкой" in operator.texts()
    await operator.click("✓")
    await operator.click("Пропустить")
    for typed, expected in (("32.13.2026 10:00", "ДД.ММ.ГГГГ ЧЧ:ММ"),
                            ("25.11.2026 10:00", "не может быть в будущем"),
                            ("20.11.2024 10:00", "не раньше чем год назад")):
        await operator.send(typed)
        assert expected in operator.texts(), typed
    await operator.send("09:30")  # today
    await operator.send("Я")
    assert "от 2 до 300" in operator.texts()
    await operator.send("Сидорова Анна")
    await operator.send("позвоните мне")
    assert "от 5 до 15" in operator.texts()
    await operator.send("8 (42437) 2-23-45")
    await operator.send("anna@")
    assert "не похоже на e-mail" in operator.texts()
    await operator.send("anna@mail.ru")
    await operator.click("Пропустить")
    await operator.send("коротко")
    assert "Слишком коротко" in operator.texts()
    await operator.send("x" * 4001)
    assert "Слишком длинно" in operator.texts()
    await operator.send(TEXT)
    await operator.send("Дороги")
    assert "ответьте кнопкой" in operator.texts()
    await operator.click("Дорожная деятельность")
    await operator.send("ещё текст")
    assert "принимаются фото" in operator.texts()
    await operator.click("Пропустить")
    await operator.click("Зарегистрировать")
    [item] = await items(services)
    assert item.received_at == datetime(2026, 11, 24, 9, 30, tzinfo=SAKHALIN)
    async with services.sessions() as session:
        citizen = await session.get(Citizen, item.citizen_id)
    assert (citizen.phone, citizen.email) == ("8 (42437) 2-23-45", "anna@mail.ru")


async def test_incident_link_must_be_a_link(core, operator):
    await operator.send("/register incident_management")
    await operator.click("✓")
    await operator.send("IM-1")
    await operator.click("Сейчас")
    for _ in range(4):
        await operator.click("Пропустить")
    await operator.send("vk.com/wall")
    assert "http://" in operator.texts()


async def test_edit_from_the_confirmation(core, services, operator):
    await fill(operator, "pos")
    await operator.click("Изменить")
    await operator.click("Тематику")
    await operator.click("Транспорт")
    assert "Тематика: Транспорт" in operator.texts()
    await operator.click("Изменить")
    await operator.click("Вид")
    await operator.click("обращение")
    assert "обращение (59-ФЗ)" in operator.texts()
    await operator.click("Зарегистрировать")
    [item] = await items(services)
    assert (item.topic, item.kind, item.no_answer) == ("transport", "appeal", False)


async def test_cancel_drops_everything_including_photos(core, services, operator):
    await operator.send("/register visit")
    await operator.click("✓")
    await operator.click("Пропустить")
    await operator.click("Сейчас")
    for _ in range(4):
        await operator.click("Пропустить")
    await operator.send(photos=2)
    assert "Фото сохранено" in operator.texts()
    async with services.sessions() as session:
        paths = (await session.scalars(select(Attachment.path))).all()
    assert len(paths) == 2 and all(services.files.path(p).exists() for p in paths)
    await operator.send("/cancel")
    assert "Отменено" in operator.texts()
    async with services.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Attachment)) == 0
    assert not any(services.files.path(p).exists() for p in paths)
    await operator.send(TEXT)  # no dialog any more: nothing is registered
    assert await items(services) == []


async def test_cancel_button_too(core, services, operator):
    await operator.send("/register")
    await operator.click("ПОС")
    await operator.click("Отменить")
    assert "Отменено" in operator.texts()
    await operator.click("✓")  # a button of the dropped dialog
    assert "устарела" in (operator.last.notice or "")


async def test_only_operators_coordinator_and_chairman_register(core, head):
    await head.send("/register")
    assert "недоступно" in head.texts()
    chairman = await join_as(core, "chairman", user_id="3001")
    await chairman.send("/register")
    assert "Откуда поступило" in chairman.texts()


async def test_registered_item_is_in_the_operators_tasks_and_card(core, services, operator):
    await fill(operator, "smls")
    await operator.click("Зарегистрировать")
    await operator.click("Открыть карточку")
    assert "СМЛС-7" in operator.texts() and "Петров" in operator.texts()
    await operator.send("/tasks")
    assert "2026-000001" in operator.texts()
