"""Cheap checks before anything is downloaded or stored: the shared flood limit, oversized
photos and impossible coordinates (forged payloads: tests/test_payloads.py)."""

from __future__ import annotations

from sqlalchemy import func, select

from handlers.core import Core
from handlers.events import Location
from storage.models import Item
from tests.conftest import make_services
from tests.fakes.telegram_api import FakeTelegramServer
from tests.support.chat import ChatClient
from tests.test_telegram_transport import PHOTO, REPORT, TgUser, running, settings, tg  # noqa: F401


async def test_the_flood_limit_holds_across_processes(sqlite_url, tmp_path, clock):
    """Two cores on one database file, as two `mcu run` processes would be."""
    first = await make_services(sqlite_url, tmp_path / "data", clock)
    second = await make_services(sqlite_url, tmp_path / "data", clock)
    try:
        for services in (first, second):
            services.flood_limit_per_minute = 4
        one, two = ChatClient(Core(first), "77"), ChatClient(Core(second), "77")
        for client in (one, two, one, two):
            assert (await client.send("/help")).replies
        refused = await one.send("/help")
        assert "Слишком много" in refused.replies[0].text
        assert (await two.send("/help")).replies == []  # told once, then silence
        clock.advance(minutes=1)
        assert "Слишком много" not in (await two.send("/help")).replies[0].text
    finally:
        for services in (first, second):
            await services.sessions.kw["bind"].dispose()


def test_coordinates_outside_the_earth_are_no_location():
    assert Location.checked(53.57, 142.95) == Location(53.57, 142.95)
    for latitude, longitude in ((999, 142), (53, 181), (float("nan"), 1), ("x", 1), (None, 1)):
        assert Location.checked(latitude, longitude) is None


async def at_the_photo_step(anna: TgUser) -> TgUser:
    await anna.say("/start")
    await anna.click("Согласен")
    await anna.say(REPORT)
    await anna.click("Жилищно")
    await anna.say("Протекает крыша над третьим подъездом уже неделю")
    return anna


async def test_an_oversized_photo_gets_a_clear_answer_and_is_not_downloaded(
        tg: FakeTelegramServer, settings, core, services) -> None:  # noqa: F811
    async with running(settings, core, tg) as (_, processed):
        anna = await at_the_photo_step(TgUser(tg, processed, 510))
        big = PHOTO[:-2] + b"\x00" * (11 * 1024 * 1024) + PHOTO[-2:]
        answer = await anna.say(photo=big)
        assert any("слишком большое" in (r.text or "") for r in answer)
        assert tg.downloads == []
        assert "1 из 5" in " ".join(r.text or "" for r in await anna.say(photo=PHOTO))


async def test_an_impossible_location_is_refused_in_the_dialog(
        tg: FakeTelegramServer, settings, core, services) -> None:  # noqa: F811
    async with running(settings, core, tg) as (_, processed):
        anna = await at_the_photo_step(TgUser(tg, processed, 511))
        await anna.click("Пропустить")
        answer = await anna.say(location=(999.0, 142.9))
        assert any("геопозицию" in (r.text or "") for r in answer)
    async with services.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Item)) == 0
