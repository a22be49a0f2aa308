"""The scheduler's sweeps with an explicit clock: once at the right local time, never twice."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.cli import main
from handlers.clock import ManualClock
from scheduler.jobs import run_job
from storage.models import Item, OutboxMessage
from tests.conftest import SAKHALIN, make_services
from tests.support.chat import ChatClient, join_as
from tests.test_staff_core import buttons, outbox_to, report, texts


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=SAKHALIN)


async def outbox_count(services, **filters) -> int:
    async with services.sessions() as session:
        query = select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.audience != "reply")
        for name, value in filters.items():
            query = query.where(getattr(OutboxMessage, name) == value)
        return await session.scalar(query)


@pytest.fixture
async def head(core):
    return await join_as(core, "head", "housing", user_id="1001", name="Начальник отдела ЖКХ")


@pytest.fixture
async def chairman(core):
    return await join_as(core, "chairman", user_id="1003", name="Председатель")


async def test_reminders_fire_once_each_at_the_right_local_time(core, services, clock, head,
                                                                citizen):
    await report(citizen)  # Tue 24.11 10:00; energy: answer due Tue 08.12 23:59
    before = len(await outbox_to(services, "1001"))
    assert await run_job(services, "reminders", at(2026, 12, 7, 8, 59)) == 0
    assert await run_job(services, "reminders", at(2026, 12, 7, 9, 0)) == 1
    assert await run_job(services, "reminders", at(2026, 12, 7, 15, 0)) == 0  # no repeat
    assert await run_job(services, "reminders", at(2026, 12, 8, 9, 5)) == 1  # due-day morning
    rows = (await outbox_to(services, "1001"))[before:]
    assert "один рабочий день" in rows[0].payload["text"]
    assert "Сегодня последний день" in rows[1].payload["text"]


async def test_after_downtime_only_the_latest_reminder_goes(core, services, head, citizen):
    await report(citizen)
    assert await run_job(services, "reminders", at(2026, 12, 8, 12, 0)) == 1
    assert await run_job(services, "reminders", at(2026, 12, 8, 12, 5)) == 0


async def test_escalations_wait_for_the_working_morning(core, services, head, chairman, citizen):
    curator = await join_as(core, "curator", user_id="1004")
    await report(citizen)
    # Overdue at 02:00 on Wednesday 09.12: queued now, deliverable at 09:00.
    queued = await run_job(services, "escalations", at(2026, 12, 9, 2, 0))
    assert queued == 3  # overdue: the head and the chairman; never taken: the chairman
    rows = await outbox_to(services, "1003")
    overdue = [r for r in rows if "Просрочено" in r.payload["text"]]
    assert overdue[0].not_before == at(2026, 12, 9, 9, 0)
    assert await run_job(services, "escalations", at(2026, 12, 9, 10, 0)) == 0
    # Three working days late: the curator too (Fri 11.12 is the 3rd working day after 08.12).
    assert await run_job(services, "escalations", at(2026, 12, 11, 10, 0)) == 1
    assert "Долгая просрочка" in texts(await outbox_to(services, curator.user_id))


async def test_not_taken_in_time_goes_to_the_chairman(core, services, chairman, citizen):
    await report(citizen)  # first reaction due Wed 25.11 23:59
    assert await run_job(services, "escalations", at(2026, 11, 25, 12, 0)) == 0
    assert await run_job(services, "escalations", at(2026, 11, 26, 9, 30)) == 1
    assert "не взято в работу" in texts(await outbox_to(services, "1003"))


async def test_staff_messages_at_night_are_delivered_in_the_morning(core, services, head,
                                                                   citizen):
    from scheduler.outbox import OutboxSender

    class Collecting:
        def __init__(self) -> None:
            self.sent: list[tuple[str, str]] = []

        async def send(self, chat_id, reply, *, dedupe_id=None, progress=None) -> None:
            self.sent.append((chat_id, reply.text))

    await report(citizen)
    collecting = Collecting()
    sender = OutboxSender(services, {"telegram": collecting})
    await sender.sweep(at(2026, 11, 24, 10, 1))  # the card and the citizen's messages
    collecting.sent.clear()
    await run_job(services, "escalations", at(2026, 12, 9, 2, 0))
    await sender.sweep(at(2026, 12, 9, 2, 1))
    assert collecting.sent == []
    await sender.sweep(at(2026, 12, 9, 9, 0))
    assert [chat for chat, _ in collecting.sent] == ["1001"]


async def answered_item(core, services, head, citizen) -> Item:
    await report(citizen)
    await head.send("/task 2026-000001")
    await head.click("Ответить")
    await head.send("Фонарь заменён, освещение работает")
    async with services.sessions() as session:
        return await session.scalar(select(Item))


async def test_poll_no_reopens_and_yes_closes(core, services, clock, head, chairman, citizen):
    item = await answered_item(core, services, head, citizen)
    assert await run_job(services, "polls", at(2026, 11, 24, 11, 0)) == 0  # not 2 h yet
    assert await run_job(services, "polls", at(2026, 11, 24, 12, 1)) == 1
    assert await run_job(services, "polls", at(2026, 11, 24, 12, 2)) == 0
    poll = (await outbox_to(services, citizen.user_id))[-1]
    assert "решена?" in poll.payload["text"]
    choices = buttons([poll])
    await citizen.press(choices["Нет"])
    async with services.sessions() as session:
        reopened = await session.get(Item, item.id)
    assert reopened.status == "reopened" and reopened.reopened_count == 1
    assert reopened.answer_due > at(2026, 11, 24, 12, 0)
    assert "открыто повторно" in texts(await outbox_to(services, "1001"))
    assert "открыто повторно" in texts(await outbox_to(services, "1003"))
    await citizen.click("2")  # the rating after «Нет»
    # Answered again, polled again (a new poll after the next answer), and «Да» closes.
    await head.send("/task 2026-000001")
    await head.click("Ответить")
    await head.send("Повторно проверили: фонарь горит, фото приложено")
    async with services.sessions() as session:
        again = await session.get(Item, item.id)
        again.poll_sent_at = again.poll_answered_at = again.poll_reminded_at = None
        again.satisfaction = None
        session.add(again)
        await session.commit()
    await run_job(services, "polls", at(2026, 11, 24, 18, 0))
    await citizen.press(buttons([(await outbox_to(services, citizen.user_id))[-1]])["Да"])
    async with services.sessions() as session:
        assert (await session.get(Item, item.id)).status == "closed"


async def test_poll_waits_for_daytime_then_reminds_once_then_expires(core, services, head,
                                                                     citizen, clock):
    item = await answered_item(core, services, head, citizen)
    async with services.sessions() as session:
        row = await session.get(Item, item.id)
        row.answered_at = at(2026, 11, 24, 20, 30)
        await session.commit()
    assert await run_job(services, "polls", at(2026, 11, 24, 22, 40)) == 0  # after 21:00
    assert await run_job(services, "polls", at(2026, 11, 25, 8, 59)) == 0
    assert await run_job(services, "polls", at(2026, 11, 25, 9, 0)) == 1
    assert await run_job(services, "polls", at(2026, 11, 26, 8, 0)) == 0  # before 09:00
    assert await run_job(services, "polls", at(2026, 11, 26, 9, 10)) == 1  # the reminder
    assert await run_job(services, "polls", at(2026, 11, 27, 9, 10)) == 0  # only one
    await run_job(services, "polls", at(2026, 12, 2, 9, 1))
    async with services.sessions() as session:
        assert (await session.get(Item, item.id)).status == "closed"


async def test_two_scheduler_instances_send_one_reminder(db_url, tmp_path):
    first = await make_services(db_url, tmp_path / "a", ManualClock(at(2026, 11, 24, 10)))
    second = await make_services(db_url, tmp_path / "b", ManualClock(at(2026, 11, 24, 10)))
    from handlers.core import Core

    core = Core(first)
    await join_as(core, "head", "housing", user_id="1001")
    await report(ChatClient(core, user_id="501"))
    moment = at(2026, 12, 7, 9, 30)
    counts = await asyncio.gather(*(run_job(s, name, moment) for s in (first, second)
                                    for name in ("reminders", "reminders")))
    assert sum(counts) == 1
    async with first.sessions() as session:
        keys = (await session.scalars(select(OutboxMessage.dedupe_key).where(
            OutboxMessage.dedupe_key.is_not(None)))).all()
    assert len(keys) == 1 and keys[0].startswith("remind:")
    for services in (first, second):
        await services.sessions.kw["bind"].dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, sqlite_url):
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


async def test_daily_summary_numbers_and_chart(core, services, clock, head, chairman, citizen):
    core.services.flood_limit_per_minute = 1000
    clock.set(at(2026, 11, 23, 23, 30))  # Monday late evening: counts for Monday
    await report(citizen, text="Не горит фонарь у школы номер 5")
    clock.set(at(2026, 11, 24, 0, 30))  # after midnight in Okha (still 23.11 in UTC)
    await report(citizen, text="Яма на дороге возле рынка", topic="Дорожная")
    await report(citizen, text="Нет горячей воды в доме 3", topic="Жилищно")
    await chairman.send("/bind_summary_group", chat_id="-900", is_private=False)
    assert await run_job(services, "daily_summary", at(2026, 11, 25, 8, 59)) == 0
    assert await run_job(services, "daily_summary", at(2026, 11, 25, 9, 0)) == 1
    assert await run_job(services, "daily_summary", at(2026, 11, 25, 9, 10)) == 0
    summary = (await outbox_to(services, "-900"))[-1].payload
    assert "Новых сообщений: 2" in summary["text"]  # 24.11 local: two items
    assert "Дорожная деятельность: 1" in summary["text"]
    assert "Просрочено сейчас: 0" in summary["text"]
    image = Image.open(summary["photos"][0]["path"])
    assert image.format == "PNG" and image.size[0] > 100
    low, high = image.convert("L").getextrema()
    assert high - low > 50  # not blank


async def test_weekly_summary_goes_to_the_curator_on_monday(core, services, citizen):
    curator = await join_as(core, "curator", user_id="1004")
    await report(citizen)
    assert await run_job(services, "weekly_summary", at(2026, 11, 27, 9, 0)) == 0  # Friday
    assert await run_job(services, "weekly_summary", at(2026, 11, 30, 9, 0)) == 1
    text = texts(await outbox_to(services, curator.user_id))
    assert "Новых сообщений: 1" in text and "среднее за 4 предыдущие недели" in text


def test_cli_jobs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MCU_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "data"))
    assert main(["jobs", "list"]) == 0
    assert "daily_summary" in capsys.readouterr().out
    assert main(["jobs", "run", "daily_summary", "--now", "2026-11-25T09:00"]) == 0
    assert "0 message(s) queued" in capsys.readouterr().out  # no summary group bound yet
    assert main(["jobs", "run", "nonsense"]) == 2
    assert main(["jobs", "run", "polls", "--now", "yesterday"]) == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err




async def test_housekeeping_forgets_old_update_ids(core, services, citizen, clock):
    from storage.models import ProcessedUpdate

    await citizen.send("/start", update_key="old")
    clock.advance(days=4)
    await run_job(services, "housekeeping", clock.now())
    async with services.sessions() as session:
        assert (await session.scalars(select(ProcessedUpdate))).all() == []
    # The same id arriving again (a new Telegram id sequence) is a new message.
    response = await citizen.send("/help", update_key="old")
    assert response.replies


async def test_daily_summary_lists_repeated_problems(core, services, chairman, citizen):
    core.services.flood_limit_per_minute = 1000
    await citizen.send("/start")
    await citizen.click("Согласен")
    for house in ("ул. Ленина, 10", "улица Ленина д.10", "УЛ ЛЕНИНА 10"):
        await citizen.send("Не горит фонарь у подъезда, темно вечером")
        await citizen.click("Энергетика")
        await citizen.click("Пропустить")
        await citizen.send(house)
        await citizen.click("Отправить")
    await chairman.send("/bind_summary_group", chat_id="-900", is_private=False)
    await run_job(services, "daily_summary", at(2026, 11, 25, 9, 0))
    text = (await outbox_to(services, "-900"))[-1].payload["text"]
    assert "Повторяющиеся проблемы" in text
    assert "Энергетика" in text and "3 сообщ." in text


async def test_every_citizen_of_a_duplicate_group_is_polled(core, services, head, citizen):
    core.services.flood_limit_per_minute = 1000
    await report(citizen)  # 2026-000001
    neighbour = ChatClient(core, user_id="777", platform="vk", name="Иван")
    await report(neighbour, text="Фонарь на Ленина не горит уже давно")  # 2026-000002
    await head.press("s:duplicate:2")
    await head.send("2026-000001")
    await head.send("/task 2026-000001")
    await head.click("Ответить")
    await head.send("Фонарь заменён")
    assert "Фонарь заменён" in texts(await outbox_to(services, "777", "vk"))
    assert await run_job(services, "polls", at(2026, 11, 24, 12, 30)) == 2
    vk_poll = (await outbox_to(services, "777", "vk"))[-1]
    assert "решена?" in vk_poll.payload["text"]
    await neighbour.press(buttons([vk_poll])["Нет"])
    async with services.sessions() as session:
        main = await session.scalar(select(Item).where(Item.number == "2026-000001"))
    assert main.status == "reopened"  # a linked citizen's «Нет» reopens the main item


async def test_a_run_as_if_later_is_delivered_by_the_real_clock(core, services, clock, head,
                                                              citizen):
    """`mcu jobs run reminders --now <a future morning>`: decided as if then, due now."""
    await report(citizen)
    assert await run_job(services, "reminders", at(2026, 12, 7, 9, 0), deliver_now=True) == 1
    [row] = (await outbox_to(services, "1001"))[-1:]
    assert row.not_before == services.calendar.next_working_moment(clock.now())
    assert row.not_before < at(2026, 12, 7, 9, 0)


def test_cli_jobs_list_shows_the_outbox_and_run_outbox_without_a_token(tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.setenv("MCU_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "data"))
    assert main(["jobs", "list"]) == 0
    assert "outbox           due 0, held 0, failed 0" in capsys.readouterr().out
    assert main(["jobs", "run", "outbox"]) == 0
    assert "the running bot (mcu run) delivers" in capsys.readouterr().out
