"""The task card: what staff see of an item, rendered as neutral replies."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from handlers.capabilities import MESSENGERS
from handlers.context import Services
from handlers.events import Button, Location, OutgoingDocument, OutgoingPhoto, Reply
from handlers.formatting import local_datetime, map_link, split_text, status_label
from handlers.i18n import Translator
from storage.models import Attachment, Citizen, Item


def deadline_lines(t: Translator, item: Item, tz: ZoneInfo) -> list[str]:
    lines = []
    for key, value in (("registration_due", item.registration_due),
                       ("forward_due", item.forward_due),
                       ("first_reaction_due", item.first_reaction_due),
                       ("answer_due", item.answer_due)):
        if value is not None:
            lines.append(t(f"card.{key}", when=local_datetime(value, tz)))
    return lines


def card_text(services: Services, t: Translator, item: Item, citizen: Citizen | None,
              show_personal: bool, citizen_blocked: bool = False) -> str:
    org, tz = services.org, services.tz
    lines = [
        t("card.topic", topic=org.topic_by_id[item.topic].label(t.locale)),
        t("card.kind_channel", kind=t(f"kind.{item.kind}"), channel=t(f"channel.{item.channel}")),
        t("card.block", block=org.block_by_id[item.block_id].title),
        t("card.status", status=status_label(t, item.status)),
        t("card.received", when=local_datetime(item.received_at, tz)),
        *deadline_lines(t, item, tz),
    ]
    if item.external_number:
        lines.append(t("card.external_number", number=item.external_number))
    if item.no_answer:
        lines.append(t("card.no_answer"))
    if citizen_blocked:
        lines.append(t("card.citizen_blocked"))
    if item.answer_text and item.channel not in MESSENGERS:
        key = "card.published" if item.answer_published_at else "card.not_published"
        lines.append(t(key))
    if item.draft_answer_text and item.status == "on_approval":
        lines += ["", t("card.draft_answer", answer=item.draft_answer_text)]
    elif item.answer_text:
        lines += ["", t("card.answer", answer=item.answer_text)]
    if item.address:
        lines.append(t("card.address", address=item.address))
    if item.latitude is not None and item.longitude is not None:
        lines.append(t("card.map", link=map_link(item.latitude, item.longitude)))
    if show_personal and citizen is not None and citizen.anonymised_at is None:
        who = citizen.name or t("card.citizen_unnamed")
        lines.append(t("card.citizen", name=who))
        for key, value in (("phone", citizen.phone), ("email", citizen.email),
                           ("postal_address", citizen.postal_address)):
            if value:
                lines.append(t(f"card.citizen_{key}", value=value))
    if item.post_url:
        lines.append(t("card.post_url", url=item.post_url))
    lines += ["", item.text]
    return "\n".join(lines)


def item_card(services: Services, t: Translator, item: Item, attachments: list[Attachment],
              citizen: Citizen | None, *, show_personal: bool,
              buttons: list[list[Button]] | None = None,
              citizen_blocked: bool = False, lead: str | None = None) -> list[Reply]:
    """The card as few messages as possible (Telegram allows ~1 message/s per chat): the text
    (with `lead`, why it is sent), then the photos, then the location. The buttons ride on the
    text when nothing follows it, otherwise they come last, after everything to be read."""
    title = t("card.title", number=item.number)
    text = card_text(services, t, item, citizen, show_personal, citizen_blocked)
    pieces = split_text(f"{lead}\n\n{text}" if lead else text)
    replies = [Reply(piece, title=title if i == 0 else None) for i, piece in enumerate(pieces)]
    photos = [OutgoingPhoto(services.files.path(a.path)) for a in attachments
              if a.kind == "photo"]
    if photos:
        replies.append(Reply("", photos=photos))
    for document in (a for a in attachments if a.kind == "document"):
        replies.append(Reply("", document=OutgoingDocument(services.files.path(document.path),
                                                           document.filename or "document")))
    if item.latitude is not None and item.longitude is not None:
        replies.append(Reply("", location=Location(item.latitude, item.longitude)))
    if buttons and len(replies) == len(pieces):
        replies[-1].buttons = buttons
    elif buttons:
        replies.append(Reply(t("card.actions", number=item.number), buttons=buttons))
    return replies
