"""`mcu serve` as real processes: webhooks spread over several copies on one PostgreSQL."""

from __future__ import annotations

from tests.drills.harness import (
    CARD_LEAD,
    DIALOG,
    NUMBER_MARK,
    bodies_to,
    duplicates,
    in_order,
    interleave,
    numbers_to,
    settle,
    step_makers,
)
from tests.fakes.telegram_api import FakeTelegramServer
from tests.scale.serve_harness import PUBLIC_URL, WEBHOOK_PATH, ScaleWorld

HEAD = 9001
CITIZENS = 50


def cards_to_head(tg: FakeTelegramServer) -> list[str]:
    return [b for b in bodies_to(tg, HEAD) if CARD_LEAD in b]


async def test_two_serve_processes_fifty_citizens(world: ScaleWorld) -> None:
    tg = world.tg
    assert tg is not None
    await world.serve(2)
    await world.registered()
    assert tg.webhook_url == PUBLIC_URL + WEBHOOK_PATH
    await world.join_staff(HEAD, timeout=60)

    citizens = [100_000 + n for n in range(CITIZENS)]
    interleave(*(step_makers(tg, uid, f"Не горит фонарь у дома {n}")
                 for n, uid in enumerate(citizens)))

    def done() -> bool:
        return (all(numbers_to(tg, uid) >= 1 for uid in citizens)
                and len(cards_to_head(tg)) >= CITIZENS)

    finished = await settle(world, done, timeout=300, quiet=30)
    assert finished, world.logs()
    items = await world.items()
    assert len(items) == CITIZENS
    for uid in citizens:
        assert numbers_to(tg, uid) == 1
        assert in_order(bodies_to(tg, uid), DIALOG), (uid, bodies_to(tg, uid))
    assert len(cards_to_head(tg)) == CITIZENS
    assert duplicates(tg) == 0
    # Both processes took a share of the webhook's updates.
    posted = {p.url for p in tg.webhook_posts if p.status == 200}
    assert posted == {s.webhook for s in world.serves}
