"""`mcu serve`'s edges: refused forgeries, the one-process rule of SQLite, /healthz with the
database stopped, /metrics, and a start while the Bot API cannot be reached."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from storage.models import Account, ProcessedUpdate
from tests.drills.harness import VK_GROUP, eventually
from tests.fakes.telegram_api import FakeTelegramServer
from tests.fakes.vk_api import FakeVKServer
from tests.scale.serve_harness import (
    SECRET,
    VK_SECRET,
    ScaleWorld,
    get_json,
    get_text,
    post,
    wait_healthy,
)
from tests.support.postgres import PostgresServer

USER = 4242


async def stored(world: ScaleWorld) -> tuple[int, int]:
    async with world.sessions() as session:
        updates = await session.scalar(select(func.count()).select_from(ProcessedUpdate))
        accounts = await session.scalar(select(func.count()).select_from(Account))
    return int(updates or 0), int(accounts or 0)


async def test_forged_webhooks_are_refused_and_sqlite_allows_one_process(
        sqlite_world: ScaleWorld, vk: FakeVKServer) -> None:
    world, tg = sqlite_world, sqlite_world.tg
    assert tg is not None
    world.vk = vk
    (serve,) = await world.serve(1, spread=False)
    await world.registered()
    assert tg.webhook_secret == SECRET

    update_id = tg.user_message(USER, "/start")
    update = tg.injected[update_id]
    for headers in ({"X-Telegram-Bot-Api-Secret-Token": "wrong"}, {}):
        status, _ = await post(serve.webhook, update, headers)
        assert status == 401
    message = vk.update(vk.user_message(USER, "Начать"))
    for forged in ({**message, "secret": "wrong"}, {**message, "secret": None},
                   {**message, "secret": VK_SECRET, "group_id": VK_GROUP + 1}):
        status, text = await post(serve.vk_callback, forged)
        assert status == 403 and text != "ok"
    assert await stored(world) == (0, 0)
    assert tg.messages_to(USER) == [] and vk.messages_to(USER) == []

    # The genuine ones are handled.
    status, _ = await post(serve.webhook, update, {"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert status == 200
    assert tg.messages_to(USER), "the reply is delivered before the webhook is answered"
    status, text = await post(serve.vk_callback, {**message, "secret": VK_SECRET})
    assert (status, text) == (200, "ok")
    await vk.wait_for(lambda r: r.peer_id == USER, timeout=30)
    assert (await stored(world))[0] == 2

    # A second process on the same SQLite file is refused with a clear reason.
    second = world.process("serve", "--port", "1", name="second-serve")
    await second.start(wait_ready=False)
    assert second.process is not None
    assert await asyncio.wait_for(second.process.wait(), 60) == 2
    assert "SQLite allows one process" in second.log()
    assert serve.process.alive


async def test_serve_refuses_to_start_without_a_webhook_secret(
        sqlite_world: ScaleWorld) -> None:
    process = sqlite_world.process("serve", "--port", "1", name="no-secret",
                                   MCU_WEBHOOK_SECRET="")
    await process.start(wait_ready=False)
    assert process.process is not None
    assert await asyncio.wait_for(process.process.wait(), 60) == 2
    assert "MCU_WEBHOOK_SECRET is not set" in process.log()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test alone: it is stopped and started again."""
    server = PostgresServer(settings={"synchronous_commit": "on"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_healthz_reports_a_stopped_database_and_metrics_parse(
        tmp_path: Path, tg: FakeTelegramServer, vk: FakeVKServer,
        own_postgres: PostgresServer) -> None:
    world = ScaleWorld(tmp_path, own_postgres.create_database("health"), tg=tg, vk=vk)
    await world.migrate()
    try:
        (serve,) = await world.serve(1)
        await world.registered()
        tg.user_message(USER, "/start")
        await tg.wait_for(lambda r: r.chat_id == USER, timeout=30)

        status, health = await get_json(serve.base + "/healthz")
        assert status == 200 and health["status"] == "ok"
        assert health["database"] == {"ok": True}
        assert set(health["outbox"]) == {"due", "held", "failed"}
        telegram = health["platforms"]["telegram"]
        assert telegram["webhook_registered"] is True and telegram["webhook_error"] is None
        assert telegram["last_update_age"] is not None and telegram["last_update_age"] < 60

        status, exposition = await get_text(serve.base + "/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(exposition)}
        handled = [s for s in families["mcu_updates_handled"].samples
                   if s.name == "mcu_updates_handled_total"]
        assert any(s.labels == {"platform": "telegram", "outcome": "ok"} and s.value >= 1
                   for s in handled)
        assert {s.labels["state"] for s in families["mcu_outbox_rows"].samples} == {
            "due", "held", "failed"}
        assert "mcu_turn_seconds" in families and "mcu_last_update_age_seconds" in families
        assert "mcu_items" in families

        await asyncio.to_thread(own_postgres.halt, "immediate")
        status, health = await get_json(serve.base + "/healthz", timeout=30)
        assert status == 503 and health["database"]["ok"] is False
        assert health["status"] == "unavailable"
        # /metrics still answers (with the gauges' last values).
        status, exposition = await get_text(serve.base + "/metrics", timeout=30)
        assert status == 200 and list(text_string_to_metric_families(exposition))
        # An update that cannot be committed is not acknowledged: the messenger re-sends it.
        update = tg.injected[tg.user_message(USER + 1, "/start")]
        tg.spread_webhook(["http://127.0.0.1:9/unreachable"])  # the fake holds it back
        status, _ = await post(serve.webhook, update,
                               {"X-Telegram-Bot-Api-Secret-Token": SECRET}, timeout=60)
        assert status == 503
        message = vk.update(vk.user_message(USER + 1, "Начать"))
        status, text = await post(serve.vk_callback, {**message, "secret": VK_SECRET},
                                  timeout=60)
        assert status == 503 and text != "ok"

        await asyncio.to_thread(own_postgres.resume)
        world.spread()  # the fake sends the update again: now it is handled
        await tg.wait_for(lambda r: r.chat_id == USER + 1, timeout=60)
        status, text = await post(serve.vk_callback, {**message, "secret": VK_SECRET},
                                  timeout=60)
        assert (status, text) == (200, "ok")

        async def healthy_again() -> bool:
            status, _ = await get_json(serve.base + "/healthz", timeout=30)
            return status == 200

        await eventually(healthy_again, 60, "/healthz after the database is back")
    finally:
        await world.close()


async def test_serve_starts_while_the_bot_api_is_unreachable(
        sqlite_world: ScaleWorld) -> None:
    world, tg = sqlite_world, sqlite_world.tg
    assert tg is not None
    outage = tg.fail_for(None, status=502)
    (serve,) = await world.serve(1)
    await wait_healthy(serve)

    async def reported() -> bool:
        _, health = await get_json(serve.base + "/healthz")
        telegram = health["platforms"].get("telegram", {})
        return telegram.get("webhook_registered") is False and bool(telegram["webhook_error"])

    await eventually(reported, 30, "/healthz reporting the unregistered webhook")
    status, _ = await get_json(serve.base + "/healthz")
    assert status == 200  # the database answers: the process is healthy, only not reachable
    assert tg.webhook_url is None and outage.failures >= 1

    outage.end()
    await world.registered(timeout=60)

    async def registered() -> bool:
        _, health = await get_json(serve.base + "/healthz")
        return health["platforms"]["telegram"]["webhook_registered"] is True

    await eventually(registered, 30, "/healthz reporting the webhook registered")
    tg.user_message(USER, "/start")
    await tg.wait_for(lambda r: r.chat_id == USER, timeout=30)


def test_json_logs(tmp_path: Path) -> None:
    import json
    import subprocess

    from tests.drills.harness import ROOT

    env = {"PYTHONPATH": str(ROOT), "MCU_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin",
           "MCU_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}",
           "MCU_DATA_DIR": str(tmp_path / "data"), "MCU_WEBHOOK_SECRET": "x",
           "MCU_TELEGRAM_TOKEN": "1:X", "MCU_PUBLIC_URL": "https://mcu.example.test"}
    result = subprocess.run([sys.executable, "-c", (
        "import logging, sys; from bot.cli import configure_logging; configure_logging(False);"
        "logging.getLogger('mcu.test').warning('turn %s took %s', 7, 'long')")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True)
    (line,) = result.stderr.strip().splitlines()
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message"}
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "WARNING", "mcu.test", "turn 7 took long")


async def test_mcu_run_serves_health_when_a_port_is_set(sqlite_world: ScaleWorld) -> None:
    from tests.scale.serve_harness import free_port

    port = free_port()
    await sqlite_world.run(MCU_SERVE_PORT=str(port))
    base = f"http://127.0.0.1:{port}"

    async def polled() -> bool:
        status, health = await get_json(base + "/healthz")
        return status == 200 and health["platforms"].get("telegram", {}).get(
            "last_poll_age") is not None

    await eventually(polled, 60, "/healthz of mcu run with its last poll")
    status, exposition = await get_text(base + "/metrics")
    assert status == 200 and list(text_string_to_metric_families(exposition))
