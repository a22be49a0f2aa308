"""Topic suggestions in the conversations, through the real core: the citizen's topic screen,
the confident question, /register's pre-selection, and what the item records."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from handlers.topics import CONFIDENT_SCORE
from storage.models import Item
from tests.support.chat import ChatClient, join_as
from tests.support.topics import ready_suggester

CONFIDENT = "Не горит фонарь у подъезда дома 7 по Советской"  # energy, well above the bar
AMBIGUOUS = "Во дворе разбита дорога и не горит свет"  # roads and energy, both below it


@pytest.fixture
def suggesting(services):
    services.topics = ready_suggester(services.org)
    return services


async def agree(citizen: ChatClient) -> None:
    await citizen.send("/start")
    await citizen.click("Согласен")


async def finish(citizen: ChatClient) -> Item:
    await citizen.click("Пропустить")
    await citizen.click("Пропустить")
    await citizen.click("Отправить")
    assert "Номер" in citizen.texts()
    async with citizen.core.services.sessions() as session:
        return await session.scalar(select(Item).order_by(Item.id.desc()))


def first_rows(citizen: ChatClient, count: int) -> list[list[str]]:
    reply = citizen.last.replies[-1]
    return [[b.text for b in row] for row in reply.buttons[:count]]


async def test_a_confident_suggestion_is_asked_and_accepted(suggesting, citizen):
    await agree(citizen)
    await citizen.send(CONFIDENT)
    assert "Похоже, это Энергетика — верно?" in citizen.texts()
    assert first_rows(citizen, 1) == [["Да", "Выбрать другую"]]
    await citizen.click("Да")
    assert "фото" in citizen.texts().lower()
    item = await finish(citizen)
    assert item.topic == item.suggested_topic == "energy"
    assert item.suggestion_score >= CONFIDENT_SCORE


async def test_another_topic_after_the_question_is_one_tap_on_one_screen(suggesting, citizen):
    await agree(citizen)
    await citizen.send(CONFIDENT)
    await citizen.click("Выбрать другую")
    reply = citizen.last.replies[-1]
    labels = [b.text for row in reply.buttons for b in row]
    assert labels[0] == "⭐ Энергетика"  # the suggestion still leads
    assert len(labels) == 17 and labels[-1].endswith("Отменить")  # every topic, one screen
    assert labels.count("Энергетика") == 0  # not twice
    await citizen.click("Жилищно")
    item = await finish(citizen)
    # What the citizen chose and what was suggested: «accepted?» can be counted.
    assert (item.topic, item.suggested_topic) == ("housing", "energy")


async def test_two_close_suggestions_lead_the_screen(suggesting, citizen):
    await agree(citizen)
    await citizen.send(AMBIGUOUS)
    assert "⭐" in citizen.texts() and "Похоже" not in citizen.texts()
    assert first_rows(citizen, 2) == [["⭐ Дорожная деятельность"], ["⭐ Энергетика"]]
    await citizen.click("⭐ Энергетика")
    item = await finish(citizen)
    assert (item.topic, item.suggested_topic) == ("energy", "roads")
    assert 0 < item.suggestion_score < CONFIDENT_SCORE


async def test_topic_first_shows_the_plain_screen_and_records_no_suggestion(suggesting,
                                                                               citizen):
    await agree(citizen)
    await citizen.send("📝 Сообщить о проблеме")
    assert "⭐" not in str(citizen.last.replies[-1].buttons)
    await citizen.click("Энергетика")
    await citizen.send(CONFIDENT)
    item = await finish(citizen)
    assert item.topic == "energy" and item.suggested_topic is None


async def test_changing_the_topic_at_the_confirmation_shows_the_full_screen(suggesting,
                                                                             citizen):
    await agree(citizen)
    await citizen.send(CONFIDENT)
    await citizen.click("Да")
    await citizen.click("Пропустить")
    await citizen.click("Пропустить")
    await citizen.click("Изменить")
    await citizen.click("Тематик")
    assert "Похоже" not in citizen.texts() and first_rows(citizen, 1) == [["⭐ Энергетика"]]


async def test_without_a_ready_model_the_dialog_is_as_before(services, citizen):
    await agree(citizen)
    await citizen.send(CONFIDENT)
    assert "⭐" not in str(citizen.last.replies[-1].buttons)
    await citizen.click("Энергетика")
    item = await finish(citizen)
    assert item.suggested_topic is None and item.suggestion_score is None


async def test_register_preselects_the_suggestion(suggesting, core):
    operator = await join_as(core, "operator", user_id="2001", name="Оператор")
    await operator.send("/register phone")
    await operator.click("✓")  # the default kind
    await operator.click("Пропустить")  # no incoming number
    await operator.click("Сейчас")
    for _ in range(4):  # name, phone, e-mail, postal address
        await operator.click("Пропустить")
    await operator.send(CONFIDENT)
    assert "подсказка по тексту выбрана первой" in operator.texts()
    assert first_rows(operator, 1) == [["✓ ⭐ Энергетика"]]
    await operator.click("✓ ⭐ Энергетика")
    await operator.click("Пропустить")  # photos
    assert "Энергетика" in operator.texts()
    await operator.click("Зарегистрировать")
    async with suggesting.sessions() as session:
        item = await session.scalar(select(Item))
    assert item.topic == item.suggested_topic == "energy" and item.registered_by_id
