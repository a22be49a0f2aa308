"""`mcu import`: CSV (UTF-8 / cp1251, `;` / `,`) and XLSX exports of the outside systems, run
through bot.cli.main against a temporary SQLite file."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from bot.cli import main
from handlers.operator.import_plan import prepare
from handlers.operator.importer import run_import
from handlers.operator.mapping import default_mapping
from handlers.operator.tabular import read_table
from storage.models import Citizen, Item, ItemEvent, OutboxMessage, Staff
from tests.conftest import SAKHALIN
from tests.support.chat import join_as

HEADER = ["Номер", "Дата поступления", "Категория", "Текст", "Адрес", "ФИО", "Телефон", "Email",
          "Ссылка"]


def moment(days_ago: float) -> str:
    return (datetime.now(SAKHALIN) - timedelta(days=days_ago)).strftime("%d.%m.%Y %H:%M")


def pos_rows() -> list[list[str]]:
    return [
        ["1001", moment(3), "Ямы на дорогах", "Яма напротив дома 12", "г. Оха, ул. Ленина, 12",
         "Иванова Мария", "+7 924 180-11-22", "ivanova@mail.ru", "https://pos.example/1001"],
        ["1002", moment(2), "Отопление", "Батареи холодные", "ул. Дзержинского, 24", "", "", "",
         ""],
        ["1001", moment(1), "Дороги", "Повтор той же ямы", "", "", "", "", ""],  # in-file dup
        ["1003", "31.02.2026 10:00", "Дороги", "Неверная дата", "", "", "", "", ""],
        ["1004", moment(1), "Мусор", "   ", "", "", "", "", ""],  # empty text
        ["", moment(1), "Мусор", "Нет номера", "", "", "", "", ""],
        ["1005", moment(1), "Парковки", "Машины стоят на газоне", "", "", "", "", ""],
        ["1006", moment(1), "", "Без категории вовсе", "", "", "", "", ""],
        ["1007", moment(-3), "Дороги", "Дата в будущем", "", "", "", "", ""],
        ["1008", moment(1), "спорт", "Категория совпадает с тематикой", "", "", "", "", ""],
    ]


def write_csv(path: Path, rows: list[list[str]], *, header: list[str] = HEADER,
              encoding: str = "utf-8-sig", delimiter: str = ";") -> Path:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter).writerows([header, *rows])
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


@pytest.fixture
def env(monkeypatch, sqlite_url, tmp_path) -> str:
    monkeypatch.setenv("MCU_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MCU_LOCALE", "ru")
    return sqlite_url


async def run_cli(*args: str) -> int:
    # The CLI runs its own event loop (asyncio.run); keep it off the test's loop.
    return await asyncio.to_thread(main, ["import", *args])


async def count(services, model, *where) -> int:
    async with services.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def by_number(services, external: str) -> Item:
    async with services.sessions() as session:
        return await session.scalar(select(Item).where(Item.external_number == external))


# ---------------------------------------------------------------------------------------------

async def test_csv_utf8_semicolon_with_bad_rows(env, services, tmp_path, capsys):
    rows = pos_rows()  # once: a minute may turn while the import runs
    source = write_csv(tmp_path / "pos.csv", rows)
    assert await run_cli(str(source), "--channel", "pos") == 0
    out = capsys.readouterr().out
    assert "Зарегистрировано и направлено: 5" in out
    assert "Повторы номера внутри файла, пропущено: 1" in out
    assert "строка 4: номер 1001 уже был в строке 2" in out
    assert "Отклонено строк: 4" in out
    assert "строка 5: неверная дата «31.02.2026 10:00»" in out
    assert "строка 6: пустой текст" in out
    assert "строка 7: нет номера" in out
    assert "строка 10: дата поступления в будущем" in out
    assert "«Парковки»: строки 8" in out and "«(пусто)»: строки 9" in out
    assert await count(services, Item) == 5
    first = await by_number(services, "1001")
    assert (first.channel, first.kind, first.topic, first.status) == ("pos", "message", "roads",
                                                                       "assigned")
    assert first.text == "Яма напротив дома 12" and first.address == "г. Оха, ул. Ленина, 12"
    assert first.post_url == "https://pos.example/1001" and first.answer_due is not None
    assert first.received_at.astimezone(SAKHALIN).strftime("%d.%m.%Y %H:%M") == rows[0][1]
    async with services.sessions() as session:
        citizen = await session.get(Citizen, first.citizen_id)
        history = (await session.scalars(select(ItemEvent.action).where(
            ItemEvent.item_id == first.id).order_by(ItemEvent.id))).all()
    assert (citizen.name, citizen.phone, citizen.email) == ("Иванова Мария", "+7 924 180-11-22",
                                                            "ivanova@mail.ru")
    assert history == ["register", "route"]
    assert (await by_number(services, "1002")).topic == "housing"
    assert (await by_number(services, "1002")).citizen_id is None
    # Unknown and empty categories: the topic comes from the text, and the item says so.
    for number in ("1005", "1006"):
        item = await by_number(services, number)
        assert item.suggested_topic == item.topic and 0 < item.suggestion_score <= 1
    assert (await by_number(services, "1002")).suggested_topic is None  # a known category
    assert (await by_number(services, "1008")).topic == "sport"
    rejected = tmp_path / "pos.csv.rejected.csv"
    data = rejected.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert lines[0][:3] == ["Строка", "Причина", "Номер"]
    assert [(row[0], row[1][:12]) for row in lines[1:]] == [
        ("5", "неверная дат"), ("6", "пустой текст"), ("7", "нет номера"),
        ("10", "дата поступл")]
    assert lines[1][2:5] == ["1003", "31.02.2026 10:00", "Дороги"]


async def test_csv_cp1251_with_commas(env, services, tmp_path, capsys):
    rows = [["SO-1", moment(2), "Благоустройство", "Сломаны качели, торчат болты",
             "г. Оха, ул. Карла Маркса, 5", "Мельников Дмитрий", "", "", ""],
            ["SO-2", moment(1), "Медицина", "Нет талонов к терапевту", "", "", "", "", ""]]
    source = write_csv(tmp_path / "so.csv", rows, encoding="cp1251", delimiter=",")
    assert b";" not in source.read_bytes()
    assert await run_cli(str(source), "--channel", "sakhalin_online") == 0
    assert "Зарегистрировано и направлено: 2" in capsys.readouterr().out
    item = await by_number(services, "SO-1")
    assert item.text == "Сломаны качели, торчат болты" and item.topic == "housing"
    assert item.address == "г. Оха, ул. Карла Маркса, 5"
    assert (await by_number(services, "SO-2")).topic == "healthcare"
    assert not (tmp_path / "so.csv.rejected.csv").exists()


async def test_xlsx_with_dates_and_numbers(env, services, tmp_path, capsys):
    book = Workbook()
    sheet = book.active
    sheet.append(["Номер инцидента", "Дата поступления", "Тема", "Текст публикации", "Автор",
                  "Ссылка на публикацию", "Вид"])
    received = datetime.now(SAKHALIN).replace(tzinfo=None, second=0, microsecond=0)
    sheet.append([65017, received - timedelta(hours=5), "Освещение", "На Комсомольской темно",
                  "Анна Л.", "https://vk.com/wall-1_2", None])
    sheet.append([65018.0, moment(1), "Снег", "Тротуар не чищен", None, None, "обращение"])
    sheet.append([65019, "вчера", "Снег", "Непонятная дата", None, None, None])
    sheet.append([65020, moment(1), "Снег", "Странный вид", None, None, "жалоба"])
    source = tmp_path / "im.xlsx"
    book.save(source)
    assert await run_cli(str(source), "--channel", "incident_management") == 0
    out = capsys.readouterr().out
    assert "Зарегистрировано и направлено: 2" in out and "Отклонено строк: 2" in out
    assert "строка 4: неверная дата «вчера»" in out and "неизвестный вид «жалоба»" in out
    incident = await by_number(services, "65017")
    assert incident.kind == "incident" and incident.topic == "energy"
    assert incident.received_at == (received - timedelta(hours=5)).replace(tzinfo=SAKHALIN)
    assert incident.post_url == "https://vk.com/wall-1_2"
    assert incident.first_reaction_due is not None
    appeal = await by_number(services, "65018")  # 65018.0 in the sheet
    assert appeal.kind == "appeal" and appeal.no_answer is True and appeal.topic == "roads"
    assert (tmp_path / "im.xlsx.rejected.csv").exists()


async def test_a_second_import_creates_nothing(env, services, tmp_path, capsys):
    source = write_csv(tmp_path / "pos.csv", pos_rows())
    assert await run_cli(str(source), "--channel", "pos") == 0
    capsys.readouterr()
    before = (await count(services, Item), await count(services, ItemEvent),
              await count(services, Citizen), await count(services, OutboxMessage))
    assert await run_cli(str(source), "--channel", "pos") == 0
    out = capsys.readouterr().out
    assert "Зарегистрировано и направлено: 0" in out
    assert "Уже есть в базе, пропущено: 5" in out
    assert before == (await count(services, Item), await count(services, ItemEvent),
                      await count(services, Citizen), await count(services, OutboxMessage))


async def test_duplicates_against_the_database_and_per_channel(env, services, tmp_path, capsys):
    first = write_csv(tmp_path / "a.csv", pos_rows()[:2])
    assert await run_cli(str(first), "--channel", "pos") == 0
    second = write_csv(tmp_path / "b.csv", [pos_rows()[1], pos_rows()[6]])
    assert await run_cli(str(second), "--channel", "pos") == 0
    out = capsys.readouterr().out.split("Импорт:")[-1]
    assert "Зарегистрировано и направлено: 1" in out and "Уже есть в базе, пропущено: 1" in out
    # The same outside number from another system is another item.
    assert await run_cli(str(second), "--channel", "smls") == 0
    assert await count(services, Item) == 5
    assert await count(services, Item, Item.external_number == "1002") == 2


async def test_dry_run_writes_nothing(env, services, tmp_path, capsys):
    source = write_csv(tmp_path / "pos.csv", pos_rows())
    assert await run_cli(str(source), "--channel", "pos", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "--dry-run" in out and "Будет зарегистрировано: 5" in out
    assert "Отклонено строк: 4" in out and "Сводок" not in out
    assert await count(services, Item) == 0 and await count(services, OutboxMessage) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pos")) == ["pos.csv"]
    assert await run_cli(str(source), "--channel", "pos") == 0
    assert await run_cli(str(source), "--channel", "pos", "--dry-run") == 0
    out = capsys.readouterr().out.split("Импорт:")[-1]
    assert "Будет зарегистрировано: 0" in out and "Уже есть в базе, пропущено: 5" in out


def test_dry_run_does_not_create_a_database(monkeypatch, tmp_path, capsys):
    database = tmp_path / "db" / "fresh.sqlite3"
    monkeypatch.setenv("MCU_DATABASE_URL", f"sqlite+aiosqlite:///{database}")
    monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "data"))
    source = write_csv(tmp_path / "pos.csv", pos_rows())
    assert main(["import", str(source), "--channel", "pos", "--dry-run"]) == 0
    assert "Будет зарегистрировано: 5" in capsys.readouterr().out
    assert not database.parent.exists() and not (tmp_path / "data").exists()


async def test_mapping_file_renames_columns(env, services, tmp_path, capsys):
    mapping = tmp_path / "smls.toml"
    mapping.write_text('[columns]\nnumber = "№ обращения"\nreceived = "Создано"\n'
                       'text = ["Суть", "Описание"]\npostal_address = "Адрес для ответа"\n'
                       '[options]\ndate_format = "%Y/%m/%d %H:%M"\n', encoding="utf-8")
    day = datetime.now(SAKHALIN) - timedelta(days=1)
    source = write_csv(tmp_path / "smls.csv", [
        ["С-1", day.strftime("%Y/%m/%d %H:%M"), "обращение", "Перерасчёт платы за отопление",
         "Петров Иван", "694490, г. Оха, ул. Ленина, 40-15"]],
        header=["№ обращения", "Создано", "Вид", "Описание", "ФИО", "Адрес для ответа"])
    assert await run_cli(str(source), "--channel", "smls", "--mapping", str(mapping)) == 0
    item = await by_number(services, "С-1")
    assert item.kind == "appeal" and item.no_answer is False
    # No category column at all: the topic is suggested from «Перерасчёт платы за отопление».
    assert item.topic == item.suggested_topic == "housing"
    assert "(пусто)" in capsys.readouterr().out


async def test_unusable_files_are_one_line_and_exit_2(env, tmp_path, capsys):
    missing = write_csv(tmp_path / "x.csv", [["1", moment(1)]], header=["Номер", "Дата"])
    assert await run_cli(str(missing), "--channel", "pos") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "«Дата поступления»" in err and "«Текст»" in err
    old_excel = tmp_path / "old.xls"
    old_excel.write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 100)
    assert await run_cli(str(old_excel), "--channel", "pos") == 2
    assert ".xlsx" in capsys.readouterr().err
    assert await run_cli(str(tmp_path / "nope.csv"), "--channel", "pos") == 2
    assert "не найден" in capsys.readouterr().err
    assert await run_cli(str(missing), "--channel", "telegram") == 2
    bad_mapping = tmp_path / "m.toml"
    bad_mapping.write_text('[columns]\nnumbr = "№"\n', encoding="utf-8")
    assert await run_cli(str(missing), "--channel", "pos", "--mapping", str(bad_mapping)) == 2
    assert "columns.numbr" in capsys.readouterr().err
    source = write_csv(tmp_path / "pos.csv", pos_rows())
    assert await run_cli(str(source), "--channel", "pos", "--operator", "999") == 2


async def test_heads_get_one_summary_per_batch_not_a_card_per_item(core, services, clock):
    await join_as(core, "head", "housing", user_id="1001")
    await join_as(core, "head", "education", user_id="1002")
    rows = [[f"N{i}", moment(1), "Дороги" if i % 5 else "Школы", f"Текст сообщения {i}", "", "",
             "", "", ""] for i in range(25)]
    table = read_table(write_csv(services.files.root.parent / "pos.csv", rows))
    plan = prepare(table, "pos", default_mapping("pos"), services.org, SAKHALIN,
                   datetime.now(SAKHALIN))
    result = await run_import(services, plan, source="test", batch_size=10)
    assert (result.created, result.messages) == (25, 6)  # 3 batches × 2 heads
    async with services.sessions() as session:
        texts = (await session.scalars(select(OutboxMessage.payload).where(
            OutboxMessage.chat_id == "1001", OutboxMessage.audience != "reply")
            .order_by(OutboxMessage.id))).all()
    assert len(texts) == 3
    assert texts[0]["text"].startswith("📥 Импорт (ПОС")
    assert "новых — 8" in texts[0]["text"] and "/tasks" in texts[0]["text"]


async def test_answers_to_imported_items_go_back_for_publication(env, core, services, tmp_path):
    head = await join_as(core, "head", "housing", user_id="1001")
    operator = await join_as(core, "operator", user_id="2001")
    coordinator = await join_as(core, "im_coordinator", user_id="3001")
    async with services.sessions() as session:
        operator_id = await session.scalar(select(Staff.id).where(Staff.role == "operator"))
    source = write_csv(tmp_path / "pos.csv", pos_rows()[:1])
    assert await run_cli(str(source), "--channel", "pos", "--operator", str(operator_id)) == 0
    incidents = write_csv(tmp_path / "im.csv", [["IM-9", moment(1), "ЖКХ", "Течёт крыша", "",
                                                 "", "", "", ""]])
    assert await run_cli(str(incidents), "--channel", "incident_management") == 0
    for external in ("1001", "IM-9"):
        item = await by_number(services, external)
        await head.press(f"s:answer:{item.id}")
        await head.send("Работы выполнены, проблема устранена")
    pos = await by_number(services, "1001")
    assert pos.registered_by_id == operator_id and pos.status == "answered"
    await operator.send(f"/task {pos.number}")  # the registering operator sees the card
    assert "Работы выполнены" in operator.texts()
    for client, chat in ((operator, "2001"), (coordinator, "3001")):
        async with services.sessions() as session:
            last = await session.scalar(select(OutboxMessage).where(
                OutboxMessage.chat_id == chat, OutboxMessage.audience != "reply")
                .order_by(OutboxMessage.id.desc()).limit(1))
        assert "для размещения" in last.payload["text"]
        await client.press(last.payload["buttons"][0][0]["payload"])
        assert "размещённый" in client.texts()
    assert (await by_number(services, "1001")).answer_published_at is not None
    assert (await by_number(services, "IM-9")).answer_published_at is not None


async def test_a_stale_rejected_file_is_removed_when_all_rows_pass(env, tmp_path, capsys):
    source = write_csv(tmp_path / "pos.csv", pos_rows())
    assert await run_cli(str(source), "--channel", "pos") == 0
    assert (tmp_path / "pos.csv.rejected.csv").exists()
    write_csv(source, pos_rows()[:2])
    assert await run_cli(str(source), "--channel", "pos") == 0
    assert not (tmp_path / "pos.csv.rejected.csv").exists()


async def test_ten_thousand_rows(env, services, tmp_path, capsys):
    streets = ("Ленина", "Советская", "Дзержинского", "Блюхера", "Победы", "Комсомольская")
    categories = ("Дороги", "ЖКХ", "Мусор", "Освещение", "Транспорт", "Школы", "Парковки")
    now = datetime.now(SAKHALIN)
    rows = [[str(500000 + i), (now - timedelta(minutes=29 * i + 30)).strftime("%d.%m.%Y %H:%M"),
             categories[i % 7], f"Сообщение номер {i}: проблема у дома",
             f"г. Оха, ул. {streets[i % 6]}, {i % 97 + 1}", f"Житель {i}", "", "", ""]
            for i in range(10_000)]
    rows[5000][3] = ""  # one bad row
    source = write_csv(tmp_path / "big.csv", rows)
    assert await run_cli(str(source), "--channel", "pos") == 0
    out = capsys.readouterr().out
    assert "Зарегистрировано и направлено: 9999" in out and "Отклонено строк: 1" in out
    assert await count(services, Item) == 9999
    assert await count(services, ItemEvent) == 2 * 9999
    assert await count(services, Citizen) == 9999
    async with services.sessions() as session:
        numbers = (await session.scalars(select(Item.number))).all()
        pairs = (await session.execute(select(Item.external_number, Citizen.name).join(
            Citizen, Citizen.id == Item.citizen_id))).all()
    assert len(set(numbers)) == 9999 and max(numbers).endswith("-009999")
    # Each row's citizen is linked to that row's item.
    assert len(pairs) == 9999
    assert all(name == f"Житель {int(external) - 500000}" for external, name in pairs)


def test_large_file_on_a_terminal_shows_progress(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MCU_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "data"))
    calls: list[int] = []
    import handlers.operator.importer as importer

    original = importer.run_import

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        progress = kwargs["progress"]
        assert progress is not None
        kwargs["progress"] = lambda done: (calls.append(done), progress(done))
        return await original(*args, **kwargs)

    monkeypatch.setattr("bot.import_cli.run_import", counting)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    rows = [[f"P{i}", moment(1), "Дороги", f"Текст {i} о дороге", "", "", "", "", ""]
            for i in range(600)]
    source = write_csv(tmp_path / "pos.csv", rows)
    assert main(["import", str(source), "--channel", "pos"]) == 0
    assert calls == [500, 100]
    assert "Зарегистрировано и направлено: 600" in capsys.readouterr().out


@pytest.mark.parametrize("channel", ["pos", "incident_management", "sakhalin_online", "smls"])
def test_the_documented_samples_import_cleanly(channel):
    from bot.settings import DEFAULT_ORG_FILE
    from handlers.org import load_organisation

    sample = Path(__file__).resolve().parents[1] / "docs" / "samples" / f"{channel}.csv"
    plan = prepare(read_table(sample), channel, default_mapping(channel),
                   load_organisation(DEFAULT_ORG_FILE), SAKHALIN, datetime.now(SAKHALIN))
    assert plan.rows and plan.rejected == [] and plan.file_duplicates == []
    assert plan.unknown_categories == {}  # every sample category is in the organisation file
    assert all(row.topic != "other" for row in plan.rows)


async def test_import_on_postgresql(monkeypatch, postgres_url, tmp_path, capsys):
    monkeypatch.setenv("MCU_DATABASE_URL", postgres_url)
    monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "data"))
    rows = [*pos_rows(), *[[f"A{i}", moment(i % 20 + 1), "Дороги", f"Яма у дома {i % 3}",
                            f"г. Оха, ул. Ленина, {i % 3}", f"Житель {i}", "", "", ""]
                           for i in range(30)]]
    source = write_csv(tmp_path / "pos.csv", rows)
    assert await run_cli(str(source), "--channel", "pos") == 0
    assert await run_cli(str(source), "--channel", "pos") == 0
    out = capsys.readouterr().out.split("Импорт:")
    assert "Зарегистрировано и направлено: 35" in out[1]
    assert "Зарегистрировано и направлено: 0" in out[2] and "пропущено: 35" in out[2]
    from storage.db import create_engine, session_factory

    engine = create_engine(postgres_url)
    try:
        async with session_factory(engine)() as session:
            items = (await session.execute(select(Item.external_number, Citizen.name,
                                                  Item.cluster_id).outerjoin(
                Citizen, Citizen.id == Item.citizen_id))).all()
            events = await session.scalar(select(func.count()).select_from(ItemEvent))
    finally:
        await engine.dispose()
    assert len(items) == 35 and events == 70
    assert all(name == f"Житель {external[1:]}" for external, name, _ in items
               if external.startswith("A"))
    assert all(cluster is not None for external, _, cluster in items if external.startswith("A"))
