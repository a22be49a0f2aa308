"""The citizen's report: the steps (topic, text, photos, place), the confirmation with edit,
cancel, and the registration. Each step's prompt says what it accepts."""

from __future__ import annotations

from handlers.citizen.common import main_menu, menu_reply
from handlers.citizen.payloads import (
    AllTopics,
    CancelReport,
    ChooseTopic,
    Confirm,
    ConfirmAction,
    Edit,
    Photos,
    PhotosAction,
    ReportField,
    SkipPlace,
)
from handlers.citizen.states import ReportState
from handlers.citizen.topic_choice import (
    best_suggestion,
    decline_guess,
    remember_suggestions,
    topic_screen,
)
from handlers.events import Button, IncomingMessage, Reply
from handlers.formatting import local_date, map_link
from handlers.items import NewItem
from handlers.limits import MAX_PHOTOS, TEXT_MAX, TEXT_MIN
from handlers.photos import discard_unsent, store_photos
from handlers.registration import register
from handlers.routing import Router
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Actor
from handlers.turn import Turn

ADDRESS_MIN, ADDRESS_MAX = 3, 500
REPORT_STATES = tuple(ReportState)


def topic_buttons(turn: Turn) -> list[list[Button]]:
    topics = turn.services.org.topics
    buttons = [Button(topic.label(turn.t.locale), ChooseTopic(topic.id).pack())
               for topic in topics]
    return [buttons[i:i + 2] for i in range(0, len(buttons), 2)]


def cancel_row(turn: Turn) -> list[Button]:
    return [Button(turn.t("button.cancel"), CancelReport().pack())]


def prompt(turn: Turn) -> Reply:
    """What the current step of the report accepts."""
    t = turn.t
    state, data = turn.dialog.state, turn.dialog.data
    if state == ReportState.TOPIC:
        if data.get("text"):  # the citizen wrote first: the suggestions lead
            return topic_screen(turn, cancel_row(turn))
        return Reply(t("report.ask_topic"), buttons=[*topic_buttons(turn), cancel_row(turn)])
    if state == ReportState.TEXT:
        return Reply(t("report.ask_text", min=TEXT_MIN, max=TEXT_MAX), buttons=[cancel_row(turn)])
    if state == ReportState.PHOTOS:
        count = len(data.get("photos", []))
        key = "report.ask_photos_more" if count else "report.ask_photos"
        action = PhotosAction.DONE if count else PhotosAction.SKIP
        label = t("button.done") if count else t("button.skip")
        return Reply(t(key, count=count, max=MAX_PHOTOS),
                     buttons=[[Button(label, Photos(action).pack())], cancel_row(turn)])
    if state == ReportState.PLACE:
        return Reply(t("report.ask_place"),
                     buttons=[[Button(t("button.skip"), SkipPlace().pack())], cancel_row(turn)])
    if state == ReportState.CONFIRM:
        return confirm_reply(turn)
    if state == ReportState.EDIT:
        def edit(key: str, field: ReportField) -> Button:
            return Button(t(key), Edit(field).pack())
        return Reply(t("report.edit_what"), buttons=[
            [edit("report.field.topic", ReportField.TOPIC),
             edit("report.field.text", ReportField.TEXT)],
            [edit("report.field.photos", ReportField.PHOTOS),
             edit("report.field.place", ReportField.PLACE)],
            [edit("button.back", ReportField.BACK)]])
    return menu_reply(turn, "menu.prompt")


def confirm_reply(turn: Turn) -> Reply:
    t, data, org = turn.t, turn.dialog.data, turn.services.org
    topic = org.topic_by_id[data["topic"]].label(t.locale)
    place = data.get("address") or (
        t("report.place.location", link=map_link(data["lat"], data["lon"]))
        if data.get("lat") is not None else t("report.place.none"))
    text = t("report.confirm", topic=topic, text=data["text"],
             photos=len(data.get("photos", [])), place=place)
    return Reply(text, title=t("report.confirm.title"), buttons=[
        [Button(t("button.send"), Confirm(ConfirmAction.SEND).pack())],
        [Button(t("button.edit"), Confirm(ConfirmAction.EDIT).pack()), cancel_row(turn)[0]]])


def next_step(turn: Turn) -> None:
    """Move to the first step still missing, or to the confirmation (also after an edit)."""
    data = turn.dialog.data
    if (data.get("editing") or data.get("place_done")) and "topic" in data and "text" in data:
        turn.dialog.set(ReportState.CONFIRM, data, now=turn.now)
        turn.reply(prompt(turn))
        return
    if "topic" not in data:
        state = ReportState.TOPIC
    elif "text" not in data:
        state = ReportState.TEXT
    elif not data.get("photos_done"):
        state = ReportState.PHOTOS
    elif not data.get("place_done"):
        state = ReportState.PLACE
    else:
        state = ReportState.CONFIRM
    if state == ReportState.TOPIC:
        remember_suggestions(turn, data)
    turn.dialog.set(state, data, now=turn.now)
    turn.reply(prompt(turn))


async def start_report(turn: Turn, data: dict[str, object]) -> None:
    turn.dialog.set(ReportState.TOPIC, data, now=turn.now)
    next_step(turn)


def text_fits(turn: Turn, text: str) -> bool:
    length = len(text.strip())
    if length < TEXT_MIN:
        turn.say("report.text_too_short", min=TEXT_MIN, length=length)
        return False
    if length > TEXT_MAX:
        turn.say("report.text_too_long", max=TEXT_MAX, length=length)
        return False
    return True


async def take_text(turn: Turn, message: IncomingMessage) -> None:
    if not message.text:
        if message.photos and turn.dialog.state == ReportState.TEXT:
            await store_photos(turn, message)
            turn.say("report.photo_kept_need_text")
            return
        turn.reply(prompt(turn))
        return
    if not text_fits(turn, message.text):
        turn.reply(prompt(turn))
        return
    turn.dialog.update(turn.now, text=message.text.strip())
    if message.photos:
        await store_photos(turn, message)
    next_step(turn)


async def take_photos(turn: Turn, message: IncomingMessage) -> None:
    if not message.photos:
        if message.location is not None or message.text:
            # Skipping ahead is fine: treat it as the place.
            turn.dialog.update(turn.now, photos_done=True)
            turn.dialog.set(ReportState.PLACE, turn.dialog.data, now=turn.now)
            await take_place(turn, message)
            return
        turn.reply(prompt(turn))
        return
    refused = await store_photos(turn, message)
    count = len(turn.dialog.data.get("photos", []))
    if refused:
        turn.say("report.photos_limit", max=MAX_PHOTOS)
    if count >= MAX_PHOTOS:
        turn.dialog.update(turn.now, photos_done=True)
        next_step(turn)
        return
    turn.reply(prompt(turn))


async def take_place(turn: Turn, message: IncomingMessage) -> None:
    if message.location is not None:
        turn.dialog.update(turn.now, lat=message.location.latitude,
                           lon=message.location.longitude, address=None, place_done=True)
        next_step(turn)
        return
    address = (message.text or "").strip()
    if not address:
        turn.reply(prompt(turn))
        return
    if not ADDRESS_MIN <= len(address) <= ADDRESS_MAX:
        turn.say("report.address_length", min=ADDRESS_MIN, max=ADDRESS_MAX)
        turn.reply(prompt(turn))
        return
    turn.dialog.update(turn.now, address=address, lat=None, lon=None, place_done=True)
    next_step(turn)


# ---------------------------------------------------------------------------------------------
# The report's buttons

router = Router[Turn]("citizen report")


@router.on(CancelReport)
async def on_cancel(turn: Turn, payload: CancelReport) -> bool:
    await cancel_dialog(turn)
    turn.reply(menu_reply(turn, "cancel.done"))
    return True


@router.on(ChooseTopic)
async def on_topic(turn: Turn, payload: ChooseTopic) -> bool:
    if turn.dialog.state != ReportState.TOPIC or payload.topic not in turn.services.org.topic_by_id:
        return False
    turn.dialog.update(turn.now, topic=payload.topic)
    next_step(turn)
    return True


@router.on(AllTopics)
async def on_all_topics(turn: Turn, payload: AllTopics) -> bool:
    if turn.dialog.state != ReportState.TOPIC:
        return False
    decline_guess(turn)
    turn.reply(prompt(turn))
    return True


@router.on(Photos)
async def on_photos_done(turn: Turn, payload: Photos) -> bool:
    if turn.dialog.state != ReportState.PHOTOS:
        return False
    turn.dialog.update(turn.now, photos_done=True)
    next_step(turn)
    return True


@router.on(SkipPlace)
async def on_skip_place(turn: Turn, payload: SkipPlace) -> bool:
    if turn.dialog.state != ReportState.PLACE:
        return False
    turn.dialog.update(turn.now, address=None, lat=None, lon=None, place_done=True)
    next_step(turn)
    return True


@router.on(Confirm)
async def on_confirm(turn: Turn, payload: Confirm) -> bool:
    if turn.dialog.state != ReportState.CONFIRM:
        return False
    if payload.action is ConfirmAction.SEND:
        await submit_report(turn)
    else:
        turn.dialog.set(ReportState.EDIT, turn.dialog.data, now=turn.now)
        turn.reply(prompt(turn))
    return True


@router.on(Edit)
async def on_edit(turn: Turn, payload: Edit) -> bool:
    if turn.dialog.state != ReportState.EDIT:
        return False
    data = turn.dialog.data
    data["editing"] = True
    field = payload.field
    if field is ReportField.BACK:
        turn.dialog.set(ReportState.CONFIRM, data, now=turn.now)
    elif field is ReportField.TOPIC:
        data.pop("topic", None)
        data["suggestion_declined"] = True  # changing it: the full screen, not the question
        turn.dialog.set(ReportState.TOPIC, data, now=turn.now)
    elif field is ReportField.TEXT:
        data.pop("text", None)
        turn.dialog.set(ReportState.TEXT, data, now=turn.now)
    elif field is ReportField.PHOTOS:
        turn.dialog.set(ReportState.PHOTOS, data, now=turn.now)
    else:
        turn.dialog.set(ReportState.PLACE, data, now=turn.now)
    turn.reply(prompt(turn))
    return True


async def cancel_dialog(turn: Turn) -> None:
    """Forget a half-done report, including photos already saved for it."""
    if turn.dialog.state in REPORT_STATES:
        await discard_unsent(turn, turn.dialog.data.get("photos", []))
    turn.dialog.reset(turn.now)


# ---------------------------------------------------------------------------------------------
# Submitting: item, history and staff notification in one transaction, then the number.

async def submit_report(turn: Turn) -> None:
    data = turn.dialog.data
    now = turn.now
    suggested, score = best_suggestion(data)
    item = await register(turn.session, turn.services, NewItem(
        kind=Kind.MESSAGE, channel=str(turn.account.platform), topic=data["topic"],
        text=data["text"], received_at=now, citizen_id=turn.account.citizen_id,
        reply_account_id=turn.account.id, address=data.get("address"),
        latitude=data.get("lat"), longitude=data.get("lon"),
        attachment_ids=tuple(data.get("photos", [])), suggested_topic=suggested,
        suggestion_score=score), Actor.CITIZEN)
    turn.dialog.reset(now)
    # Make sure the notification is durable before the citizen hears anything.
    await turn.session.flush()
    org, t = turn.services.org, turn.t
    turn.reply(Reply(
        t("report.registered", number=item.number,
          topic=org.topic_by_id[item.topic].label(t.locale),
          block=org.block_by_id[item.block_id].title,
          due=local_date(item.answer_due, turn.services.tz)),
        title=t("report.registered.title"), menu=main_menu(turn)))
