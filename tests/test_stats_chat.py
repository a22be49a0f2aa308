"""/stats in chat: the flow, the table, the chart, the XLSX, and who sees what."""

from __future__ import annotations

import asyncio

import pytest
from openpyxl import load_workbook
from PIL import Image, ImageStat

from bot.cli import main
from bot.settings import DEFAULT_ORG_FILE
from handlers.i18n import catalog
from handlers.org import GROUPINGS, METRICS, parse_organisation
from handlers.staff_features import by_command
from tests.support.chat import ChatClient, join_as
from tests.support.stats_data import NOW, seed

NOVEMBER = "01.11.2026–30.11.2026"
SHIPPED = DEFAULT_ORG_FILE.read_text(encoding="utf-8")
EXECUTORS_SECTION = """
[[sections]]
name = "executors"
title = "По исполнителям"
title_en = "By executor"
group_by = "executor"
metrics = ["count", "overdue_count"]
"""


@pytest.fixture
async def data(services, clock):
    clock.set(NOW)
    return await seed(services)


async def ask(client: ChatClient, section: str, period: str = NOVEMBER) -> None:
    await client.send("/stats")
    await client.click(section)
    await client.click("Свои даты")
    await client.send(period)


def result(client: ChatClient):
    """(table reply, chart reply, footer reply) of the latest /stats answer."""
    replies = client.last.replies
    assert len(replies) == 3, client.texts()
    return replies


def workbook_of(reply):
    assert reply.document is not None and reply.document.filename.endswith(".xlsx")
    return load_workbook(reply.document.path).active


async def test_chairman_gets_table_chart_and_excel(core, services, data):
    chairman = await join_as(core, "chairman", user_id="1003", name="Председатель")
    await chairman.send("/stats")
    sections = [b.text for row in chairman.last.replies[0].buttons for b in row]
    assert sections == ["Сводка по тематикам", "Каналы поступления", "Блоки и просрочка",
                        "Удовлетворённость", "Повторяющиеся проблемы"]
    await chairman.click("Сводка по тематикам")
    periods = [b.text for row in chairman.last.replies[0].buttons for b in row]
    assert periods == ["Сегодня", "7 дней", "30 дней", "Квартал", "Год", "📅 Свои даты"]
    await chairman.click("Свои даты")
    await chairman.send(NOVEMBER)
    table, chart, footer = result(chairman)
    assert table.monospace and table.title == "Сводка по тематикам, 01.11.2026 – 30.11.2026"
    lines = table.text.splitlines()
    assert lines[0].split() == ["Тематика", "Всего", "Открыто", "Просроч", "%просроч",
                                "Ответ,ч"]
    assert lines[2].split()[-5:] == ["3", "1", "2", "67%", "20,0"]
    assert lines[2].startswith("Дорожная деятельность")
    assert lines[3].split()[-5:] == ["2", "0", "0", "0%", "13,0"]
    assert lines[4].startswith("Жилищно-коммунальное…") and lines[4].split()[-1] == "—"
    assert lines[-1].split() == ["Итого", "6", "2", "2", "33%", "15,0"]
    # The chart: a valid PNG with something drawn on it.
    (photo,) = chart.photos
    assert photo.path.parent == services.files.root / "reports"
    with Image.open(photo.path) as image:
        image.verify()
    with Image.open(photo.path) as image:
        assert image.format == "PNG" and image.width > 500
        assert min(ImageStat.Stat(image.convert("L")).var) > 100  # not one flat colour
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert any(rgb == (0x1F, 0x6F, 0xB2) for _, rgb in colours)  # the bars are there
    assert "Фильтры: нет" in footer.text and "Медиана времени до ответа" in footer.text
    await chairman.click("Excel")
    sheet = workbook_of(chairman.last.replies[0])
    assert chairman.last.replies[0].document.filename == "topics_20261101-20261130.xlsx"
    assert sheet["A1"].value == "Сводка по тематикам"
    assert sheet["A2"].value == "Период: 01.11.2026 – 30.11.2026"
    assert sheet["A3"].value == "Фильтры: нет (все сообщения)"
    assert sheet["A4"].value == "Сформировано: 10.12.2026 12:00 (Asia/Sakhalin)"
    assert [c.value for c in sheet[6]] == [
        "Тематика", "Всего сообщений", "Открыто (в работе)", "Просрочено",
        "Доля просроченных", "Медиана времени до ответа, ч"]
    expected = [
        ("Дорожная деятельность", 3, 1, 2, 2 / 3, 20),
        ("Культура", 2, 0, 0, 0, 13),
        ("Жилищно-коммунальное хозяйство", 1, 1, 0, 0, None),
        ("Итого", 6, 2, 2, 1 / 3, 15),
    ]
    for number, values in enumerate(expected, start=7):
        cells = sheet[number]
        assert cells[0].value == values[0]
        for cell, value in zip(cells[1:], values[1:], strict=True):
            assert cell.value == (None if value is None else pytest.approx(value, abs=1e-6))
        assert cells[4].number_format == "0.0%" and cells[5].number_format == "0.0"
    assert sheet.max_row == 10
    assert sheet["A10"].font.bold


async def test_a_head_sees_only_their_block_even_with_forged_payloads(core, data):
    head = await join_as(core, "head", "housing", user_id="1001")
    await ask(head, "Блоки и просрочка")
    table, _, footer = result(head)
    assert "Отдел ЖКХ" in table.text and "культуре" not in table.text
    assert "только ваш блок: Отдел ЖКХ" in footer.text
    assert table.text.splitlines()[2].split()[-4:] == ["4", "2", "2", "20,0"]
    # The Excel button carries the section and the dates only; forging more changes nothing.
    for payload in ("st:x:blocks_overdue:20261101:20261130",
                    "st:x:blocks_overdue:20261101:20261130:culture_sport",
                    "st:x:satisfaction:20260101:20261231"):
        await head.press(payload)
        sheet = workbook_of(head.last.replies[0])
        labels = [row[0].value for row in sheet.iter_rows(min_row=7)]
        assert labels == ["Отдел ЖКХ, транспорта, энергетики и связи", "Итого"], payload
    # Another head's own section shows their block, not this one.
    other = await join_as(core, "head", "culture_sport", user_id="1002")
    await ask(other, "Удовлетворённость")
    table, _, _ = result(other)
    assert "Управление по кул" in table.text and "ЖКХ" not in table.text


async def test_press_gets_statistics_without_personal_data(core, services, data):
    services.org = parse_organisation(SHIPPED + EXECUTORS_SECTION)
    press = await join_as(core, "press", user_id="9001")
    chairman = await join_as(core, "chairman", user_id="1003")
    await ask(press, "По исполнителям")
    table, _, _ = result(press)
    await press.click("Excel")
    sheet = workbook_of(press.last.replies[0])
    cells = " ".join(str(c.value) for row in sheet.iter_rows() for c in row)
    e1, e2 = data.executors["E1"].id, data.executors["E2"].id
    for text in (table.text, cells):
        assert f"Исполнитель №{e1}" in text and f"Исполнитель №{e2}" in text
        for name in ("Инженер Петров", "Методист Сидорова", data.citizen_name):
            assert name not in text
    await ask(chairman, "По исполнителям")
    table, _, _ = result(chairman)
    assert "Инженер Петров" in table.text and "Не назначен" in table.text


async def test_who_may_ask(core, data):
    assert by_command("stats") is not None
    executor = await join_as(core, "executor", "housing", user_id="1002")
    await executor.send("/stats")
    assert "недоступно" in executor.texts()
    await executor.press("st:x:topics:20261101:20261130")
    assert executor.last.replies[0].document is None
    for role in ("curator", "im_coordinator"):
        client = await join_as(core, role, user_id=f"11{len(role)}")
        await ask(client, "Каналы поступления")
        assert "Telegram" in result(client)[0].text


async def test_periods_and_typing_mistakes(core, data):
    chairman = await join_as(core, "chairman", user_id="1003")
    await chairman.send("/stats topics")  # straight to the period
    await chairman.click("Сегодня")
    assert "данных нет" in chairman.texts()
    await chairman.click("Другой период")
    await chairman.click("Год")
    table, _, _ = result(chairman)
    assert table.title == "Сводка по тематикам, 01.01.2026 – 10.12.2026"
    assert table.text.splitlines()[-1].split()[:2] == ["Итого", "8"]
    await chairman.click("Другой период")
    await chairman.click("Свои даты")
    for typed, answer in (("вчера", "формат"), ("31.02.2026–01.03.2026", "нет в календаре"),
                          ("30.11.2026–01.11.2026", "позже"),
                          ("01.01.2000–01.01.2026", "длинный")):
        await chairman.send(typed)
        assert answer in chairman.texts(), typed
    await chairman.send("/cancel")
    await chairman.send("01.11.2026–30.11.2026")
    assert "Итого" not in chairman.texts()  # the dates step was cancelled
    await chairman.press("st:p:no_such_section:today")
    assert chairman.last.notice == "Эта кнопка устарела"


async def test_repeated_problems_section(core, data):
    chairman = await join_as(core, "chairman", user_id="1003")
    await ask(chairman, "Повторяющиеся проблемы")
    table, _, _ = result(chairman)
    lines = table.text.splitlines()
    assert len(lines) == 3  # header, rule, one cluster: the small one is below 3 items
    assert lines[2].startswith("ленина 12а — Дорожная")
    assert lines[2].split()[-4:] == ["3", "1", "2", "20,0"]


async def cli(args: list[str]) -> int:
    """`mcu …` runs its own event loop: give it a thread, as a terminal would."""
    return await asyncio.to_thread(main, args)


async def test_cli_stats(services, data, sqlite_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MCU_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "cli-data"))
    assert await cli(["stats", "--list"]) == 0
    assert "topics" in capsys.readouterr().out
    assert await cli(["stats", "--section", "topics", "--from", "2026-11-01", "--to", "2026-11-30",
                 "--format", "json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert [set(r) for r in rows] == [{"topic", *METRICS}] * 3
    assert rows[0] == {"topic": "roads", "count": 3, "overdue_count": 2,
                       "overdue_share": 0.6667, "median_first_reaction_hours": 2.0,
                       "median_answer_hours": 20.0, "average_rating": 3.5,
                       "satisfied_share": 0.5, "reopened_count": 1, "open_count": 1}
    assert await cli(["stats", "--section", "channels", "--from", "01.11.2026", "--to",
                 "30.11.2026", "--format", "csv"]) == 0
    csv_lines = capsys.readouterr().out.splitlines()
    assert csv_lines[0] == "channel," + ",".join(METRICS)
    assert csv_lines[1].startswith("telegram,3,1,0.3333,2.0,8.0,4.5,1.0,0,1")
    assert await cli(["stats", "--section", "topics", "--from", "2026-11-01", "--to", "2026-11-30"
                 ]) == 0
    assert "Итого" in capsys.readouterr().out
    out = tmp_path / "topics.xlsx"
    assert await cli(["stats", "--section", "topics", "--from", "2026-11-01", "--to", "2026-11-30",
                 "--format", "xlsx", "--out", str(out)]) == 0
    assert load_workbook(out).active["B7"].value == 3
    for bad in (["stats", "--section", "nope", "--from", "2026-11-01", "--to", "2026-11-30"],
                ["stats", "--section", "topics", "--from", "2026-13-01", "--to", "2026-11-30"],
                ["stats", "--section", "topics", "--from", "2026-12-01", "--to", "2026-11-30"],
                ["growth", "--at", "31.02.2026"],
                ["stats", "--section", "topics"],
                ["stats", "--section", "topics", "--from", "2026-11-01", "--to", "2026-11-30",
                 "--format", "xlsx"],
                ["stats", "--format", "pdf"]):
        assert await cli(bad) == 2, bad
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("mcu"), error


def test_every_metric_and_grouping_has_its_words():
    for locale in ("ru", "en"):
        words = catalog(locale)
        for metric in METRICS:
            assert f"stats.metric.{metric}" in words and f"stats.short.{metric}" in words
        for grouping in GROUPINGS:
            assert f"stats.group.{grouping}" in words
        for period in ("today", "7d", "30d", "quarter", "year", "custom"):
            assert f"stats.period.{period}" in words
        for reason in ("format", "date", "order", "too_long"):
            assert f"stats.dates_{reason}" in words


def test_a_bad_section_is_named_by_org_check(tmp_path, capsys):
    for section, message in (
        ('group_by = "weather"', "sections[0].group_by"),
        ('group_by = "topic"\nmetrics = ["count", "happiness"]', "sections[0].metrics[1]"),
        ('group_by = "topic"\nmetrics = ["count", "count"]', "sections[0].metrics[1]: duplicate"),
        ('group_by = "topic"\nmetrics = ["count"]\nfilters = { statuses = ["lost"] }',
         "sections[0].filters.statuses[0]: unknown status 'lost'"),
        ('group_by = "topic"\nmetrics = ["count"]\nfilters = { channels = ["fax"] }',
         "sections[0].filters.channels[0]"),
        ('group_by = "topic"\nmetrics = []', "sections[0].metrics"),
    ):
        text = SHIPPED.split("\n[[sections]]", 1)[0] + (
            f'\n[[sections]]\nname = "x"\ntitle = "X"\ntitle_en = "X"\n{section}\n')
        path = tmp_path / "org.toml"
        path.write_text(text, encoding="utf-8")
        assert main(["org", "check", str(path)]) == 2
        assert message in capsys.readouterr().err, section
    long_name = SHIPPED.replace('name = "blocks_overdue"', f'name = "{"b" * 40}"')
    path = tmp_path / "long.toml"
    path.write_text(long_name, encoding="utf-8")
    assert main(["org", "check", str(path)]) == 2
    assert "sections[2].name" in capsys.readouterr().err


async def test_old_report_files_are_pruned(core, services, data):
    import os

    reports = services.files.root / "reports"
    reports.mkdir(parents=True)
    old, recent = reports / "old.png", reports / "recent.xlsx"
    for path, age in ((old, 3 * 86400), (recent, 3600)):
        path.write_bytes(b"x")
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age))
    chairman = await join_as(core, "chairman", user_id="1003")
    await ask(chairman, "Каналы поступления")
    assert not old.exists() and recent.exists()
    assert len(list(reports.glob("*.png"))) == 1
