"""A send(text) / click(button) client for the core, in the style of aiogram_dialog's BotClient.

It talks to the real core (no transport), and remembers the last replies so a test can press
one of their buttons by its text.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from handlers.core import Core
from handlers.events import (
    Button,
    ButtonPress,
    ChatRef,
    IncomingMessage,
    IncomingPhoto,
    Location,
    Platform,
    Reply,
    Response,
    Unsupported,
    UserRef,
)

_counter = itertools.count(1)
# A tiny valid JPEG header is enough: the core stores bytes, it does not decode them.
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


@dataclass
class ChatClient:
    core: Core
    user_id: str
    platform: str = "telegram"
    name: str | None = None
    language_code: str | None = "ru"
    history: list[Reply] = field(default_factory=list)
    last: Response | None = None

    @property
    def user(self) -> UserRef:
        return UserRef(Platform(self.platform), self.user_id)

    @property
    def chat(self) -> ChatRef:
        return ChatRef(Platform(self.platform), self.user_id)

    async def send(self, text: str | None = None, *, photos: int = 0,
                   location: tuple[float, float] | None = None,
                   unsupported: Unsupported | None = None, update_key: str | None = None,
                   chat_id: str | None = None, is_private: bool = True) -> Response:
        event = IncomingMessage(
            update_key=update_key or f"u{next(_counter)}", user=self.user,
            chat=ChatRef(Platform(self.platform), chat_id or self.user_id), is_private=is_private,
            text=text, photos=tuple(IncomingPhoto(JPEG + bytes([i])) for i in range(photos)),
            location=Location(*location) if location else None, unsupported=unsupported,
            display_name=self.name, language_code=self.language_code)
        # As a transport does: the shared flood limit first, then the turn.
        refusal = await self.core.admit(event)
        return self._keep(refusal if refusal is not None else await self.core.handle(event))

    async def press(self, payload: str, *, update_key: str | None = None) -> Response:
        event = ButtonPress(update_key=update_key or f"u{next(_counter)}", user=self.user,
                            chat=self.chat, payload=payload, display_name=self.name,
                            language_code=self.language_code)
        refusal = await self.core.admit(event)
        return self._keep(refusal if refusal is not None else await self.core.handle(event))

    async def click(self, text_part: str) -> Response:
        """Press the button whose text contains `text_part` in the latest replies."""
        button = self.find_button(text_part)
        return await self.press(button.payload)

    def find_button(self, text_part: str) -> Button:
        for reply in reversed(self.history):
            for row in reply.buttons:
                for button in row:
                    if text_part in button.text:
                        return button
        raise AssertionError(f"no button containing {text_part!r}; last: {self.texts()}")

    def texts(self) -> str:
        replies = self.last.replies if self.last else []
        return "\n---\n".join(f"{r.title}\n{r.text}" if r.title else r.text for r in replies)

    def _keep(self, response: Response) -> Response:
        self.last = response
        self.history.extend(response.replies)
        return response


async def join_as(core: Core, role: str, block: str | None = None, *, user_id: str,
                  platform: str = "telegram", name: str | None = None) -> ChatClient:
    """A staff member who joined with a one-time invite, as in production."""
    from handlers.staff.invites import create_invite

    services = core.services
    async with services.sessions() as session, session.begin():
        invite = await create_invite(session, services.org, role, block, name or role,
                                     services.now())
    client = ChatClient(core, user_id=user_id, platform=platform, name=name)
    response = await client.send(f"/start {invite.code}")
    assert "Добро пожаловать" in response.replies[0].text, client.texts()
    return client


def outbox_texts(rows: list) -> list[str]:  # type: ignore[type-arg]
    return [row.payload["text"] for row in rows]
