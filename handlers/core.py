"""The one messenger-neutral entry point: every event from every transport comes here."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError

from handlers.accounts import Dialog, create_account
from handlers.citizen import dialog as citizen_dialog
from handlers.context import Services
from handlers.events import Event, IncomingMessage, Reply, Response
from handlers.flood import claim_warning, count_message
from handlers.i18n import translator
from handlers.outbox import enqueue, queued_chats
from handlers.prepare import Prepared, prepare
from handlers.staff import dialog as staff_dialog
from handlers.staff.answer_files import wants_answer_document
from handlers.turn import Turn
from storage.chat_lock import lock_chat
from storage.db import is_transient
from storage.turns import claim_update, load_writer

log = logging.getLogger(__name__)


class TemporarilyUnavailable(Exception):
    """The database did not answer (locked past the busy timeout, restarting, unreachable).
    Nothing of the turn was committed: the caller may run the same event again."""


# Turns of one process that hold a database connection at once. A burst of users must not
# take every connection of the pool (15 by default) while they wait for the write lock: the
# deliveries of the turns already committed need connections too.
TURNS_AT_ONCE = 8


class Core:
    def __init__(self, services: Services) -> None:
        self.services = services
        # Staff click through long dialogs (/register is ~15 steps); the flood guard is for
        # anonymous noise, so accounts seen as staff are not throttled by it.
        self._staff: set[tuple[str, str]] = set()
        self._turns = asyncio.Semaphore(TURNS_AT_ONCE)

    async def admit(self, event: Event) -> Response | None:
        """The cheap check that runs before anything is downloaded: a refusal, or None.

        The count is kept in the database, so the limit holds across processes: one
        statement that commits by itself. The polite refusal goes out once per burst, through
        the outbox like every other message.
        """
        key = (str(event.user.platform), event.user.user_id)
        if not event.is_private or key in self._staff:
            return None
        services = self.services
        try:
            verdict = await count_message(services.sessions.kw["bind"], key, services.now(),
                                          services.flood_limit_per_minute)
            if verdict.allowed:
                return None
            if not verdict.warn:
                return Response()
            reply = Reply(translator(event.language_code)("flood.slow_down"))
            async with services.sessions() as session, session.begin():
                if not await claim_warning(session, key, verdict):
                    return Response()
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
        # Downloads and disk writes happen here, before the write lock is taken.
        prepared = await prepare(services, event, wants_answer_document)
        try:
            async with self._turns:
                turn = await self._turn(event, prepared)
        except BaseException:
            await asyncio.to_thread(_delete, services, prepared.paths())
            raise
        kept = turn.kept if turn is not None else set()
        # After the commit: files nobody refers to, and those the turn let go of.
        garbage = [path for path in prepared.paths() if path not in kept]
        garbage += turn.files_to_delete if turn is not None else []
        if garbage:
            await asyncio.to_thread(_delete, services, garbage)
        if turn is None:
            return Response()
        if turn.renders:
            await self._render_later(turn)
        # After the commit, never before: the sender must see what this turn queued. Only
        # when there is more than the reply chat, which the channel delivers itself.
        if turn.renders or turn.keep_out_of_outbox:
            services.on_outbox()
        elif others := _other_chats(turn):
            services.chats_queued(others)
        return Response(turn.replies, notice=turn.notice, queued=not turn.keep_out_of_outbox)

    async def _render_later(self, turn: Turn) -> None:
        """Charts and spreadsheets, rendered with no transaction open, then queued in a short
        one of their own behind the turn's replies."""
        replies: list[Reply] = []
        try:
            for render in turn.renders:
                replies += await render()
        except Exception:  # the turn is committed; the user learns the rest failed
            log.exception("rendering after the turn failed")
            replies.append(Reply(turn.t("error.temporary")))
        event = turn.event
        audience = "reply" if event.is_private else "group_reply"
        async with self.services.sessions() as session, session.begin():
            for reply in replies:
                enqueue(session, event.chat, reply, audience=audience, now=self.services.now())
        turn.replies.extend(replies)

    async def _turn(self, event: Event, prepared: Prepared) -> Turn | None:
        """The turn in one transaction; None when there was nothing to answer (a duplicate
        update, a group chat message that is no staff matter).

        An ordinary step costs the mark, one joined read, the dialog's write when it changed
        and the replies' rows (tests/test_turn_statements.py counts them)."""
        services = self.services
        platform = str(event.user.platform)
        async with services.sessions() as session, session.begin():
            await lock_chat(session, str(event.chat.platform), event.chat.chat_id)
            if not await claim_update(session, platform, event.update_key, services.now()):
                log.info("duplicate %s update ignored", event.user.platform)
                return None
            account, state, consent = await load_writer(session, platform, event.user.user_id)
            if account is None:
                account = await create_account(session, event.user, event.language_code,
                                               services.now())
            if account.staff_id is not None:
                self._staff.add((platform, event.user.user_id))
            if account.blocked_bot_at is not None and event.is_private:
                account.blocked_bot_at = None  # writing to us again: unblocked
            turn = Turn(session=session, services=services, event=event, account=account,
                        dialog=Dialog(session, account.id, state), consent=consent,
                        t=translator(account.locale), prepared=prepared)
            message = event if isinstance(event, IncomingMessage) else None
            if message is not None and message.problem and event.is_private:
                turn.say(message.problem)  # e.g. a photo too large: said before the rest
            nothing_else = message is not None and message.problem and message.empty
            # Staff matters first (invites, group bindings, task cards), then the citizen.
            if not nothing_else and not await staff_dialog.handle(turn):
                if not event.is_private:
                    return None  # group chats: only staff commands are answered
                await citizen_dialog.handle(turn)
            # The replies are durable like every other message: queued with the turn.
            audience = "reply" if event.is_private else "group_reply"
            if not turn.keep_out_of_outbox:
                for reply in turn.replies:
                    enqueue(session, event.chat, reply, audience=audience, now=turn.now)
            turn.queued_chats = set(queued_chats(session))
        return turn


def _other_chats(turn: Turn) -> set[tuple[str, str]]:
    """The chats this turn queued for besides the one the channel delivers right away (a
    head's card)."""
    chat = turn.event.chat
    return turn.queued_chats - {(str(chat.platform), chat.chat_id)}


def _delete(services: Services, paths: list[str]) -> None:
    for path in paths:
        services.files.delete(path)
