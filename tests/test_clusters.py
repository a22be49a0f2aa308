"""Clusters of repeated problems, the press alert, and duplicates, through the real core."""

from __future__ import annotations

import itertools
from datetime import date

import pytest
from sqlalchemy import select

from handlers.analytics.clusters import (
    haversine_m,
    normalise_address,
    repeated_problems,
)
from storage.models import Cluster, Item, OutboxMessage
from storage.stats import Period
from tests.support.chat import ChatClient, join_as

# Okha, Lenina street: a point, one 100 m north of it, one 400 m east of it.
LENINA = (53.5739, 142.9478)
NORTH_100M = (53.5739 + 100 / 111_195, 142.9478)
EAST_400M = (53.5739, 142.9478 + 400 / (111_195 * 0.5941))
_users = itertools.count(700)


async def report(core, text: str, topic: str, *, location=None, address=None,
                 platform: str = "telegram") -> ChatClient:
    """A new citizen reports a problem with a place; returns the citizen's client."""
    citizen = ChatClient(core, user_id=str(next(_users)), platform=platform, name="Житель")
    await citizen.send("/start")
    await citizen.click("Согласен")
    await citizen.send(text)
    await citizen.click(topic)
    await citizen.click("Пропустить")
    if location is not None:
        await citizen.send(location=location)
    elif address is not None:
        await citizen.send(address)
    else:
        await citizen.click("Пропустить")
    await citizen.click("Отправить")
    assert "Номер: 20" in citizen.texts(), citizen.texts()
    return citizen


async def items(services) -> list[Item]:
    async with services.sessions() as session:
        return list((await session.scalars(select(Item).order_by(Item.id))).all())


async def outbox_to(services, chat_id: str, platform: str = "telegram") -> list[OutboxMessage]:
    async with services.sessions() as session:
        return list((await session.scalars(select(OutboxMessage).where(
            OutboxMessage.chat_id == chat_id, OutboxMessage.platform == platform,
            OutboxMessage.audience != "reply")
            .order_by(OutboxMessage.id))).all())


@pytest.mark.parametrize("address", [
    "г. Оха, ул. Ленина, д. 12а",
    "улица Ленина 12 А",
    "Ленина, дом 12-а, кв. 3",
    "ул.Ленина,д.12а",
    "ЛЕНИНА 12А",
    "Сахалинская обл., г. Оха, ул. Ленина, д.12 а, квартира 45",
])
def test_address_forms_normalise_to_one_place(address):
    assert normalise_address(address) == "ленина 12а"


def test_different_places_stay_different():
    assert normalise_address("ул. Ленина, 14") == "ленина 14"
    assert normalise_address("пер. Советский, 3") == normalise_address("переулок Советский 3")
    assert normalise_address("пер. Советский, 3") != normalise_address("ул. Советская, 3")
    assert normalise_address("проспект Мира 7") == "пр мира 7"
    assert normalise_address("12") is None and normalise_address("") is None


def test_haversine():
    assert haversine_m(*LENINA, *NORTH_100M) == pytest.approx(100, abs=1)
    assert haversine_m(*LENINA, *EAST_400M) == pytest.approx(400, abs=3)


async def test_cluster_by_distance_alerts_the_press_once(core, services):
    press = await join_as(core, "press", user_id="9001", name="Главный редактор")
    await report(core, "Яма на дороге у магазина", "Дорожная деятельность", location=LENINA)
    await report(core, "Огромная яма, машины объезжают", "Дорожная деятельность",
                 location=NORTH_100M)
    # Far away, or another topic: not the same problem.
    await report(core, "Яма у школы", "Дорожная деятельность", location=EAST_400M)
    await report(core, "Не горит фонарь", "Энергетика", location=LENINA)
    assert await outbox_to(services, press.user_id) == []
    await report(core, "Опять яма, третью неделю", "Дорожная деятельность", location=LENINA)
    alerts = await outbox_to(services, press.user_id)
    assert len(alerts) == 1
    alert = alerts[0].payload
    assert "Резонансная тема" in alert["title"] and "Дорожная деятельность" in alert["text"]
    assert "Сообщений об одной проблеме: 3" in alert["text"]
    assert "Житель" not in alert["text"] and "Яма" not in alert["text"]  # no personal data
    # A fourth report joins the cluster but is not a new resonant topic.
    await report(core, "Яма всё ещё там", "Дорожная деятельность", location=NORTH_100M)
    assert len(await outbox_to(services, press.user_id)) == 1
    rows = await items(services)
    clustered = [i.cluster_id for i in rows]
    assert clustered[0] is not None
    assert clustered == [clustered[0], clustered[0], None, None, clustered[0], clustered[0]]


async def test_cluster_by_normalised_address(core, services):
    press = await join_as(core, "press", user_id="9002")
    for address in ("г. Оха, ул. Ленина, д. 12а", "улица Ленина 12 А", "Ленина, дом 12-а, кв. 3"):
        await report(core, "Не вывозят мусор неделю", "Обращение с ТКО", address=address)
    await report(core, "Не вывозят мусор", "Обращение с ТКО", address="ул. Ленина, 14")
    rows = await items(services)
    assert [i.place_key for i in rows] == ["ленина 12а"] * 3 + ["ленина 14"]
    assert rows[0].cluster_id is not None and rows[3].cluster_id is None
    assert len({i.cluster_id for i in rows[:3]}) == 1
    alerts = await outbox_to(services, press.user_id)
    assert len(alerts) == 1 and "ленина 12а" in alerts[0].payload["text"]
    async with services.sessions() as session:
        problems = await repeated_problems(session, services,
                                           Period(date(2026, 11, 1), date(2026, 12, 1)))
        assert [(p.topic, p.label, p.count, p.open_count) for p in problems] == [
            ("waste", "ленина 12а", 3, 3)]
        # Another block's head does not see the cluster of the housing block.
        assert await repeated_problems(session, services,
                                       Period(date(2026, 11, 1), date(2026, 12, 1)),
                                       block_scope="education") == []


async def test_reports_further_apart_than_the_window_do_not_cluster(core, services, clock):
    await report(core, "Не вывозят мусор", "Обращение с ТКО", address="ул. Ленина, 5")
    clock.advance(days=31)
    await report(core, "Снова не вывозят мусор", "Обращение с ТКО", address="ул. Ленина, 5")
    assert [i.cluster_id for i in await items(services)] == [None, None]
    clock.advance(days=29)
    await report(core, "И снова мусор", "Обращение с ТКО", address="Ленина 5")
    rows = await items(services)
    assert rows[0].cluster_id is None and rows[1].cluster_id == rows[2].cluster_id is not None


async def test_a_bridging_report_merges_two_clusters(core, services):
    core.services.flood_limit_per_minute = 1000
    west = (53.5739, 142.9478)
    east = (53.5739, 142.9478 + 250 / (111_195 * 0.5941))  # 250 m: two separate places
    middle = (53.5739, 142.9478 + 125 / (111_195 * 0.5941))
    for place in (west, west, east, east):
        await report(core, "Не горит фонарь на столбе", "Энергетика", location=place)
    before = {i.cluster_id for i in await items(services)}
    assert len(before) == 2
    await report(core, "Между ними тоже темно", "Энергетика", location=middle)
    after = {i.cluster_id for i in await items(services)}
    assert after == {min(before)}
    async with services.sessions() as session:
        assert (await session.scalars(select(Cluster.id))).all() == [min(before)]


async def test_the_duplicates_citizen_receives_the_answer_in_their_own_messenger(core, services):
    head = await join_as(core, "head", "housing", user_id="1001", name="Начальник отдела ЖКХ")
    first = await report(core, "Нет отопления в доме", "Жилищно-коммунальное хозяйство",
                         address="ул. Ленина, 3")
    second = await report(core, "Холодные батареи, дом Ленина 3", "Жилищно-коммунальное хозяйство",
                          address="Ленина 3", platform="vk")
    main, duplicate = await items(services)
    await head.send(f"/task {duplicate.number}")
    await head.click("Дубликат")
    assert "номер основного" in head.texts()
    await head.send(duplicate.number)
    assert "самого себя" in head.texts()
    await head.press(f"s:duplicate:{duplicate.id}")
    await head.send(main.number)
    assert "дубликат" in head.texts()
    async with services.sessions() as session:
        linked = await session.get(Item, duplicate.id)
        assert (linked.status, linked.duplicate_of_id) == ("duplicate", main.id)
    notice = (await outbox_to(services, second.user_id, "vk"))[-1].payload["text"]
    assert main.number in notice
    await head.press(f"s:answer:{main.id}")
    await head.send("Отопление восстановлено, давление в системе в норме")
    to_first = (await outbox_to(services, first.user_id, "telegram"))[-1]
    to_second = (await outbox_to(services, second.user_id, "vk"))[-1]
    assert "Отопление восстановлено" in to_first.payload["text"]
    assert "Отопление восстановлено" in to_second.payload["text"]
    # Their own number, on their own platform and chat.
    assert duplicate.number in to_second.payload["title"]
    assert (to_second.platform, to_second.chat_id) == ("vk", second.user_id)
    assert to_second.item_id == duplicate.id


async def test_duplicate_refusals(core, services):
    head = await join_as(core, "head", "housing", user_id="1001")
    other_head = await join_as(core, "head", "culture_sport", user_id="1002")
    await report(core, "Нет отопления в доме", "Жилищно-коммунальное хозяйство")
    await report(core, "Не работает стадион", "Культура")
    await report(core, "Нет горячей воды", "Жилищно-коммунальное хозяйство")
    housing, culture, water = await items(services)
    # Another block's item is out of the head's sight: it cannot be the main item.
    await head.press(f"s:duplicate:{water.id}")
    await head.send(culture.number)
    assert "не найдено или недоступно" in head.texts()
    # Nor can the other head mark this block's item.
    await other_head.press(f"s:duplicate:{water.id}")
    assert "недоступно" in other_head.texts()
    await head.press(f"s:duplicate:{water.id}")
    await head.send("№ " + housing.number)
    async with services.sessions() as session:
        assert (await session.get(Item, water.id)).duplicate_of_id == housing.id
