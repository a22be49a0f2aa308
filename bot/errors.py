"""One error policy for every transport: what a failed messenger call means for the outbox.

A transport only names its library's exceptions and error codes (its `classify`); the
verdicts and what follows from them are decided here once, so both messengers behave the
same on each kind of error:
- RETRY: the messenger or the network is unwell; the outbox retries with back-off
  (after `retry_after` seconds when the messenger said so, and pauses that platform);
- BLOCKED: the user blocked the bot or forbids messages; the row is undeliverable and the
  account is marked, so staff see it;
- GIVE_UP: retrying cannot help (a bad request, a vanished chat, an unreadable file);
- DONE: nothing to deliver or retry (Telegram's "message is not modified").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import aiohttp

from handlers.events import DeliveryError

log = logging.getLogger(__name__)


class Outcome(Enum):
    RETRY = "retry"
    BLOCKED = "blocked"
    GIVE_UP = "give up"
    DONE = "done"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    message: str = ""  # for the log: the messenger's own words or code, never user content
    retry_after: float | None = None


Classify = Callable[[BaseException], Verdict | None]  # None: not one of the library's errors


def delivery_error(error: BaseException, classify: Classify) -> DeliveryError | None:
    """The outbox's terms for `error`; None when there is nothing to retry."""
    if isinstance(error, DeliveryError):
        return error
    verdict = classify(error) or common_verdict(error)
    message = verdict.message or type(error).__name__
    if verdict.outcome is Outcome.DONE:
        return None
    if verdict.outcome is Outcome.BLOCKED:
        return DeliveryError(message, blocked=True)
    if verdict.outcome is Outcome.GIVE_UP:
        return DeliveryError(message, permanent=True)
    return DeliveryError(message, retry_after=verdict.retry_after)


def reraise(error: BaseException, classify: Classify) -> None:
    """Raise `error` in the outbox's terms, unless there is nothing to retry."""
    mapped = delivery_error(error, classify)
    if mapped is not None:
        raise mapped from error


def common_verdict(error: BaseException) -> Verdict:
    """Errors below any messenger library: the network, a timeout, a local file."""
    if isinstance(error, aiohttp.ClientError | TimeoutError | ConnectionError):
        return Verdict(Outcome.RETRY, f"unreachable: {type(error).__name__}")
    if isinstance(error, OSError):  # an attachment vanished from disk, say
        return Verdict(Outcome.GIVE_UP, f"attachment unreadable: {type(error).__name__}")
    # A bug or a library error nobody named: try again later; the outbox gives up after
    # its retry window.
    log.warning("unexpected delivery error %s", type(error).__name__)
    return Verdict(Outcome.RETRY, f"unexpected: {type(error).__name__}")
