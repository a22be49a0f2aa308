"""What a messenger can show, as data: the core reads these instead of platform constants.

Each transport describes its messenger once (bot/platforms.py); the composition root puts
the descriptions into `Services.capabilities`, keyed by platform, so a turn, a sweep or an
import can look up the facts of whichever messenger a reply goes to.
"""

from __future__ import annotations

from dataclasses import dataclass

from handlers.events import Platform

# The platforms whose items are answered inside the messenger (not published elsewhere).
MESSENGERS: tuple[str, ...] = tuple(platform.value for platform in Platform)


@dataclass(frozen=True)
class Capabilities:
    text_limit: int  # characters in one message
    button_label_limit: int  # characters of a button label that stay readable
    buttons_per_row: int
    notice_limit: int  # the short answer to a button press (toast / snackbar)
    # A link that opens the bot with a start payload ("{payload}" is replaced), if any.
    deep_link: str | None = None

    def label(self, text: str) -> str:
        """`text` as a button label: cut with an ellipsis past the limit."""
        limit = self.button_label_limit
        return text if len(text) <= limit else text[:limit - 1] + "…"

    def start_link(self, payload: str) -> str | None:
        return self.deep_link.replace("{payload}", payload) if self.deep_link else None


# For a platform nobody described (a CLI process without transports): the strictest facts.
FALLBACK = Capabilities(text_limit=4000, button_label_limit=40, buttons_per_row=5,
                        notice_limit=90)
