"""Messenger accounts, consent records and dialog state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.events import UserRef
from handlers.i18n import normalise_locale
from storage.models import Account, Consent, DialogState


async def create_account(session: AsyncSession, user: UserRef, language_code: str | None,
                         now: datetime) -> Account:
    """A first message from this messenger account (the turn read it with
    storage.turns.load_writer and found none)."""
    # Only the technical identity is stored before consent: no name, no text.
    locale = "en" if normalise_locale(language_code) == "en" else "ru"
    account = Account(platform=str(user.platform), user_id=user.user_id,
                      chat_id=user.user_id, locale=locale, created_at=now)
    session.add(account)
    await session.flush()
    return account


async def active_consent(session: AsyncSession, account_id: int) -> Consent | None:
    return await session.scalar(
        select(Consent).where(Consent.account_id == account_id, Consent.withdrawn_at.is_(None))
        .order_by(Consent.id.desc()).limit(1))


IDLE = "idle"  # no dialog in progress


class Dialog:
    """The persisted dialog state of one account, locked for the duration of the turn.

    An account without a row is idle; the row is written only when the dialog is set (an
    INSERT the first time, then an UPDATE of what changed)."""

    def __init__(self, session: AsyncSession, account_id: int, row: DialogState | None) -> None:
        self._session = session
        self._account_id = account_id
        self._row = row

    @classmethod
    async def load(cls, session: AsyncSession, account_id: int, now: datetime) -> Dialog:
        """Another account's dialog (staff asking a citizen): the account row is locked
        first, as the citizen's own turn locks it (storage/turns.py), then the state."""
        await session.execute(select(Account.id).where(Account.id == account_id)
                              .with_for_update())
        row = await session.scalar(select(DialogState).where(DialogState.account_id == account_id)
                                   .with_for_update())
        return cls(session, account_id, row)

    @property
    def state(self) -> str:
        return self._row.state if self._row is not None else IDLE

    @property
    def data(self) -> dict[str, Any]:
        return dict(self._row.data or {}) if self._row is not None else {}

    def set(self, state: StrEnum | str, data: dict[str, Any] | None = None, *,
            now: datetime) -> None:
        # Each feature has its own Enum of states; the column keeps the plain value.
        value = state.value if isinstance(state, StrEnum) else state
        if self._row is None:
            if value == IDLE and not data:
                return  # no row is idle already
            self._row = DialogState(account_id=self._account_id, state=value,
                                    data=dict(data or {}), updated_at=now)
            self._session.add(self._row)
            return
        self._row.state = value
        # A new dict object, so SQLAlchemy sees the JSON change.
        self._row.data = dict(data or {})
        self._row.updated_at = now

    def update(self, now: datetime, **changes: Any) -> None:
        self.set(self.state, {**self.data, **changes}, now=now)

    def reset(self, now: datetime) -> None:
        self.set(IDLE, {}, now=now)
