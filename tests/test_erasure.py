"""The erasure use case (handlers/erasure.py) through the real core and a real database: clusters,
outbox retention, rollbacks, VK identities, and the use case alone on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from handlers.analytics.clusters import place_label
from handlers.erasure import ERASED_TEXT, coarse, erase_citizen
from handlers.erasure_cleanup import clean_up_after_commit, wait_for_clean_ups
from handlers.events import ChatRef, Platform, Reply
from handlers.items import NewItem, record_note, register_item
from handlers.outbox import enqueue, redact_stale_outbox
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Actor
from scheduler.jobs import run_job
from storage.models import (
    Account,
    Attachment,
    Citizen,
    Cluster,
    Consent,
    FloodCounter,
    Item,
    ItemEvent,
    OutboxMessage,
    ProcessedUpdate,
)
from tests.conftest import DEFAULT_START, make_services
from tests.support.chat import ChatClient

LENINA = (53.5739, 142.9478)
NORTH_100M = (53.5739 + 100 / 111_195, 142.9478)
_users = itertools.count(800)


async def report(core, text: str, *, location=None, address=None, photos: int = 0,
                 platform: str = "telegram", user_id: str | None = None) -> ChatClient:
    citizen = ChatClient(core, user_id=user_id or str(next(_users)), platform=platform,
                         name="Житель")
    await citizen.send("/start")
    await citizen.click("Согласен")
    await citizen.send(text)
    await citizen.click("Энергетика")
    if photos:
        await citizen.send(photos=photos)
        await citizen.click("Готово")
    else:
        await citizen.click("Пропустить")
    await (citizen.send(location=location) if location else citizen.send(address))
    await citizen.click("Отправить")
    assert "зарегистрировано" in citizen.texts()
    return citizen


async def forget(citizen: ChatClient) -> None:
    await citizen.send("/forget")
    await citizen.click("Да, отозвать")
    await wait_for_clean_ups()


async def only_cluster(services) -> Cluster:
    async with services.sessions() as session:
        [cluster] = (await session.scalars(select(Cluster))).all()
    return cluster


async def test_a_cluster_named_after_the_erased_point_takes_a_neighbours_name(core, services):
    first = await report(core, "Не горит фонарь во дворе дома", location=LENINA)
    second = await report(core, "Фонарь во дворе не горит уже неделю", location=NORTH_100M)
    label = (await only_cluster(services)).label
    assert label == "{:.5f}, {:.5f}".format(*NORTH_100M)  # named by the item that joined
    async with services.sessions() as session, session.begin():
        enqueue(session, ChatRef(Platform.TELEGRAM, "42"),
                Reply(f"Резонансная тема: {label}, 3 сообщения"), audience="staff",
                now=services.now())
    await forget(second)
    assert (await only_cluster(services)).label == "{:.5f}, {:.5f}".format(*LENINA)
    async with services.sessions() as session:
        alert = await session.scalar(select(OutboxMessage).where(OutboxMessage.chat_id == "42"))
    assert alert is not None and label not in alert.payload["text"]
    assert "{:.5f}, {:.5f}".format(*LENINA) in alert.payload["text"]
    # The first reporter's place is not theirs to erase: it stays.
    await forget(first)
    cluster = await only_cluster(services)
    assert cluster.label == "≈ {:.3f}, {:.3f}".format(*coarse(*LENINA))
    async with services.sessions() as session:
        items = (await session.scalars(select(Item))).all()
    assert {i.cluster_id for i in items} == {cluster.id}  # the cluster stays for statistics


async def test_a_cluster_label_shared_with_a_live_item_stays(core, services):
    await report(core, "Яма у дома, машины бьют колёса", address="ул. Ленина, д. 5")
    second = await report(core, "Яма у подъезда, не пройти", address="Ленина 5, кв. 7")
    assert (await only_cluster(services)).label == "ленина 5"
    await forget(second)
    assert (await only_cluster(services)).label == "ленина 5"


async def test_the_files_stay_when_the_transaction_rolls_back(core, services):
    citizen = await report(core, "Сломана скамейка у школы", location=LENINA, photos=2)
    async with services.sessions() as session:
        paths = (await session.scalars(select(Attachment.path))).all()
        account = await session.scalar(select(Account).where(
            Account.user_id == citizen.user_id))
    assert len(paths) == 2 and account is not None
    async with services.sessions() as session:
        await session.begin()
        result = await erase_citizen(session, services, services.now(), account_id=account.id)
        clean_up_after_commit(session, services, result.files)
        await session.rollback()
    await wait_for_clean_ups()
    assert all(services.files.path(p).exists() for p in paths)
    async with services.sessions() as session:
        assert len((await session.scalars(select(Attachment))).all()) == 2
    await forget(citizen)
    assert not any(services.files.path(p).exists() for p in paths)


async def test_a_vk_citizen_leaves_no_peer_id_in_update_keys_or_counters(core, services):
    citizen = await report(core, "Не вывезли мусор со двора", location=LENINA, platform="vk",
                           user_id="3456")
    await citizen.send("/help", update_key="message_new:3456:99")
    async with services.sessions() as session:  # the shared flood counter saw the message
        assert await session.get(FloodCounter, ("vk", "3456")) is not None
    await forget(citizen)
    async with services.sessions() as session:
        keys = (await session.scalars(select(ProcessedUpdate.update_key)
                                      .where(ProcessedUpdate.platform == "vk"))).all()
        counters = (await session.scalars(select(FloodCounter))).all()
        ids = (await session.execute(select(Account.user_id, Account.chat_id))).all()
    assert not any("3456" in key for key in keys) and counters == []
    assert all("3456" not in f"{u} {c}" for u, c in ids)


async def test_undelivered_outbox_rows_are_redacted_after_the_retention(services, clock):
    now = clock.now()
    chat = ChatRef(Platform.TELEGRAM, "77")
    async with services.sessions() as session, session.begin():
        rows = {}
        for name, status, age in (("old_failed", "failed", 8), ("new_failed", "failed", 1),
                                  ("old_blocked", "undeliverable", 30),
                                  ("old_cancelled", "cancelled", 10),
                                  ("old_pending", "pending", 8), ("old_sent", "sent", 8)):
            row = enqueue(session, chat, Reply(f"Иванов просит {name}"), audience="citizen",
                          now=now - timedelta(days=age))
            row.status = status
            rows[name] = row
    await run_job(services, "housekeeping", now)
    async with services.sessions() as session:
        texts = {name: (await session.get(OutboxMessage, row.id)).payload["text"]
                 for name, row in rows.items()}
        assert await redact_stale_outbox(session, now) == 0  # done once
    assert {name for name, text in texts.items() if not text} == {
        "old_failed", "old_blocked", "old_cancelled"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request, sqlite_url, tmp_path, clock):
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    services = await make_services(url, tmp_path / "data", clock)
    yield services
    await services.sessions.kw["bind"].dispose()


async def test_the_use_case_alone_erases_every_field(db):
    services, now = db, DEFAULT_START
    async with services.sessions() as session, session.begin():
        citizen = Citizen(name="Чубукина Анна", phone="+7 924 000-11-22", email="a@example.org",
                          postal_address="694490, Оха, ул. Дзержинского, 9", created_at=now)
        session.add(citizen)
        await session.flush()
        account = Account(platform="telegram", user_id="6061", chat_id="6061", locale="ru",
                          citizen_id=citizen.id, created_at=now)
        session.add(account)
        await session.flush()
        session.add(Consent(account_id=account.id, policy_version="x", given_at=now))
        mine = await register_item(session, services, NewItem(
            kind=Kind.MESSAGE, channel="telegram", topic="energy", received_at=now,
            text="Чубукина: искрит щиток", citizen_id=citizen.id, reply_account_id=account.id,
            address="ул. Дзержинского, 9", latitude=53.58, longitude=142.95), Actor.CITIZEN)
        mine.answer_text, mine.poll_comment = "Чубукиной: щиток заменён", "Спасибо, Чубукина"
        other = await register_item(session, services, NewItem(
            kind=Kind.MESSAGE, channel="telegram", topic="energy", received_at=now,
            text="Другой житель: щиток"), Actor.CITIZEN)
        # The person's comment on someone else's item (a duplicate's main item).
        await record_note(session, services, other, "poll_comment", Actor.CITIZEN,
                          comment="Чубукина недовольна", account_id=account.id)
        await record_note(session, services, mine, "comment", Actor.CITIZEN,
                          comment="Чубукина добавила", account_id=account.id)
    async with services.sessions() as session, session.begin():
        result = await erase_citizen(session, services, now, citizen_id=citizen.id)
    assert result.numbers == [mine.number] and result.accounts == 1
    async with services.sessions() as session:
        item = await session.get(Item, mine.id)
        person = await session.get(Citizen, citizen.id)
        kept = await session.get(Account, account.id)
        comments = (await session.scalars(select(ItemEvent.comment).where(
            ItemEvent.comment.is_not(None)))).all()
        consent = await session.scalar(select(Consent))
        untouched = await session.get(Item, other.id)
    assert item is not None and person is not None and kept is not None
    assert (item.text, item.address, item.answer_text, item.poll_comment) == (
        ERASED_TEXT, None, None, None)
    assert (item.latitude, item.longitude) == coarse(53.58, 142.95)
    assert (person.name, person.phone, person.email, person.postal_address) == (None,) * 4
    assert kept.user_id == kept.chat_id == f"erased:{account.id}"
    assert not any("Чубукин" in c for c in comments) and "housing" in comments  # the route
    assert consent is not None and consent.withdrawn_at is not None
    assert untouched is not None and untouched.text == "Другой житель: щиток"
    assert place_label(item) == "{:.5f}, {:.5f}".format(*coarse(53.58, 142.95))


async def test_housekeeping_deletes_files_no_row_names(core, services, clock):
    citizen = await report(core, "Сломана скамейка у школы", location=LENINA, photos=1)
    async with services.sessions() as session:
        [kept] = (await session.scalars(select(Attachment.path))).all()
    # A photo left behind (a crash between the erasure's commit and its clean-up), an hour old,
    # and one saved a moment ago by a turn that has not committed yet.
    left = services.files.save(b"\xff\xd8 left behind", "image/jpeg", clock.now())
    fresh = services.files.save(b"\xff\xd8 just saved", "image/jpeg", clock.now())
    hour_ago = time.time() - 3700
    os.utime(services.files.path(left), (hour_ago, hour_ago))
    await run_job(services, "housekeeping", clock.now())
    assert services.files.path(kept).exists() and services.files.path(fresh).exists()
    assert not services.files.path(left).exists()
    await forget(citizen)
    assert not services.files.path(kept).exists()
