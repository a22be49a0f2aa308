"""The operations endpoints every long-running process can serve: GET /healthz and GET /metrics.

`mcu serve` mounts them next to its webhooks; `mcu run` serves them on MCU_SERVE_HOST:
MCU_SERVE_PORT when that port is set. What they report about the messengers (when an update
last arrived, whether the webhook is registered) is recorded by the transports in `HEALTH`,
one per process. Nothing here names a chat, a person or a text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text

from handlers.context import Services
from scheduler.metrics import ITEMS_BY_STATE, LAST_UPDATE_AGE, OUTBOX_ROWS
from scheduler.outbox import outbox_counts
from storage.models import Item

log = logging.getLogger(__name__)

DATABASE_TIMEOUT = 2.0  # seconds a health or metrics query may take


@dataclass
class PlatformHealth:
    last_update: float | None = None  # time.time() of the last update (webhook or poll)
    last_poll: float | None = None  # time.time() of the last answered getUpdates / long poll
    webhook: bool | None = None  # None: this process does not use a webhook
    webhook_error: str | None = None

    def as_json(self, now: float) -> dict[str, Any]:
        def age(moment: float | None) -> float | None:
            return round(now - moment, 3) if moment is not None else None

        data: dict[str, Any] = {"last_update_age": age(self.last_update)}
        if self.last_poll is not None:
            data["last_poll_age"] = age(self.last_poll)
        if self.webhook is not None:
            data["webhook_registered"] = self.webhook
            data["webhook_error"] = self.webhook_error
        return data


@dataclass
class Health:
    """What this process knows about its messengers, for /healthz and /metrics."""

    platforms: dict[str, PlatformHealth] = field(default_factory=dict)

    def of(self, platform: str) -> PlatformHealth:
        return self.platforms.setdefault(platform, PlatformHealth())

    def update_arrived(self, platform: str) -> None:
        self.of(platform).last_update = time.time()

    def polled(self, platform: str) -> None:
        self.of(platform).last_poll = time.time()

    def webhook_registered(self, platform: str) -> None:
        state = self.of(platform)
        state.webhook, state.webhook_error = True, None

    def webhook_failed(self, platform: str, error: str) -> None:
        state = self.of(platform)
        state.webhook, state.webhook_error = False, error


HEALTH = Health()


def add_ops_routes(app: web.Application, services: Services,
                   health: Health = HEALTH) -> None:
    ops = OpsEndpoints(services, health)
    app.router.add_get("/healthz", ops.healthz)
    app.router.add_get("/metrics", ops.metrics)


class OpsEndpoints:
    def __init__(self, services: Services, health: Health) -> None:
        self.services = services
        self.health = health

    async def healthz(self, request: web.Request) -> web.Response:
        """200 while the database answers, 503 when it does not; the rest is information."""
        now = time.time()
        body: dict[str, Any] = {
            "platforms": {name: state.as_json(now)
                          for name, state in sorted(self.health.platforms.items())},
        }
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT):
                async with self.services.sessions() as session:
                    await session.execute(text("SELECT 1"))
            body["database"] = {"ok": True}
        except Exception as error:  # unreachable, refused, timed out: all mean "not now"
            body["database"] = {"ok": False, "error": type(error).__name__}
        if body["database"]["ok"]:
            try:
                async with asyncio.timeout(DATABASE_TIMEOUT):
                    counts = await outbox_counts(self.services, self.services.now())
                body["outbox"] = {"due": counts.due, "held": counts.held,
                                  "failed": counts.failed}
            except Exception as error:
                body["outbox"] = {"error": type(error).__name__}
        ok = body["database"]["ok"]
        body["status"] = "ok" if ok else "unavailable"
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        """The Prometheus text exposition; the gauges are refreshed now."""
        await self._refresh()
        return web.Response(body=generate_latest(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _refresh(self) -> None:
        now = time.time()
        for platform, state in self.health.platforms.items():
            if state.last_update is not None:
                LAST_UPDATE_AGE.labels(platform=platform).set(now - state.last_update)
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT):
                counts = await outbox_counts(self.services, self.services.now())
                async with self.services.readers() as session:
                    by_status = (await session.execute(
                        select(Item.status, func.count()).group_by(Item.status))).all()
        except Exception as error:  # the gauges keep their last values
            log.warning("metrics not refreshed: database unavailable (%s)",
                        type(error).__name__)
            return
        OUTBOX_ROWS.labels(state="due").set(counts.due)
        OUTBOX_ROWS.labels(state="held").set(counts.held)
        OUTBOX_ROWS.labels(state="failed").set(counts.failed)
        ITEMS_BY_STATE.clear()
        for status, count in by_status:
            ITEMS_BY_STATE.labels(status=status).set(count)


async def start_ops_server(services: Services, host: str, port: int) -> web.AppRunner:
    """/healthz and /metrics alone (`mcu run` with MCU_SERVE_PORT)."""
    app = web.Application()
    add_ops_routes(app, services)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("health and metrics on http://%s:%s/healthz", host, port)
    return runner
