"""The one messenger-neutral entry point: every event from every transport comes here."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from handlers.accounts import Dialog, get_or_create_account
from handlers.citizen import dialog as citizen_dialog
from handlers.context import Services
from handlers.events import Event, Reply, Response
from handlers.flood import FloodGuard
from handlers.i18n import translator
from handlers.staff import dialog as staff_dialog
from handlers.turn import Turn
from storage.models import ProcessedUpdate

log = logging.getLogger(__name__)


class Core:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.flood = FloodGuard(services.flood_limit_per_minute)
        # Staff click through long dialogs (/register is ~15 steps); the flood guard is for
        # anonymous noise, so accounts seen as staff are not throttled by it.
        self._staff: set[tuple[str, str]] = set()
        # Events of one user are handled one at a time (albums arrive as parallel updates).
        self._locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def handle(self, event: Event) -> Response:
        key = (str(event.user.platform), event.user.user_id)
        if event.is_private and key not in self._staff and not self.flood.allow(key):
            if self.flood.first_refusal(key):
                return Response([Reply(translator(event.language_code)("flood.slow_down"))])
            return Response()
        async with self._locks[key]:
            try:
                return await self._handle(event)
            except SQLAlchemyError:
                # A database hiccup: nothing of this turn was committed, so nothing stored is
                # lost; the user is told to try again.
                log.exception("database error while handling %s event", event.user.platform)
                return Response([Reply(translator(event.language_code)("error.temporary"))])

    async def _handle(self, event: Event) -> Response:
        services = self.services
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
            dialog = await Dialog.load(session, account.id, services.now())
            turn = Turn(session=session, services=services, event=event, account=account,
                        dialog=dialog, t=translator(account.locale))
            # Staff matters first (invites, group bindings, task cards), then the citizen.
            if not await staff_dialog.handle(turn):
                if not event.is_private:
                    return Response()  # group chats: only staff commands are answered
                await citizen_dialog.handle(turn)
        # After the commit, never before: the sender must see what this turn queued.
        services.on_outbox()
        return Response(turn.replies, notice=turn.notice)
