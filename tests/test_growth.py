"""Growing topics: the Poisson tail, the three thresholds, the weekly alert and its chart.

Day D = Monday 30 November 2026. Current window: 23–29 November; baseline: 26 October – 22
November (4 weeks). The set, in items received (by topic):

    topic     baseline (4 weeks)   weekly mean   current   flagged?
    roads     4                    1.0           12        yes: ≥ 5, ≥ 2×, p ≈ 1e-9
    housing   40                   10.0          15        no: under 2×
    energy    10                   2.5           6         no: p = P(X ≥ 6 | 2.5) ≈ 0.042
    culture   0                    0             2         no: fewer than 5
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta
from decimal import Decimal, getcontext

import pytest
from PIL import Image
from sqlalchemy import select

from bot.cli import main
from handlers.analytics.growth import assess, growth, poisson_tail
from handlers.i18n import translator
from handlers.org import Analytics
from handlers.summaries import build_summary, render
from scheduler.jobs import run_job
from storage.models import Item, OutboxMessage
from tests.conftest import SAKHALIN
from tests.support.chat import join_as

D = date(2026, 11, 30)
PLAN = {"roads": (4, 12), "housing": (40, 15), "energy": (10, 6), "culture": (0, 2)}


def exact_tail(k: int, lam: Decimal) -> Decimal:
    getcontext().prec = 60
    term, below = (-lam).exp(), Decimal(0)
    for i in range(k):
        below += term
        term = term * lam / (i + 1)
    return 1 - below


@pytest.mark.parametrize(("k", "lam"), [(0, "2"), (1, "0.5"), (2, "0.5"), (6, "2.5"),
                                        (12, "1"), (15, "10"), (40, "3"), (300, "250")])
def test_poisson_tail_is_exact(k, lam):
    expected = exact_tail(k, Decimal(lam))
    assert poisson_tail(k, float(lam)) == pytest.approx(float(expected), rel=1e-12, abs=0)


def test_the_three_thresholds():
    settings = Analytics()
    assert assess("topic", "roads", 12, 1.0, settings).flagged
    assert not assess("topic", "housing", 15, 10.0, settings).flagged  # under 2×
    energy = assess("topic", "energy", 6, 2.5, settings)
    assert energy.p_value == pytest.approx(0.0420, abs=1e-4) and not energy.flagged
    small = assess("topic", "culture", 2, 0.0, settings)  # λ = 0.5, but only 2 items
    assert small.p_value == pytest.approx(0.0902, abs=1e-4) and not small.flagged
    # From nothing to 5 is flagged: λ is floored at 0.5, P(X ≥ 5) ≈ 0.00017.
    assert assess("topic", "sport", 5, 0.0, settings).flagged
    assert not assess("topic", "sport", 5, 0.0, Analytics(growth_min_items=6)).flagged


async def add_items(services) -> None:
    """The set of the module docstring, spread over the days of each window."""
    numbers = iter(range(1, 1000))
    async with services.sessions() as session, session.begin():
        for topic, (before, current) in PLAN.items():
            block = services.org.block_of_topic[topic].id
            for n, (first, days) in ((before, (D - timedelta(days=35), 28)),
                                     (current, (D - timedelta(days=7), 7))):
                for i in range(n):
                    day = first + timedelta(days=i % days)
                    received = datetime.combine(day, datetime.min.time(),
                                                SAKHALIN) + timedelta(hours=10)
                    session.add(Item(
                        number=f"G-{next(numbers):04d}", kind="message", channel="pos",
                        status="assigned", topic=topic, block_id=block, text="…",
                        received_at=received, registered_at=received,
                        created_at=D_MORNING, updated_at=D_MORNING,  # imported on D
                        extension_count=0, reopened_count=0, no_answer=False))


D_MORNING = datetime(2026, 11, 30, 8, 0, tzinfo=SAKHALIN)


async def test_only_the_spike_is_flagged(services):
    await add_items(services)
    async with services.readers() as session:
        results = {g.key: g for g in await growth(session, services.org.analytics, D)}
    assert {k: (g.current, g.baseline) for k, g in results.items()} == {
        "roads": (12, 1.0), "housing": (15, 10.0), "energy": (6, 2.5), "culture": (2, 0.0)}
    assert [k for k, g in results.items() if g.flagged] == ["roads"]
    assert results["roads"].p_value == pytest.approx(float(exact_tail(12, Decimal(1))))


async def test_one_alert_a_week_to_the_chairman_and_the_press(core, services, clock):
    await add_items(services)
    await join_as(core, "chairman", user_id="3001")
    await join_as(core, "press", user_id="3002")
    await join_as(core, "curator", user_id="3003")
    at = datetime(2026, 11, 30, 9, 0, tzinfo=SAKHALIN)
    assert await run_job(services, "growth", at - timedelta(minutes=1)) == 0  # before 09:00
    assert await run_job(services, "growth", at) == 2
    # The spike stays in the window all week: no second alert, however often the job runs.
    for day in range(7):
        assert await run_job(services, "growth", at + timedelta(days=day, hours=1)) == 0
    async with services.sessions() as session:
        alerts = (await session.scalars(select(OutboxMessage).where(
            OutboxMessage.dedupe_key.like("growth:%")))).all()
    assert sorted(a.chat_id for a in alerts) == ["3001", "3002"]
    text = alerts[0].payload["text"]
    assert "Дорожная деятельность: 12 сообщений" in text and "обычно 1.0" in text
    image = Image.open(alerts[0].payload["photos"][0]["path"])
    assert image.format == "PNG" and image.size[0] >= 300


async def test_the_daily_summary_has_the_growing_topics(services):
    await add_items(services)
    async with services.readers() as session:
        summary = await build_summary(session, services, datetime(2026, 11, 30, 9, 0,
                                                                  tzinfo=SAKHALIN))
    text = render(summary, services, translator("ru"))
    assert "Растущие темы" in text
    assert "  • Дорожная деятельность: 12 сообщ., обычно 1.0 в неделю" in text
    assert "Жилищно-коммунальное хозяйство: 15" not in text


async def test_cli_growth(services, sqlite_url, tmp_path, monkeypatch, capsys):
    await add_items(services)
    monkeypatch.setenv("MCU_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MCU_DATA_DIR", str(tmp_path / "cli"))
    assert await asyncio.to_thread(main, ["growth", "--at", "30.11.2026", "--format",
                                          "json"]) == 0
    (flagged,) = json.loads(capsys.readouterr().out)
    assert flagged["topic"] == "roads" and flagged["current"] == 12
    assert flagged["baseline"] == 1.0 and flagged["p_value"] < 1e-8
    assert await asyncio.to_thread(main, ["growth", "--at", "2026-11-30"]) == 0
    table = capsys.readouterr().out
    assert "roads" in table and "energy" in table and "YES" in table
    assert await asyncio.to_thread(main, ["growth", "--at", "yesterday"]) == 2
    assert capsys.readouterr().err.startswith("mcu growth: --at 'yesterday' is not a date")


def test_org_check_validates_the_thresholds(tmp_path, capsys):
    from bot.settings import DEFAULT_ORG_FILE

    shipped = DEFAULT_ORG_FILE.read_text(encoding="utf-8")
    for line, field in (("growth_ratio = 0.5", "analytics.growth_ratio"),
                        ("growth_p_value = 1.5", "analytics.growth_p_value"),
                        ("growth_min_items = 0", "analytics.growth_min_items")):
        path = tmp_path / "org.toml"
        name = line.split(" = ")[0]
        path.write_text("\n".join(line if row.startswith(name + " =") else row
                                  for row in shipped.splitlines()), encoding="utf-8")
        assert main(["org", "check", str(path)]) == 2
        assert field in capsys.readouterr().err
