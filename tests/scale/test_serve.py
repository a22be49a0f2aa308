"""`mcu serve` as real processes: webhooks spread over several copies on one PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from tests.drills.harness import (
    DIALOG,
    bodies_to,
    cards_to,
    duplicates,
    eventually,
    in_order,
    interleave,
    numbers_to,
    settle,
    step_makers,
)
from tests.scale.serve_harness import PUBLIC_URL, WEBHOOK_PATH, ScaleWorld

HEAD = 9001
CITIZENS = 50


async def test_two_serve_processes_fifty_citizens(world: ScaleWorld) -> None:
    tg = world.tg
    assert tg is not None
    await world.serve(2)
    await world.worker(2)  # the deployment's topology: 2 × serve and 2 × worker
    await world.registered()
    assert tg.webhook_url == PUBLIC_URL + WEBHOOK_PATH
    await world.join_staff(HEAD, timeout=60)

    citizens = [100_000 + n for n in range(CITIZENS)]
    interleave(*(step_makers(tg, uid, f"Не горит фонарь у дома {n}")
                 for n, uid in enumerate(citizens)))

    def done() -> bool:
        return (all(numbers_to(tg, uid) >= 1 for uid in citizens)
                and cards_to(tg, HEAD) >= CITIZENS)

    finished = await settle(world, done, timeout=300, quiet=30)
    assert finished, world.logs()
    items = await world.items()
    assert len(items) == CITIZENS
    for uid in citizens:
        assert numbers_to(tg, uid) == 1
        assert in_order(bodies_to(tg, uid), DIALOG), (uid, bodies_to(tg, uid))
    assert cards_to(tg, HEAD) == CITIZENS
    assert duplicates(tg) == 0
    # Both processes took a share of the webhook's updates.
    posted = {p.url for p in tg.webhook_posts if p.status == 200}
    assert posted == {s.webhook for s in world.serves}


async def test_a_serve_process_killed_mid_run_loses_and_doubles_nothing(
        world: ScaleWorld) -> None:
    """SIGKILL one of two serve processes while citizens report: the fake re-sends what it
    got no answer for to the other one; nothing is lost or doubled.

    The kill happens while the Bot API holds every call (tg.hold): no message is half
    sent at that instant, so a double could only come from the webhook's re-sending, which
    is what this test is about. Messages the dead process had claimed wait for their claim
    to expire (2 minutes) and are then delivered by the workers."""
    tg = world.tg
    assert tg is not None
    victim, survivor = await world.serve(2)
    await world.worker(2)
    await world.registered()
    await world.join_staff(HEAD, timeout=60)
    count = 30
    citizens = [200_000 + n for n in range(count)]
    interleave(*(step_makers(tg, uid, f"Яма на дороге номер {n}")
                 for n, uid in enumerate(citizens)))
    total = len(tg._pending)

    await eventually(lambda: len(tg.acknowledged()) >= total // 3, 120,
                     "a third of the updates acknowledged")
    tg.hold()
    await asyncio.sleep(0.5)
    await victim.process.kill()
    tg.release()

    def dialogs_done() -> bool:
        return all(numbers_to(tg, uid) >= 1 for uid in citizens) \
            and cards_to(tg, HEAD) >= count

    if not await settle(world, dialogs_done, timeout=180, quiet=20):
        # What the dead process had claimed is delivered once its claim expires.
        await eventually(lambda: claims_expired(world), 200, "claims of the dead process")
        await settle(world, dialogs_done, timeout=120, quiet=30)  # the workers send them
    assert tg.webhook_pending == 0, world.logs()
    items = await world.items()
    assert len(items) == count
    assert sorted(item.text for item in items) == sorted(
        f"Яма на дороге номер {n}" for n in range(count))
    for uid in citizens:
        assert numbers_to(tg, uid) == 1, uid
        assert in_order(bodies_to(tg, uid), DIALOG), (uid, bodies_to(tg, uid))
    assert cards_to(tg, HEAD) == count
    assert duplicates(tg) == 0
    # The dead process's unanswered updates were re-sent, and answered by the survivor.
    resent = {p.update_id for p in tg.webhook_posts if p.status != 200}
    assert resent, "the kill left nothing unanswered: it came too late to test anything"
    assert all(p.url == survivor.webhook for p in tg.webhook_posts
               if p.update_id in resent and p.status == 200)


async def claims_expired(world: ScaleWorld) -> bool:
    now = datetime.now(UTC)
    return all(row.claimed_until is None or row.claimed_until < now
               for row in await world.outbox() if row.status == "pending")
