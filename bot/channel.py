"""What both transports share, written once: from a received update to a delivered reply.

A transport translates its update into a `Draft` (the neutral event, plus photos that are
not downloaded yet) and hands it to `Channel.process` from the user's lane. The channel:
1. asks the core to admit it (the shared flood limit) before anything is downloaded;
2. downloads the photos, refusing an oversized one with a clear answer;
3. runs the turn, retrying with back-off while the database is unavailable (nothing of a
   failed turn was committed, so running it again is safe);
4. delivers the replies, which the turn queued in the outbox, right away and in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from handlers.core import Core, TemporarilyUnavailable
from handlers.events import (
    ChatRef,
    DeliveryError,
    Event,
    IncomingMessage,
    IncomingPhoto,
    Reply,
    Response,
)
from handlers.i18n import translator
from scheduler.metrics import TURN_SECONDS, UPDATES_HANDLED

log = logging.getLogger(__name__)


def failure(error: BaseException) -> str:
    """An exception for the log: its type and where it happened, never its message, which
    may quote what a user wrote."""
    frames = traceback.extract_tb(error.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return f"{type(error).__name__} at {where}" if where else type(error).__name__


# A turn is retried while the database is away: SQLite locked past its busy timeout, a
# PostgreSQL restart. After this long the user is told to try again.
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15, 15, 15)


# Behind a webhook the messenger re-sends what we did not acknowledge: a short wait for the
# database, then the update is refused (HTTP 5xx) and comes again later.
REDELIVERED_RETRY_DELAYS = (0.5, 1, 2, 4)


class NotCommitted(Exception):
    """The turn could not be committed (the database is away); nothing of it was stored.
    Raised only by a channel whose messenger re-sends unacknowledged updates."""


# What we accept from a user, in any messenger: a photo (the messenger says or the download
# shows its size) and a staff member's document (Telegram's Bot API downloads stop at 20 MB).
PHOTO_MAX_BYTES = 10 * 1024 * 1024
DOCUMENT_MAX_BYTES = 20 * 1024 * 1024


class PhotoTooLarge(Exception):
    """The messenger says (or the download shows) that the photo is over our limit."""


class PhotoSource(Protocol):
    async def fetch(self) -> IncomingPhoto:
        """Download the photo; raises PhotoTooLarge, or any error when it is unavailable."""


@dataclass
class Draft:
    event: Event
    photos: Sequence[PhotoSource] = field(default_factory=tuple)


class Deliverer(Protocol):
    async def deliver_chat(self, platform: str, chat_id: str) -> int: ...


SendOne = Callable[[str, Reply], Awaitable[None]]
Decided = Callable[[Response], Awaitable[None]]


class Channel:
    def __init__(self, core: Core, outbox: Deliverer, send: SendOne,
                 retry_delays: Sequence[float] = RETRY_DELAYS) -> None:
        self.core = core
        self.outbox = outbox
        self.send = send
        self.retry_delays = retry_delays
        # Webhooks: an update that could not be committed raises NotCommitted, so it is
        # not acknowledged and the messenger sends it again (instead of an apology).
        self.redelivered = False

    def redeliver_uncommitted(self) -> None:
        """Switch to webhook behaviour: see `redelivered`."""
        self.redelivered = True
        self.retry_delays = REDELIVERED_RETRY_DELAYS

    async def process(self, draft: Draft, decided: Decided | None = None) -> Response:
        """Handle one update to the end; never raises for a user's input or an outage.
        `decided` runs between the turn and the delivery (a button's notice goes first)."""
        event = draft.event
        platform = str(event.user.platform)
        began = time.perf_counter()
        try:
            response, outcome = await self._decide(draft)
        except NotCommitted:
            UPDATES_HANDLED.labels(platform=platform, outcome="error").inc()
            raise
        TURN_SECONDS.labels(platform=platform).observe(time.perf_counter() - began)
        UPDATES_HANDLED.labels(platform=platform, outcome=outcome).inc()
        if decided is not None:
            try:
                await decided(response)
            except Exception as error:
                log.warning("%s notice failed (%s)", event.user.platform, type(error).__name__)
        await self.deliver(event.chat, response)
        return response

    async def _decide(self, draft: Draft) -> tuple[Response, str]:
        """The turn's response and its outcome for the metrics (ok, refused, error)."""
        event = draft.event
        try:
            refusal = await self._retrying(lambda: self.core.admit(event))
            if refusal is not None:
                return refusal, "refused"
            if draft.photos:
                event = await self._with_photos(event, draft.photos)
            response = await self._retrying(lambda: self.core.handle(event))
        except TemporarilyUnavailable as error:
            if self.redelivered:
                log.error("database unavailable; %s update %s left for the messenger to "
                          "send again", event.user.platform, event.update_key)
                raise NotCommitted from error
            log.error("database unavailable; %s update %s answered with an apology",
                      event.user.platform, event.update_key)
            return self._apology(event), "error"
        except Exception as error:  # a bug in the core: a polite answer instead of silence
            log.error("core failed on %s update %s: %s", event.user.platform,
                      event.update_key, failure(error))
            return self._apology(event), "error"
        assert response is not None
        return response, "ok"

    async def _retrying(self, attempt: Callable[[], Awaitable[Response | None]]
                        ) -> Response | None:
        for delay in (*self.retry_delays, None):
            try:
                return await attempt()
            except TemporarilyUnavailable:
                if delay is None:
                    raise
                log.warning("database unavailable, retrying the turn in %ss", delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _with_photos(self, event: Event, sources: Sequence[PhotoSource]) -> Event:
        assert isinstance(event, IncomingMessage)
        photos: list[IncomingPhoto] = []
        problem: str | None = None
        for source in sources:
            try:
                photos.append(await source.fetch())
            except PhotoTooLarge:
                problem = "photo.too_large"
            except Exception as error:  # the messenger's file server failed
                log.warning("%s photo download failed (%s)", event.user.platform,
                            type(error).__name__)
                problem = problem or "photo.unavailable"
        return replace(event, photos=(*event.photos, *photos), problem=event.problem or problem)

    def _apology(self, event: Event) -> Response:
        if not event.is_private:
            return Response()
        return Response([Reply(translator(event.language_code)("error.temporary"))])

    async def deliver(self, chat: ChatRef, response: Response) -> None:
        """Queued replies go through the outbox now; the rest (the database was away) is
        sent directly, once."""
        # Behind a webhook an empty response may be a re-sent update whose turn committed
        # in a process that died before delivering: its replies are still waiting.
        if response.queued or (self.redelivered and not response.replies):
            try:
                await self.outbox.deliver_chat(str(chat.platform), chat.chat_id)
            except Exception:  # the rows stay pending; the sender's sweep retries them
                log.exception("delivery of replies to a %s chat failed", chat.platform)
        elif response.replies:
            try:
                for reply in response.replies:
                    await self.send(chat.chat_id, reply)
            except DeliveryError as error:
                log.warning("direct %s reply not delivered (%s)", chat.platform, error)
