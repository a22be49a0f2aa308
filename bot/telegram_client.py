"""The Bot API client of the Telegram transport: how the bot is made (`make_bot`) and how it
introduces itself at every start (getMe and the command menu), for polling and the webhook
alike. The translation of updates and replies stays in bot/telegram.py."""

from __future__ import annotations

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.methods import (
    AnswerCallbackQuery,
    DeleteWebhook,
    GetFile,
    GetMe,
    SendDocument,
    SendLocation,
    SendMediaGroup,
    SendMessage,
    SendPhoto,
    SetMyCommands,
    SetWebhook,
)
from aiogram.methods.base import Response as ApiResponse
from aiogram.types import BotCommand, User

from bot.settings import Settings

# The command menu. Telegram-only presentation, so it lives with the transport's client.
COMMANDS: dict[str, list[tuple[str, str]]] = {
    "ru": [
        ("start", "Начать: согласие и главное меню"),
        ("help", "Что умеет бот"),
        ("cancel", "Отменить текущий шаг"),
        ("privacy", "Какие данные о вас хранятся"),
        ("forget", "Отозвать согласие на обработку данных"),
        ("lang", "Язык / Language"),
    ],
    "en": [
        ("start", "Start: consent and the main menu"),
        ("help", "What this bot does"),
        ("cancel", "Cancel the current step"),
        ("privacy", "What is stored about you"),
        ("forget", "Withdraw consent to data processing"),
        ("lang", "Language / Язык"),
    ],
}


async def introduce(bot: Bot) -> User:
    """Who the bot is (getMe), and its command menu in each language, at every start."""
    me = await bot.get_me()
    for locale, commands in COMMANDS.items():
        await bot.set_my_commands(
            [BotCommand(command=name, description=text) for name, text in commands],
            language_code=None if locale == "ru" else locale)
    return me


# pydantic caches a parametrised generic such as `Response[Message]` only weakly: unreferenced,
# it is collected and rebuilt (about 1 ms of CPU) for almost every call aiogram makes. The
# response types of the methods this bot calls are kept alive here.
_RESPONSE_TYPES = tuple(ApiResponse[method.__returning__] for method in (
    SendMessage, SendPhoto, SendDocument, SendMediaGroup, SendLocation, AnswerCallbackQuery,
    GetFile, GetMe, SetMyCommands, SetWebhook, DeleteWebhook))


def make_bot(settings: Settings) -> Bot:
    """A Bot in HTML parse mode, on the configured Bot API server (a local one in tests)."""
    token = settings.telegram_token
    if token is None:
        raise ValueError("MCU_TELEGRAM_TOKEN is not set")
    api_url = settings.telegram_api_url
    session = (AiohttpSession(api=TelegramAPIServer.from_base(api_url)) if api_url
               else AiohttpSession())
    return Bot(token.get_secret_value(), session=session,
               default=DefaultBotProperties(parse_mode=ParseMode.HTML))


async def fetch_username(settings: Settings) -> str | None:
    """The bot's @username, for CLI commands that run without the transport (invite links)."""
    bot = make_bot(settings)
    try:
        return (await bot.get_me()).username
    finally:
        await bot.session.close()
