"""The facts of each messenger, as the core's `Capabilities` (no framework import here, so
the composition root can describe a messenger whose transport is not running)."""

from __future__ import annotations

from dataclasses import replace

from bot.settings import Settings
from handlers.capabilities import Capabilities
from handlers.events import Platform

TELEGRAM = Capabilities(
    text_limit=4096,  # Bot API: message text, after entity parsing
    # No hard limit in the Bot API, but a phone shows about this much on a full-width button.
    button_label_limit=40,
    buttons_per_row=8,
    notice_limit=200,  # answerCallbackQuery text
)
VK = Capabilities(
    text_limit=4000,  # VK allows 4096; keep a margin
    button_label_limit=40,  # VK refuses longer labels
    buttons_per_row=5,
    notice_limit=90,  # show_snackbar text
)


def telegram_with_username(username: str | None) -> Capabilities:
    """Telegram's facts once the bot's @username is known: then it has a deep link."""
    return replace(TELEGRAM, deep_link=f"https://t.me/{username}?start={{payload}}"
                   if username else None)


def capabilities(settings: Settings) -> dict[str, Capabilities]:
    return {Platform.TELEGRAM.value: telegram_with_username(settings.telegram_bot_username),
            Platform.VK.value: VK}
