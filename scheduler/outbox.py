"""Durable delivery: the outbox sender.

Every message the bot sends is an outbox row written in the same transaction as the change
that caused it. The sender delivers rows chat by chat:
- per-chat order among the rows that are due: a row held for later (`not_before`, e.g. an
  escalation waiting for 09:00) never blocks one that is due now, while a row waiting for a
  retry does block the later rows of its chat, so they never overtake it;
- a row is claimed with a conditional UPDATE (a lease), so two processes never send it at
  once, and a chat is served by one task of a process at a time;
- on PostgreSQL, where several `mcu worker` copies sweep at once, a sweep claims the head of
  each chat's due queue with SELECT … FOR UPDATE SKIP LOCKED: the workers divide the chats
  between them instead of all trying the same ones, and a row another worker is claiming is
  skipped, never waited for. A claimed head is then renewed by its claim (the exact lease
  written), so only the sweep that claimed it delivers it, and the chat's later rows follow
  it in order under the same per-row claims as on SQLite;
- each visible part of a row (photo, album, text part) is marked as it arrives
  (`parts_sent`; the last by the row's `sent` mark), so a retry resumes after it and a part
  is never sent twice;
- a delivered row's payload is redacted at once: no personal data stays in sent messages.

A crash between a part's send and its mark can repeat that one part after the lease expires
(at-least-once; VK drops the repeat by random_id, Telegram has no idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import weakref
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Executable, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement

from handlers.context import Services
from handlers.events import DeliveryError, Progress, Reply
from handlers.outbox import redacted_payload
from handlers.staff.digest import digest_reply
from scheduler.digest import Digest
from scheduler.digest import plan as plan_digest
from scheduler.limits import RateLimiter
from scheduler.metrics import OUTBOX_FAILED, OUTBOX_SENT, RATE_LIMITED
from scheduler.shared_limits import SharedRateLimiter
from storage.db import autocommit, is_transient
from storage.models import Account, OutboxMessage

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
RETRY_WINDOW = timedelta(hours=24)
CHATS_PER_SWEEP = 500
ROWS_PER_CHAT = 50
CONCURRENT_CHATS = 16
CLAIMS_PER_SWEEP = 100  # PostgreSQL: chat heads one sweep claims (the rest is for other workers)
MARK_RETRY_DELAYS = (0.2, 0.5, 1, 2, 4, 8, 15, 15, 15)  # about a minute in all
INLINE_WAIT = 0.05  # seconds a chat's own limit is waited out in line rather than later
# Replies answer the user who just wrote (in a private chat or a group); the rest are
# notifications nobody asked for at that moment.
REPLY_AUDIENCES = frozenset({"reply", "group_reply"})
GROUP_AUDIENCES = frozenset({"group", "group_reply"})
PERSONAL_AUDIENCES = frozenset({"reply", "citizen"})  # a private chat is a messenger id


def backoff(attempts: int) -> timedelta:
    """Exponential back-off with jitter: 2 s, 4 s, 8 s … capped at 15 minutes."""
    base = min(2 ** attempts, 900)
    return timedelta(seconds=base * random.uniform(0.5, 1.0))


@dataclass(frozen=True)
class OutboxCounts:
    due: int
    held: int
    failed: int


async def outbox_counts(services: Services, now: datetime) -> OutboxCounts:
    """What `mcu jobs list` shows for the outbox: due now, held for later, failed."""
    async with services.readers() as session:
        pending = OutboxMessage.status == "pending"
        due = await session.scalar(select(func.count()).where(
            pending, OutboxMessage.not_before <= now))
        held = await session.scalar(select(func.count()).where(
            pending, OutboxMessage.not_before > now))
        failed = await session.scalar(select(func.count()).where(
            OutboxMessage.status.in_(("failed", "undeliverable"))))
    return OutboxCounts(due or 0, held or 0, failed or 0)


class MarkNotWritten(Exception):
    """A delivery happened, but the database would not record it."""


# The statements of every delivery, built once: building one cost about as much as running
# it. Their values are bound at execution.
_QUEUE = (select(OutboxMessage)
          .where(OutboxMessage.platform == bindparam("platform"),
                 OutboxMessage.chat_id == bindparam("chat_id"),
                 OutboxMessage.status == "pending",
                 OutboxMessage.not_before <= bindparam("now"))
          .order_by(OutboxMessage.id).limit(ROWS_PER_CHAT))


def _unclaimed(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """Nobody holds the row: never claimed, or the claim expired before `now`."""
    return or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now)


# Pending and not claimed by anyone else: no claim, an expired one, or `mine` (NULL: none).
_CLAIMABLE = (OutboxMessage.id == bindparam("row_id"), OutboxMessage.status == "pending",
              or_(_unclaimed(bindparam("now")), OutboxMessage.claimed_until == bindparam("mine")))
_LOCK_CLAIMABLE = select(OutboxMessage.id).where(*_CLAIMABLE).with_for_update(skip_locked=True)
_CLAIM = update(OutboxMessage).where(*_CLAIMABLE).values(claimed_until=bindparam("lease"))
# A delivered row keeps neither its content nor a citizen's chat id.
_SENT_VALUES = {"status": "sent", "sent_at": bindparam("sent_time"),
                "attempts": bindparam("attempt_count"), "claimed_until": None,
                "payload": bindparam("no_payload")}
_SENT = update(OutboxMessage).where(OutboxMessage.id == bindparam("row_id")).values(
    **_SENT_VALUES)
_SENT_FORGETTING_CHAT = update(OutboxMessage).where(
    OutboxMessage.id == bindparam("row_id")).values(**_SENT_VALUES, chat_id="")


class OutboxSender:
    def __init__(self, services: Services, transports: Mapping[str, object] | None = None,
                 limiter: RateLimiter | SharedRateLimiter | None = None,
                 idle_interval: float = 5.0) -> None:
        self.services = services
        self.transports: Mapping[str, object] = transports or {}
        self.limiter = limiter or RateLimiter()
        self.idle_interval = idle_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._chat_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary())
        # Platforms whose last delivery failed transiently: the first success after that
        # makes the waiting rows due at once instead of after their back-off.
        self._degraded: set[str] = set()
        # PostgreSQL: chat heads this process's sweep claimed, with the lease it wrote.
        self._claimed: dict[int, datetime] = {}
        # Chats left until their own limit allows the next message, and their deliveries.
        self._later: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._serving: set[asyncio.Task[int]] = set()
        self._later_gate = asyncio.Semaphore(CONCURRENT_CHATS)
        # Rows of a digest the messenger refused for good: each goes as its own card.
        self._single: set[int] = set()

    def wake(self) -> None:
        self._wake.set()

    def serve_chats(self, chats: set[tuple[str, str]]) -> None:
        """Chats a turn just queued messages for (a head's card): each is served by a task
        of its own right away, so the card asks for its slot just after the commit instead
        of waiting for a sweep to reach its chat behind every chat queued before it. A chat
        already waiting out its own limit is left to that wait: the new card then joins the
        digest. Without the running sender, the sweep is woken as before."""
        if self._task is None:
            self.wake()
            return
        self.serve_now(chats)

    def serve_now(self, chats: Iterable[tuple[str, str]]) -> None:
        """Serve these chats now, each in a task of its own (as many at once as a sweep
        serves); a chat already waiting out its own limit is left to that wait."""
        for platform, chat_id in chats:
            if (platform, chat_id) not in self._later:
                self._serve_later(platform, chat_id)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="outbox-sender")

    async def stop(self) -> None:
        for handle in self._later.values():
            handle.cancel()
        self._later.clear()
        for task in list(self._serving):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            # Cleared before the sweep: a wake-up that arrives during it is not lost.
            self._wake.clear()
            try:
                sent = await self.sweep()
            except Exception:  # keep delivering after a database hiccup
                log.exception("outbox sweep failed")
                sent = 0
            if sent:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_interval):
                    await self._wake.wait()

    async def sweep(self, now: datetime | None = None) -> int:
        """Deliver what is due in every chat; returns how many rows were delivered."""
        now = now or self.services.now()
        if self._postgres:
            chats = await self._claim_heads(now)
        else:
            async with self.services.readers() as session:  # reads only: no write lock
                chats = [(p, c) for p, c in (await session.execute(
                    select(OutboxMessage.platform, OutboxMessage.chat_id)
                    .where(*self._due(now))
                    .group_by(OutboxMessage.platform, OutboxMessage.chat_id)
                    .order_by(func.min(OutboxMessage.id)).limit(CHATS_PER_SWEEP))).all()]
        gate = asyncio.Semaphore(CONCURRENT_CHATS)

        async def serve(platform: str, chat_id: str) -> int:
            async with gate:
                return await self.deliver_chat(platform, chat_id, now)

        try:
            return sum(await asyncio.gather(*(serve(p, c) for p, c in chats)))
        finally:
            if self._claimed:  # heads claimed but not served (a stop): free them now
                await asyncio.shield(self._unclaim_heads())

    def _due(self, now: datetime) -> tuple[ColumnElement[bool], ...]:
        """Pending rows of this sender's platforms that may go at `now` and nobody holds."""
        return (OutboxMessage.status == "pending",
                OutboxMessage.platform.in_(list(self.transports)),
                OutboxMessage.not_before <= now, OutboxMessage.next_attempt_at <= now,
                _unclaimed(now))

    @property
    def _postgres(self) -> bool:
        bind = self.services.sessions.kw.get("bind")
        return bind is not None and bind.dialect.name == "postgresql"

    async def _claim_heads(self, now: datetime) -> list[tuple[str, str]]:
        """PostgreSQL: claim the first due row of chats no other worker is serving, skipping
        rows another transaction has locked; returns those chats, oldest first."""
        if not self.transports:
            return []
        earlier = aliased(OutboxMessage)
        lease = max(now, self.services.now()) + LEASE
        async with self.services.sessions() as session, session.begin():
            heads = (await session.execute(
                select(OutboxMessage.id, OutboxMessage.platform, OutboxMessage.chat_id)
                .where(*self._due(now),
                       # the head of its chat's due queue: no earlier due row is pending
                       ~exists().where(earlier.platform == OutboxMessage.platform,
                                       earlier.chat_id == OutboxMessage.chat_id,
                                       earlier.status == "pending",
                                       earlier.not_before <= now,
                                       earlier.id < OutboxMessage.id))
                .order_by(OutboxMessage.id).limit(CLAIMS_PER_SWEEP)
                .with_for_update(skip_locked=True))).all()
            if not heads:
                return []
            await session.execute(update(OutboxMessage)
                                  .where(OutboxMessage.id.in_([h.id for h in heads]))
                                  .values(claimed_until=lease))
        for head in heads:
            self._claimed[head.id] = lease
        return [(head.platform, head.chat_id) for head in heads]

    async def _unclaim_heads(self) -> None:
        claimed, self._claimed = self._claimed, {}
        try:
            async with self.services.sessions() as session, session.begin():
                for row_id, lease in claimed.items():
                    await session.execute(update(OutboxMessage).where(
                        OutboxMessage.id == row_id, OutboxMessage.claimed_until == lease)
                        .values(claimed_until=None))
        except Exception as error:  # they expire by themselves after LEASE
            log.warning("outbox: claims not released (%s)", type(error).__name__)

    async def deliver_chat(self, platform: str, chat_id: str,
                           now: datetime | None = None) -> int:
        """Deliver the due rows of one chat in order; stop at the first that must wait.

        Transports call this right after a turn's commit, so a reply reaches the user in the
        same turn when the messenger is healthy, and is retried in order when it is not.
        """
        if platform not in self.transports:
            return 0
        key = (platform, chat_id)
        lock = self._chat_locks.get(key)
        if lock is None:
            lock = self._chat_locks[key] = asyncio.Lock()
        async with lock:
            now = now or self.services.now()
            text_limit = self.services.capabilities_of(platform).text_limit
            sent = 0
            while True:
                rows, head_claimed = await self._queue(platform, chat_id, now, text_limit)
                index = 0
                while index < len(rows):
                    row = rows[index]
                    if index > 0 or not head_claimed:  # else just checked and claimed
                        if row.next_attempt_at > now or self._come_back_later(row):
                            return sent  # in back-off, or the chat's own limit says later
                        digest = plan_digest(rows[index:], now, platform, text_limit,
                                             frozenset(self._single))
                        if digest is not None:
                            if not await self._deliver_digest(digest, now):
                                return sent
                            sent += len(digest.rows)
                            index += len(digest.rows)
                            continue
                        if not await self._claim(row.id, now):
                            return sent  # another process serves this chat
                    if not await self._deliver(row, now):
                        return sent
                    sent += 1
                    index += 1
                if len(rows) < ROWS_PER_CHAT:
                    return sent

    async def _queue(self, platform: str, chat_id: str, now: datetime,
                     text_limit: int) -> tuple[list[OutboxMessage], bool]:
        """The chat's due rows in order, and whether its first row was claimed with them:
        when that row goes out now and by itself (the usual reply after a turn), the read
        and the claim are one short transaction instead of two."""
        async with self.services.urgent() as session, session.begin():
            rows = list((await session.scalars(
                _QUEUE, {"platform": platform, "chat_id": chat_id, "now": now})).all())
            if not rows:
                return rows, False
            head = rows[0]
            if (head.next_attempt_at > now or self._come_back_later(head)
                    or plan_digest(rows, now, platform, text_limit,
                                   frozenset(self._single)) is not None):
                return rows, False
            return rows, await self._claim_in(session, head.id, now)

    def _come_back_later(self, row: OutboxMessage) -> bool:
        """While the sender runs, a chat whose own limit (1 message/s in a Telegram chat, a
        group's 20 a minute) holds its next row is served again by itself when the limit
        allows it, instead of holding up every other chat of the sweep; cards that arrive
        meanwhile then go out together as one digest. A one-off sweep (a CLI flush, a test)
        waits in line instead, so it delivers everything that is due."""
        if self._task is None:
            return False
        wait = self.limiter.chat_wait(row.platform, row.chat_id,
                                      group=row.audience in GROUP_AUDIENCES,
                                      direct=row.audience in REPLY_AUDIENCES)
        if wait <= INLINE_WAIT:
            return False
        key = (row.platform, row.chat_id)
        if key not in self._later:
            self._later[key] = asyncio.get_running_loop().call_later(
                wait, self._serve_later, row.platform, row.chat_id)
        return True

    def _serve_later(self, platform: str, chat_id: str) -> None:
        """The chat's limit allows the next message now: serve it at once, by itself (a
        sweep may be busy with other chats)."""
        self._later.pop((platform, chat_id), None)
        task = asyncio.create_task(self._deliver_later(platform, chat_id),
                                   name=f"outbox-chat-{platform}")
        self._serving.add(task)
        task.add_done_callback(self._served)

    async def _deliver_later(self, platform: str, chat_id: str) -> int:
        async with self._later_gate:  # as many at once as a sweep serves
            return await self.deliver_chat(platform, chat_id)

    def _served(self, task: asyncio.Task[int]) -> None:
        self._serving.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery to a waiting chat failed: %s", type(task.exception()).__name__)
            self.wake()  # the sweep picks the chat up again

    async def _claim(self, row_id: int, now: datetime) -> bool:
        async with self.services.urgent() as session, session.begin():
            return await self._claim_in(session, row_id, now)

    async def _claim_in(self, session: AsyncSession, row_id: int, now: datetime) -> bool:
        # The lease runs from the real time: a sweep's `now` may be minutes old by the time a
        # long chat queue reaches this row, and a lease already expired would let another
        # process send the row again.
        now = max(now, self.services.now())
        # `mine`: our sweep claimed this head; renew exactly that claim.
        values = {"row_id": row_id, "now": now, "mine": self._claimed.pop(row_id, None),
                  "lease": now + LEASE}
        # PostgreSQL: never wait for a row another worker is claiming at this moment.
        if self._postgres and await session.scalar(_LOCK_CLAIMABLE, values) is None:
            return False
        result = await session.execute(_CLAIM, values)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def _deliver(self, row: OutboxMessage, now: datetime) -> bool:
        transport = self.transports[row.platform]
        group = row.audience in GROUP_AUDIENCES

        def slot() -> AbstractAsyncContextManager[None]:
            return self.limiter.slot(row.platform, row.chat_id, group=group,
                                     direct=row.audience in REPLY_AUDIENCES)

        async def mark(parts: int) -> None:
            row.parts_sent = parts
            await self._write(update(OutboxMessage).where(OutboxMessage.id == row.id)
                              .values(parts_sent=parts))

        progress = Progress(start=row.parts_sent, slot=slot, after_part=mark)
        try:
            await transport.send(row.chat_id, Reply.from_json(row.payload),  # type: ignore[attr-defined]
                                 dedupe_id=row.id, progress=progress)
        except DeliveryError as error:
            await self._failed(row, now, error)
            return False
        except MarkNotWritten:
            # Delivered, but the database did not take the mark: the row stays claimed, and
            # after its lease it is sent again from the last mark (at-least-once).
            log.error("outbox row %s: delivered part not marked (database unavailable)", row.id)
            return False
        except Exception as error:  # a bug or an unexpected library error: retry later
            log.exception("unexpected delivery error for outbox row %s", row.id)
            await self._failed(row, now, DeliveryError(type(error).__name__))
            return False
        # Delivered: neither the content nor a citizen's chat id is kept any longer.
        sent = _SENT_FORGETTING_CHAT if row.audience in PERSONAL_AUDIENCES else _SENT
        try:
            await self._write(sent, {"row_id": row.id, "sent_time": self.services.now(),
                                     "attempt_count": row.attempts + 1,
                                     "no_payload": redacted_payload()})
        except MarkNotWritten:
            log.error("outbox row %s: delivered but not marked (database unavailable)", row.id)
            return False
        OUTBOX_SENT.labels(platform=row.platform).inc()
        if row.platform in self._degraded:
            await self._recovered(row.platform)
        return True

    async def _deliver_digest(self, digest: Digest, now: datetime) -> bool:
        """One message for several cards due in one chat (scheduler/digest.py). Its rows are
        claimed together (all or none), marked sent and redacted together in one statement
        once the digest arrived, and all stay pending (retried together, as one digest) when
        it failed."""
        rows = digest.rows
        claimed = [row.id for row in rows]
        if not await self._claim_all(claimed, now):
            return False  # another process serves this chat
        first = rows[0]
        transport = self.transports[first.platform]
        group = first.audience in GROUP_AUDIENCES

        def slot() -> AbstractAsyncContextManager[None]:
            return self.limiter.slot(first.platform, first.chat_id, group=group)

        try:
            await transport.send(first.chat_id, digest_reply(digest.entries),  # type: ignore[attr-defined]
                                 dedupe_id=digest_dedupe_id(claimed), progress=Progress(slot=slot))
        except DeliveryError as error:
            await self._digest_failed(rows, now, error)
            return False
        except Exception as error:  # a bug or an unexpected library error: retry later
            log.exception("unexpected delivery error for a digest of outbox rows %s…", first.id)
            await self._digest_failed(rows, now, DeliveryError(type(error).__name__))
            return False
        try:
            await self._write(update(OutboxMessage).where(OutboxMessage.id.in_(claimed)).values(
                status="sent", sent_at=self.services.now(), attempts=OutboxMessage.attempts + 1,
                claimed_until=None, payload=redacted_payload()))
        except MarkNotWritten:
            log.error("digest of outbox rows %s…: delivered but not marked (database "
                      "unavailable)", first.id)
            return False
        OUTBOX_SENT.labels(first.platform).inc(len(rows))
        if first.platform in self._degraded:
            await self._recovered(first.platform)
        return True

    async def _claim_all(self, row_ids: list[int], now: datetime) -> bool:
        """Claim the rows of a digest in one statement (one claim per row would queue each
        behind every turn for SQLite's write lock); all of them or none. A head our own
        sweep claimed (PostgreSQL) counts as free, as in `_claim`."""
        now = max(now, self.services.now())  # the lease runs from the real time (`_claim`)
        mine = [self._claimed.pop(row_id) for row_id in row_ids if row_id in self._claimed]
        unclaimed = _unclaimed(now)
        if mine:
            unclaimed = or_(unclaimed, OutboxMessage.claimed_until.in_(mine))
        async with self.services.urgent() as session, session.begin():
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(row_ids), OutboxMessage.status == "pending",
                       unclaimed)
                .values(claimed_until=now + LEASE))
            if result.rowcount == len(row_ids):  # type: ignore[attr-defined]
                return True
            await session.rollback()  # another process took some: leave them all to it
            return False

    async def _digest_failed(self, rows: list[OutboxMessage], now: datetime,
                             error: DeliveryError) -> None:
        """Every row of a failed digest stays pending with one next attempt, so the retry
        is one digest again; a digest refused for good is not tried again: its cards go
        one by one (each then succeeds or fails on its own)."""
        first = rows[0]
        ids = [row.id for row in rows]
        values: dict[str, object] = {"attempts": OutboxMessage.attempts + 1,
                                     "claimed_until": None, "last_error": str(error)[:500]}
        kind = "retry"
        if error.blocked:
            values["status"] = kind = "undeliverable"
        elif error.permanent:
            self._single.update(ids)
            if len(self._single) > 10_000:
                self._single = set(ids)
            self.wake()
        else:
            values["next_attempt_at"] = self._retry_at(
                first.platform, max(row.attempts for row in rows) + 1, error, now)
        OUTBOX_FAILED.labels(first.platform, kind).inc()
        count_rate_limited(first.platform, error)
        log.warning("delivery of a digest of %d outbox rows (%s…) failed (%s): %s", len(rows),
                    first.id, values.get("status", "will retry"), error)
        try:
            await self._write(update(OutboxMessage).where(OutboxMessage.id.in_(ids))
                              .values(**values))
            expired = [row.id for row in rows if now - row.created_at > RETRY_WINDOW]
            if expired and not error.blocked:
                await self._write(update(OutboxMessage).where(OutboxMessage.id.in_(expired))
                                  .values(status="failed"))
            if error.blocked:
                await self._mark_blocked(first.platform, first.chat_id, now)
        except MarkNotWritten:  # the claims expire and the rows are tried again
            log.error("digest of outbox rows %s…: failure not recorded (database unavailable)",
                      first.id)

    async def _write(self, statement: Executable,
                     parameters: dict[str, object] | None = None) -> None:
        """A mark after a delivery, retried while the database is away (SQLite locked past
        its busy timeout, PostgreSQL restarting): losing it would send the part again."""
        engine = self.services.sessions.kw["bind"]
        for delay in (*MARK_RETRY_DELAYS, None):
            try:
                # One statement: committed by itself, without BEGIN and COMMIT round trips.
                async with autocommit(engine, urgent=True) as connection:
                    await connection.execute(statement, parameters)
                return
            except Exception as error:
                if not is_transient(error):
                    raise
                if delay is None:
                    raise MarkNotWritten from error
                await asyncio.sleep(delay)

    async def _recovered(self, platform: str) -> None:
        """The messenger answers again: rows waiting out their back-off are due now."""
        self._degraded.discard(platform)
        now = self.services.now()
        async with self.services.sessions() as session, session.begin():
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.platform == platform, OutboxMessage.status == "pending",
                       OutboxMessage.attempts > 0, OutboxMessage.next_attempt_at > now)
                .values(next_attempt_at=now))
        self.wake()

    async def _failed(self, row: OutboxMessage, now: datetime, error: DeliveryError) -> None:
        attempts = row.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "claimed_until": None,
                                     "last_error": str(error)[:500]}
        if error.blocked:
            values["status"] = "undeliverable"
        elif error.permanent or now - row.created_at > RETRY_WINDOW:
            values["status"] = "failed"
        else:
            values["next_attempt_at"] = self._retry_at(row.platform, attempts, error, now)
        log.warning("delivery of outbox row %s failed (%s): %s", row.id,
                    values.get("status", "will retry"), error)
        OUTBOX_FAILED.labels(platform=row.platform,
                             kind=str(values.get("status", "retry"))).inc()
        count_rate_limited(row.platform, error)
        try:
            await self._write(update(OutboxMessage).where(OutboxMessage.id == row.id)
                              .values(**values))
            if error.blocked:
                await self._mark_blocked(row.platform, row.chat_id, now)
        except MarkNotWritten:  # the claim expires and the row is tried again
            log.error("outbox row %s: failure not recorded (database unavailable)", row.id)

    def _retry_at(self, platform: str, attempts: int, error: DeliveryError,
                  now: datetime) -> datetime:
        """When a transiently failed row (or digest) is tried again. A «too many requests»
        pauses the whole platform for its retry_after; any other failure marks the platform
        degraded, so the first success makes the waiting rows due at once."""
        if error.retry_after is not None:
            self.limiter.pause(platform, error.retry_after)
            return now + timedelta(seconds=error.retry_after)
        self._degraded.add(platform)
        return now + backoff(attempts)

    async def _mark_blocked(self, platform: str, chat_id: str, now: datetime) -> None:
        """The citizen blocked the bot: remember it, so staff see it on the card."""
        await self._write(update(Account).where(Account.platform == platform,
                                                Account.chat_id == chat_id)
                          .values(blocked_bot_at=now))


def count_rate_limited(platform: str, error: DeliveryError) -> None:
    # Telegram 429 and VK 6 carry retry_after; VK 9 is flood control for one user.
    if error.retry_after is not None or str(error) == "VK error 9":
        RATE_LIMITED.labels(platform=platform).inc()


def digest_dedupe_id(row_ids: list[int]) -> int:
    """The same rows make the same id (VK drops a repeat of the same digest); other rows
    make another, so a digest of more cards is never taken for a repeat."""
    digest = hashlib.sha256(",".join(map(str, row_ids)).encode()).digest()
    return int.from_bytes(digest[:6], "big")
