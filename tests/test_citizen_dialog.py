"""The citizen's dialog through the real core, a real SQLite file and a collecting outbox."""

from __future__ import annotations

from sqlalchemy import func, select

from handlers.events import Unsupported
from storage.models import Attachment, Citizen, Consent, Item, ItemEvent, OutboxMessage
from tests.support.chat import ChatClient


async def agree(citizen: ChatClient) -> None:
    await citizen.send("/start")
    await citizen.click("Согласен")


async def report_traffic_light(citizen: ChatClient) -> None:
    """The shortest full report: text, topic, no photo, no place, send."""
    await citizen.send("Не работает светофор на перекрёстке")
    await citizen.click("Транспорт")
    await citizen.click("Пропустить")
    await citizen.click("Пропустить")
    await citizen.click("Отправить")


async def count(services, model) -> int:
    async with services.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_first_contact_asks_consent_and_stores_nothing_personal(citizen, services):
    response = await citizen.send("/start")
    assert "согласие" in response.replies[0].text.lower()
    assert citizen.find_button("Политика")
    await citizen.send("На улице Ленина не горит фонарь уже неделю")
    assert "не сохранён" in citizen.texts()
    assert await count(services, Citizen) == 0
    assert await count(services, Consent) == 0
    policy = await citizen.click("Политика")
    assert "152" in policy.replies[0].text or "Оператор" in policy.replies[0].text


async def test_declining_consent_explains_how_to_agree_later(citizen, services):
    await citizen.send("/start")
    await citizen.click("Не согласен")
    assert "/start" in citizen.texts()
    await citizen.click("Согласен")  # the old consent button still works later
    assert await count(services, Consent) == 1


async def test_full_report_gets_a_number_in_one_transaction(citizen, services):
    await agree(citizen)
    async with services.sessions() as session:
        consent = await session.scalar(select(Consent))
    assert consent.policy_version and consent.given_at
    await citizen.send("📝 Сообщить о проблеме")
    await citizen.click("Жилищно")
    await citizen.send("коротко")
    assert "не меньше 10" in citizen.texts()
    await citizen.send("x" * 5000)
    assert "4000" in citizen.texts()
    await citizen.send("Во дворе дома <5> & *подвал* затоплен_ [срочно]")
    await citizen.send(photos=2)
    assert "2 из 5" in citizen.texts()
    await citizen.click("Готово")
    await citizen.send(location=(53.5739, 142.9478))
    confirm = citizen.last.replies[0]
    assert "Во дворе дома <5> & *подвал* затоплен_ [срочно]" in confirm.text
    assert "Фото: 2" in confirm.text
    await citizen.click("Отправить")
    text = citizen.texts()
    assert "2026-000001" in text
    assert "ЖКХ" in text
    assert "01.12.2026" in text  # housing: 5 working days after Tue 24.11 (org override)
    async with services.sessions() as session:
        item = await session.scalar(select(Item))
        assert item.text == "Во дворе дома <5> & *подвал* затоплен_ [срочно]"
        assert item.status == "assigned" and item.block_id == "housing"
        assert (item.latitude, item.longitude) == (53.5739, 142.9478)
        events = (await session.scalars(select(ItemEvent.action).order_by(ItemEvent.id))).all()
        assert events == ["register", "route"]
        photos = (await session.scalars(select(Attachment))).all()
        assert [p.item_id for p in photos] == [item.id, item.id]
        for photo in photos:
            assert services.files.path(photo.path).read_bytes().startswith(b"\xff\xd8")


async def test_text_first_is_kept_and_topic_asked_afterwards(citizen, services):
    await agree(citizen)
    await citizen.send("Не горит уличный фонарь у школы № 1")
    assert "тематику" in citizen.texts()
    await citizen.click("Энергетика")
    assert "фото" in citizen.texts().lower()
    await citizen.click("Пропустить")
    await citizen.send("ул. Ленина, 10")
    assert "Не горит уличный фонарь у школы № 1" in citizen.texts()
    assert "ул. Ленина, 10" in citizen.texts()


async def test_cancel_keeps_nothing_half_done(citizen, services):
    await agree(citizen)
    await citizen.send("Яма на дороге у дома 5 по улице Советской")
    await citizen.click("Дорожная")
    await citizen.send(photos=1)
    assert await count(services, Attachment) == 1
    await citizen.send("/cancel")
    assert "Отменено" in citizen.texts()
    assert await count(services, Attachment) == 0
    assert await count(services, Item) == 0


async def test_bad_inputs_get_a_clear_answer(citizen, services):
    await agree(citizen)
    for kind in Unsupported:
        await citizen.send(unsupported=kind)
        assert "не принимается" in citizen.texts()
    await citizen.send("/nonsense")
    assert "/nonsense" in citizen.texts() and "/help" in citizen.texts()
    await citizen.send("Сломана скамейка в парке культуры")
    await citizen.send(unsupported=Unsupported.VOICE)
    assert "тематику" in citizen.texts()  # says what is accepted at this step
    await citizen.press("topic:no_such_topic")
    assert "не действует" in citizen.texts()
    await citizen.press("confirm:send")  # a button from another step
    assert await count(services, Item) == 0


async def test_duplicate_update_is_processed_once(citizen, services):
    await agree(citizen)
    await citizen.send("Не вывезли мусор с контейнерной площадки", update_key="same")
    again = await citizen.send("Не вывезли мусор с контейнерной площадки", update_key="same")
    assert again.replies == []


async def test_my_items_and_comment_reach_the_assignee(citizen, services):
    await agree(citizen)
    await report_traffic_light(citizen)
    await citizen.send("📋 Мои обращения")
    assert "2026-000001" in citizen.texts()
    await citizen.click("2026-000001")
    assert "История" in citizen.texts()
    await citizen.click("комментарий")
    await citizen.send("Светофор мигает жёлтым с утра")
    assert "передан" in citizen.texts()
    async with services.sessions() as session:
        notes = (await session.scalars(select(ItemEvent.action))).all()
    assert "citizen_comment" in notes


async def test_forged_item_button_reveals_nothing(citizen, core, services):
    await agree(citizen)
    await report_traffic_light(citizen)
    stranger = ChatClient(core, user_id="777")
    await agree(stranger)
    await stranger.press("my:1")
    assert "светофор" not in stranger.texts()
    assert "не действует" in stranger.texts()


async def test_forget_anonymises_but_keeps_statistics(citizen, services):
    await agree(citizen)
    await citizen.send("Не работает светофор на перекрёстке")
    await citizen.click("Транспорт")
    await citizen.send(photos=1)
    await citizen.click("Готово")
    await citizen.click("Пропустить")
    await citizen.click("Отправить")
    await citizen.send("/privacy")
    assert "2026-000001" in citizen.texts()
    await citizen.send("/forget")
    await citizen.click("Да, отозвать")
    async with services.sessions() as session:
        item = await session.scalar(select(Item))
        person = await session.scalar(select(Citizen))
    assert item.topic == "transport" and "светофор" not in item.text
    assert person.name is None and person.anonymised_at is not None
    assert await count(services, Attachment) == 0
    await citizen.send("Ещё одна проблема с дорогой")
    assert "согласие" in citizen.texts().lower()


async def test_language_switch(citizen):
    await agree(citizen)
    await citizen.send("/lang")
    await citizen.click("English")
    await citizen.send("/help")
    assert "What this bot does" in citizen.texts()


async def test_flood_control_is_per_user(citizen, core, services):
    core.services.flood_limit_per_minute = 5
    await agree(citizen)
    for _ in range(5):
        await citizen.send("/help")
    assert any("Слишком много" in reply.text for reply in citizen.history)
    assert citizen.last.replies == []  # told once per burst, then silence
    other = ChatClient(core, user_id="900")
    response = await other.send("/start")
    assert "согласие" in response.replies[0].text.lower()


async def test_group_chat_messages_from_non_staff_are_ignored(citizen):
    response = await citizen.send("привет всем", chat_id="-100500", is_private=False)
    assert response.replies == []


async def test_staff_notification_is_queued_with_the_item(citizen, services):
    await agree(citizen)
    await report_traffic_light(citizen)
    # No staff has joined yet: nothing to deliver, but the item is routed and visible.
    async with services.sessions() as session:
        notices = await session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.audience != "reply"))
    assert notices == 0


def test_split_text_prefers_paragraphs_then_lines():
    from handlers.formatting import split_text

    text = ("слово " * 200).strip() + "\n\n" + "\n".join(f"строка {i}" for i in range(300))
    pieces = split_text(text, 1500)
    assert pieces[0] == ("слово " * 200).strip()  # cut at the paragraph break
    assert all(len(piece) <= 1500 for piece in pieces)
    assert all(not piece.startswith("\n") for piece in pieces)
    assert "\n".join(pieces[1:]).split("\n") == [f"строка {i}" for i in range(300)]
