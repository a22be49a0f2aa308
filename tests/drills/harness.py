"""Drill harness: `mcu run` / `mcu scheduler` as real processes on a real database, against the
fake Telegram and VK servers (real HTTP on 127.0.0.1).

Everything a drill asserts is observable from outside the process: what the fake servers
recorded (`tg.sent`, `tg.failed`, `vk.sent`) and what the database holds. Nothing of the
project is patched; the processes are started, SIGKILLed and restarted like in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.settings import DEFAULT_ORG_FILE
from handlers.i18n import translator
from handlers.org import load_organisation
from storage.db import create_engine, session_factory
from storage.migrate import upgrade_async
from storage.models import Item, OutboxMessage
from tests.fakes.telegram_api import FakeTelegramServer, SentRecord
from tests.fakes.vk_api import FakeVKServer

ROOT = Path(__file__).resolve().parents[2]
T = translator("ru")
STALE = T("button.stale")  # the callback notice
STALE_LONG = T("button.stale_long")  # «Эта кнопка относится к старому сообщению…»
TEMPORARY = T("error.temporary")  # «Временная ошибка на нашей стороне…»
NUMBER_MARK = "Номер:"  # report.registered: the message that carries the number
WELCOME = "Добро пожаловать"
CARD_LEAD = "Новое сообщение для вашего блока"
# A burst of cards due together in one chat arrives as one digest listing their numbers.
DIGEST_LEAD = T("digest.title", count=0).split("(")[0]  # «🆕 Новые сообщения »
ITEM_NUMBER = re.compile(r"\b\d{4}-\d{6}\b")
# What `mcu run` / `mcu scheduler` log once they are up. If a version logs something else, the
# harness goes on after READY_TIMEOUT anyway (the fakes queue updates until the bot polls).
READY = re.compile(r"МЦУ assistant is running|scheduler is running|standby")
READY_TIMEOUT = 30.0
VK_GROUP = 77
VK_TOKEN = "vk-drill-token"
TG_TOKEN = "4242:DRILL"


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class McuProcess:
    """One `mcu …` process; its log (stderr) goes to a file so that it survives a SIGKILL."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self, *, wait_ready: bool = True,
                    timeout: float = READY_TIMEOUT) -> McuProcess:
        self.starts += 1
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", *self.argv, cwd=self.cwd, env=self.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        if wait_ready:
            await self.wait_ready(offset, timeout)
        return self

    async def wait_ready(self, offset: int = 0, timeout: float = READY_TIMEOUT) -> None:
        """Until the process says it is up; a process still alive after `timeout` without
        saying so is taken as up (only an exit is an error)."""
        deadline = time.monotonic() + timeout
        while True:
            if READY.search(self.log()[offset:]):
                return
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n"
                                     f"{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.1)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, like a power cut."""
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    def kill_now(self) -> None:
        """SIGKILL from synchronous code (a fake server's hook); `kill()` reaps it later."""
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)

    async def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if not self.alive:
            return self.process.returncode if self.process else None
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill()
        return self.process.returncode


@dataclass
class Drill:
    """The world of one drill: the fakes, the database, the processes, the figures."""

    tmp_path: Path
    database_url: str
    tg: FakeTelegramServer | None = None
    vk: FakeVKServer | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[McuProcess] = field(default_factory=list)
    _engine: AsyncEngine | None = None

    @property
    def data_dir(self) -> Path:
        return self.tmp_path / "data"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCU_")}
        env.update(PYTHONPATH=str(ROOT), MCU_DATABASE_URL=self.database_url,
                   MCU_DATA_DIR=str(self.data_dir), MCU_TELEGRAM_BOT_USERNAME="mcu_okha_bot")
        if self.tg is not None:
            env.update(MCU_TELEGRAM_TOKEN=TG_TOKEN, MCU_TELEGRAM_API_URL=self.tg.base_url)
        if self.vk is not None:
            env.update(MCU_VK_TOKEN=VK_TOKEN, MCU_VK_GROUP_ID=str(VK_GROUP),
                       MCU_VK_API_URL=self.vk.api_url)
        env.update(self.extra_env)
        env.update(extra)
        return env

    def process(self, *argv: str, name: str | None = None, **env: str) -> McuProcess:
        name = name or f"{'-'.join(argv)}-{len(self.processes) + 1}"
        proc = McuProcess(name, list(argv), self.env(**env), self.tmp_path,
                          self.tmp_path / f"{name}.log")
        self.processes.append(proc)
        return proc

    async def run(self, name: str = "run", **env: str) -> McuProcess:
        """Start `mcu run` and wait until it says it is running."""
        return await self.process("run", name=name, **env).start()

    async def scheduler(self, **env: str) -> McuProcess:
        return await self.process("scheduler", name="scheduler", **env).start()

    async def cli(self, *argv: str, timeout: float = 60) -> str:
        """A one-shot `mcu …` command; its stdout (fails on a non-zero exit)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", *argv, cwd=self.tmp_path, env=self.env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode == 0, err.decode()[-3000:]
        return out.decode()

    async def close(self) -> None:
        for proc in self.processes:
            await proc.kill()
        if self._engine is not None:
            await self._engine.dispose()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.log()[-4000:]}" for p in self.processes)

    # -- the database, read from the test ------------------------------------------------------

    async def migrate(self) -> None:
        await upgrade_async(self.database_url)

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._engine is None:
            self._engine = create_engine(self.database_url)
        return session_factory(self._engine)

    async def items(self) -> list[Item]:
        async with self.sessions() as session:
            return list((await session.scalars(select(Item).order_by(Item.id))).all())

    async def items_with_text(self, text: str) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(
                select(func.count()).select_from(Item).where(Item.text == text)) or 0)

    async def outbox(self, chat_id: str | int | None = None) -> list[OutboxMessage]:
        async with self.sessions() as session:
            query = select(OutboxMessage).order_by(OutboxMessage.id)
            if chat_id is not None:
                query = query.where(OutboxMessage.chat_id == str(chat_id))
            return list((await session.scalars(query)).all())

    async def outbox_busy(self, horizon: float = 90) -> bool:
        """Is there an outbox row that is still to be delivered within `horizon` seconds?"""
        soon = datetime.now(UTC) + timedelta(seconds=horizon)  # the models give aware UTC
        return any(row.status == "pending" and max(row.next_attempt_at, row.not_before) <= soon
                   for row in await self.outbox())

    # -- staff -------------------------------------------------------------------------------

    async def join_staff(self, user_id: int, role: str = "head", block: str | None = "housing",
                         name: str = "Начальник отдела ЖКХ", timeout: float = 30) -> None:
        """A staff member joins as in production: a one-time invite (the code `mcu staff
        invite` prints), then `/start CODE` to the Telegram bot."""
        from handlers.staff.invites import create_invite

        assert self.tg is not None
        org = load_organisation(DEFAULT_ORG_FILE)
        async with self.sessions() as session, session.begin():
            invite = await create_invite(session, org, role, block, name,
                                         datetime.now(UTC))
        mark = len(self.tg.sent)
        self.tg.user_message(user_id, f"/start {invite.code}", first_name=name)
        await self.tg.wait_for(lambda r: r.chat_id == user_id and WELCOME in (r.body or ""),
                               timeout=timeout, since=mark)


# ---------------------------------------------------------------------------------------------
# Waiting without sleeping blindly


async def settle(drill: Drill, done: Callable[[], Awaitable[bool] | bool], *,
                 timeout: float = 90, quiet: float = 15) -> bool:
    """Wait until `done()` holds; give up when nothing has happened for `quiet` seconds
    (no call reached the fakes, no outbox row is due within 90 s) or after `timeout`.
    Returns whether `done()` held: a drill then asserts and prints what it observed."""
    deadline = time.monotonic() + timeout
    last_activity, last_seen = time.monotonic(), activity(drill)
    while True:
        result = done()
        if not isinstance(result, bool):
            result = await result
        if result:
            return True
        now = time.monotonic()
        seen = activity(drill)
        if seen != last_seen:
            last_seen, last_activity = seen, now
        elif now - last_activity > quiet and not await drill.outbox_busy():
            return False
        if now > deadline:
            return False
        await asyncio.sleep(0.2)


def activity(drill: Drill) -> tuple[int, ...]:
    tg, vk = drill.tg, drill.vk
    counts: tuple[int, ...] = ()
    if tg is not None:
        counts += (len(tg.sent), len(tg.failed), len(tg.delivered))
    if vk is not None:
        counts += (len(vk.sent), len(vk.failed), len(vk.updates))
    return counts


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 30,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        await asyncio.sleep(0.02)


async def polling(tg: FakeTelegramServer, timeout: float = 10) -> None:
    """Give the bot a moment to park a long poll (so a batch arrives at once); not required."""
    with contextlib.suppress(TimeoutError):
        await tg.wait_polling(timeout=timeout)


async def polling_resumed(tg: FakeTelegramServer, calls_before: int,
                          timeout: float = 120) -> None:
    """After a restart: wait until some process asks getUpdates again (a restarted process
    may first have to wait for the dead one's poller lease to expire)."""
    await eventually(lambda: tg.get_updates_calls > calls_before, timeout,
                     "getUpdates after the restart")


def in_order(bodies: list[str], marks: Iterable[str]) -> bool:
    """Do the bot's messages show these marks one after the other (each after the last)?"""
    at = 0
    for mark in marks:
        found = next((i for i in range(at, len(bodies)) if mark in bodies[i]), None)
        if found is None:
            return False
        at = found + 1
    return True


# ---------------------------------------------------------------------------------------------
# Citizens in Telegram

TOPIC = "energy"  # «Энергетика» → the housing block (its head receives the card)
REPORT_STEPS = ("start", "consent", "text", "topic", "photos", "place", "confirm")
# The same report with the address typed instead of «Пропустить» at the place step.
TYPED_ADDRESS_STEPS = ("start", "consent", "text", "topic", "photos", "address", "confirm")
ADDRESS = "ул. Ленина, д. 5, у второго подъезда"


def report_updates(tg: FakeTelegramServer, user_id: int, text: str, *,
                   steps: Iterable[str] = REPORT_STEPS, first_name: str = "Житель") -> list[int]:
    """Inject, without waiting for any answer, the updates of a whole short report: the
    citizen types ahead of the bot. Returns the update ids in order."""
    make: dict[str, Callable[[], int]] = {
        "start": lambda: tg.user_message(user_id, "/start", first_name=first_name),
        "consent": lambda: tg.press_button(user_id, "consent:yes"),
        "text": lambda: tg.user_message(user_id, text, first_name=first_name),
        "topic": lambda: tg.press_button(user_id, f"topic:{TOPIC}"),
        "photos": lambda: tg.press_button(user_id, "photos:skip"),
        "place": lambda: tg.press_button(user_id, "place:skip"),
        "address": lambda: tg.user_message(user_id, ADDRESS, first_name=first_name),
        "confirm": lambda: tg.press_button(user_id, "confirm:send"),
    }
    return [make[step]() for step in steps]


# What the bot answers to each step of the report (a substring of its message). The answer to
# the text is the topic screen, whose words depend on the topic suggester: it is recognised by
# its topic buttons (`answers`), and left out of `DIALOG`.
STEP_ANSWERS = {"start": "согласие", "consent": "согласие записано", "text": "тематик",
                "topic": "фото", "photos": "Где это", "place": "Проверьте",
                "address": "Проверьте", "confirm": NUMBER_MARK}
DIALOG = [STEP_ANSWERS[step] for step in REPORT_STEPS if step != "text"]


def tg_payloads(record: SentRecord) -> list[str]:
    rows = (record.reply_markup or {}).get("inline_keyboard") or []
    return [b.get("callback_data") or "" for row in rows for b in row]


def vk_payloads(record: Any) -> list[str]:
    return [str(a["payload"].get("p", "")) for a in record.buttons()
            if isinstance(a.get("payload"), dict)]


def answers(step: str, body: str, payloads: list[str]) -> bool:
    """Is this bot message the answer to `step` of the report?"""
    if step == "text":  # the topic screen, whichever payload version its buttons carry
        return any(p.removeprefix("1:").startswith("topic:") for p in payloads)
    return STEP_ANSWERS[step] in body


async def walk_report(tg: FakeTelegramServer, user_id: int, text: str, *,
                      steps: Iterable[str] = REPORT_STEPS, timeout: float = 30) -> None:
    """The citizen goes step by step, each time waiting for the bot's answer."""
    for step in steps:
        mark = len(tg.sent)
        report_updates(tg, user_id, text, steps=[step])
        await tg.wait_for(lambda r, s=step: r.chat_id == user_id
                          and answers(s, r.body or "", tg_payloads(r)),
                          since=mark, timeout=timeout)


def vk_report_update(vk: FakeVKServer, user_id: int, text: str, step: str) -> str:
    """Inject one step of the report in VK; returns the update's event_id."""
    if step == "start":
        return vk.user_message(user_id, "Начать", payload={"command": "start"})
    if step == "text":
        return vk.user_message(user_id, text)
    payload = {"consent": "consent:yes", "topic": f"topic:{TOPIC}", "photos": "photos:skip",
               "place": "place:skip", "confirm": "confirm:send"}[step]
    callback_id = vk.press_callback(user_id, {"p": payload})
    return str(vk.update(callback_id)["event_id"])


def vk_texts_to(vk: FakeVKServer, peer_id: int) -> list[str]:
    return [r.text or "" for r in vk.messages_to(peer_id)]


async def vk_walk_report(vk: FakeVKServer, user_id: int, text: str, *,
                         steps: Iterable[str] = REPORT_STEPS, timeout: float = 30) -> None:
    for step in steps:
        mark = len(vk.sent)
        vk_report_update(vk, user_id, text, step)
        await vk.wait_for(lambda r, s=step: r.peer_id == user_id
                          and answers(s, r.text or "", vk_payloads(r)),
                          timeout=timeout, after=mark)


def interleave(*sequences: list[Callable[[], int]]) -> list[int]:
    """Round-robin over several citizens' steps: they all type at once."""
    ids: list[int] = []
    longest = max((len(s) for s in sequences), default=0)
    for i in range(longest):
        for sequence in sequences:
            if i < len(sequence):
                ids.append(sequence[i]())
    return ids


def step_makers(tg: FakeTelegramServer, user_id: int, text: str,
                steps: Iterable[str] = REPORT_STEPS) -> list[Callable[[], int]]:
    return [lambda step=step: report_updates(tg, user_id, text, steps=[step])[0]
            for step in steps]


def bodies_to(tg: FakeTelegramServer, chat_id: int) -> list[str]:
    return [r.body or "" for r in tg.messages_to(chat_id) if r.method.startswith("send")]


def cards_to(tg: FakeTelegramServer, chat_id: int) -> int:
    """New-item cards that reached the chat, alone or as lines of a digest (a card shown
    twice counts twice)."""
    return sum(len(ITEM_NUMBER.findall(body)) for body in bodies_to(tg, chat_id)
               if CARD_LEAD in body or DIGEST_LEAD in body)


def numbers_to(tg: FakeTelegramServer, chat_id: int) -> int:
    return sum(NUMBER_MARK in body for body in bodies_to(tg, chat_id))


def stale_answers(tg: FakeTelegramServer) -> int:
    """Messages and callback notices saying a button is stale."""
    texts = sum(STALE_LONG in (r.body or "") for r in tg.sent if r.method.startswith("send"))
    notices = sum((r.params.get("text") or "") == STALE for r in tg.calls("answerCallbackQuery"))
    return texts + notices


def temporary_errors(tg: FakeTelegramServer) -> int:
    return sum(TEMPORARY in (r.body or "") for r in tg.sent if r.method.startswith("send"))


def _visible_key(record: SentRecord) -> tuple[Any, ...]:
    photos: tuple[Any, ...] = ()
    if isinstance(record.photo, bytes):
        photos = (record.photo,)
    elif record.media:
        photos = tuple(m.data for m in record.media)
    return (record.chat_id, record.method, record.body, photos)


def duplicates(tg: FakeTelegramServer, chats: Iterable[int] | None = None) -> int:
    """Visible messages a chat received more than once (the same kind, text and photos)."""
    wanted = set(chats) if chats is not None else None
    counts = Counter(_visible_key(r) for r in tg.sent
                     if r.method.startswith("send") and r.method != "sendChatAction"
                     and (wanted is None or r.chat_id in wanted))
    return sum(n - 1 for n in counts.values() if n > 1)


def vk_duplicates(vk: FakeVKServer) -> int:
    counts = Counter((r.peer_id, r.text, r.attachment) for r in vk.sent
                     if r.method == "messages.send")
    return sum(n - 1 for n in counts.values() if n > 1)


def figure(capsys: Any, text: str) -> None:
    """Print a drill's figure into the test output, even when pytest captures it."""
    with capsys.disabled():
        print(f"\n[drill] {text}")
