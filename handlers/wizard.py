"""One wizard for the step-by-step dialogs: the citizen's report and the operator's /register.

A feature describes its steps in a table of `Step`s; a `Wizard` runs the table for a turn: it
shows the prompt of the first step still missing, takes the input the step accepts, validates it
(an `Invalid` names the error text), stores it in the dialog data and moves on; when nothing is
missing it shows the confirmation, whose «edit» screen clears keys and asks for them again.
Cancel, with the clean-up of the photos already saved, is here, once. Each feature keeps its own
table, its own screens and its own final step (the submit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Flag, StrEnum, auto
from typing import Any

from handlers.events import Button, IncomingMessage, Reply
from handlers.limits import TEXT_MAX, TEXT_MIN
from handlers.photos import discard_unsent
from handlers.turn import Turn

Data = dict[str, Any]
State = StrEnum | str


class Accepts(Flag):
    """What a step takes; anything else gets «use the buttons» or the prompt again."""

    TEXT = auto()
    PHOTO = auto()
    LOCATION = auto()
    BUTTON = auto()


@dataclass(frozen=True)
class Invalid:
    """A typed value that does not fit: the error text key and its arguments."""

    key: str
    args: Mapping[str, Any] = field(default_factory=dict)


def text_length(text: str) -> Invalid | None:
    """A report's text and a registered item's text have the same bounds."""
    if len(text) < TEXT_MIN:
        return Invalid("report.text_too_short", {"min": TEXT_MIN, "length": len(text)})
    if len(text) > TEXT_MAX:
        return Invalid("report.text_too_long", {"max": TEXT_MAX, "length": len(text)})
    return None


def _always(data: Data) -> bool:
    return True


def _never(data: Data) -> bool:
    return False


@dataclass(frozen=True)
class Step:
    state: State  # the dialog state while the step is asked
    key: str  # the dialog data key the step fills
    prompt: Callable[[Turn], Reply]  # the question, without the cancel row (the wizard adds it)
    accepts: Accepts = Accepts.TEXT
    # Typed text → the value to store, or Invalid (the wizard says the error and asks again).
    check: Callable[[Turn, str], Awaitable[Any]] | None = None
    # A step that takes its input its own way (text with photos, photos, a place).
    take: Callable[[Turn, IncomingMessage], Awaitable[None]] | None = None
    applies: Callable[[Data], bool] = _always  # a step of some items only
    done: Callable[[Data], bool] | None = None  # filled; by default: its key is present
    skippable: Callable[[Data], bool] = _never
    skip_value: Any = None  # what a skip stores (None: «no value»)
    offer_skip: bool = True  # the wizard adds its skip row when the step is skippable
    enter: Callable[[Turn, Data], None] | None = None  # before the step is asked

    def filled(self, data: Data) -> bool:
        return self.done(data) if self.done is not None else self.key in data


@dataclass(frozen=True)
class Edit:
    """A choice of the edit screen: the keys it clears (and sets), then the step it asks
    (None: the first step still missing, or the confirmation)."""

    clears: tuple[str, ...] = ()
    sets: Mapping[str, Any] = field(default_factory=dict)
    goto: State | None = None


@dataclass(frozen=True)
class Wizard:
    steps: tuple[Step, ...]
    confirm_state: State
    edit_state: State
    confirm: Callable[[Turn], Reply]  # the summary with «send», «edit», «cancel»
    edit_screen: Callable[[Turn], Reply]
    edits: Mapping[str, Edit]
    cancel_button: Callable[[Turn], Button]
    lost: Callable[[Turn], Reply]  # the screen for a state of the feature that no longer exists
    title: str | None = None  # the text key of every step's title
    skip_button: Callable[[Turn], Button] | None = None
    # Photos sent at a step that does not take them (None: «use the buttons» where due).
    stray_photos: Callable[[Turn, IncomingMessage], Awaitable[None]] | None = None
    # Cancel discards the dialog's unsent photos whatever the state, not only in the wizard's.
    discard_anywhere: bool = False

    def step_of(self, state: str) -> Step | None:
        return next((step for step in self.steps if step.state == state), None)

    def owns(self, state: str) -> bool:
        return (state in (self.confirm_state, self.edit_state)
                or self.step_of(state) is not None)

    def current(self, turn: Turn) -> Step | None:
        return self.step_of(turn.dialog.state)

    def first_missing(self, data: Data) -> Step | None:
        return next((s for s in self.steps if s.applies(data) and not s.filled(data)), None)

    # -----------------------------------------------------------------------------------------
    # Screens

    def screen(self, turn: Turn) -> Reply:
        state = turn.dialog.state
        if state == self.confirm_state:
            return self.confirm(turn)
        if state == self.edit_state:
            return self.edit_screen(turn)
        step = self.current(turn)
        return self.lost(turn) if step is None else self.framed(turn, step)

    def framed(self, turn: Turn, step: Step) -> Reply:
        reply = step.prompt(turn)
        rows = list(reply.buttons)
        if (self.skip_button is not None and step.offer_skip
                and step.skippable(turn.dialog.data)):
            rows.append([self.skip_button(turn)])
        rows.append([self.cancel_button(turn)])
        title = reply.title or (turn.t(self.title) if self.title else None)
        return replace(reply, buttons=rows, title=title)

    def show(self, turn: Turn) -> None:
        turn.reply(self.screen(turn))

    # -----------------------------------------------------------------------------------------
    # Moving on

    def start(self, turn: Turn, data: Data) -> None:
        turn.dialog.set(self.steps[0].state, data, now=turn.now)
        self.advance(turn)

    def advance(self, turn: Turn) -> None:
        """Ask for the first missing piece, or show the confirmation (also after an edit)."""
        data = turn.dialog.data
        step = self.first_missing(data)
        if step is not None and step.enter is not None:
            step.enter(turn, data)
        turn.dialog.set(step.state if step else self.confirm_state, data, now=turn.now)
        self.show(turn)

    def fill(self, turn: Turn, **values: Any) -> bool:
        turn.dialog.update(turn.now, **values)
        self.advance(turn)
        return True

    def answer(self, turn: Turn, key: str, value: Any) -> bool:
        """A button's answer to the current step; False if the step asks something else."""
        step = self.current(turn)
        return step is not None and step.key == key and self.fill(turn, **{key: value})

    def skip(self, turn: Turn) -> bool:
        step = self.current(turn)
        if step is None or not step.skippable(turn.dialog.data):
            return False
        return self.fill(turn, **{step.key: step.skip_value})

    async def take_text(self, turn: Turn, step: Step, text: str) -> None:
        assert step.check is not None
        value = await step.check(turn, text)
        if isinstance(value, Invalid):
            turn.say(value.key, **value.args)
            self.show(turn)
            return
        self.fill(turn, **{step.key: value})

    async def on_message(self, turn: Turn, message: IncomingMessage) -> None:
        if message.unsupported is not None:
            turn.say("input.unsupported", what=turn.t(f"content.{message.unsupported}"))
            self.show(turn)
            return
        step = self.current(turn)
        accepts = step.accepts if step is not None else Accepts.BUTTON
        if message.photos and Accepts.PHOTO not in accepts and self.stray_photos is not None:
            await self.stray_photos(turn, message)
        if step is not None and step.take is not None:
            await step.take(turn, message)
            return
        if step is None or Accepts.TEXT not in accepts:  # buttons only
            if message.text or not message.photos or self.stray_photos is None:
                turn.say("input.use_buttons")
            self.show(turn)
            return
        text = (message.text or "").strip()
        if not text or step.check is None:
            self.show(turn)
            return
        await self.take_text(turn, step, text)

    # -----------------------------------------------------------------------------------------
    # Confirmation, edit, cancel

    def to_edit(self, turn: Turn) -> bool:
        if turn.dialog.state != self.confirm_state:
            return False
        turn.dialog.set(self.edit_state, turn.dialog.data, now=turn.now)
        self.show(turn)
        return True

    def edit(self, turn: Turn, choice: str) -> bool:
        edit = self.edits.get(choice)
        if turn.dialog.state != self.edit_state or edit is None:
            return False
        data = turn.dialog.data
        for key in edit.clears:
            data.pop(key, None)
        data.update(edit.sets)
        if edit.goto is None:
            turn.dialog.set(self.edit_state, data, now=turn.now)
            self.advance(turn)
            return True
        turn.dialog.set(edit.goto, data, now=turn.now)
        self.show(turn)
        return True

    def ask_again(self, turn: Turn, key: str) -> None:
        """The submit found a value no longer fits (a duplicate): ask for it again."""
        data = turn.dialog.data
        data.pop(key, None)
        turn.dialog.set(self.confirm_state, data, now=turn.now)
        self.advance(turn)

    async def cancel(self, turn: Turn) -> None:
        """Forget the half-done dialog, including the photos already saved for it."""
        if self.discard_anywhere or self.owns(turn.dialog.state):
            await discard_unsent(turn, turn.dialog.data.get("photos", []))
        turn.dialog.reset(turn.now)
