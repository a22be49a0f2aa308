"""What both transports share, written once: the text splitter, the error policy and the
platform facts the core reads as capabilities."""

from __future__ import annotations

import aiohttp
import pytest
from aiogram.exceptions import TelegramForbiddenError, TelegramRetryAfter
from aiogram.methods import SendMessage
from vkbottle import VKAPIError

from bot import telegram, vk
from bot.platforms import TELEGRAM, VK, telegram_with_username
from bot.telegram_render import html_cost
from handlers.capabilities import FALLBACK
from handlers.formatting import split_text
from tests.support.chat import join_as


def test_one_splitter_for_every_limit_and_cost() -> None:
    text = "\n".join(f"строка {i} <&>" for i in range(500))
    for limit, cost in ((300, len), (300, html_cost), (4000, len)):
        pieces = split_text(text, limit, cost=cost)
        assert all(sum(map(cost, piece)) <= limit for piece in pieces)
        assert "\n".join(pieces) == text  # only the separator at each cut is dropped
    assert split_text("a" * 10, 4) == ["aaaa", "aaaa", "aa"]  # no separator: cut in the word
    assert split_text("ab cd", 2) == ["ab", "cd"]
    assert split_text("") == [""]


def vk_error(code: int) -> VKAPIError:
    return VKAPIError[code](error_msg="test")  # type: ignore[misc]


@pytest.mark.parametrize(("telegram_error", "vk_error_code"), [
    (TelegramForbiddenError(SendMessage(chat_id=1, text="x"), "Forbidden: blocked"), 901),
    (TelegramRetryAfter(SendMessage(chat_id=1, text="x"), "Too Many Requests", 1), 6),
])
def test_both_messengers_mean_the_same_by_the_same_error(telegram_error: Exception,
                                                         vk_error_code: int) -> None:
    ours, theirs = telegram.delivery_error(telegram_error), vk.delivery_error(
        vk_error(vk_error_code))
    assert ours is not None
    assert (ours.blocked, ours.permanent, ours.retry_after is None) == (
        theirs.blocked, theirs.permanent, theirs.retry_after is None)


@pytest.mark.parametrize("error", [aiohttp.ClientConnectionError("reset"), TimeoutError(),
                                   RuntimeError("a library error nobody named")])
def test_network_and_unknown_errors_are_retried_in_both(error: Exception) -> None:
    for mapped in (telegram.delivery_error(error), vk.delivery_error(error)):
        assert mapped is not None
        assert not (mapped.blocked or mapped.permanent) and mapped.retry_after is None


def test_capabilities_are_data() -> None:
    assert VK.label("Отдел ЖКХ, транспорта, энергетики и связи") == (
        "Отдел ЖКХ, транспорта, энергетики и свя…")
    assert len(VK.label("x" * 100)) == VK.button_label_limit
    assert TELEGRAM.start_link("abc") is None
    assert telegram_with_username("mcu_bot").start_link("abc") == "https://t.me/mcu_bot?start=abc"
    assert FALLBACK.text_limit <= min(TELEGRAM.text_limit, VK.text_limit)


async def test_an_invitation_made_in_vk_links_to_telegram_from_its_capabilities(core, services):
    chairman = await join_as(core, "chairman", user_id="77", platform="vk", name="Председатель")
    reply = await chairman.send("/invite executor housing Иванов")
    assert "—" in reply.replies[0].text  # no Telegram username known: no link
    services.capabilities["telegram"] = telegram_with_username("mcu_okha_bot")
    reply = await chairman.send("/invite executor housing Петров")
    assert "https://t.me/mcu_okha_bot?start=" in reply.replies[0].text
