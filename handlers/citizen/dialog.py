"""The citizen's conversation: consent, commands, the menu, and routing what the citizen
sends to a feature (the report, «Мои обращения», privacy, polls)."""

from __future__ import annotations

from handlers.citizen import my_items, polls, privacy, report
from handlers.citizen.common import main_menu, menu_reply
from handlers.citizen.items_view import items_list
from handlers.citizen.my_items import clarify_prompt, comment_prompt
from handlers.citizen.payloads import Consent, ConsentAnswer
from handlers.citizen.replies import apply_clarification, apply_comment
from handlers.citizen.report import WIZARD as REPORT
from handlers.citizen.report import (
    cancel_dialog,
    start_report,
    start_with_message,
    text_fits,
)
from handlers.citizen.states import ConsentState, ItemState, PollState, PrivacyState
from handlers.commands import parse_command
from handlers.context import PRIVACY_POLICY_VERSION
from handlers.events import Button, IncomingMessage, Reply
from handlers.payloads import Lang, Locale, Payload, unpack_any
from handlers.routing import Router, dispatch, payload_kinds
from handlers.turn import Turn
from storage.models import Citizen
from storage.models import Consent as ConsentRecord

# ---------------------------------------------------------------------------------------------
# Keyboards

def consent_reply(turn: Turn) -> Reply:
    t = turn.t
    return Reply(
        t("consent.request"),
        title=t("start.greeting.title"),
        buttons=[[Button(t("consent.agree"), Consent(ConsentAnswer.YES).pack())],
                 [Button(t("consent.policy"), Consent(ConsentAnswer.POLICY).pack())],
                 [Button(t("consent.decline"), Consent(ConsentAnswer.NO).pack())]],
        remove_menu=True,
    )


# ---------------------------------------------------------------------------------------------
# Step prompts: each says what is accepted at this step.

def prompt_for(turn: Turn) -> Reply:
    t, state = turn.t, turn.dialog.state
    if REPORT.owns(state):
        return REPORT.screen(turn)
    if state == ItemState.COMMENT:
        return comment_prompt(turn)
    if state == ItemState.CLARIFY:
        return clarify_prompt(turn)
    if state == PollState.COMMENT:
        return Reply(t("poll.comment_ask"))
    if state == PrivacyState.FORGET_CONFIRM:
        return privacy.forget_question(turn)
    return menu_reply(turn, "menu.prompt")


# ---------------------------------------------------------------------------------------------
# Entry point

async def handle(turn: Turn) -> None:
    consent = turn.consent  # read with the account at the start of the turn
    if turn.press is not None:
        await on_button(turn, consent is not None)
        return
    message = turn.message
    assert message is not None
    text = (message.text or "").strip()
    command = parse_command(text)
    if command is None and text.lower() in {"начать", "start"}:
        command = "start"
    if command is not None:
        await on_command(turn, command, consent is not None)
        return
    if consent is None:
        # Nothing the citizen writes is kept before consent (152-ФЗ).
        if turn.dialog.state == ConsentState.ASKED:
            turn.say("consent.required")
        turn.dialog.set(ConsentState.ASKED, now=turn.now)
        turn.reply(consent_reply(turn))
        return
    if text and await on_menu_text(turn, text):
        return
    await on_content(turn, message)


async def on_command(turn: Turn, command: str, consented: bool) -> None:
    if command == "start":
        if consented:
            turn.reply(menu_reply(turn, "start.welcome_back"))
        else:
            turn.dialog.set(ConsentState.ASKED, now=turn.now)
            turn.reply(consent_reply(turn))
        return
    if command == "help":
        turn.reply(Reply(turn.t("help.citizen"), menu=main_menu(turn) if consented else None))
        return
    if command == "lang":
        turn.reply(language_choice(turn))
        return
    if command == "privacy":
        turn.reply(await privacy.describe(turn))
        return
    if not consented:
        turn.say("consent.required")
        turn.reply(consent_reply(turn))
        return
    if command == "cancel":
        await cancel_dialog(turn)
        turn.reply(menu_reply(turn, "cancel.done"))
        return
    if command == "forget":
        await cancel_dialog(turn)
        turn.dialog.set(PrivacyState.FORGET_CONFIRM, now=turn.now)
        turn.reply(privacy.forget_question(turn))
        return
    if command in {"menu", "report", "my"}:
        if command == "report":
            await start_report(turn, {})
        elif command == "my":
            turn.reply(await items_list(turn))
        else:
            turn.reply(menu_reply(turn, "menu.prompt"))
        return
    turn.say("command.unknown", command="/" + command)
    turn.reply(prompt_for(turn))


async def on_menu_text(turn: Turn, text: str) -> bool:
    t = turn.t
    if text in t.all_variants("menu.report"):
        await cancel_dialog(turn)
        await start_report(turn, {})
        return True
    if text in t.all_variants("menu.my_items"):
        turn.reply(await items_list(turn))
        return True
    if text in t.all_variants("menu.help"):
        turn.reply(Reply(t("help.citizen"), menu=main_menu(turn)))
        return True
    return False


# ---------------------------------------------------------------------------------------------
# Content: text, photos, locations, things we do not accept

async def on_content(turn: Turn, message: IncomingMessage) -> None:
    state = turn.dialog.state
    if message.unsupported is not None:
        turn.say("input.unsupported", what=turn.t(f"content.{message.unsupported}"))
        turn.reply(prompt_for(turn))
        return
    if state == ItemState.CLARIFY:
        await apply_clarification(turn, message)
        return
    if state == ItemState.COMMENT:
        await apply_comment(turn, message)
        return
    if state == PollState.COMMENT and message.text:
        await polls.take_comment(turn, message.text.strip())
        return
    if REPORT.owns(state):
        await REPORT.on_message(turn, message)
        return
    if state in (PrivacyState.FORGET_CONFIRM, ConsentState.ASKED):
        turn.say("input.use_buttons")
        turn.reply(prompt_for(turn))
        return
    # Idle: a citizen who starts by writing is asked for the topic afterwards, text kept.
    if message.text and not text_fits(turn, message.text):
        return
    if message.text or message.photos:
        await start_with_message(turn, message)
        return
    turn.reply(menu_reply(turn, "menu.prompt"))


# ---------------------------------------------------------------------------------------------
# Buttons

async def on_button(turn: Turn, consented: bool) -> None:
    press = turn.press
    assert press is not None
    payload = unpack_any(press.payload, (*OPEN_KINDS, *payload_kinds(ROUTERS)))
    if isinstance(payload, Consent):
        await on_consent(turn, payload.answer, consented)
        return
    if isinstance(payload, Lang):
        turn.account.locale = payload.locale.value
        turn.t = type(turn.t)(payload.locale.value)
        turn.reply(Reply(turn.t("lang.changed"), menu=main_menu(turn) if consented else None))
        return
    if not consented:
        turn.notice = turn.t("consent.required_short")
        turn.reply(consent_reply(turn))
        return
    if payload is None or not await dispatch(turn, payload, ROUTERS):
        turn.notice = turn.t("button.stale")
        turn.say("button.stale_long")
        turn.reply(prompt_for(turn))


def language_choice(turn: Turn) -> Reply:
    return Reply(turn.t("lang.choose"), buttons=[[Button("Русский", Lang(Locale.RU).pack()),
                                                  Button("English", Lang(Locale.EN).pack())]])


async def on_consent(turn: Turn, answer: ConsentAnswer, consented: bool) -> None:
    t = turn.t
    if answer is ConsentAnswer.POLICY:
        turn.reply(Reply(t("consent.policy_text", version=PRIVACY_POLICY_VERSION),
                         title=t("consent.policy_title"),
                         buttons=[[Button(t("consent.agree"), Consent(ConsentAnswer.YES).pack())],
                                  [Button(t("consent.decline"),
                                          Consent(ConsentAnswer.NO).pack())]]))
        return
    if answer is ConsentAnswer.NO:
        turn.dialog.reset(turn.now)
        turn.reply(Reply(t("consent.declined"), remove_menu=True))
        return
    if consented:
        turn.reply(menu_reply(turn, "start.welcome_back"))
        return
    turn.session.add(ConsentRecord(account_id=turn.account.id,
                                   policy_version=PRIVACY_POLICY_VERSION, given_at=turn.now))
    if turn.account.citizen_id is None:
        press = turn.press
        citizen = Citizen(name=press.display_name if press else None, created_at=turn.now)
        turn.session.add(citizen)
        await turn.session.flush()
        turn.account.citizen_id = citizen.id
    turn.dialog.reset(turn.now)
    turn.notice = t("consent.thanks_short")
    turn.reply(menu_reply(turn, "consent.thanks"))


# Consent and the language work before consent is given (on_button); everything else needs it.
OPEN_KINDS: tuple[type[Payload], ...] = (Consent, Lang)
# The citizen's features, in one place: a new button type is routed by adding it to one of them.
ROUTERS: tuple[Router[Turn], ...] = (report.router, my_items.router, privacy.router, polls.router)
