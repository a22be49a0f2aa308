"""The one messenger-neutral entry point: every event from every transport comes here."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from handlers.accounts import Dialog, get_or_create_account
from handlers.citizen import dialog as citizen_dialog
from handlers.context import Services
from handlers.events import Event, IncomingMessage, Reply, Response
from handlers.flood import count_message
from handlers.i18n import translator
from handlers.outbox import enqueue
from handlers.staff import dialog as staff_dialog
from handlers.turn import Turn
from storage.db import is_transient
from storage.models import ProcessedUpdate

log = logging.getLogger(__name__)


class TemporarilyUnavailable(Exception):
    """The database did not answer (locked past the busy timeout, restarting, unreachable).
    Nothing of the turn was committed: the caller may run the same event again."""


class Core:
    def __init__(self, services: Services) -> None:
        self.services = services
        # Staff click through long dialogs (/register is ~15 steps); the flood guard is for
        # anonymous noise, so accounts seen as staff are not throttled by it.
        self._staff: set[tuple[str, str]] = set()

    async def admit(self, event: Event) -> Response | None:
        """The cheap check that runs before anything is downloaded: a refusal, or None.

        The count is kept in the database, so the limit holds across processes. The polite
        refusal goes out once per burst, through the outbox like every other message.
        """
        key = (str(event.user.platform), event.user.user_id)
        if not event.is_private or key in self._staff:
            return None
        services = self.services
        try:
            async with services.sessions() as session, session.begin():
                verdict = await count_message(session, key, services.now(),
                                              services.flood_limit_per_minute)
                if verdict.allowed:
                    return None
                if not verdict.warn:
                    return Response()
                reply = Reply(translator(event.language_code)("flood.slow_down"))
                enqueue(session, event.chat, reply, audience="reply", now=services.now())
        except Exception as error:
            if is_transient(error):
                raise TemporarilyUnavailable from error
            raise
        return Response([reply], queued=True)

    async def handle(self, event: Event) -> Response:
        """One turn. Raises TemporarilyUnavailable when the database did not answer."""
        try:
            return await self._handle(event)
        except Exception as error:
            if is_transient(error):
                raise TemporarilyUnavailable from error
            if not isinstance(error, SQLAlchemyError):
                raise
            # A bug, not an outage: nothing of this turn was committed, so nothing stored is
            # lost; the user is told to try again.
            log.exception("database error while handling %s event", event.user.platform)
            return await self._apology(event)

    async def _apology(self, event: Event) -> Response:
        reply = Reply(translator(event.language_code)("error.temporary"))
        if not event.is_private:
            return Response()
        try:
            async with self.services.sessions() as session, session.begin():
                enqueue(session, event.chat, reply, audience="reply", now=self.services.now())
        except SQLAlchemyError:
            return Response([reply])  # the transport sends it directly, once
        return Response([reply], queued=True)

    async def _handle(self, event: Event) -> Response:
        services = self.services
        turn: Turn | None = None
        try:
            async with services.sessions() as session, session.begin():
                try:
                    async with session.begin_nested():
                        session.add(ProcessedUpdate(platform=str(event.user.platform),
                                                    update_key=event.update_key,
                                                    processed_at=services.now()))
                except IntegrityError:
                    log.info("duplicate %s update ignored", event.user.platform)
                    return Response()
                account = await get_or_create_account(session, event.user, event.chat,
                                                      event.language_code, services.now())
                if account.staff_id is not None:
                    self._staff.add((str(event.user.platform), event.user.user_id))
                if account.blocked_bot_at is not None and event.is_private:
                    account.blocked_bot_at = None  # writing to us again: unblocked
                dialog = await Dialog.load(session, account.id, services.now())
                turn = Turn(session=session, services=services, event=event, account=account,
                            dialog=dialog, t=translator(account.locale))
                message = event if isinstance(event, IncomingMessage) else None
                if message is not None and message.problem and event.is_private:
                    turn.say(message.problem)  # e.g. a photo too large: said before the rest
                nothing_else = message is not None and message.problem and message.empty
                # Staff matters first (invites, group bindings, task cards), then the citizen.
                if not nothing_else and not await staff_dialog.handle(turn):
                    if not event.is_private:
                        return Response()  # group chats: only staff commands are answered
                    await citizen_dialog.handle(turn)
                # The replies are durable like every other message: queued with the turn.
                audience = "reply" if event.is_private else "group_reply"
                if not turn.keep_out_of_outbox:
                    for reply in turn.replies:
                        enqueue(session, event.chat, reply, audience=audience, now=turn.now)
        except BaseException:
            if turn is not None:
                await asyncio.to_thread(_delete, services, turn.saved_files)
            raise
        await asyncio.to_thread(_delete, services, turn.files_to_delete)
        # After the commit, never before: the sender must see what this turn queued.
        services.on_outbox()
        return Response(turn.replies, notice=turn.notice, queued=not turn.keep_out_of_outbox)


def _delete(services: Services, paths: list[str]) -> None:
    for path in paths:
        services.files.delete(path)
