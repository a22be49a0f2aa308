"""152-ФЗ: what is stored about me (/privacy) and withdrawal of consent (/forget)."""

from __future__ import annotations

from sqlalchemy import func, select

from handlers.accounts import active_consent
from handlers.citizen.common import menu_reply
from handlers.citizen.payloads import Forget, YesNo
from handlers.citizen.states import PrivacyState
from handlers.context import Services
from handlers.erasure import ErasureReport, erase_citizen
from handlers.erasure_cleanup import clean_up_after_commit
from handlers.events import Button, Reply
from handlers.formatting import local_date, local_datetime, status_label
from handlers.i18n import Translator
from handlers.routing import Router
from handlers.turn import Turn
from storage.models import Attachment, Citizen, Item


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
        [Button(t("forget.yes"), Forget(YesNo.YES).pack())],
        [Button(t("forget.no"), Forget(YesNo.NO).pack())]])


async def forget(turn: Turn) -> None:
    """Withdraw consent: the erasure use case, then tell the citizen exactly what is kept."""
    report = await erase_citizen(turn.session, turn.services, turn.now,
                                 account_id=turn.account.id)
    clean_up_after_commit(turn.session, turn.services, report.files)
    turn.reply(Reply(kept_text(turn.t, turn.services, report), remove_menu=True))
    # The one reply that is not kept in the outbox: a queued row would hold the chat id
    # that the erasure has just removed everywhere else. It is sent once, from memory.
    turn.keep_out_of_outbox = True


def kept_text(t: Translator, services: Services, report: ErasureReport) -> str:
    """The reply after erasure: what was removed, and each item's number, topic, dates and
    status, which stay for the statistics."""
    org, tz = services.org, services.tz
    lines = []
    for item in report.kept:
        topic = org.topic_by_id[item.topic].label(t.locale) if item.topic in org.topic_by_id \
            else item.topic
        values = {"number": item.number, "topic": topic,
                  "received": local_date(item.received_at, tz),
                  "status": status_label(t, item.status)}
        if item.answered_at is not None:
            lines.append(t("forget.kept_item_answered", answered=local_date(item.answered_at, tz),
                           **values))
        else:
            lines.append(t("forget.kept_item", **values))
    kept = "\n".join(f"• {line}" for line in lines) if lines else t("forget.kept_nothing")
    return t("forget.done", kept=kept)


router: Router[Turn] = Router("privacy")


@router.on(Forget)
async def on_forget(turn: Turn, payload: Forget) -> bool:
    if turn.dialog.state != PrivacyState.FORGET_CONFIRM:
        return False
    if payload.answer is YesNo.YES:
        await forget(turn)
        return True
    turn.dialog.reset(turn.now)
    turn.reply(menu_reply(turn, "forget.kept"))
    return True
