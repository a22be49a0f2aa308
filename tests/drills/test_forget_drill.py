"""Drill: /forget, then a search of every table, every file and every log line for the citizen.

A citizen with unique marker strings (a name, two texts, an address, a point, a photo) reports
through the real Telegram transport (aiogram over HTTP to the fake Bot API server); the head
takes the report, asks a question, gets the clarification and answers; the poll runs and the
citizen rates and comments; a second report waits undelivered, with a question to the citizen
queued. So cards, notices, history and outbox rows in every state exist. Then /forget.

The database is a real SQLite file inside the data directory, as in the default deployment,
so the search of the files reads the database file and its WAL byte by byte too.

Also here:
- an operator-registered appeal (name, phone, e-mail, postal address, a scanned letter) erased
  through `mcu privacy forget --item`, on SQLite and PostgreSQL;
- probe «erased citizen identifiable»: after erasure nothing links the remaining rows to the
  messenger identity, and the person who writes again is a stranger to the bot;
- the statistics still count the erased items by topic, status and date.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot import cli
from bot.settings import Settings
from bot.telegram import TelegramTransport
from handlers.clock import ManualClock
from handlers.context import Services
from handlers.core import Core
from handlers.erasure import ERASED_TEXT, coarse
from handlers.erasure_cleanup import wait_for_clean_ups
from handlers.i18n import translator
from handlers.staff.invites import create_invite
from scheduler.jobs import run_job
from scheduler.limits import Limits, RateLimiter
from scheduler.outbox import OutboxSender
from storage.db import scrub_freed_pages
from storage.models import (
    Account,
    Attachment,
    Base,
    Citizen,
    DialogState,
    FloodCounter,
    Item,
    ItemEvent,
    OutboxMessage,
)
from storage.stats import Period, StatsQuery, section_stats
from tests.conftest import SAKHALIN, make_services
from tests.fakes.telegram_api import FakeTelegramServer, SentRecord
from tests.support.chat import ChatClient, join_as
from tests.support.telegram_harness import Processed

CITIZEN_ID = 918273645
HEAD_ID = 5550101
NAME = "Евпраксия Шпенглерова"
TEXT = "Мигает фонарь у сарая Зябликовых, искрит проводка над дверью"
TEXT2 = "Третий день нет света в подъезде дома Зябликовых, дети ходят в темноте"
ADDRESS = "ул. Кукушкина-Зябликова, д. 77к, кв. 5"
CLARIFICATION = "Сарай Евпраксии стоит за третьим подъездом, у гаража"
ANSWER = "Евпраксия Шпенглерова, проводку над дверью сарая заменили"
POLL_COMMENT = "Спасибо, но у Зябликовых опять мигает по вечерам"
QUESTION = "Уточните, пожалуйста, где именно стоит сарай"
LAT, LON = 53.587361, 142.946723
PHOTO = b"\xff\xd8\xff\xe0" + b"zyablikov-photo" * 40 + b"\xff\xd9"

MARKERS: dict[str, str] = {
    "name": NAME, "surname": "Шпенглеров", "text": TEXT, "second text": TEXT2,
    "address": ADDRESS, "street (any case)": "зябликов", "clarification": CLARIFICATION,
    "answer naming her": ANSWER, "poll comment": POLL_COMMENT,
    "messenger id": str(CITIZEN_ID), "latitude": f"{LAT:.5f}", "longitude": f"{LON:.5f}",
}
# Only a file can hold these: the photo itself, and the exact point as SQLite stores a REAL.
BINARY_MARKERS: dict[str, bytes] = {
    "photo": PHOTO[4:-2],
    "latitude (binary)": struct.pack(">d", LAT), "longitude (binary)": struct.pack(">d", LON),
}
REPORT = translator("ru")("menu.report")
NO_WAITING = {"telegram": Limits(per_second=1000, per_chat_interval=0.0, group_per_minute=1000)}


# ---------------------------------------------------------------------------------------------
# Harness: a person in Telegram, the transport, the outbox sender


@dataclass
class TgPerson:
    tg: FakeTelegramServer
    processed: Processed
    user_id: int
    first_name: str
    last: list[SentRecord] = field(default_factory=list)

    async def say(self, text: str | None = None, **content: Any) -> str:
        mark = len(self.tg.sent)
        update_id = self.tg.user_message(self.user_id, text, first_name=self.first_name,
                                         **content)
        await self.processed.wait(update_id)
        return self._since(mark)

    async def click(self, label: str) -> str:
        for record in reversed(self.tg.messages_to(self.user_id)):
            rows = (record.reply_markup or {}).get("inline_keyboard") or []
            for button in (b for row in rows for b in row):
                if label in button["text"] and "callback_data" in button:
                    mark = len(self.tg.sent)
                    update_id = self.tg.press_button(self.user_id, button["callback_data"],
                                                     message_id=record.message_id)
                    await self.processed.wait(update_id)
                    return self._since(mark)
        raise AssertionError(f"no button {label!r} for {self.user_id}")

    def inbox(self) -> str:
        return "\n".join(shown(r) for r in self.tg.messages_to(self.user_id))

    def _since(self, mark: int) -> str:
        self.last = [r for r in self.tg.sent[mark:] if r.chat_id == self.user_id]
        return "\n---\n".join(shown(r) for r in self.last)


def shown(record: SentRecord) -> str:
    result = record.result if isinstance(record.result, dict) else {}
    return str(result.get("text") or result.get("caption") or "")


@dataclass
class Drill:
    services: Services
    clock: ManualClock
    data_dir: Path
    tg: FakeTelegramServer
    sender: OutboxSender
    citizen: TgPerson
    head: TgPerson
    numbers: list[str] = field(default_factory=list)
    farewell: str = ""

    async def deliver(self) -> int:
        total = 0
        while sent := await self.sender.sweep():
            total += sent
        return total


@pytest.fixture
async def drill(tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Drill]:
    caplog.set_level(logging.DEBUG)
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "data"
    # The database lives in the data directory, as with the default MCU_DATABASE_URL.
    url = f"sqlite+aiosqlite:///{data_dir / 'mcu.sqlite3'}"
    services = await make_services(url, data_dir, clock)
    services.flood_limit_per_minute = 1000  # the drill clicks faster than a person
    core = Core(services)
    async with FakeTelegramServer() as tg:
        settings = Settings(_env_file=None, telegram_token=tg.token,  # type: ignore[call-arg]
                            telegram_api_url=tg.base_url, data_dir=data_dir, database_url=url)
        transport = TelegramTransport(settings, core)
        processed = Processed()
        transport.dp.update.outer_middleware(processed)
        sender = OutboxSender(services, {"telegram": transport},
                              limiter=RateLimiter(NO_WAITING))
        await transport.start()
        try:
            await tg.wait_polling()
            yield Drill(services, clock, data_dir, tg, sender,
                        TgPerson(tg, processed, CITIZEN_ID, NAME),
                        TgPerson(tg, processed, HEAD_ID, "Начальник"))
        finally:
            await transport.stop()
            await services.sessions.kw["bind"].dispose()
        assert not tg.internal_errors and tg.failed == []


async def live_scenario(d: Drill) -> None:
    """Everything up to the moment the citizen withdraws consent."""
    services, citizen, head = d.services, d.citizen, d.head
    async with services.sessions() as session, session.begin():
        invite = await create_invite(session, services.org, "head", "housing",
                                     "Начальник отдела ЖКХ", services.now())
    assert "Добро пожаловать" in await head.say(f"/start {invite.code}")

    # Report 1: text, photo, the exact point.
    await citizen.say("/start")
    await citizen.click("Согласен")
    await citizen.say(REPORT)
    await citizen.click("Энергетика")
    await citizen.say(TEXT)
    assert "1 из 5" in await citizen.say(photo=PHOTO)
    await citizen.click("Готово")
    await citizen.say(location=(LAT, LON))
    registered = await citizen.click("Отправить")
    assert "2026-000001" in registered
    d.numbers.append("2026-000001")
    await d.deliver()
    assert NAME in head.inbox() and TEXT in head.inbox()  # the head may see who wrote

    # The head takes it, asks, gets the clarification, answers with the citizen's name.
    await head.click("Взять в работу")
    await head.click("Уточнить у заявителя")
    await head.say(QUESTION)
    await d.deliver()
    assert QUESTION in citizen.inbox()
    await citizen.say(CLARIFICATION)
    await d.deliver()
    assert CLARIFICATION in head.inbox()
    await head.say("/task 2026-000001")
    await head.click("Ответить")
    await head.say(ANSWER)
    await d.deliver()
    assert ANSWER in citizen.inbox()

    # The poll, a rating and a comment.
    d.clock.advance(hours=3)
    assert await run_job(services, "polls", d.clock.now()) == 1
    await d.deliver()
    await citizen.click("Частично")
    await citizen.click("4")
    await citizen.click("Комментарий")
    await citizen.say(POLL_COMMENT)

    # Report 2 by address; its card and a question to the citizen stay in the outbox.
    await citizen.say(REPORT)
    await citizen.click("Энергетика")
    await citizen.say(TEXT2)
    await citizen.click("Пропустить")
    await citizen.say(ADDRESS)
    assert "2026-000002" in await citizen.click("Отправить")
    d.numbers.append("2026-000002")
    await head.say("/task 2026-000002")
    await head.click("Взять в работу")
    await head.click("Уточнить у заявителя")
    await head.say(QUESTION)
    async with services.sessions() as session:
        pending = (await session.scalars(select(OutboxMessage).where(
            OutboxMessage.status == "pending"))).all()
    # The head's own turns delivered the card; the question waits for the citizen.
    assert str(CITIZEN_ID) in {r.chat_id for r in pending}


async def forget(d: Drill) -> None:
    # As in a long-running deployment, the reports have reached the database file itself (an
    # automatic checkpoint), not only the write-ahead log.
    await scrub_freed_pages(d.services.sessions.kw["bind"])
    await d.citizen.say("/forget")
    d.farewell = await d.citizen.click("Да, отозвать")
    # The files go after the commit, off the event loop.
    async with asyncio.timeout(5):
        await wait_for_clean_ups()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# ---------------------------------------------------------------------------------------------
# The search


def as_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


async def table_dump(services: Services) -> dict[str, list[str]]:
    """Every row of every table, each as one string (JSON included, unescaped)."""
    dump: dict[str, list[str]] = {}
    async with services.sessions() as session:
        for table in Base.metadata.sorted_tables:
            rows = (await session.execute(select(table))).all()
            dump[table.name] = [" | ".join(as_text(v) for v in row) for row in rows]
    return dump


def variants(marker: str) -> list[bytes]:
    """How a string can sit in a file: UTF-8, or JSON-escaped as SQLAlchemy stores JSON."""
    forms = {marker, marker.lower()}
    return [f.encode() for f in forms] + [json.dumps(f)[1:-1].encode() for f in forms]


@dataclass
class Found:
    tables: int
    files: int
    log_lines: int
    where: dict[str, list[str]]

    def summary(self) -> dict[str, list[str]]:
        """Where each marker was found, one entry per table, file or logger."""
        return {label: sorted({" ".join(w.split(":")[0].split()[:2]) for w in places})
                for label, places in self.where.items()}

    @property
    def markers(self) -> int:
        return len(MARKERS) + len(BINARY_MARKERS)


async def search(d: Drill, caplog: pytest.LogCaptureFixture) -> Found:
    where: dict[str, list[str]] = {}
    dump = await table_dump(d.services)
    for name, rows in dump.items():
        for row in rows:
            for label, marker in MARKERS.items():
                if marker.lower() in row.lower():
                    where.setdefault(label, []).append(f"table {name}: {row[:200]}")
    files = files_under(d.data_dir)
    for path in files:
        data = path.read_bytes()
        lowered = data.lower()
        for label, marker in MARKERS.items():
            if any(v in data or v in lowered for v in variants(marker)):
                where.setdefault(label, []).append(f"file {path.relative_to(d.data_dir)}")
        for label, blob in BINARY_MARKERS.items():
            if blob in data:
                where.setdefault(label, []).append(f"file {path.relative_to(d.data_dir)}")
    lines = []
    for record in caplog.records:
        lines.append(f"{record.name}: {record.getMessage()} {record.exc_text or ''}")
    for line in lines:
        for label, marker in MARKERS.items():
            if marker.lower() in line.lower():
                where.setdefault(label, []).append(f"log {line[:200]}")
    return Found(len(dump), len(files), len(lines), where)


# ---------------------------------------------------------------------------------------------
# The drill


async def test_forget_drill_leaves_nothing_to_find(drill: Drill,
                                                   caplog: pytest.LogCaptureFixture,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    await live_scenario(drill)
    before = await search(drill, caplog)
    # The search finds what is there: before /forget, every marker is somewhere.
    assert set(before.where) == set(MARKERS) | set(BINARY_MARKERS), sorted(before.where)

    await forget(drill)
    # The reply says what is kept: each number, its topic, its dates and its status.
    for number in drill.numbers:
        assert number in drill.farewell
    assert "Энергетика" in drill.farewell and "24.11.2026" in drill.farewell
    assert "Закрыто" in drill.farewell or "закрыто" in drill.farewell.lower()
    after = await search(drill, caplog)
    with capsys.disabled():
        print(f"\nforget drill: {len(after.where)} of {after.markers} markers found in "
              f"{after.tables} tables, {after.files} files, {after.log_lines} log lines "
              f"(before /forget: {len(before.where)} of {before.markers})")
    assert after.where == {}, after.summary()

    # The question queued to the citizen is cancelled, never delivered.
    to_citizen = len(drill.tg.messages_to(CITIZEN_ID))
    await drill.deliver()
    assert len(drill.tg.messages_to(CITIZEN_ID)) == to_citizen
    async with drill.services.sessions() as session:
        statuses = (await session.scalars(select(OutboxMessage.status).where(
            OutboxMessage.chat_id.like("erased:%")))).all()
    assert "pending" not in statuses


async def test_probe_erased_citizen_identifiable(drill: Drill) -> None:
    """Probe «erased citizen identifiable»: no remaining row leads back to the messenger
    identity, and the same person writing again is a new, unconsented stranger."""
    await live_scenario(drill)
    async with drill.services.sessions() as session:
        old = await session.scalar(select(Account).where(Account.user_id == str(CITIZEN_ID)))
    assert old is not None
    await forget(drill)
    services = drill.services
    async with services.sessions() as session:
        account = await session.get(Account, old.id)
        assert account is not None
        assert (account.user_id, account.chat_id) == (f"erased:{old.id}",) * 2
        assert account.citizen_id is None
        assert await session.scalar(select(Account).where(
            (Account.user_id == str(CITIZEN_ID)) | (Account.chat_id == str(CITIZEN_ID)))) is None
        assert (await session.scalars(select(OutboxMessage).where(
            OutboxMessage.chat_id == str(CITIZEN_ID)))).all() == []
        assert await session.get(DialogState, old.id) is None
        assert (await session.scalars(select(FloodCounter).where(
            FloodCounter.user_id == str(CITIZEN_ID)))).all() == []
        items = (await session.scalars(select(Item).order_by(Item.id))).all()
        assert [i.reply_account_id for i in items] == [None, None]
        citizen = await session.get(Citizen, items[0].citizen_id)
        assert citizen is not None and citizen.anonymised_at is not None
        assert (citizen.name, citizen.phone, citizen.email, citizen.postal_address) == (None,) * 4
        # What the history keeps of the person is an account whose ids are markers.
        actors = set((await session.scalars(select(ItemEvent.actor_account_id).where(
            ItemEvent.actor_account_id.is_not(None)))).all())
        assert actors == {old.id}
        # The point is a ~500 m cell now; the cluster and the statistics can still use it.
        assert (items[0].latitude, items[0].longitude) == coarse(LAT, LON)
        assert all(i.text == ERASED_TEXT and i.address is None and i.place_key is None
                   for i in items)
        assert (await session.scalars(select(Attachment))).all() == []

    # The person writes again: a new account, asked for consent, knowing nothing of before.
    again = await drill.citizen.say("/my")
    assert "согласие" in again.lower()
    privacy = await drill.citizen.say("/privacy")
    assert "Согласия на обработку данных нет" in privacy and "2026-00000" not in privacy
    async with services.sessions() as session:
        fresh = await session.scalar(select(Account).where(Account.user_id == str(CITIZEN_ID)))
    assert fresh is not None and fresh.id != old.id and fresh.citizen_id is None


async def test_statistics_still_count_the_erased_items(drill: Drill) -> None:
    await live_scenario(drill)
    await forget(drill)
    services = drill.services
    async with services.sessions() as session:
        by_topic = await section_stats(session, StatsQuery(
            group_by="topic", metrics=("count", "open_count", "average_rating"),
            period=Period(date(2026, 11, 1), date(2026, 12, 1))),
            tz=SAKHALIN, now=services.now())
        by_status = await section_stats(session, StatsQuery(
            group_by="status", metrics=("count",),
            period=Period(date(2026, 11, 24), date(2026, 11, 25))),
            tz=SAKHALIN, now=services.now())
    energy = {g.key: g.values for g in by_topic}["energy"]
    # The second item waited for the citizen's answer: nobody can give it now, so it is back
    # in work; the first, rated 4 and closed, stays closed.
    assert energy["count"] == 2 and energy["open_count"] == 1 and energy["average_rating"] == 4
    assert {g.key: g.values["count"] for g in by_status} == {"closed": 1, "in_progress": 1}


# ---------------------------------------------------------------------------------------------
# The CLI path: an appeal registered by an operator from a paper letter


OPERATOR_MARKERS = {
    "name": "Гермоген Аристархович Чубукин", "phone": "+7 924 735-19-82",
    "e-mail": "chubukin.g@example.org", "postal address": "694490, г. Оха, ул. Щебеночная, д. 3",
    "text": "Прошу разобраться с отоплением в квартире Чубукиных, батареи холодные",
}
SCAN = b"\xff\xd8\xff\xe0" + b"chubukin-letter-scan" * 30 + b"\xff\xd9"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    return str(request.getfixturevalue("postgres_url"))


async def test_operator_registered_appeal_erased_through_the_cli(
        db_url: str, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no developer's .env
    data_dir = tmp_path / "data"
    services = await make_services(db_url, data_dir, clock)
    try:
        core = Core(services)
        await join_as(core, "head", "housing", user_id="1001", name="Начальник отдела ЖКХ")
        operator = await join_as(core, "operator", user_id="2001", name="Оператор")
        await register_letter(operator)
        assert "2026-000001" in operator.texts()
        async with services.sessions() as session:
            [path] = (await session.scalars(select(Attachment.path))).all()
        services.files.path(path).write_bytes(SCAN)  # the scan as it was stored
        assert await operator_markers_found(services) == sorted(OPERATOR_MARKERS)

        monkeypatch.setenv("MCU_DATABASE_URL", db_url)
        monkeypatch.setenv("MCU_DATA_DIR", str(data_dir))
        code = await asyncio.to_thread(cli.main, ["privacy", "forget", "--item", "2026-000001"])
        out = capsys.readouterr().out
        assert code == 0 and "2026-000001" in out
        assert await asyncio.to_thread(cli.main, ["privacy", "forget", "--item",
                                                  "2026-009999"]) == 2

        found = await operator_markers_found(services)
        scans = [p for p in files_under(data_dir) if SCAN in p.read_bytes()]
        with capsys.disabled():
            print(f"\nforget drill (cli, {db_url.split('+')[0]}): {len(found)} of "
                  f"{len(OPERATOR_MARKERS) + 1} markers found in "
                  f"{len(Base.metadata.sorted_tables)} tables, "
                  f"{len(files_under(data_dir))} files")
        assert found == [] and scans == []
        async with services.sessions() as session:
            item = await session.scalar(select(Item))
        assert item is not None and (item.kind, item.topic, item.status) == (
            "appeal", "housing", "assigned")
    finally:
        await services.sessions.kw["bind"].dispose()


async def operator_markers_found(services: Services) -> list[str]:
    dump = await table_dump(services)
    return sorted(label for label, marker in OPERATOR_MARKERS.items()
                  if any(marker.lower() in row.lower() for rows in dump.values() for row in rows))


async def register_letter(operator: ChatClient) -> None:
    """/register of a paper letter: every personal field filled, one scanned page."""
    await operator.send("/register")
    await operator.click("письмо")
    await operator.click("✓")
    await operator.send("вх-2026-77")
    await operator.click("Сейчас")
    for field_name in ("name", "phone", "e-mail", "postal address"):
        await operator.send(OPERATOR_MARKERS[field_name])
    await operator.send(OPERATOR_MARKERS["text"])
    await operator.click("Жилищно")
    await operator.send(photos=1)
    await operator.click("Готово")
    await operator.click("Зарегистрировать")


def test_the_grid_is_about_500_metres() -> None:
    lat, lon = coarse(LAT, LON)
    assert (lat, lon) == (53.585, 142.944)
    # Neighbouring cells' centres: 0.005° of latitude, 0.008° of longitude at 53.6° N.
    assert 500 <= 0.005 * 111_195 <= 600
    assert 500 <= 0.008 * 111_195 * 0.5934 <= 600
    assert coarse(lat, lon) == (lat, lon)  # a centre stays where it is
