"""Scale-out harness: real `mcu serve` (and, later, `mcu worker`) processes on one database,
with the fake Bot API posting its updates to their webhooks.

The fake is told the serve processes' addresses (`FakeTelegramServer.spread_webhook`) and
posts to them in turn, as nginx spreads the webhook over its upstreams; an attempt that gets
no 200 is re-sent to the next one. The webhook URL registered through setWebhook is the
public one (MCU_PUBLIC_URL + MCU_WEBHOOK_PATH), checked by the tests.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.drills.harness import Drill, McuProcess

PUBLIC_URL = "https://mcu.example.test"
WEBHOOK_PATH = "/telegram/webhook"
SECRET = "s3cret-Token_for-tests"
VK_SECRET = "vk-callback-secret"
VK_CALLBACK_PATH = "/vk/callback"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServeProcess:
    process: McuProcess
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook(self) -> str:
        return self.base + WEBHOOK_PATH

    @property
    def vk_callback(self) -> str:
        return self.base + VK_CALLBACK_PATH


@dataclass
class ScaleWorld(Drill):
    """A drill world (tests/drills/harness.py) with web processes and workers."""

    serves: list[ServeProcess] = field(default_factory=list)
    workers: list[McuProcess] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        defaults = dict(MCU_PUBLIC_URL=PUBLIC_URL, MCU_WEBHOOK_SECRET=SECRET,
                        MCU_WEBHOOK_PATH=WEBHOOK_PATH, MCU_SERVE_HOST="127.0.0.1",
                        MCU_VK_CALLBACK_SECRET=VK_SECRET,
                        MCU_VK_CALLBACK_PATH=VK_CALLBACK_PATH)
        return {**defaults, **super().env(**extra)}

    async def serve(self, count: int = 1, *, spread: bool = True,
                    **env: str) -> list[ServeProcess]:
        """Start `count` more `mcu serve` processes, each on its own port, and wait until each
        answers /healthz. With `spread`, the fake Bot API posts to all of them in turn."""
        started: list[ServeProcess] = []
        for _ in range(count):
            port = free_port()
            name = f"serve-{len(self.serves) + 1}"
            process = self.process("serve", "--port", str(port), name=name, **env)
            serve = ServeProcess(process, port)
            await process.start(wait_ready=False)
            self.serves.append(serve)
            started.append(serve)
        for serve in started:
            await wait_healthy(serve)
        if spread:
            self.spread()
        return started

    async def worker(self, count: int = 1, **env: str) -> list[McuProcess]:
        """Start `count` `mcu worker` processes (the outbox sender and the scheduler)."""
        started = []
        for _ in range(count):
            name = f"worker-{len(self.workers) + 1}"
            started.append(await self.process("worker", name=name, **env).start())
        self.workers.extend(started)
        return started

    def spread(self) -> None:
        """Point the fake's webhook at the serve processes that are alive (nginx's view)."""
        assert self.tg is not None
        self.tg.spread_webhook([s.webhook for s in self.serves if s.process.alive]
                               or [s.webhook for s in self.serves])

    async def registered(self, timeout: float = 30) -> None:
        """Until a serve process has called setWebhook on the fake."""
        assert self.tg is not None
        tg = self.tg
        deadline = time.monotonic() + timeout
        while tg.webhook_url is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"setWebhook not called within {timeout}s\n{self.logs()}")
            await asyncio.sleep(0.1)

    async def flush_outbox(self) -> str:
        """Deliver what is due from a one-shot process (`mcu jobs run outbox`), the stand-in
        for a worker in tests that run none."""
        return await self.cli("jobs", "run", "outbox")


async def get_json(url: str, timeout: float = 10) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        return response.status, await response.json(content_type=None)


async def get_text(url: str, timeout: float = 10) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        return response.status, await response.text()


async def post(url: str, body: Any, headers: dict[str, str] | None = None,
               timeout: float = 30) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(
            url, json=body, headers=headers or {},
            timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        return response.status, await response.text()


async def wait_healthy(serve: ServeProcess, timeout: float = 60) -> dict[str, Any]:
    """Until /healthz answers (200 or 503: the process is up); its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        if not serve.process.alive:
            raise AssertionError(f"{serve.process.name} exited:\n{serve.process.log()[-3000:]}")
        try:
            status, body = await get_json(serve.base + "/healthz", timeout=5)
            if status in (200, 503):
                return dict(body)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{serve.process.name} did not answer /healthz within "
                                 f"{timeout}s:\n{serve.process.log()[-3000:]}")
        await asyncio.sleep(0.2)
