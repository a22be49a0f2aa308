"""Typed button payloads: versioned, within Telegram's 64 bytes, bounded, never trusted."""

from __future__ import annotations

import pytest

from handlers.citizen import dialog as citizen_dialog
from handlers.citizen.payloads import ChooseTopic, MyItem, MyList, PollAnswer, PollChoice, Rate
from handlers.payloads import MAX_BYTES, MAX_INT, Lang, Locale, unpack_any
from handlers.routing import payload_kinds

CITIZEN_KINDS = [*citizen_dialog.OPEN_KINDS, *payload_kinds(citizen_dialog.ROUTERS)]


def test_a_payload_round_trips_with_its_version() -> None:
    payload = PollAnswer(12, PollChoice.PARTLY)
    assert payload.pack() == "1:poll:12:partly"
    assert PollAnswer.unpack(payload.pack()) == payload
    assert Lang.unpack(Lang(Locale.EN).pack()) == Lang(Locale.EN)


def test_buttons_sent_before_the_version_prefix_still_read() -> None:
    assert PollAnswer.unpack("poll:12:no") == PollAnswer(12, PollChoice.NO)
    assert unpack_any("my:list", CITIZEN_KINDS) == MyList()
    assert unpack_any("my:7", CITIZEN_KINDS) == MyItem(7)


@pytest.mark.parametrize("raw", [
    "", ":", "1:", "2:poll:1:yes", "poll", "poll:1", "poll:1:maybe", "poll:1:yes:extra",
    "rate:-1:5", "rate:+1:5", "rate:1_000:5", f"rate:{MAX_INT + 1}:5", "rate:" + "9" * 5000,
    "rate:١:5", "my:", "topic:", "nonsense", "s:take:1"])
def test_what_does_not_unpack_is_a_stale_button(raw: str) -> None:
    assert unpack_any(raw, CITIZEN_KINDS) is None


def test_integers_are_bounded_to_32_bits() -> None:
    assert Rate.unpack(f"1:rate:{MAX_INT}:5") == Rate(MAX_INT, 5)
    assert Rate.unpack(f"1:rate:{MAX_INT + 1}:5") is None


def test_a_payload_longer_than_telegram_allows_fails_where_it_is_built() -> None:
    with pytest.raises(ValueError):
        ChooseTopic("x" * MAX_BYTES).pack()
    with pytest.raises(ValueError):
        ChooseTopic("a:b").pack()  # the separator would change what it says


def test_every_topic_button_fits(services) -> None:
    for topic in services.org.topics:
        assert len(ChooseTopic(topic.id).pack().encode()) <= MAX_BYTES


def test_staff_buttons_fit_and_old_cards_still_read(services) -> None:
    from handlers.staff import dialog as staff_dialog
    from handlers.staff.payloads import CardAction, CardOp, RedirectTo, TaskFilter, Tasks

    for block in services.org.blocks:
        for index in range(len(block.topics)):
            assert len(RedirectTo(MAX_INT, block.id, index).pack().encode()) <= MAX_BYTES
    kinds = payload_kinds(staff_dialog.ROUTERS)
    assert unpack_any("s:take:12", kinds) == CardAction(CardOp.TAKE, 12)
    assert unpack_any("s:tasks:overdue:2", kinds) == Tasks(TaskFilter.OVERDUE, 2)
    assert unpack_any("s:redirect_to:3:housing", kinds) == RedirectTo(3, "housing")
    for raw in ("s:take:abc", "s", "s:fly:1", "s:take:1:2", "s:tasks:all:-1"):
        assert unpack_any(raw, kinds) is None


def test_register_buttons_fit_and_old_ones_still_read(services) -> None:
    from handlers.operator.fields import REGISTER_CHANNELS
    from handlers.operator.payloads import RegisterButton, RegisterOp

    values = [*REGISTER_CHANNELS, *(t.id for t in services.org.topics)]
    for value in values:
        assert len(RegisterButton(RegisterOp.TOPIC, value).pack().encode()) <= MAX_BYTES
    assert RegisterButton.unpack("r:ch:pos") == RegisterButton(RegisterOp.CHANNEL, "pos")
    assert RegisterButton.unpack("r:send") == RegisterButton(RegisterOp.SEND)
    assert RegisterButton.unpack("r:launch") is None


def test_stats_buttons_fit(services) -> None:
    from handlers.analytics.payloads import ChoosePeriod, Spreadsheet
    from handlers.analytics.periods import PRESETS

    for section in services.org.sections:
        for period in (*PRESETS, "custom"):
            assert len(ChoosePeriod(section.name, period).pack().encode()) <= MAX_BYTES
        assert len(Spreadsheet(section.name, "20261101", "20261130").pack()) <= MAX_BYTES
