"""152-ФЗ: what is stored about me (/privacy) and withdrawal of consent (/forget)."""

from __future__ import annotations

from sqlalchemy import func, select, update

from handlers import payloads
from handlers.accounts import active_consent
from handlers.events import Button, Reply
from handlers.formatting import local_datetime
from handlers.turn import Turn
from storage.models import Attachment, Citizen, Consent, Item

ERASED_TEXT = "[удалено по отзыву согласия]"


async def describe(turn: Turn) -> Reply:
    t, tz = turn.t, turn.services.tz
    consent = await active_consent(turn.session, turn.account.id)
    lines = [t("privacy.account", platform=t(f"channel.{turn.account.platform}"),
               user_id=turn.account.user_id)]
    if consent is None:
        lines.append(t("privacy.no_consent"))
        return Reply("\n".join(lines), title=t("privacy.title"))
    lines.append(t("privacy.consent", when=local_datetime(consent.given_at, tz),
                   version=consent.policy_version))
    citizen = (await turn.session.get(Citizen, turn.account.citizen_id)
               if turn.account.citizen_id else None)
    if citizen is not None:
        lines.append(t("privacy.name", name=citizen.name or "—"))
        for key, value in (("phone", citizen.phone), ("email", citizen.email),
                           ("postal_address", citizen.postal_address)):
            if value:
                lines.append(t(f"privacy.{key}", value=value))
        numbers = (await turn.session.scalars(
            select(Item.number).where(Item.citizen_id == citizen.id).order_by(Item.id))).all()
        photos = await turn.session.scalar(
            select(func.count(Attachment.id)).join(Item, Attachment.item_id == Item.id)
            .where(Item.citizen_id == citizen.id))
        lines.append(t("privacy.items", count=len(numbers), numbers=", ".join(numbers) or "—"))
        lines.append(t("privacy.photos", count=photos or 0))
    lines.append(t("privacy.how_to_forget"))
    return Reply("\n".join(lines), title=t("privacy.title"))


def forget_question(turn: Turn) -> Reply:
    t = turn.t
    return Reply(t("forget.question"), buttons=[
        [Button(t("forget.yes"), payloads.make("forget", "yes"))],
        [Button(t("forget.no"), payloads.make("forget", "no"))]])


async def forget(turn: Turn) -> None:
    """Withdraw consent: names, contacts, texts and photos go; topics, dates and statuses stay
    for the statistics."""
    now = turn.now
    await turn.session.execute(update(Consent).where(Consent.account_id == turn.account.id,
                                                     Consent.withdrawn_at.is_(None))
                               .values(withdrawn_at=now))
    citizen_id = turn.account.citizen_id
    if citizen_id is not None:
        citizen = await turn.session.get(Citizen, citizen_id)
        if citizen is not None:
            citizen.name = citizen.phone = citizen.email = citizen.postal_address = None
            citizen.anonymised_at = now
        item_ids = select(Item.id).where(Item.citizen_id == citizen_id)
        attachments = (await turn.session.scalars(
            select(Attachment).where(Attachment.item_id.in_(item_ids)))).all()
        for attachment in attachments:
            turn.services.files.delete(attachment.path)
            await turn.session.delete(attachment)
        await turn.session.execute(
            update(Item).where(Item.citizen_id == citizen_id)
            .values(text=ERASED_TEXT, reply_account_id=None, updated_at=now))
    turn.account.citizen_id = None
    turn.dialog.reset(now)
    turn.reply(Reply(turn.t("forget.done"), remove_menu=True))
